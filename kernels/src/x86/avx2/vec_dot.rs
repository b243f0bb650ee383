//! AVX2 dot products of the 32-value block types with their Q8_0 / Q8_1 activations (after
//! ggml's `ggml_vec_dot_*` in `arch/x86/quants.c`): a block's 32 products summed into eight
//! i32 lanes, converted and multiplied by the block's scale into an f32 accumulator.
//!
//! Every kernel is written once for `R` rows against one activation (`*_rows::<R>`): the
//! activation side of a block (its quants, scale and, for the unsigned weight types, the
//! sums that undo the weights' offset) is prepared once and used by all `R` rows, each row
//! with its own accumulator (the `R` independent FMA chains hide each other's latency). A
//! row's arithmetic is the same whatever `R` is, so `vec_dot_*` (`R = 1`) and `matvec_*`
//! ([`ROWS`] at a time, then one by one) agree bit for bit.
//!
//! Q4_0 and Q5_0 multiply their unsigned quants (0..16, 0..32) and subtract the offset
//! times the activation's sums, `8 * sum(y)` or `16 * sum(y)` per four values, instead of
//! moving the weight's sign onto the activation: the same i32 lanes, fewer instructions per
//! row.

use super::{
    bits_to_bytes, dot_i8_i8, dot_u8_i8, fp16, fp16_pair, hsum_f32x8, load128, load256, nibbles,
};
use core::arch::x86_64::*;
use formats::quant::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// Rows per pass of the `matvec_*` kernels.
pub const ROWS: usize = 4;

/// The row-blocked skeleton: blocks `0..n` (the shortest slice); for each, `prep` of the
/// activation block once, then `step(weight block, prepared, accumulator)` for every row,
/// one accumulator per row. Returns the `R` accumulators. (Always inlined into the
/// `#[target_feature]` kernels, whose closures carry the features.)
#[inline(always)]
fn rows<X, Y, P: Copy, A: Copy, const R: usize>(
    xs: [&[X]; R],
    ys: &[Y],
    zero: A,
    prep: impl Fn(&Y) -> P,
    step: impl Fn(&X, P, A) -> A,
) -> [A; R] {
    let n = xs.iter().fold(ys.len(), |n, row| n.min(row.len()));
    let mut rows: [&[X]; R] = [&[]; R];
    for (short, row) in rows.iter_mut().zip(xs) {
        *short = &row[..n];
    }
    let mut acc = [zero; R];
    for (b, y) in ys[..n].iter().enumerate() {
        let p = prep(y);
        for r in 0..R {
            acc[r] = step(&rows[r][b], p, acc[r]);
        }
    }
    acc
}

/// The first `R` rows of `n` blocks of `w` (empty where `w` is short).
#[inline(always)]
fn split_rows<X, const R: usize>(w: &[X], n: usize) -> [&[X]; R] {
    let mut rows: [&[X]; R] = [&[]; R];
    for (row, chunk) in rows.iter_mut().zip(w.chunks_exact(n)) {
        *row = chunk;
    }
    rows
}

/// `pub unsafe fn $vec_dot(x, y)` and `pub unsafe fn $matvec(w, act, out)` from the
/// row-blocked `$rows`.
macro_rules! entry_points {
    ($vec_dot:ident, $matvec:ident, $rows:ident, $w:ty, $a:ty, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $vec_dot(x: &[$w], y: &[$a]) -> f32 {
            $rows::<1>([x], y)[0]
        }

        #[doc = concat!("[`", stringify!($vec_dot), "`] on every row of a matrix: `out[r]` for \
            row `r` of `w`, which holds `out.len()` rows of `act.len()` blocks ([`ROWS`] rows \
            per pass; a short `w` leaves the last outputs untouched).")]
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $matvec(w: &[$w], act: &[$a], out: &mut [f32]) {
            let n = act.len();
            if n == 0 {
                out.fill(0.0);
                return;
            }
            let mut done = 0;
            for (o, rows) in out.chunks_exact_mut(ROWS).zip(w.chunks_exact(ROWS * n)) {
                o.copy_from_slice(&$rows::<ROWS>(split_rows(rows, n), act));
                done += ROWS;
            }
            for (o, row) in out[done..].iter_mut().zip(w[done * n..].chunks_exact(n)) {
                *o = $rows::<1>([row], act)[0];
            }
        }
    };
}

