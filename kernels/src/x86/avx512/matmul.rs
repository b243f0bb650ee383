//! AVX-512 matrix-matrix products of Q4_0, Q5_0 and Q8_0 weights with Q8_0 activations for
//! prompt processing, **bit-identical to the vec_dot kernels** (as `x86::avx2::matmul`, whose
//! AVX-VNNI offset kernels these widen; `tests/matmul.rs` holds them to `matvec` bit for bit).
//!
//! Every (row, token) pair's block gets `vec_dot`'s float step on `vec_dot`'s eight i32 lanes
//! (each the sum of four products): `acc = fma(fp16(x.d) * fp16(y.d), float(lanes), acc)`, the
//! lanes summed as `vec_dot` sums them at the end. Here one 512-bit register holds the eight
//! lanes of two tokens for one row: the row's unsigned quants (`q + offset`) in both halves,
//! the two tokens' quants side by side, `vpdpbusd` from the two tokens' corrections
//! (`-offset * sum(y)` per lane) gives both tokens' lanes exactly, and the two scale
//! products come from one multiply of the row's scale by the two tokens' scales (each over
//! its half). A tile is [`R`] rows by [`T`] tokens: 16 accumulators of the 32 registers.

use crate::matmul::{shape, MatmulKernels};
use crate::x86::avx2::{
    fp16, hsum_f32x8, matmul_q4_0_q8_0, matmul_q4_0_q8_0_offset, matmul_q5_0_q8_0,
    matmul_q5_0_q8_0_offset, matmul_q8_0_q8_0, matmul_q8_0_q8_0_offset, unsigned_q4_0,
    unsigned_q5_0, unsigned_q8_0,
};
use core::arch::x86_64::*;
use formats::quant::{BlockQ4_0, BlockQ5_0, BlockQ8_0};

/// A safe `fn` calling the AVX-512 matrix kernel `$f`, for [`MATMUL`] only.
macro_rules! avx512 {
    ($f:ident) => {
        Some(|w, a, outs| {
            // SAFETY: `MATMUL` is reachable only through the AVX-512 kernel table, which
            // `dispatch::table` returns only once it found AVX-512 F, BW, VL and VNNI, AVX2,
            // FMA, F16C and AVX-VNNI usable (with the OS saving the ZMM registers).
            unsafe { $f(w, a, outs) }
        })
    };
}

/// A safe `fn` calling the AVX-512 matrix kernel `$f` that needs no AVX-VNNI, for
/// [`MATMUL_NO_AVXVNNI`] only.
macro_rules! avx512_only {
    ($f:ident) => {
        Some(|w, a, outs| {
            // SAFETY: `MATMUL_NO_AVXVNNI` is reachable only through the AVX-512 table without
            // AVX-VNNI, which `dispatch::table` returns only once it found AVX-512 F, BW, VL
            // and VNNI, AVX2, FMA and F16C usable (with the OS saving the ZMM registers).
            unsafe { $f(w, a, outs) }
        })
    };
}

/// The AVX-512 table's matrix-matrix kernels: these three, the rest AVX2 + AVX-VNNI's.
pub(crate) static MATMUL: MatmulKernels = MatmulKernels {
    q4_0: avx512!(matmul_q4_0_q8_0_512),
    q5_0: avx512!(matmul_q5_0_q8_0_512),
    q8_0: avx512!(matmul_q8_0_q8_0_512),
    ..crate::x86::avx2::MATMUL_VNNI
};

/// The matrix-matrix kernels of CPUs with AVX-512 VNNI but not AVX-VNNI (Ice Lake, Tiger Lake,
/// Rocket Lake, Zen 4): the same three (EVEX `vpdpbusd` needs only AVX-512 VNNI), their short
/// remainders through AVX2's signed tiles, the rest AVX2's.
pub(crate) static MATMUL_NO_AVXVNNI: MatmulKernels = MatmulKernels {
    q4_0: avx512_only!(matmul_q4_0_q8_0_512_evex),
    q5_0: avx512_only!(matmul_q5_0_q8_0_512_evex),
    q8_0: avx512_only!(matmul_q8_0_q8_0_512_evex),
    ..crate::x86::avx2::MATMUL
};

/// Rows per tile.
const R: usize = 4;
/// Tokens per tile (two to a register).
const T: usize = 8;
/// Token pairs per tile.
const P: usize = T / 2;
/// The most blocks per row a token tile is prepared for (rows of up to 4096 values); longer
/// rows take the AVX2 + AVX-VNNI kernels.
const NB: usize = 128;

