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

use super::vec_dot::{bytes_from_bits, fp16x8, nibbles};
use super::vec_dot_k::{broadcast_i16, k4_scales, q8_pieces};
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

/// A signed weight block for `dot_i8_i8`: its scale in every lane, its quants and their
/// absolute values (the weight-side half of `_mm256_sign_epi8(x, x)`, `_mm256_sign_epi8(y, x)`).
#[derive(Clone, Copy)]
struct Signed {
    d: __m256,
    q: __m256i,
    abs: __m256i,
}

impl Signed {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(d: u16, q: __m256i) -> Self {
        Signed {
            d: _mm256_set1_ps(fp16(d)),
            q,
            abs: _mm256_sign_epi8(q, q),
        }
    }
}

/// The step of `vec_dot_q4_0_q8_0`, `vec_dot_q5_0_q8_0` and `vec_dot_q8_0_q8_0` for every
/// token: `fma(fp16(x.d) * fp16(y.d), dot_i8_i8(q, y), acc)` (the scale products of all tokens
/// in one multiply: lane `t` is the same product).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_step<const T: usize>(x: &Signed, y: &Q8_0s<'_, T>, acc: &mut [__m256; T]) {
    let d = _mm256_mul_ps(x.d, y.d);
    for t in 0..T {
        let sums = dot_u8_i8(x.abs, _mm256_sign_epi8(load256(y.q[t]), x.q));
        acc[t] = _mm256_fmadd_ps(lane(d, t), _mm256_cvtepi32_ps(sums), acc[t]);
    }
}

/// A signed-weight tile's results: the sum of each accumulator's lanes (`vec_dot.rs`'s
/// `finish`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_signed<const R: usize, const T: usize>(acc: [[__m256; T]; R]) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = hsum_f32x8(a);
        }
    }
    out
}

/// [`signed_step`] with AVX-VNNI: `vpdpbusd` gives `dot_u8_i8`'s lanes in one instruction.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn signed_step_vnni<const T: usize>(x: &Signed, y: &Q8_0s<'_, T>, acc: &mut [__m256; T]) {
    let d = _mm256_mul_ps(x.d, y.d);
    for t in 0..T {
        let sy = _mm256_sign_epi8(load256(y.q[t]), x.q);
        let sums = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), x.abs, sy);
        acc[t] = _mm256_fmadd_ps(lane(d, t), _mm256_cvtepi32_ps(sums), acc[t]);
    }
}

/// `fn $name::<RR, TT>(x, y)`: the tile of a signed 32-value type (weights unpacked by
/// `$unpack`) against Q8_0 activations through `$step` ([`signed_step`], or
/// [`signed_step_vnni`] with AVX-VNNI), for the CPU features `$features`.
macro_rules! signed_tile {
    ($name:ident, $w:ty, $unpack:ident, $step:ident, $features:literal) => {
        #[inline]
        #[target_feature(enable = $features)]
        fn $name<const RR: usize, const TT: usize>(
            x: [&[$w]; RR],
            y: [&[BlockQ8_0]; TT],
        ) -> [[f32; TT]; RR] {
            let acc = tile32(
                x,
                y,
                [_mm256_setzero_ps(); TT],
                |x| $unpack(x),
                |y| q8_0s(y),
                |x, y, acc| $step(x, y, acc),
            );
            finish_signed(acc)
        }
    };
}

/// A Q4_0 block as signed quants (`q - 8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q4_0(x: &BlockQ4_0) -> Signed {
    Signed::new(x.d, _mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8)))
}

/// A Q5_0 block as signed quants (`q - 16`: the nibble with 0xf0, -16, where the fifth bit is
/// clear).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q5_0(x: &BlockQ5_0) -> Signed {
    let high = _mm256_andnot_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(-16));
    Signed::new(x.d, _mm256_or_si256(nibbles(&x.qs), high))
}

/// A Q8_0 block as signed quants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q8_0(x: &BlockQ8_0) -> Signed {
    Signed::new(x.d, load256(&x.qs))
}

signed_tile!(
    q4_0_tile,
    BlockQ4_0,
    signed_q4_0,
    signed_step,
    "avx2,fma,f16c"
);
signed_tile!(
    q5_0_tile,
    BlockQ5_0,
    signed_q5_0,
    signed_step,
    "avx2,fma,f16c"
);
signed_tile!(
    q8_0_tile,
    BlockQ8_0,
    signed_q8_0,
    signed_step,
    "avx2,fma,f16c"
);
signed_tile!(
    q4_0_tile_vnni,
    BlockQ4_0,
    signed_q4_0,
    signed_step_vnni,
    "avx2,fma,f16c,avxvnni"
);
signed_tile!(
    q5_0_tile_vnni,
    BlockQ5_0,
    signed_q5_0,
    signed_step_vnni,
    "avx2,fma,f16c,avxvnni"
);
signed_tile!(
    q8_0_tile_vnni,
    BlockQ8_0,
    signed_q8_0,
    signed_step_vnni,
    "avx2,fma,f16c,avxvnni"
);

