//! AVX2 matrix-matrix products for prompt processing (see `crate::matmul`): a tile of `R`
//! weight rows times `T` tokens, each weight block unpacked once for the `T` tokens and each
//! activation block prepared once for the `R` rows.
//!
//! **Bit-identical to `vec_dot.rs` / `vec_dot_k.rs`.** Every (row, token) pair has its own
//! accumulator and gets, block by block, the float steps of the vec_dot kernel of its type in
//! the same order: the same scale products (`fp16(x.d) * fp16(y.d)`, in the same operand
//! order), the same FMAs into the same lanes, the same horizontal sums. Only integer work is
//! split differently between the weight side and the activation side, and integer sums are
//! exact whatever their order: each i32 lane holds the same value as in the vec_dot kernel.
//! `tests/parity.rs` holds every kernel here to `matvec` bit for bit: a change to a vec_dot
//! kernel's float order must be made here too.
//!
//! With AVX-VNNI, the signed 32-value types (Q4_0, Q5_0, Q8_0) keep their quants unsigned
//! (`q + offset`) and start `vpdpbusd` from the token's `-offset * sum(y)` lanes: one
//! instruction gives each exact lane, and each token tile's quants, offsets and scales are
//! prepared once per row block (`offset_matmul`). `x86::avx512` widens these to 512 bits.
//!
//! Types without a kernel here (F32, F16, BF16, IQ4_NL, Q2_K, Q3_K) are tiled over their
//! matrix-vector kernels (`crate::matmul::tiled`).
//!
//! This file has the tables, the tile skeletons and the driver every kernel shares
//! (`matmul_kernel!`); one file per family of weight types: `signed.rs` (Q4_0, Q5_0, Q8_0),
//! `offset.rs` (the same with AVX-VNNI on unsigned quants), `with_min.rs` (Q4_1, Q5_1),
//! `k_quants.rs` (Q4_K, Q5_K, Q6_K) and `gemm_8x8.rs` (Q4_0 in llama.cpp's repacked order).
//! A new type gets its tile in its family's file and a line in [`MATMUL`].

use super::vec_dot::{bytes_from_bits, fp16x8, nibbles};
use super::vec_dot_k::{
    k4_piece_scales, k4_sumi, q4_k_quants, q5_k_quants, q6_k_piece_scales, q6_k_quants, q8_pieces,
};
use super::{
    broadcast_word, dot_u8_i8, fp16, hsum_f32x4, hsum_f32x8, hsum_i32x4, hsum_i32x8, load128,
    load256, prefetch_ahead,
};
use crate::matmul::{shape, MatmulKernels};
use crate::scalar::scales_mins_k4;
use core::arch::x86_64::*;
use formats::quant::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, QK_K,
};

/// A safe `fn` calling the AVX2 matrix kernel `$f`, for [`MATMUL`] only.
macro_rules! avx2 {
    ($f:ident) => {
        Some(|w, a, outs| {
            // SAFETY: `MATMUL` is reachable only through the AVX2 kernel table, which
            // `dispatch::table` returns only once it found AVX2, FMA and F16C usable.
            unsafe { $f(w, a, outs) }
        })
    };
}

/// A safe `fn` calling the AVX2 + AVX-VNNI matrix kernel `$f`, for [`MATMUL_VNNI`] only.
macro_rules! vnni {
    ($f:ident) => {
        Some(|w, a, outs| {
            // SAFETY: `MATMUL_VNNI` is reachable only through the AVX2 + VNNI kernel table,
            // which `dispatch::table` returns only once it found AVX2, FMA, F16C and AVX-VNNI
            // usable.
            unsafe { $f(w, a, outs) }
        })
    };
}

/// The AVX2 table's matrix-matrix kernels.
pub(crate) static MATMUL: MatmulKernels = MATMUL_AVX2;

/// The AVX2 + AVX-VNNI table's: the signed 32-value types through the offset kernels
/// ([`offset_matmul`]: unsigned quants, `vpdpbusd` from `-offset * sum(y)`, the same i32 lanes,
/// each a sum of four exact products; rows of more than [`NB_OFFSET`] blocks through the
/// signed tiles with `vpdpbusd` in place of `maddubs` + `madd`), the rest AVX2's.
pub(crate) static MATMUL_VNNI: MatmulKernels = MatmulKernels {
    q4_0: vnni!(matmul_q4_0_q8_0_offset),
    q5_0: vnni!(matmul_q5_0_q8_0_offset),
    q8_0: vnni!(matmul_q8_0_q8_0_offset),
    ..MATMUL_AVX2
};