/// One block of a tile's tokens, by pairs: both tokens' quants, their correction lanes and
/// their scales (each over its half of the register).
#[derive(Clone, Copy)]
struct Pairs {
    y: [__m512i; P],
    corr: [__m512i; P],
    dy: [__m512; P],
}

/// Both halves of a 512-bit register from two 256-bit ones.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn join_i(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// The two halves of a 512-bit float register.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn halves_ps(v: __m512) -> (__m256, __m256) {
    let d = _mm512_castps_pd(v);
    (
        _mm256_castpd_ps(_mm512_castpd512_pd256(d)),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(d)),
    )
}

/// Prepare `nb` blocks of the `T` tokens `ys` for weights stored `off` above their value.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn prepare(prep: &mut [Pairs; NB], ys: [&[BlockQ8_0]; T], nb: usize, off: u8) {
    let off = _mm512_set1_epi8(off as i8);
    let zero = _mm512_setzero_si512();
    for (b, pb) in prep.iter_mut().enumerate().take(nb) {
        for p in 0..P {
            let (y0, y1) = (&ys[2 * p][b], &ys[2 * p + 1][b]);
            // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no alignment.
            let (q0, q1) = unsafe {
                (
                    _mm256_loadu_si256(y0.qs.as_ptr().cast()),
                    _mm256_loadu_si256(y1.qs.as_ptr().cast()),
                )
            };
            let y = join_i(q0, q1);
            pb.y[p] = y;
            pb.corr[p] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, off, y));
            let (d0, d1) = (_mm256_set1_ps(fp16(y0.d)), _mm256_set1_ps(fp16(y1.d)));
            pb.dy[p] = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_castps_pd(d0)),
                _mm256_castps_pd(d1),
            ));
        }
    }
}

/// `RR` rows (`unpack`: a block's f16 scale and unsigned quants) by the tile's prepared
/// tokens over `nb` blocks: `[row][token]` results.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile<X, const RR: usize>(
    xs: [&[X]; RR],
    prep: &[Pairs; NB],
    nb: usize,
    unpack: &impl Fn(&X) -> (u16, __m256i),
) -> [[f32; T]; RR] {
    let mut acc = [[_mm512_setzero_ps(); P]; RR];
    for (b, pb) in prep.iter().enumerate().take(nb) {
        let mut q = [_mm512_setzero_si512(); RR];
        let mut dx = [_mm512_setzero_ps(); RR];
        for r in 0..RR {
            let (d, qu) = unpack(&xs[r][b]);
            q[r] = _mm512_broadcast_i64x4(qu);
            dx[r] = _mm512_set1_ps(fp16(d));
        }
        for p in 0..P {
            for r in 0..RR {
                let s = _mm512_dpbusd_epi32(pb.corr[p], q[r], pb.y[p]);
                let d = _mm512_mul_ps(dx[r], pb.dy[p]);
                acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[r][p]);
            }
        }
    }
    let mut out = [[0f32; T]; RR];
    for (o, a) in out.iter_mut().zip(acc) {
        for (p, a) in a.into_iter().enumerate() {
            let (lo, hi) = halves_ps(a);
            o[2 * p] = hsum_f32x8(lo);
            o[2 * p + 1] = hsum_f32x8(hi);
        }
    }
    out
}