matmul_kernel!(
    matmul_q4_0_q8_0_vnni,
    q4_0_tile_vnni,
    BlockQ4_0,
    BlockQ8_0,
    "[`matmul_q4_0_q8_0`] with AVX-VNNI.",
    R_VNNI,
    T,
    "avx2,fma,f16c,avxvnni"
);
matmul_kernel!(
    matmul_q5_0_q8_0_vnni,
    q5_0_tile_vnni,
    BlockQ5_0,
    BlockQ8_0,
    "[`matmul_q5_0_q8_0`] with AVX-VNNI.",
    R_VNNI,
    T,
    "avx2,fma,f16c,avxvnni"
);
matmul_kernel!(
    matmul_q8_0_q8_0_vnni,
    q8_0_tile_vnni,
    BlockQ8_0,
    BlockQ8_0,
    "[`matmul_q8_0_q8_0`] with AVX-VNNI.",
    R_VNNI,
    T,
    "avx2,fma,f16c,avxvnni"
);

/// The most blocks per row the offset kernels ([`offset_matmul`]) prepare a token tile for
/// (rows of up to 8192 values); longer rows take the signed tiles.
const NB_OFFSET: usize = 256;
/// Rows per tile of the offset kernels.
const R_OFF: usize = 2;
/// Tokens per tile of the offset kernels.
const T_OFF: usize = 6;

/// One block of a token tile prepared for the offset kernels: each token's quants, its
/// correction lanes (`-offset * (sum of each four quants)`, the accumulator `vpdpbusd` starts
/// from) and the tokens' scales (lane `t`: token `t`). Everything a tile reads of the tokens
/// at fixed offsets from one pointer.
#[derive(Clone, Copy)]
struct OffsetBlock<const T: usize> {
    y: [__m256i; T],
    corr: [__m256i; T],
    dy: __m256,
}

/// A token tile's blocks prepared for the offset kernels.
struct OffsetPrep<const T: usize> {
    blocks: [OffsetBlock<T>; NB_OFFSET],
}

impl<const T: usize> OffsetPrep<T> {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn new() -> Self {
        let zero = OffsetBlock {
            y: [_mm256_setzero_si256(); T],
            corr: [_mm256_setzero_si256(); T],
            dy: _mm256_setzero_ps(),
        };
        OffsetPrep {
            blocks: [zero; NB_OFFSET],
        }
    }

    /// Prepare the first `nb` (at most [`NB_OFFSET`]) blocks of the tokens `ys` for weights
    /// whose quants are stored `off` (every byte) above their value.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn fill(&mut self, ys: [&[BlockQ8_0]; T], nb: usize, off: __m256i) {
        let zero = _mm256_setzero_si256();
        for (b, p) in self.blocks.iter_mut().enumerate().take(nb) {
            let mut d = [0u16; T];
            for t in 0..T {
                let y = &ys[t][b];
                d[t] = y.d;
                p.y[t] = load256(&y.qs);
                let s = _mm256_dpbusd_avx_epi32(zero, off, p.y[t]);
                p.corr[t] = _mm256_sub_epi32(zero, s);
            }
            p.dy = halves(d);
        }
    }
}

