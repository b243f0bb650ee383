//! AVX2 activation quantizers. Q8_0 and Q8_1 follow ggml's *CPU* quantizers (the SIMD code
//! llama.cpp runs on activations, `arch/x86/quants.c`), bit for bit, not the scalar oracle
//! (ggml's reference): see [`quantize_block_q8`]. Q8_K is ggml's reference on both sides
//! (its CPU backend calls `quantize_row_q8_K_ref`), bit-exact with the scalar one.

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

/// One Q8_0 / Q8_1 block as ggml's CPU backend quantizes activations on AVX2
/// (`quantize_row_q8_0` in `arch/x86/quants.c`): the quants (in order) and their i32 values,
/// and `d = amax / 127` before its rounding to f16. This is *not* the scalar oracle's
/// (ggml's reference) arithmetic: it scales by `127 / amax` rather than `1 / d` and rounds
/// half to even rather than away from zero, so a few quants differ by one; matching it is
/// what makes our logits llama.cpp's bit for bit (issue #3).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block_q8(x: &[f32; 32]) -> (__m256i, __m256i, f32) {
    let x: &[[f32; 8]; 4] = bytemuck::cast_ref(x);
    let v = [load8(&x[0]), load8(&x[1]), load8(&x[2]), load8(&x[3])];
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_andnot_ps(sign, v[0]);
    for &v in &v[1..] {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i = v.map(|v| {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(v, id),
        );
        _mm256_cvtps_epi32(r)
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    // Saturating packs to i16 then i8 (values 0-3, 8-11 | 4-7, 12-15 ...), then back in order.
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let bytes = _mm256_packs_epi16(a, b);
    let q = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    (q, sum, d)
}

/// Quantize a row to Q8_0, one block per 32 values: the activation format of Q4_0, Q5_0,
/// Q8_0 and IQ4_NL weights.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        let (q, _, d) = quantize_block_q8(xb);
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
        let (q, sum, d) = quantize_block_q8(xb);
        store256(&mut yb.qs, q);
        yb.d = fp32_to_fp16_bits(d);
        yb.s = fp32_to_fp16_bits(d * hsum_i32x8(sum) as f32);
    }
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
