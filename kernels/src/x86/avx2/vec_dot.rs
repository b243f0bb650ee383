//! AVX2 dot products of the 32-value block types with their Q8_0 / Q8_1 activations (ggml's
//! `ggml_vec_dot_*` in `arch/x86/quants.c`): a block's 32 products summed into eight i32
//! lanes, converted and multiplied by the block's scale into one of two f32 accumulators.

use super::{bits_to_bytes, dot_i8_i8, dot_u8_i8, fp16, hsum_f32x8, load128, load256, nibbles};
use core::arch::x86_64::*;
use formats::quant::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// Q4_0 weights (`d * (q - 8)`) against Q8_0 activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let (acc0, acc1) = two_accumulators!(x, y, _mm256_setzero_ps(), |x, y, acc| {
        let d = _mm256_set1_ps(fp16(x.d) * fp16(y.d));
        let qx = _mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8));
        let sums = dot_i8_i8(qx, load256(&y.qs));
        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
    });
    hsum_f32x8(_mm256_add_ps(acc0, acc1))
}

/// Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let zero = (_mm256_setzero_ps(), 0f32);
    let (acc0, acc1) = two_accumulators!(x, y, zero, |x, y, acc| {
        let d = _mm256_set1_ps(fp16(x.d) * fp16(y.d));
        let sums = dot_u8_i8(nibbles(&x.qs), load256(&y.qs));
        let scaled = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc.0);
        (scaled, acc.1 + fp16(x.m) * fp16(y.s))
    });
    hsum_f32x8(_mm256_add_ps(acc0.0, acc1.0)) + (acc0.1 + acc1.1)
}

/// Q5_0 weights (`d * (q - 16)`) against Q8_0 activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let (acc0, acc1) = two_accumulators!(x, y, _mm256_setzero_ps(), |x, y, acc| {
        let d = _mm256_set1_ps(fp16(x.d) * fp16(y.d));
        // q - 16 in two's complement: the nibble with 0xf0 on top where the fifth bit is 0.
        let minus16 = _mm256_andnot_si256(bits_to_bytes(x.qh), _mm256_set1_epi8(0xf0_u8 as i8));
        let qx = _mm256_or_si256(nibbles(&x.qs), minus16);
        let sums = dot_i8_i8(qx, load256(&y.qs));
        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
    });
    hsum_f32x8(_mm256_add_ps(acc0, acc1))
}

/// Q5_1 weights (`d * q + m`) against Q8_1 activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let zero = (_mm256_setzero_ps(), 0f32);
    let (acc0, acc1) = two_accumulators!(x, y, zero, |x, y, acc| {
        let d = _mm256_set1_ps(fp16(x.d) * fp16(y.d));
        let fifth = _mm256_and_si256(bits_to_bytes(x.qh), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(nibbles(&x.qs), fifth);
        let sums = dot_u8_i8(qx, load256(&y.qs));
        let scaled = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc.0);
        (scaled, acc.1 + fp16(x.m) * fp16(y.s))
    });
    hsum_f32x8(_mm256_add_ps(acc0.0, acc1.0)) + (acc0.1 + acc1.1)
}

/// Q8_0 weights against Q8_0 activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let (acc0, acc1) = two_accumulators!(x, y, _mm256_setzero_ps(), |x, y, acc| {
        let d = _mm256_set1_ps(fp16(x.d) * fp16(y.d));
        let sums = dot_i8_i8(load256(&x.qs), load256(&y.qs));
        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
    });
    hsum_f32x8(_mm256_add_ps(acc0, acc1))
}

/// IQ4_NL weights (`d * KVALUES_IQ4NL[q]`) against Q8_0 activations: the nibbles index the
/// sixteen values with one byte shuffle per half.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_iq4_nl_q8_0(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
    let values = load128(&KVALUES_IQ4NL);
    let m4 = _mm_set1_epi8(0x0f);
    let (acc0, acc1) = two_accumulators!(x, y, _mm256_setzero_ps(), |x, y, acc| {
        let d = _mm256_set1_ps(fp16(y.d) * fp16(x.d));
        let q = load128(&x.qs);
        let lo = _mm_shuffle_epi8(values, _mm_and_si128(q, m4));
        let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
        let sums = dot_i8_i8(_mm256_set_m128i(hi, lo), load256(&y.qs));
        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
    });
    hsum_f32x8(_mm256_add_ps(acc0, acc1))
}

matvec_of!(matvec_q4_0_q8_0, vec_dot_q4_0_q8_0, BlockQ4_0, BlockQ8_0);
matvec_of!(matvec_q4_1_q8_1, vec_dot_q4_1_q8_1, BlockQ4_1, BlockQ8_1);
matvec_of!(matvec_q5_0_q8_0, vec_dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0);
matvec_of!(matvec_q5_1_q8_1, vec_dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1);
matvec_of!(matvec_q8_0_q8_0, vec_dot_q8_0_q8_0, BlockQ8_0, BlockQ8_0);
matvec_of!(
    matvec_iq4_nl_q8_0,
    vec_dot_iq4_nl_q8_0,
    BlockIq4Nl,
    BlockQ8_0
);
