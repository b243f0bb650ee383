//! NEON activation quantizers, **bit-exact with the scalar ones** (and so with ggml's
//! reference quantizers) for every input, NaN and infinities included: the same f32
//! operations per value, the maxima folded with the same comparisons in the same lane order,
//! and the quants' low byte kept as the scalar `as i8` keeps it. No multiply-accumulate, so
//! one version serves both the baseline and the `dotprod` tables.

use super::{halves, load_i16, store_i8};
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

/// The scalar `round_to_i8` on four lanes, still as i32 (its low byte is the quant): round
/// half away from zero from the truncation (`FCVTZS`, which saturates and sends NaN to 0 as
/// Rust's `as i32` does) and the exact remainder; NaN and anything outside the i32 range give
/// `i32::MIN`.
#[inline]
#[target_feature(enable = "neon")]
fn round_half_away(v: float32x4_t) -> int32x4_t {
    let t = vcvtq_s32_f32(v);
    let frac = vsubq_f32(v, vcvtq_f32_s32(t));
    // All ones (-1) where the remainder reaches a half.
    let up = vreinterpretq_s32_u32(vcgeq_f32(frac, vdupq_n_f32(0.5)));
    let down = vreinterpretq_s32_u32(vcleq_f32(frac, vdupq_n_f32(-0.5)));
    let r = vaddq_s32(vsubq_s32(t, up), down);
    // |v| < 2^31, false for NaN.
    let in_range = vcaltq_f32(v, vdupq_n_f32(2_147_483_648.0));
    vbslq_s32(in_range, r, vdupq_n_s32(i32::MIN))
}

/// The low bytes of 16 i32 lanes, in order.
#[inline]
#[target_feature(enable = "neon")]
fn low_bytes(q: [int32x4_t; 4]) -> int8x16_t {
    let a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
    let b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    vcombine_s8(vmovn_s16(a), vmovn_s16(b))
}

/// One Q8_0 / Q8_1 block: writes the quants, returns `d = amax / 127` (before its rounding
/// to f16), exactly as the scalar `quantize_block_q8`.
#[inline]
#[target_feature(enable = "neon")]
fn quantize_block_q8(x: &[f32; 32], qs: &mut [i8; 32]) -> f32 {
    let x: &[[f32; 4]; 8] = bytemuck::cast_ref(x);
    let v = x.map(|x| load4(&x));
    // The scalar code's eight lanes: lanes 0-3 take the even registers, 4-7 the odd ones,
    // each `if m > a { m } else { a }`.
    let mut m = [vdupq_n_f32(0.0); 2];
    for (k, v) in v.iter().enumerate() {
        let a = vabsq_f32(*v);
        let m = &mut m[k % 2];
        *m = vbslq_f32(vcgtq_f32(*m, a), *m, a);
    }
    let [m0, m1] = m;
    let amax = lanes(m0)
        .into_iter()
        .chain(lanes(m1))
        .fold(0f32, |m, a| if m > a { m } else { a });
    let d = amax / 127.0;
    let id = vdupq_n_f32(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q = v.map(|v| round_half_away(vmulq_f32(v, id)));
    let out: &mut [[i8; 16]; 2] = bytemuck::cast_mut(qs);
    store_i8(&mut out[0], low_bytes([q[0], q[1], q[2], q[3]]));
    store_i8(&mut out[1], low_bytes([q[4], q[5], q[6], q[7]]));
    d
}

/// Quantize a row to Q8_0, one block per 32 values: the activation format of Q4_0, Q5_0,
/// Q8_0 and IQ4_NL weights.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        yb.d = fp32_to_fp16_bits(quantize_block_q8(xb, &mut yb.qs));
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
        let d = quantize_block_q8(xb, &mut yb.qs);
        let [a, b] = halves(&yb.qs).map(|h| super::load_i8(&h));
        let sum = i32::from(vaddlvq_s8(a)) + i32::from(vaddlvq_s8(b));
        yb.d = fp32_to_fp16_bits(d);
        yb.s = fp32_to_fp16_bits(sum as f32 * d);
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