/// `RR` rows of unsigned quants (`unpack`: a block's f16 scale and its quants plus the
/// offset) by the `TT` tokens prepared in `p`, over `nb` blocks: each pair's block gets
/// `vec_dot`'s float step, `fma(fp16(x.d) * fp16(y.d), float(lanes), acc)`, on the same i32
/// lanes, as `vpdpbusd(-offset * sum(y), q + offset, y) = sum(q * y)` exactly (four products
/// a lane). Then each accumulator's lanes summed as `vec_dot` does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn offset_tile<X, const RR: usize, const TT: usize>(
    xs: [&[X]; RR],
    p: &OffsetPrep<TT>,
    nb: usize,
    unpack: &impl Fn(&X) -> (u16, __m256i),
) -> [[f32; TT]; RR] {
    let mut acc = [[_mm256_setzero_ps(); TT]; RR];
    for (b, pb) in p.blocks.iter().enumerate().take(nb) {
        let mut q = [_mm256_setzero_si256(); RR];
        let mut dd = [[0f32; 8]; RR];
        for r in 0..RR {
            let x = &xs[r][b];
            prefetch_ahead(x);
            let (d, qu) = unpack(x);
            q[r] = qu;
            dd[r] = lanes(_mm256_mul_ps(_mm256_set1_ps(fp16(d)), pb.dy));
        }
        // Each pair's scale is read back from memory by a broadcast load (a load port, no
        // shuffle): without the barrier the compiler picks lanes out of a register, two
        // shuffles a pair on the one port that does them.
        let dd = core::hint::black_box(&dd);
        for t in 0..TT {
            for r in 0..RR {
                let s = _mm256_dpbusd_avx_epi32(pb.corr[t], q[r], pb.y[t]);
                let d = _mm256_set1_ps(dd[r][t]);
                acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[r][t]);
            }
        }
    }
    finish_signed(acc)
}

/// The driver of the offset kernels: the first `rows` rows of `nb` (at most [`NB_OFFSET`])
/// blocks times the `outs.len()` tokens of `acts`, in row blocks of about [`ROW_BLOCK_BYTES`]
/// that every token passes over, a tile of [`T_OFF`] tokens prepared once per row block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn offset_matmul<X>(
    w: &[X],
    acts: &[BlockQ8_0],
    outs: &mut [&mut [f32]],
    nb: usize,
    rows: usize,
    off: u8,
    unpack: impl Fn(&X) -> (u16, __m256i),
) {
    let n_tokens = outs.len();
    let off = _mm256_set1_epi8(off as i8);
    let full_t = n_tokens / T_OFF * T_OFF;
    let block_rows = (ROW_BLOCK_BYTES / (nb * size_of::<X>()).max(1) / R_OFF).max(1) * R_OFF;
    let row = |r: usize| &w[r * nb..(r + 1) * nb];
    let act = |t: usize| &acts[t * nb..(t + 1) * nb];
    let mut prep = OffsetPrep::<T_OFF>::new();
    let mut prep1 = OffsetPrep::<1>::new();
    for r0 in (0..rows).step_by(block_rows) {
        let r1 = (r0 + block_rows).min(rows);
        for t0 in (0..full_t).step_by(T_OFF) {
            let ys: [&[BlockQ8_0]; T_OFF] = core::array::from_fn(|k| act(t0 + k));
            prep.fill(ys, nb, off);
            let mut r = r0;
            while r + R_OFF <= r1 {
                let xs: [&[X]; R_OFF] = core::array::from_fn(|i| row(r + i));
                let res = offset_tile(xs, &prep, nb, &unpack);
                for (k, o) in outs[t0..t0 + T_OFF].iter_mut().enumerate() {
                    for (i, v) in res.iter().enumerate() {
                        o[r + i] = v[k];
                    }
                }
                r += R_OFF;
            }
            for r in r..r1 {
                let res = offset_tile([row(r)], &prep, nb, &unpack);
                for (k, o) in outs[t0..t0 + T_OFF].iter_mut().enumerate() {
                    o[r] = res[0][k];
                }
            }
        }
        for t in full_t..n_tokens {
            prep1.fill([act(t)], nb, off);
            let mut r = r0;
            while r + R_OFF <= r1 {
                let xs: [&[X]; R_OFF] = core::array::from_fn(|i| row(r + i));
                let res = offset_tile(xs, &prep1, nb, &unpack);
                for (i, v) in res.iter().enumerate() {
                    outs[t][r + i] = v[0];
                }
                r += R_OFF;
            }
            for r in r..r1 {
                outs[t][r] = offset_tile([row(r)], &prep1, nb, &unpack)[0][0];
            }
        }
    }
}

/// `pub unsafe fn $name(w, acts, outs)`: `$w` weights (unsigned quants from `$unpack`, stored
/// `$off` above their value) times Q8_0 activations with AVX-VNNI through [`offset_matmul`];
/// rows of more than [`NB_OFFSET`] blocks through `$signed` (the signed tiles).
macro_rules! offset_kernel {
    ($name:ident, $w:ty, $unpack:ident, $off:expr, $signed:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// `outs[t][r]` is the dot product of row `r` of `w` with activation `t` of `acts`,
        /// bit-identical to the vec_dot kernel; `w` holds the rows (as many as the shortest
        /// `outs[t]`) of `acts.len() / outs.len()` blocks each.
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C and AVX-VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
        pub unsafe fn $name(w: &[$w], acts: &[BlockQ8_0], outs: &mut [&mut [f32]]) {
            let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
                return;
            };
            if nb > NB_OFFSET {
                // SAFETY: the caller guarantees the CPU features, the same for this kernel.
                return unsafe { $signed(w, acts, outs) };
            }
            offset_matmul(w, acts, outs, nb, rows, $off, |x| $unpack(x));
        }
    };
}

