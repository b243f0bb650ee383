//! NEON activation quantizers, **bit-exact with the AVX2 ones** for every input, NaN and
//! infinities included: Q8_0 and Q8_1 as ggml's x86 CPU quantizer (`x86/avx2/quantize.rs`,
//! within one rounding of the scalar oracle, ggml's reference), Q8_K as ggml's reference (which
//! the scalar and AVX2 ones are too): the same f32 operations per value, the maxima folded
//! with the same comparisons in the same lane order, x86's conversions' out-of-range results.
//! No multiply-accumulate, so one version serves both the baseline and the `dotprod` tables.

use super::{load_i16, store_i8};
use core::arch::aarch64::*;
use formats::quant::{fp32_to_fp16_bits, BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};

/// `x` as whole arrays of `N` values (a ragged tail, which callers never pass, is dropped).
#[inline(always)]
fn arrays<const N: usize>(x: &[f32]) -> &[[f32; N]] {
    bytemuck::cast_slice(&x[..x.len() / N * N])
}

/// Four values of a block.
#[inline]
#[target_feature(enable = "neon")]
fn load4(x: &[f32; 4]) -> float32x4_t {
    // SAFETY: `x` is a reference to four readable f32; `ld1` needs only their alignment.
    unsafe { vld1q_f32(x.as_ptr()) }
}

/// The four lanes of `v` in order.
#[inline]
#[target_feature(enable = "neon")]
fn lanes(v: float32x4_t) -> [f32; 4] {
    [
        vgetq_lane_f32::<0>(v),
        vgetq_lane_f32::<1>(v),
        vgetq_lane_f32::<2>(v),
        vgetq_lane_f32::<3>(v),
    ]
}

/// AVX2's `_mm256_max_ps(a, b)` on four lanes: `a` where `a > b`, else `b` (so `b` when
/// either is NaN), not `FMAX`'s NaN rules.
#[inline]
#[target_feature(enable = "neon")]
fn max_x86(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    vbslq_f32(vcgtq_f32(a, b), a, b)
}

/// AVX2's `_mm256_cvtps_epi32(_mm256_round_ps(v, nearest))` on four lanes: round half to even
/// (`FCVTNS`); NaN and anything outside the i32 range give x86's `i32::MIN` where `FCVTNS`
/// would saturate.
#[inline]
#[target_feature(enable = "neon")]
fn round_even_x86(v: float32x4_t) -> int32x4_t {
    // |v| < 2^31, false for NaN.
    let in_range = vcaltq_f32(v, vdupq_n_f32(2_147_483_648.0));
    vbslq_s32(in_range, vcvtnq_s32_f32(v), vdupq_n_s32(i32::MIN))
}

/// Sixteen i32 lanes narrowed with signed saturation to bytes, in order (AVX2's
/// `packs_epi32` then `packs_epi16`, reordered).
#[inline]
#[target_feature(enable = "neon")]
fn saturate_bytes(q: [int32x4_t; 4]) -> int8x16_t {
    let a = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
    let b = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
    vcombine_s8(vqmovn_s16(a), vqmovn_s16(b))
}

/// One Q8_0 / Q8_1 block as the AVX2 quantizer (ggml's CPU quantizer on x86) computes it,
/// operation for operation: the absolute maximum folded by `maxps` in its lane order, `d =
/// amax / 127`, quants `round_even(x * (127 / amax))` saturated to bytes. Writes the quants,
/// returns `d` (before its rounding to f16) and the sum of the unsaturated i32 quants (Q8_1's
/// `s`). Not the scalar oracle (ggml's reference: `1 / d`, half away from zero), from which
/// a quant may differ by one.
#[inline]
#[target_feature(enable = "neon")]
fn quantize_block_q8(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
    let x: &[[f32; 4]; 8] = bytemuck::cast_ref(x);
    let v = x.map(|x| load4(&x));
    // AVX2's eight lanes are v[2k] (lanes 0-3) and v[2k + 1] (lanes 4-7) for k = 0..4.
    let mut m = [vabsq_f32(v[0]), vabsq_f32(v[1])];
    for k in 1..4 {
        m = [
            max_x86(m[0], vabsq_f32(v[2 * k])),
            max_x86(m[1], vabsq_f32(v[2 * k + 1])),
        ];
    }
    // max(high half, low half), then lanes 0 and 2, 1 and 3, then those two.
    let m4 = max_x86(m[1], m[0]);
    let m2 = max_x86(m4, vextq_f32::<2>(m4, m4));
    let amax = {
        let (a, b) = (vgetq_lane_f32::<0>(m2), vgetq_lane_f32::<1>(m2));
        if a > b {
            a
        } else {
            b
        }
    };
    let d = amax / 127.0;
    let id = vdupq_n_f32(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i = v.map(|v| round_even_x86(vmulq_f32(v, id)));
    let mut sum = vdupq_n_s32(0);
    for i in i {
        sum = vaddq_s32(sum, i);
    }
    let out: &mut [[i8; 16]; 2] = bytemuck::cast_mut(qs);
    store_i8(&mut out[0], saturate_bytes([i[0], i[1], i[2], i[3]]));
    store_i8(&mut out[1], saturate_bytes([i[4], i[5], i[6], i[7]]));
    (d, vaddvq_s32(sum))
}

/// The low bytes of 16 i32 lanes, in order (Q8_K's quants, as AVX2's `low_bytes`).
#[inline]
#[target_feature(enable = "neon")]
fn low_bytes(q: [int32x4_t; 4]) -> int8x16_t {
    let a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
    let b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    vcombine_s8(vmovn_s16(a), vmovn_s16(b))
}

/// Quantize a row to Q8_0, one block per 32 values: the activation format of Q4_0, Q5_0,
/// Q8_0 and IQ4_NL weights.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        yb.d = fp32_to_fp16_bits(quantize_block_q8(xb, &mut yb.qs).0);
    }
}