/// A row's result: the sum of its accumulator's lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish(acc: __m256) -> f32 {
    hsum_f32x8(acc)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_rows<const R: usize>(x: [&[BlockQ4_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| {
            let q = load256(&y.qs);
            (q, dot_u8_i8(_mm256_set1_epi8(8), q), fp16(y.d))
        },
        |x, p, acc| {
            let (q, offsets, yd) = p;
            let sums = _mm256_sub_epi32(dot_u8_i8(nibbles(&x.qs), q), offsets);
            let d = _mm256_set1_ps(fp16(x.d) * yd);
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_q4_0_q8_0,
    matvec_q4_0_q8_0,
    q4_0_rows,
    BlockQ4_0,
    BlockQ8_0,
    "Q4_0 weights (`d * (q - 8)`) against Q8_0 activations."
);

/// A Q4_1 / Q5_1 row's result from its accumulators: the scaled quants (eight lanes), and in
/// lane 1 of the second the minimums times the activation sums, `m * s`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_with_min(acc: (__m256, __m128)) -> f32 {
    finish(acc.0) + _mm_cvtss_f32(_mm_movehdup_ps(acc.1))
}

/// One Q4_1 / Q5_1 block: `d` (from lane 0 of `scales * [x.d, x.m]`) times the quant sums,
/// and `m * s` (lane 1) into the minimum accumulator.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step_with_min(
    sums: __m256i,
    x_scales: __m128,
    y_scales: __m128,
    acc: (__m256, __m128),
) -> (__m256, __m128) {
    let scales = _mm_mul_ps(x_scales, y_scales);
    let d = _mm256_broadcastss_ps(scales);
    let scaled = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc.0);
    (scaled, _mm_add_ps(acc.1, scales))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_rows<const R: usize>(x: [&[BlockQ4_1]; R], y: &[BlockQ8_1]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |y| (load256(&y.qs), fp16_pair(y.d, y.s)),
        |x, p, acc| {
            let sums = dot_u8_i8(nibbles(&x.qs), p.0);
            step_with_min(sums, fp16_pair(x.d, x.m), p.1, acc)
        },
    );
    acc.map(|a| finish_with_min(a))
}

entry_points!(
    vec_dot_q4_1_q8_1,
    matvec_q4_1_q8_1,
    q4_1_rows,
    BlockQ4_1,
    BlockQ8_1,
    "Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`."
);

/// The five-bit quants of a Q5 block, unsigned (0..32): the nibbles plus 16 where the fifth
/// bit (bit `i` of `qh` for value `i`) is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn five_bits(qs: &[u8; 16], qh: [u8; 4]) -> __m256i {
    let fifth = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
    _mm256_or_si256(nibbles(qs), fifth)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_rows<const R: usize>(x: [&[BlockQ5_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| {
            let q = load256(&y.qs);
            (q, dot_u8_i8(_mm256_set1_epi8(16), q), fp16(y.d))
        },
        |x, p, acc| {
            let (q, offsets, yd) = p;
            let sums = _mm256_sub_epi32(dot_u8_i8(five_bits(&x.qs, x.qh), q), offsets);
            let d = _mm256_set1_ps(fp16(x.d) * yd);
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_q5_0_q8_0,
    matvec_q5_0_q8_0,
    q5_0_rows,
    BlockQ5_0,
    BlockQ8_0,
    "Q5_0 weights (`d * (q - 16)`) against Q8_0 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_rows<const R: usize>(x: [&[BlockQ5_1]; R], y: &[BlockQ8_1]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |y| (load256(&y.qs), fp16_pair(y.d, y.s)),
        |x, p, acc| {
            let sums = dot_u8_i8(five_bits(&x.qs, x.qh), p.0);
            step_with_min(sums, fp16_pair(x.d, x.m), p.1, acc)
        },
    );
    acc.map(|a| finish_with_min(a))
}

entry_points!(
    vec_dot_q5_1_q8_1,
    matvec_q5_1_q8_1,
    q5_1_rows,
    BlockQ5_1,
    BlockQ8_1,
    "Q5_1 weights (`d * q + m`) against Q8_1 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_rows<const R: usize>(x: [&[BlockQ8_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let sums = dot_i8_i8(load256(&x.qs), p.0);
            let d = _mm256_set1_ps(fp16(x.d) * p.1);
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_q8_0_q8_0,
    matvec_q8_0_q8_0,
    q8_0_rows,
    BlockQ8_0,
    BlockQ8_0,
    "Q8_0 weights against Q8_0 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_nl_rows<const R: usize>(x: [&[BlockIq4Nl]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let values = load128(&KVALUES_IQ4NL);
    let m4 = _mm_set1_epi8(0x0f);
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let q = load128(&x.qs);
            let lo = _mm_shuffle_epi8(values, _mm_and_si128(q, m4));
            let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
            let sums = dot_i8_i8(_mm256_set_m128i(hi, lo), p.0);
            let d = _mm256_set1_ps(p.1 * fp16(x.d));
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_iq4_nl_q8_0,
    matvec_iq4_nl_q8_0,
    iq4_nl_rows,
    BlockIq4Nl,
    BlockQ8_0,
    "IQ4_NL weights (`d * KVALUES_IQ4NL[q]`) against Q8_0 activations: the nibbles index \
     the sixteen values with one byte shuffle per half."
);