/// A Q4_0 block's scale and quants (`q`, stored 8 above the value).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unsigned_q4_0(x: &BlockQ4_0) -> (u16, __m256i) {
    (x.d, nibbles(&x.qs))
}

/// A Q5_0 block's scale and quants (the nibble and the fifth bit: 16 above the value).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unsigned_q5_0(x: &BlockQ5_0) -> (u16, __m256i) {
    let high = _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10));
    (x.d, _mm256_or_si256(nibbles(&x.qs), high))
}

/// A Q8_0 block's scale and quants plus 128 (the sign bit flipped).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unsigned_q8_0(x: &BlockQ8_0) -> (u16, __m256i) {
    let q = load256(&x.qs);
    (x.d, _mm256_xor_si256(q, _mm256_set1_epi8(0x80_u8 as i8)))
}

offset_kernel!(
    matmul_q4_0_q8_0_offset,
    BlockQ4_0,
    unsigned_q4_0,
    8,
    matmul_q4_0_q8_0_vnni,
    "Q4_0 weights times Q8_0 activations with AVX-VNNI on the unsigned nibbles."
);
offset_kernel!(
    matmul_q5_0_q8_0_offset,
    BlockQ5_0,
    unsigned_q5_0,
    16,
    matmul_q5_0_q8_0_vnni,
    "Q5_0 weights times Q8_0 activations with AVX-VNNI on the unsigned five-bit quants."
);
offset_kernel!(
    matmul_q8_0_q8_0_offset,
    BlockQ8_0,
    unsigned_q8_0,
    128,
    matmul_q8_0_q8_0_vnni,
    "Q8_0 weights times Q8_0 activations with AVX-VNNI on the quants plus 128."
);

matmul_kernel!(
    matmul_q4_0_q8_0,
    q4_0_tile,
    BlockQ4_0,
    BlockQ8_0,
    "Q4_0 weights (`d * (q - 8)`) times Q8_0 activations (`vec_dot_q4_0_q8_0` per pair)."
);

matmul_kernel!(
    matmul_q5_0_q8_0,
    q5_0_tile,
    BlockQ5_0,
    BlockQ8_0,
    "Q5_0 weights (`d * (q - 16)`) times Q8_0 activations (`vec_dot_q5_0_q8_0` per pair)."
);

matmul_kernel!(
    matmul_q8_0_q8_0,
    q8_0_tile,
    BlockQ8_0,
    BlockQ8_0,
    "Q8_0 weights times Q8_0 activations (`vec_dot_q8_0_q8_0` per pair)."
);

/// An unsigned weight block with a minimum (Q4_1, Q5_1): `d` and `m` in every lane, the
/// quants.
#[derive(Clone, Copy)]
struct WithMin {
    d: __m256,
    m: __m256,
    q: __m256i,
}

impl WithMin {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(d: u16, m: u16, q: __m256i) -> Self {
        WithMin {
            d: _mm256_set1_ps(fp16(d)),
            m: _mm256_set1_ps(fp16(m)),
            q,
        }
    }
}

/// One row's accumulators of a tile of unsigned weights with minimums: the eight-lane scaled
/// sums of each token, and the minimum parts of all tokens (lane `t`: token `t`).
type MinAcc<const T: usize> = ([__m256; T], __m256);

/// The step of `vec_dot_q4_1_q8_1` and `vec_dot_q5_1_q8_1` for every token: the scaled sum
/// in eight lanes, and `fma(fp16(x.m), fp16(y.s), acc_m)` (vec_dot's fused lane-0 update) in
/// lane `t` of one register for all tokens. `$d_first`: whether the FMA takes the scale as its
/// first factor (Q4_1) or the sums (Q5_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn with_min_step<const T: usize>(
    x: &WithMin,
    y: &Q8_1s<'_, T>,
    acc: &mut MinAcc<T>,
    d_first: bool,
) {
    let d = _mm256_mul_ps(x.d, y.d);
    for t in 0..T {
        let sums = _mm256_cvtepi32_ps(dot_u8_i8(x.q, load256(y.q[t])));
        let dt = lane(d, t);
        acc.0[t] = if d_first {
            _mm256_fmadd_ps(dt, sums, acc.0[t])
        } else {
            _mm256_fmadd_ps(sums, dt, acc.0[t])
        };
    }
    acc.1 = _mm256_fmadd_ps(x.m, y.s, acc.1);
}