/// Quantize a row to Q8_1, one block per 32 values: Q8_0 plus `s = d * sum(q)`, the
/// activation format of Q4_1 and Q5_1 weights.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        let (d, sum) = quantize_block_q8(xb, &mut yb.qs);
        yb.d = fp32_to_fp16_bits(d);
        yb.s = fp32_to_fp16_bits(d * sum as f32);
    }
}

/// Quantize a row to Q8_K, one block per 256 values: the activation format of the K-quants.
/// As ggml's `quantize_row_q8_K_ref`: scaled by `-127 / max` where `max` is the first value
/// of largest magnitude (NaN skipped), quants rounded half to even by the `1.5 * 2^23` trick
/// and capped at 127, plus the sums of every 16 quants.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    for (xb, yb) in arrays::<QK_K>(x).iter().zip(y) {
        let x: &[[f32; 4]; QK_K / 4] = bytemuck::cast_ref(xb);
        // The largest magnitude: `FMAXNM` ignores a NaN, as `ax > amax` does.
        let mut m = vdupq_n_f32(0.0);
        for x in x {
            m = vmaxnmq_f32(m, vabsq_f32(load4(x)));
        }
        let amax = vmaxnmvq_f32(m);
        if amax == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        // The first value of that magnitude, with its sign.
        let target = vdupq_n_f32(amax);
        let mut max = amax;
        for (i, x) in x.iter().enumerate() {
            let hits = vceqq_f32(vabsq_f32(load4(x)), target);
            if vmaxvq_u32(hits) != 0 {
                let first = lanes(load4(x)).into_iter().find(|v| v.abs() == amax);
                max = first.unwrap_or(xb[4 * i]);
                break;
            }
        }
        let iscale = -127.0 / max;
        let scale = vdupq_n_f32(iscale);
        let magic = vdupq_n_f32(12_582_912.0);
        let mantissa = vdupq_n_s32(0x007f_ffff);
        let offset = vdupq_n_s32(0x0040_0000);
        let cap = vdupq_n_s32(127);
        let qs: &mut [[i8; 16]; QK_K / 16] = bytemuck::cast_mut(&mut yb.qs);
        for (q, x) in qs.iter_mut().zip(x.chunks_exact(4)) {
            let ints = [0, 1, 2, 3].map(|k| {
                // nearest_int(iscale * v): the f32 sum's low mantissa bits, then min(127).
                let v = vaddq_f32(vmulq_f32(scale, load4(&x[k])), magic);
                let i = vandq_s32(vreinterpretq_s32_f32(v), mantissa);
                vminq_s32(vsubq_s32(i, offset), cap)
            });
            store_i8(q, low_bytes(ints));
        }
        let qs: &[[i8; 16]; QK_K / 16] = bytemuck::cast_ref(&yb.qs);
        for (s, q) in yb.bsums.iter_mut().zip(qs) {
            *s = vaddlvq_s8(super::load_i8(q));
        }
        yb.d = 1.0 / iscale;
    }
}

/// Q8_K's sixteen block sums as two registers (sums 0-7, 8-15).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn bsums(y: &BlockQ8K) -> (int16x8_t, int16x8_t) {
    let b: &[[i16; 8]; 2] = bytemuck::cast_ref(&y.bsums);
    (load_i16(&b[0]), load_i16(&b[1]))
}