/// The driver: whole tiles of [`T`] tokens here, in row blocks that stay in cache while every
/// token tile passes; the last `n_tokens % T` tokens, and rows of more than [`NB`] blocks,
/// through `rest` (the AVX2 + AVX-VNNI kernel of the type).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn matmul<X>(
    w: &[X],
    acts: &[BlockQ8_0],
    outs: &mut [&mut [f32]],
    off: u8,
    unpack: impl Fn(&X) -> (u16, __m256i),
    rest: impl Fn(&[X], &[BlockQ8_0], &mut [&mut [f32]]),
) {
    let n_tokens = outs.len();
    let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
        return;
    };
    if nb > NB {
        return rest(w, acts, outs);
    }
    let full_t = n_tokens / T * T;
    // About 16 KiB of weights per row block, in L1 while every token tile passes over it.
    let block_rows = ((16 << 10) / (nb * size_of::<X>()).max(1) / R).max(1) * R;
    let row = |r: usize| &w[r * nb..(r + 1) * nb];
    let zero = Pairs {
        y: [_mm512_setzero_si512(); P],
        corr: [_mm512_setzero_si512(); P],
        dy: [_mm512_setzero_ps(); P],
    };
    let mut prep = [zero; NB];
    for r0 in (0..rows).step_by(block_rows) {
        let r1 = (r0 + block_rows).min(rows);
        for t0 in (0..full_t).step_by(T) {
            let ys: [&[BlockQ8_0]; T] =
                core::array::from_fn(|k| &acts[(t0 + k) * nb..(t0 + k + 1) * nb]);
            prepare(&mut prep, ys, nb, off);
            let mut r = r0;
            while r + R <= r1 {
                let xs: [&[X]; R] = core::array::from_fn(|i| row(r + i));
                let res = tile(xs, &prep, nb, &unpack);
                for (k, o) in outs[t0..t0 + T].iter_mut().enumerate() {
                    for (i, v) in res.iter().enumerate() {
                        o[r + i] = v[k];
                    }
                }
                r += R;
            }
            for r in r..r1 {
                let res = tile([row(r)], &prep, nb, &unpack);
                for (k, o) in outs[t0..t0 + T].iter_mut().enumerate() {
                    o[r] = res[0][k];
                }
            }
        }
    }
    if full_t < n_tokens {
        rest(&w[..rows * nb], &acts[full_t * nb..], &mut outs[full_t..]);
    }
}

/// `pub unsafe fn $name(w, acts, outs)`: `$w` weights (`$unpack`, stored `$off` above their
/// value) times Q8_0 activations through [`matmul`], the rest through `$rest`.
macro_rules! kernel {
    ($name:ident, $w:ty, $unpack:ident, $off:expr, $rest:ident, $doc:literal) => {
        kernel!(
            $name,
            $w,
            $unpack,
            $off,
            $rest,
            $doc,
            "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,avxvnni"
        );
    };
    ($name:ident, $w:ty, $unpack:ident, $off:expr, $rest:ident, $doc:literal, $features:literal) => {
        #[doc = $doc]
        ///
        /// `outs[t][r]` is the dot product of row `r` of `w` with activation `t` of `acts`,
        /// bit-identical to the vec_dot kernel; `w` holds the rows (as many as the shortest
        /// `outs[t]`) of `acts.len() / outs.len()` blocks each.
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[$w], acts: &[BlockQ8_0], outs: &mut [&mut [f32]]) {
            matmul(
                w,
                acts,
                outs,
                $off,
                |x| $unpack(x),
                |w, a, o| {
                    // SAFETY: the caller guarantees the CPU features, a superset of these.
                    unsafe { $rest(w, a, o) }
                },
            );
        }
    };
}

kernel!(
    matmul_q4_0_q8_0_512,
    BlockQ4_0,
    unsigned_q4_0,
    8,
    matmul_q4_0_q8_0_offset,
    "Q4_0 weights times Q8_0 activations with AVX-512 VNNI."
);
kernel!(
    matmul_q5_0_q8_0_512,
    BlockQ5_0,
    unsigned_q5_0,
    16,
    matmul_q5_0_q8_0_offset,
    "Q5_0 weights times Q8_0 activations with AVX-512 VNNI."
);
kernel!(
    matmul_q8_0_q8_0_512,
    BlockQ8_0,
    unsigned_q8_0,
    128,
    matmul_q8_0_q8_0_offset,
    "Q8_0 weights times Q8_0 activations with AVX-512 VNNI."
);
kernel!(
    matmul_q4_0_q8_0_512_evex,
    BlockQ4_0,
    unsigned_q4_0,
    8,
    matmul_q4_0_q8_0,
    "[`matmul_q4_0_q8_0_512`] without AVX-VNNI (the remainders through AVX2's tiles).",
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
);
kernel!(
    matmul_q5_0_q8_0_512_evex,
    BlockQ5_0,
    unsigned_q5_0,
    16,
    matmul_q5_0_q8_0,
    "[`matmul_q5_0_q8_0_512`] without AVX-VNNI (the remainders through AVX2's tiles).",
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
);
kernel!(
    matmul_q8_0_q8_0_512_evex,
    BlockQ8_0,
    unsigned_q8_0,
    128,
    matmul_q8_0_q8_0,
    "[`matmul_q8_0_q8_0_512`] without AVX-VNNI (the remainders through AVX2's tiles).",
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
);