/// A tile's results with minimums: each scaled sum's lanes added up, plus the token's minimum
/// part (`vec_dot.rs`: `finish(a) + m`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_with_min<const R: usize, const T: usize>(acc: [MinAcc<T>; R]) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for (o, (a, m)) in out.iter_mut().zip(acc) {
        let m = lanes(m);
        for (t, (o, a)) in o.iter_mut().zip(a).enumerate() {
            *o = hsum_f32x8(a) + m[t];
        }
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ4_1]; RR],
    y: [&[BlockQ8_1]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile32(
        x,
        y,
        ([_mm256_setzero_ps(); TT], _mm256_setzero_ps()),
        |x| WithMin::new(x.d, x.m, nibbles(&x.qs)),
        |y| q8_1s(y),
        |x, y, acc| with_min_step(x, y, acc, true),
    );
    finish_with_min(acc)
}

matmul_kernel!(
    matmul_q4_1_q8_1,
    q4_1_tile,
    BlockQ4_1,
    BlockQ8_1,
    "Q4_1 weights (`d * q + m`) times Q8_1 activations (`vec_dot_q4_1_q8_1` per pair)."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ5_1]; RR],
    y: [&[BlockQ8_1]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile32(
        x,
        y,
        ([_mm256_setzero_ps(); TT], _mm256_setzero_ps()),
        |x| {
            let high = _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10));
            WithMin::new(x.d, x.m, _mm256_or_si256(nibbles(&x.qs), high))
        },
        |y| q8_1s(y),
        |x, y, acc| with_min_step(x, y, acc, false),
    );
    finish_with_min(acc)
}

matmul_kernel!(
    matmul_q5_1_q8_1,
    q5_1_tile,
    BlockQ5_1,
    BlockQ8_1,
    "Q5_1 weights (`d * q + m`) times Q8_1 activations (`vec_dot_q5_1_q8_1` per pair)."
);

/// A Q4_K / Q5_K super-block unpacked: `d`, `dmin`, the eight minimums as i16, the eight
/// sub-block scales each broadcast over a register, and the 256 quants (0..32) in order.
#[derive(Clone, Copy)]
struct K4 {
    d: f32,
    dmin: f32,
    mins: __m128i,
    scales: [__m256i; 8],
    q: [__m256i; 8],
}

/// The shared part of Q4_K and Q5_K: scales and minimums, `q` left for the caller.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_head(d: u16, dmin: u16, packed: &[u8; 12]) -> K4 {
    let (scales, mins) = scales_mins_k4(packed);
    let scales = k4_scales(scales);
    let mut broadcast = [_mm256_setzero_si256(); 8];
    for (k, b) in broadcast.iter_mut().enumerate() {
        *b = broadcast_i16(scales, k);
    }
    K4 {
        d: fp16(d),
        dmin: fp16(dmin),
        mins: _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(mins))),
        scales: broadcast,
        q: [_mm256_setzero_si256(); 8],
    }
}

/// An activation super-block for Q4_K / Q5_K: `d`, the sums of its 32-value pieces (the
/// activation half of `k4_min_products`), its quants.
#[derive(Clone, Copy)]
struct Q8KPrep<'a> {
    d: f32,
    pair_sums: __m128i,
    q8: &'a [[i8; 32]; QK_K / 32],
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_k_prep(y: &BlockQ8K) -> Q8KPrep<'_> {
    let bsums = load256(&y.bsums);
    Q8KPrep {
        d: y.d,
        pair_sums: _mm_hadd_epi16(
            _mm256_castsi256_si128(bsums),
            _mm256_extracti128_si256::<1>(bsums),
        ),
        q8: q8_pieces(y),
    }
}

/// The eight scaled 32-value piece sums of a Q4_K / Q5_K super-block, in i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_sumi(x: &K4, q8: &[[i8; 32]; QK_K / 32]) -> __m256i {
    let mut sumi = _mm256_setzero_si256();
    for j in 0..4 {
        let p_lo = _mm256_maddubs_epi16(x.q[2 * j], load256(&q8[2 * j]));
        let p_hi = _mm256_maddubs_epi16(x.q[2 * j + 1], load256(&q8[2 * j + 1]));
        let p_lo = _mm256_madd_epi16(x.scales[2 * j], p_lo);
        let p_hi = _mm256_madd_epi16(x.scales[2 * j + 1], p_hi);
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    sumi
}