/// The AVX2 matrix-matrix kernels (`None`: tiled over the matrix-vector kernel).
const MATMUL_AVX2: MatmulKernels = MatmulKernels {
    q4_0: avx2!(matmul_q4_0_q8_0),
    q4_1: avx2!(matmul_q4_1_q8_1),
    q5_0: avx2!(matmul_q5_0_q8_0),
    q5_1: avx2!(matmul_q5_1_q8_1),
    q8_0: avx2!(matmul_q8_0_q8_0),
    q4_k: avx2!(matmul_q4_k_q8_k),
    q5_k: avx2!(matmul_q5_k_q8_k),
    q6_k: avx2!(matmul_q6_k_q8_k),
    ..MatmulKernels::TILED
};

/// The tile skeleton: blocks `0..n` (the shortest slice); for each, `unpack` of every row's
/// weight block once, then for every token `prep` of its activation block once and
/// `step(unpacked, prepared, accumulator)` for every row, one accumulator per (row, token).
/// (Always inlined into the `#[target_feature]` kernels, whose closures carry the features.)
#[inline(always)]
fn tile<'y, X, Y, U: Copy, P: Copy, A: Copy, const R: usize, const T: usize>(
    xs: [&[X]; R],
    ys: [&'y [Y]; T],
    zero: A,
    unpack: impl Fn(&X) -> U,
    prep: impl Fn(&'y Y) -> P,
    step: impl Fn(&U, P, A) -> A,
) -> [[A; T]; R] {
    let (n, rows, acts) = shortest(xs, ys);
    let mut acc = [[zero; T]; R];
    for b in 0..n {
        prefetch_ahead(&rows[0][b]);
        let mut u = [unpack(&rows[0][b]); R];
        for r in 1..R {
            prefetch_ahead(&rows[r][b]);
            u[r] = unpack(&rows[r][b]);
        }
        for t in 0..T {
            let p = prep(&acts[t][b]);
            for r in 0..R {
                acc[r][t] = step(&u[r], p, acc[r][t]);
            }
        }
    }
    acc
}

/// The rows and activations cut to the shortest of them (`n` blocks), so that the tiles'
/// loops index without bounds checks.
#[inline(always)]
fn shortest<'x, 'y, X, Y, const R: usize, const T: usize>(
    xs: [&'x [X]; R],
    ys: [&'y [Y]; T],
) -> (usize, [&'x [X]; R], [&'y [Y]; T]) {
    let n = xs.iter().fold(usize::MAX, |n, row| n.min(row.len()));
    let n = ys.iter().fold(n, |n, act| n.min(act.len()));
    let mut rows: [&[X]; R] = [&[]; R];
    for (short, row) in rows.iter_mut().zip(xs) {
        *short = &row[..n];
    }
    let mut acts: [&'y [Y]; T] = [&[]; T];
    for (short, act) in acts.iter_mut().zip(ys) {
        *short = &act[..n];
    }
    (n, rows, acts)
}

/// `pub unsafe fn $name(w, acts, outs)`: the rows of `w` times the `outs.len()` activations of
/// `acts` through `$tile` ([`R`] rows by [`T`] tokens, the remainders one row or one token at
/// a time), `outs[t][r]`.
macro_rules! matmul_kernel {
    ($name:ident, $tile:ident, $w:ty, $a:ty, $doc:literal) => {
        matmul_kernel!($name, $tile, $w, $a, $doc, R, T);
    };
    ($name:ident, $tile:ident, $w:ty, $a:ty, $doc:literal, $R:expr, $T:expr) => {
        matmul_kernel!($name, $tile, $w, $a, $doc, $R, $T, "avx2,fma,f16c");
    };
    ($name:ident, $tile:ident, $w:ty, $a:ty, $doc:literal, $R:expr, $T:expr, $features:literal) => {
        #[doc = $doc]
        ///
        /// `outs[t][r]` is the dot product of row `r` of `w` with activation `t` of `acts`,
        /// bit-identical to the vec_dot kernel; `w` holds the rows (as many as the shortest
        /// `outs[t]`) of `acts.len() / outs.len()` blocks each (short inputs leave outputs
        /// untouched).
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[$w], acts: &[$a], outs: &mut [&mut [f32]]) {
            const RR: usize = $R;
            const TT: usize = $T;
            let n_tokens = outs.len();
            let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
                return;
            };
            let full_r = rows / RR * RR;
            let (tiles_t, rest_t) = acts.split_at(n_tokens / TT * TT * nb);
            let (outs_t, rest_o) = outs.split_at_mut(n_tokens / TT * TT);
            // Cache blocking: a block of rows (about [`ROW_BLOCK_BYTES`] of weights) stays in
            // L1 while every token passes over it, a few tokens' activations at a time.
            let block_rows = (ROW_BLOCK_BYTES / (nb * size_of::<$w>()).max(1) / RR).max(1) * RR;
            for r0 in (0..full_r).step_by(block_rows) {
                let r1 = (r0 + block_rows).min(full_r);
                for (yg, og) in tiles_t
                    .chunks_exact(TT * nb)
                    .zip(outs_t.chunks_exact_mut(TT))
                {
                    let ys: [&[$a]; TT] = core::array::from_fn(|k| &yg[k * nb..(k + 1) * nb]);
                    for r in (r0..r1).step_by(RR) {
                        let xs: [&[$w]; RR] =
                            core::array::from_fn(|i| &w[(r + i) * nb..(r + i + 1) * nb]);
                        let res = $tile::<RR, TT>(xs, ys);
                        for (k, o) in og.iter_mut().enumerate() {
                            for i in 0..RR {
                                o[r + i] = res[i][k];
                            }
                        }
                    }
                }
                for (y, o) in rest_t.chunks_exact(nb).zip(rest_o.iter_mut()) {
                    for r in (r0..r1).step_by(RR) {
                        let xs: [&[$w]; RR] =
                            core::array::from_fn(|i| &w[(r + i) * nb..(r + i + 1) * nb]);
                        let res = $tile::<RR, 1>(xs, [y]);
                        for i in 0..RR {
                            o[r + i] = res[i][0];
                        }
                    }
                }
            }
            for r in full_r..rows {
                let x = &w[r * nb..(r + 1) * nb];
                for (yg, og) in tiles_t
                    .chunks_exact(TT * nb)
                    .zip(outs_t.chunks_exact_mut(TT))
                {
                    let ys: [&[$a]; TT] = core::array::from_fn(|k| &yg[k * nb..(k + 1) * nb]);
                    let res = $tile::<1, TT>([x], ys);
                    for (k, o) in og.iter_mut().enumerate() {
                        o[r] = res[0][k];
                    }
                }
                for (y, o) in rest_t.chunks_exact(nb).zip(rest_o.iter_mut()) {
                    o[r] = $tile::<1, 1>([x], [y])[0][0];
                }
            }
        }
    };
}

/// Rows per tile of the 32-value block types (each pair of a row and a token has its own
/// eight-lane accumulator: 2 x 4 of them, with the unpacked rows and a token's block, about
/// fill the sixteen registers).
const R: usize = 2;
/// Weight bytes of a row block of the tiled kernels, which every token of a batch passes over
/// before the next block: in L1 beside a few tokens' activations.
const ROW_BLOCK_BYTES: usize = 16 << 10;

/// Rows per tile of the AVX-VNNI kernels (their step needs fewer registers: 3 x 4
/// accumulators fit, and each token's activation block serves one more row).
const R_VNNI: usize = 3;
/// Tokens per tile of the 32-value block types.
const T: usize = 4;
/// Tokens per tile of the K-quants: one row, whose unpacked super-block (16 registers' worth)
/// every token reads from the stack.
const T_K: usize = 8;

/// Each accumulator of a tile (an `[[A; TT]; RR]` array) to its result by `|$a| $e`, in plain
/// loops (inlined, unlike `array::map`'s closures in a `#[target_feature]` function).
macro_rules! finish_all {
    ($acc:expr, |$a:pat_param| $e:expr) => {{
        let acc = $acc;
        let mut out = [[0f32; TT]; RR];
        for (o, r) in out.iter_mut().zip(acc.iter()) {
            for (o, &$a) in o.iter_mut().zip(r.iter()) {
                *o = $e;
            }
        }
        out
    }};
}

/// The 32-value block skeleton: as [`tile`], but a step gets one row's unpacked block and the
/// prepared blocks of all `T` tokens at once (their scales in the lanes of one register), and
/// updates that row's accumulators of all `T` tokens.
#[inline(always)]
fn tile32<'y, X, Y, U: Copy, P, A: Copy, const R: usize, const T: usize>(
    xs: [&[X]; R],
    ys: [&'y [Y]; T],
    zero: A,
    unpack: impl Fn(&X) -> U,
    prep: impl Fn([&'y Y; T]) -> P,
    step: impl Fn(&U, &P, &mut A),
) -> [A; R] {
    let (n, rows, acts) = shortest(xs, ys);
    let mut acc = [zero; R];
    for b in 0..n {
        let mut blocks = [&acts[0][b]; T];
        for t in 1..T {
            blocks[t] = &acts[t][b];
        }
        let p = prep(blocks);
        for r in 0..R {
            prefetch_ahead(&rows[r][b]);
            step(&unpack(&rows[r][b]), &p, &mut acc[r]);
        }
    }
    acc
}

/// Up to eight f16 values (`h[t]`, the rest zero) as the f32 lanes of a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn halves<const T: usize>(h: [u16; T]) -> __m256 {
    let lane = |t: usize| if t < T { h[t] as i16 } else { 0 };
    let packed = _mm_set_epi16(
        lane(7),
        lane(6),
        lane(5),
        lane(4),
        lane(3),
        lane(2),
        lane(1),
        lane(0),
    );
    _mm256_cvtph_ps(packed)
}

/// Lane `t` of `v` in every lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lane(v: __m256, t: usize) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(t as i32))
}

/// The lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes(v: __m256) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// `T` tokens' Q8_0 blocks: their quants (loaded where used) and their scales as f32 lanes.
#[derive(Clone, Copy)]
struct Q8_0s<'y, const T: usize> {
    q: [&'y [i8; 32]; T],
    d: __m256,
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0s<const T: usize>(y: [&BlockQ8_0; T]) -> Q8_0s<'_, T> {
    let mut d = [0u16; T];
    let mut q = [&y[0].qs; T];
    for t in 0..T {
        d[t] = y[t].d;
        q[t] = &y[t].qs;
    }
    Q8_0s { q, d: halves(d) }
}

/// `T` tokens' Q8_1 blocks: their quants (loaded where used), scales and sums (as f32 lanes).
#[derive(Clone, Copy)]
struct Q8_1s<'y, const T: usize> {
    q: [&'y [i8; 32]; T],
    d: __m256,
    s: __m256,
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_1s<const T: usize>(y: [&BlockQ8_1; T]) -> Q8_1s<'_, T> {
    let (mut d, mut s) = ([0u16; T], [0u16; T]);
    let mut q = [&y[0].qs; T];
    for t in 0..T {
        (d[t], s[t]) = (y[t].d, y[t].s);
        q[t] = &y[t].qs;
    }
    Q8_1s {
        q,
        d: halves(d),
        s: halves(s),
    }
}

mod gemm_8x8;
mod k_quants;
mod offset;
mod signed;
mod with_min;

pub use gemm_8x8::{gemm_q4_0_8x8_q8_0, gemm_q4_0_8x8_q8_0_evex, gemm_q4_0_8x8_q8_0_vnni};
use k_quants::{matmul_q4_k_q8_k, matmul_q5_k_q8_k, matmul_q6_k_q8_k};
pub use offset::{matmul_q4_0_q8_0_offset, matmul_q5_0_q8_0_offset, matmul_q8_0_q8_0_offset};
pub(crate) use offset::{unsigned_q4_0, unsigned_q5_0, unsigned_q8_0};
pub use signed::{matmul_q4_0_q8_0, matmul_q5_0_q8_0, matmul_q8_0_q8_0};
use with_min::{matmul_q4_1_q8_1, matmul_q5_1_q8_1};
