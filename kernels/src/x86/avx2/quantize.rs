//! AVX2 activation quantizers, **bit-exact with the scalar ones** (and so with ggml's
//! reference quantizers) for every input, NaN and infinities included: the same f32
//! operations per value, the maxima folded in the same lane order, and the quants' low byte
//! kept as the scalar `as i8` keeps it. (ggml's own AVX2 `quantize_row_q8_0` rounds half to
//! even and scales by `127 / amax`, so its quants differ from its reference in rare ties; the
//! oracle, and so this file, follows the reference.)

use super::{dot_u8_i8, hsum_i32x8, store256};
use core::arch::x86_64::*;
use formats::quant::{fp32_to_fp16_bits, BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};

/// `x` as whole arrays of `N` values (a ragged tail, which callers never pass, is dropped).
#[inline(always)]
fn arrays<const N: usize>(x: &[f32]) -> &[[f32; N]] {
    bytemuck::cast_slice(&x[..x.len() / N * N])
}

/// Eight values of a block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is a reference to eight readable f32; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// The eight lanes of `v` in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes(v: __m256) -> [f32; 8] {
    // SAFETY: both are 32 bytes of plain f32s; every bit pattern is valid for each.
    unsafe { core::mem::transmute::<__m256, [f32; 8]>(v) }
}

/// The scalar `round_to_i8` on eight lanes, still as i32 (its low byte is the quant): round
/// half away from zero from the truncation and the exact remainder; NaN and anything outside
/// the i32 range give `i32::MIN`, as `cvttps2dq` does by itself.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_half_away(v: __m256) -> __m256i {
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let frac = _mm256_sub_ps(v, t);
    // All ones (-1) where the remainder reaches a half; never true outside |v| < 2^23.
    let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5)));
    let down = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(frac, _mm256_set1_ps(-0.5)));
    let r = _mm256_sub_epi32(_mm256_cvttps_epi32(v), up);
    _mm256_add_epi32(r, down)
}

/// The low bytes of 32 i32 lanes (`q[0]` lanes 0..8, ...), in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn low_bytes(q: [__m256i; 4]) -> __m256i {
    let m = _mm256_set1_epi32(0xff);
    let [a, b, c, e] = q.map(|v| _mm256_and_si256(v, m));
    // In 0..=255, so the saturating packs keep every value: values 0-3, 8-11 | 4-7, 12-15...
    let ab = _mm256_packus_epi32(a, b);
    let ce = _mm256_packus_epi32(c, e);
    // ...then 0-3, 8-11, 16-19, 24-27 | 4-7, 12-15, 20-23, 28-31 in 32-bit groups.
    let bytes = _mm256_packus_epi16(ab, ce);
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// One Q8_0 / Q8_1 block: the quants and `d = amax / 127` (before its rounding to f16),
/// exactly as the scalar `quantize_block_q8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block_q8(x: &[f32; 32]) -> (__m256i, f32) {
    let x: &[[f32; 8]; 4] = bytemuck::cast_ref(x);
    let v = [load8(&x[0]), load8(&x[1]), load8(&x[2]), load8(&x[3])];
    // The scalar code's eight lanes, `if m > a { m } else { a }` being `maxps m, a`.
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for v in v {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    let amax = lanes(m)
        .into_iter()
        .fold(0f32, |m, a| if m > a { m } else { a });
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q = v.map(|v| round_half_away(_mm256_mul_ps(v, id)));
    (low_bytes(q), d)
}

/// Quantize a row to Q8_0, one block per 32 values: the activation format of Q4_0, Q5_0,
/// Q8_0 and IQ4_NL weights.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        let (q, d) = quantize_block_q8(xb);
        store256(&mut yb.qs, q);
        yb.d = fp32_to_fp16_bits(d);
    }
}

/// Quantize a row to Q8_1, one block per 32 values: Q8_0 plus `s = d * sum(q)`, the
/// activation format of Q4_1 and Q5_1 weights.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        let (q, d) = quantize_block_q8(xb);
        store256(&mut yb.qs, q);
        let sum = hsum_i32x8(dot_u8_i8(_mm256_set1_epi8(1), q));
        yb.d = fp32_to_fp16_bits(d);
        yb.s = fp32_to_fp16_bits(sum as f32 * d);
    }
}

/// Quantize a row to Q8_K, one block per 256 values: the activation format of the K-quants.
/// As ggml's `quantize_row_q8_K_ref`: scaled by `-127 / max` where `max` is the first value
/// of largest magnitude, quants rounded half to even by the `1.5 * 2^23` trick and capped at
/// 127, plus the sums of every 16 quants.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (xb, yb) in arrays::<QK_K>(x).iter().zip(y) {
        let x: &[[f32; 8]; QK_K / 8] = bytemuck::cast_ref(xb);
        // The largest magnitude; `maxps a, m` keeps `m` when `a` is NaN, as `ax > amax` does.
        let mut m = _mm256_setzero_ps();
        for x in x {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, load8(x)), m);
        }
        let amax = lanes(m)
            .into_iter()
            .fold(0f32, |m, a| if a > m { a } else { m });
        if amax == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        // The first value of that magnitude, with its sign.
        let target = _mm256_set1_ps(amax);
        let mut max = amax;
        for (i, x) in x.iter().enumerate() {
            let hits = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, load8(x)), target);
            let mask = _mm256_movemask_ps(hits);
            if mask != 0 {
                max = xb[8 * i + mask.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let scale = _mm256_set1_ps(iscale);
        let magic = _mm256_set1_ps(12_582_912.0);
        let (mantissa, offset) = (
            _mm256_set1_epi32(0x007f_ffff),
            _mm256_set1_epi32(0x0040_0000),
        );
        let cap = _mm256_set1_epi32(127);
        let qs: &mut [[i8; 32]; QK_K / 32] = bytemuck::cast_mut(&mut yb.qs);
        let mut partial = [_mm256_setzero_si256(); QK_K / 32];
        for ((q, p), x) in qs.iter_mut().zip(&mut partial).zip(x.chunks_exact(4)) {
            let ints = [0, 1, 2, 3].map(|k| {
                // nearest_int(iscale * v): the f32 sum's low mantissa bits, then min(127).
                let v = _mm256_add_ps(_mm256_mul_ps(scale, load8(&x[k])), magic);
                let i = _mm256_and_si256(_mm256_castps_si256(v), mantissa);
                _mm256_min_epi32(_mm256_sub_epi32(i, offset), cap)
            });
            let bytes = low_bytes(ints);
            store256(q, bytes);
            // Sums of four quants per i32 lane: lanes 0-3 the first 16, 4-7 the second.
            *p = dot_u8_i8(_mm256_set1_epi8(1), bytes);
        }
        // Pairwise horizontal adds gather each 16's four partial sums: the low halves hold
        // the even 16s, the high halves the odd ones.
        let h = |a, b, c, e| _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, e));
        let first = h(partial[0], partial[1], partial[2], partial[3]);
        let second = h(partial[4], partial[5], partial[6], partial[7]);
        let sums = _mm256_packs_epi32(first, second);
        let (even, odd) = (
            _mm256_castsi256_si128(sums),
            _mm256_extracti128_si256::<1>(sums),
        );
        let ordered =
            _mm256_set_m128i(_mm_unpackhi_epi16(even, odd), _mm_unpacklo_epi16(even, odd));
        store256(&mut yb.bsums, ordered);
        yb.d = 1.0 / iscale;
    }
}