/// `vec_dot_q4_k_q8_k`'s step: the minimums into a four-lane accumulator, the scaled quants
/// into an eight-lane one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ4K]; RR],
    y: [&[BlockQ8K]; TT],
) -> [[f32; TT]; RR] {
    let m4 = _mm256_set1_epi8(0x0f);
    let acc = tile(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |x| {
            let mut k = k4_head(x.d, x.dmin, &x.scales);
            let q4: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
            for j in 0..4 {
                let bits = load256(&q4[j]);
                k.q[2 * j] = _mm256_and_si256(bits, m4);
                k.q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
            }
            k
        },
        |y| q8_k_prep(y),
        |x, p, acc| {
            let d = p.d * x.d;
            let dmin = -p.d * x.dmin;
            let prod = _mm_madd_epi16(x.mins, p.pair_sums);
            let acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc.1);
            let sumi = k4_sumi(x, p.q8);
            let acc_d = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.0);
            (acc_d, acc_m)
        },
    );
    finish_all!(acc, |(a, m)| hsum_f32x8(a) + hsum_f32x4(m))
}

matmul_kernel!(
    matmul_q4_k_q8_k,
    q4_k_tile,
    BlockQ4K,
    BlockQ8K,
    "Q4_K weights times Q8_K activations (`vec_dot_q4_k_q8_k` per pair).",
    1,
    T_K
);

/// `vec_dot_q5_k_q8_k`'s step: as Q4_K, the minimums summed in integers and fused into a
/// scalar sum once per super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ5K]; RR],
    y: [&[BlockQ8K]; TT],
) -> [[f32; TT]; RR] {
    let m4 = _mm256_set1_epi8(0x0f);
    let m16 = _mm256_set1_epi8(0x10);
    let acc = tile(
        x,
        y,
        (_mm256_setzero_ps(), 0f32),
        |x| {
            let mut k = k4_head(x.d, x.dmin, &x.scales);
            let q4: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
            let mut high = load256(&x.qh);
            for j in 0..4 {
                let bits = load256(&q4[j]);
                let h_lo = _mm256_and_si256(_mm256_slli_epi16::<4>(high), m16);
                let h_hi = _mm256_and_si256(_mm256_slli_epi16::<3>(high), m16);
                k.q[2 * j] = _mm256_or_si256(_mm256_and_si256(bits, m4), h_lo);
                k.q[2 * j + 1] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), h_hi);
                high = _mm256_srli_epi16::<2>(high);
            }
            k
        },
        |y| q8_k_prep(y),
        |x, p, acc| {
            let d = p.d * x.d;
            let dmin = -p.d * x.dmin;
            let min_sum = hsum_i32x4(_mm_madd_epi16(x.mins, p.pair_sums));
            let fma = _mm_fmadd_ss(
                _mm_set_ss(dmin),
                _mm_set_ss(min_sum as f32),
                _mm_set_ss(acc.1),
            );
            let sumi = k4_sumi(x, p.q8);
            let acc_d = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.0);
            (acc_d, _mm_cvtss_f32(fma))
        },
    );
    finish_all!(acc, |(a, summs)| hsum_f32x8(a) + summs)
}

matmul_kernel!(
    matmul_q5_k_q8_k,
    q5_k_tile,
    BlockQ5K,
    BlockQ8K,
    "Q5_K weights times Q8_K activations (`vec_dot_q5_k_q8_k` per pair).",
    1,
    T_K
);

/// A Q6_K super-block unpacked: `d`, its sixteen scales as i16 (against the activation's
/// block sums), the 256 quants (0..64) in 32-value pieces, and each piece's two scales spread
/// over its sixteen pair sums.
#[derive(Clone, Copy)]
struct K6 {
    d: f32,
    scales16: __m256i,
    q: [__m256i; 8],
    piece_scales: [__m256i; 8],
}

/// `vec_dot_q6_k_q8_k`'s step: the offset 32 subtracted as `32 * sum(sc * bsums)`, then the
/// eight pieces, one FMA per super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ6K]; RR],
    y: [&[BlockQ8K]; TT],
) -> [[f32; TT]; RR] {
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(3);
    let acc = tile(
        x,
        y,
        _mm256_setzero_ps(),
        |x| {
            let scales = load128(&x.scales);
            let ql: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.ql);
            let qh: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qh);
            let mut q = [_mm256_setzero_si256(); 8];
            let mut piece_scales = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let (l0, l1) = (load256(&ql[2 * j]), load256(&ql[2 * j + 1]));
                let h = load256(&qh[j]);
                q[4 * j] = _mm256_or_si256(
                    _mm256_and_si256(l0, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(h, m3)),
                );
                q[4 * j + 1] = _mm256_or_si256(
                    _mm256_and_si256(l1, m4),
                    _mm256_slli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(0x0c))),
                );
                q[4 * j + 2] = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_and_si256(h, _mm256_set1_epi8(0x30)),
                );
                q[4 * j + 3] = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                    _mm256_srli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(0xc0_u8 as i8))),
                );
                for s in 0..4 {
                    let k = (8 * j + 2 * s) as i64;
                    let pick =
                        _mm_set_epi64x(0x0101_0101_0101_0101 * (k + 1), 0x0101_0101_0101_0101 * k);
                    piece_scales[4 * j + s] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
                }
            }
            K6 {
                d: fp16(x.d),
                scales16: _mm256_cvtepi8_epi16(scales),
                q,
                piece_scales,
            }
        },
        |y: &BlockQ8K| (y.d, load256(&y.bsums), q8_pieces(y)),
        |x, p, acc| {
            let d = p.0 * x.d;
            let offsets = _mm256_madd_epi16(p.1, x.scales16);
            let mut sumi =
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<5>(offsets));
            for i in 0..8 {
                let prod = _mm256_maddubs_epi16(x.q[i], load256(&p.2[i]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(x.piece_scales[i], prod));
            }
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        },
    );
    finish_all!(acc, |a| hsum_f32x8(a))
}

matmul_kernel!(
    matmul_q6_k_q8_k,
    q6_k_tile,
    BlockQ6K,
    BlockQ8K,
    "Q6_K weights times Q8_K activations (`vec_dot_q6_k_q8_k` per pair).",
    1,
    T_K
);

/// Tokens per tile of [`gemm_q4_0_8x8_q8_0`].
const T_8X8: usize = 8;

/// The most blocks per row [`gemm_q4_0_8x8_q8_0`] takes its fast way (rows of up to 16384
/// values); longer rows are tiled over the matrix-vector kernel.
const NB_8X8: usize = 512;

/// The 8x8 transpose of 32-bit lanes: lane `r` of result `k` is lane `k` of `q[r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(q: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(q[0], q[1]);
    let t1 = _mm256_unpackhi_epi32(q[0], q[1]);
    let t2 = _mm256_unpacklo_epi32(q[2], q[3]);
    let t3 = _mm256_unpackhi_epi32(q[2], q[3]);
    let t4 = _mm256_unpacklo_epi32(q[4], q[5]);
    let t5 = _mm256_unpackhi_epi32(q[4], q[5]);
    let t6 = _mm256_unpacklo_epi32(q[6], q[7]);
    let t7 = _mm256_unpackhi_epi32(q[6], q[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// `pub unsafe fn $name(w, acts, outs)`: the Q4_0 GEMM in the 8-row interleaved order for the
/// CPU features `$features`, `$isum` the block's integer dot product for the eight rows (lane
/// `r`: row `r`) from the transposed nibbles `$a`, the token's block `$y` and `8 * sum(y)`
/// (`$sy`).
macro_rules! gemm_q4_0_8x8 {
    ($name:ident, $features:literal, $doc:literal, |$a:ident, $y:ident, $sy:ident| $isum:expr) => {
        #[doc = $doc]
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[BlockQ4_0], acts: &[BlockQ8_0], outs: &mut [&mut [f32]]) {
            let n_tokens = outs.len();
            let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
                return;
            };
            if nb > NB_8X8 {
                crate::matmul::tiled(&w[..rows * nb], acts, outs, |w, a, out| {
                    // SAFETY: the caller guarantees the CPU features.
                    unsafe { super::gemv_q4_0_8x8_q8_0(w, a, out) }
                });
                return;
            }
            let groups = rows / 8;
            let ones = _mm256_set1_epi16(1);
            let m4 = _mm256_set1_epi8(0x0f);
            // Per token of a tile and block: 8 * sum(y) and fp16(y.d).
            let mut sy = [[0i32; NB_8X8]; T_8X8];
            let mut dy = [[0f32; NB_8X8]; T_8X8];
            let mut t0 = 0;
            while t0 < n_tokens {
                let tt = (n_tokens - t0).min(T_8X8);
                for k in 0..tt {
                    for b in 0..nb {
                        let y = &acts[(t0 + k) * nb + b];
                        let s = _mm256_madd_epi16(
                            _mm256_maddubs_epi16(_mm256_set1_epi8(8), load256(&y.qs)),
                            ones,
                        );
                        sy[k][b] = hsum_i32x8(s);
                        dy[k][b] = fp16(y.d);
                    }
                }
                for g in 0..groups {
                    let group = &w[g * 8 * nb..(g + 1) * 8 * nb];
                    let mut acc = [_mm256_setzero_ps(); T_8X8];
                    for b in 0..nb {
                        let mut q = [_mm256_setzero_si256(); 8];
                        let mut dx = [0u16; 8];
                        for r in 0..8 {
                            let x = &group[r * nb + b];
                            prefetch_ahead(x);
                            let packed = load128(&x.qs);
                            let both = _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed);
                            q[r] = _mm256_and_si256(both, m4);
                            dx[r] = x.d;
                        }
                        let a = transpose8(q);
                        let dx = fp16x8(dx);
                        for (k, acc) in acc.iter_mut().enumerate().take(tt) {
                            let y = &acts[(t0 + k) * nb + b];
                            let isum = {
                                let ($a, $y, $sy) = (&a, y, sy[k][b]);
                                $isum
                            };
                            let scale = _mm256_mul_ps(dx, _mm256_set1_ps(dy[k][b]));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
                        }
                    }
                    for (k, acc) in acc.iter().enumerate().take(tt) {
                        outs[t0 + k][g * 8..g * 8 + 8].copy_from_slice(&lanes(*acc));
                    }
                }
                t0 += tt;
            }
            // The rows after the last whole group: `gemv_q4_0_8x8_q8_0`'s one-row arithmetic.
            let done = groups * 8;
            if done < rows {
                for (t, out) in outs.iter_mut().enumerate() {
                    let act = &acts[t * nb..(t + 1) * nb];
                    // SAFETY: the caller guarantees the CPU features.
                    unsafe {
                        super::gemv_q4_0_8x8_q8_0(
                            &w[done * nb..rows * nb],
                            act,
                            &mut out[done..rows],
                        )
                    };
                }
            }
        }
    };
}

// Q4_0 weights times Q8_0 activations in llama.cpp's 8-row interleaved order, the matrix
// form of `gemv_q4_0_8x8_q8_0`: `outs[t][r]` is that kernel's result for row `r` of `w` and
// activation `t` of `acts`, bit for bit. Every (row, token) pair's block gets the same float
// step, `acc = fma(float(isum), fp16(x.d) * fp16(y.d), acc)`, with `isum` the block's whole
// integer dot product, which is exact however it is summed. Here it is summed with one row
// per lane, as llama.cpp's repacked layout does, without repacking the file: a group of 8
// rows' unsigned nibbles is unpacked and transposed (lane `r` of register `k`: quants
// `4k..4k + 4` of row `r`) once per block for a tile of [`T_8X8`] tokens; each token then
// multiplies them by its quants `4k..4k + 4` in every lane (`maddubs`, the eight results
// added in i16: at most 16 products of 15 by 128 each, which fits), one `madd` into i32,
// minus `8 * sum(y)` for the nibbles' offset, computed once per token and block.
//
//
// This is the AVX2 version; `gemm_q4_0_8x8_q8_0_vnni` adds up with AVX-VNNI.
gemm_q4_0_8x8!(
    gemm_q4_0_8x8_q8_0,
    "avx2,fma,f16c",
    "Q4_0 weights times Q8_0 activations in llama.cpp's 8-row interleaved order (AVX2).",
    |a, y, sy| {
        let mut s16 = _mm256_maddubs_epi16(a[0], broadcast_word(&y.qs, 0));
        for (j, aj) in a.iter().enumerate().skip(1) {
            let p = _mm256_maddubs_epi16(*aj, broadcast_word(&y.qs, j));
            s16 = _mm256_add_epi16(s16, p);
        }
        let qy = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        _mm256_sub_epi32(qy, _mm256_set1_epi32(sy))
    }
);

gemm_q4_0_8x8!(
    gemm_q4_0_8x8_q8_0_vnni,
    "avx2,fma,f16c,avxvnni",
    "[`gemm_q4_0_8x8_q8_0`] with AVX-VNNI: the eight `maddubs` become `vpdpbusd`s accumulating \
     in i32 from `-8 * sum(y)`.",
    |a, y, sy| {
        let mut acc = _mm256_set1_epi32(-sy);
        for (j, aj) in a.iter().enumerate() {
            acc = _mm256_dpbusd_avx_epi32(acc, *aj, broadcast_word(&y.qs, j));
        }
        acc
    }
);
