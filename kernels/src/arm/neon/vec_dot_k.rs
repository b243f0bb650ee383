//! NEON dot products of the K-quants with Q8_K activations (after ggml's
//! `ggml_vec_dot_q*_K_q8_K` in `arch/arm/quants.c`). Per super-block the quants are decoded to
//! signed bytes sixteen at a time, multiplied with the activation quants by [`dot`] into four
//! i32 lanes and weighted by their sub-block scale (`MLA` by a scalar) into one i32 register;
//! its lanes are summed once per super-block and scaled by `d` into an f32 running sum.
//! Minimums meet the activation's 16-value sums `bsums` instead of the values.

use super::quantize::bsums;
use super::{dot, fp16x4, halves, load_i8, load_u8};
use crate::scalar::{scales_mins_k4, scales_q3_k};
use core::arch::aarch64::*;
use formats::quant::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

/// The activation quants of a super-block as 16-byte pieces.
#[inline(always)]
fn q8_pieces(y: &BlockQ8K) -> &[[i8; 16]; QK_K / 16] {
    bytemuck::cast_ref(&y.qs)
}

/// `acc + scale * (a . b)`: one 16-value sub-block with its scale.
#[inline]
#[target_feature(enable = "neon")]
fn scaled<const DOTPROD: bool>(
    acc: int32x4_t,
    a: int8x16_t,
    b: &[i8; 16],
    scale: i32,
) -> int32x4_t {
    vmlaq_n_s32(acc, dot::<DOTPROD>(vdupq_n_s32(0), a, load_i8(b)), scale)
}

/// The two f32 scales of a super-block: `(fp16(d) * y.d, fp16(dmin) * y.d)`.
#[inline]
#[target_feature(enable = "neon")]
fn super_scales(d: u16, dmin: u16, y: &BlockQ8K) -> (f32, f32) {
    let s = fp16x4([d, dmin, 0, 0]);
    (vgetq_lane_f32::<0>(s) * y.d, vgetq_lane_f32::<1>(s) * y.d)
}

/// `sum(bsums[i] * m[i])` over the sixteen block sums, `m` as two registers of i16.
#[inline]
#[target_feature(enable = "neon")]
fn bsums_dot(y: &BlockQ8K, m: (int16x8_t, int16x8_t)) -> i32 {
    let (b0, b1) = bsums(y);
    let p = vmull_s16(vget_low_s16(b0), vget_low_s16(m.0));
    let p = vmlal_high_s16(p, b0, m.0);
    let p = vmlal_s16(p, vget_low_s16(b1), vget_low_s16(m.1));
    vaddvq_s32(vmlal_high_s16(p, b1, m.1))
}

#[inline]
#[target_feature(enable = "neon")]
fn q2_k<const DOTPROD: bool>(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let m3 = vdupq_n_u8(3);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = super_scales(x.d, x.dmin, y);
        // Minimums (high nibbles of the scales) against the block sums.
        let packed = load_u8(&x.scales);
        let mins = vshrq_n_u8::<4>(packed);
        let mins = (
            vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins))),
            vreinterpretq_s16_u16(vmovl_high_u8(mins)),
        );
        let summs = bsums_dot(y, mins);

        // Sub-block 8j + 2s + k (16 values): bits 2s..2s + 2 of qs[32j + 16k..][..16], times
        // the low nibble of its scale byte.
        let q2: &[[u8; 16]; 4] = bytemuck::cast_ref(&x.qs);
        let q8 = q8_pieces(y);
        let mut acc = vdupq_n_s32(0);
        for j in 0..2 {
            let mut bits = [load_u8(&q2[2 * j]), load_u8(&q2[2 * j + 1])];
            for s in 0..4 {
                for (k, b) in bits.iter().enumerate() {
                    let i = 8 * j + 2 * s + k;
                    let q = vreinterpretq_s8_u8(vandq_u8(*b, m3));
                    acc = scaled::<DOTPROD>(acc, q, &q8[i], i32::from(x.scales[i] & 0x0f));
                }
                bits = bits.map(|b| vshrq_n_u8::<2>(b));
            }
        }
        sumf += d * vaddvq_s32(acc) as f32 - dmin * summs as f32;
    }
    sumf
}

#[inline]
#[target_feature(enable = "neon")]
fn q3_k<const DOTPROD: bool>(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let m3 = vdupq_n_u8(3);
    let four = vdupq_n_u8(4);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (d, _) = super_scales(x.d, 0, y);
        let scales = scales_q3_k(&x.scales);
        let hmask = halves(&x.hmask).map(|h| load_u8(&h));
        // Value 128h + 32s + 16k + l: bits 2s..2s + 2 of qs[32h + 16k + l], minus 4 unless
        // bit 4h + s of hmask[16k + l] is set; sub-block 8h + 2s + k.
        let q3: &[[u8; 16]; 4] = bytemuck::cast_ref(&x.qs);
        let q8 = q8_pieces(y);
        let mut acc = vdupq_n_s32(0);
        for h in 0..2 {
            let mut bits = [load_u8(&q3[2 * h]), load_u8(&q3[2 * h + 1])];
            for s in 0..4 {
                let bit = vdupq_n_u8(1 << (4 * h + s));
                for k in 0..2 {
                    let i = 8 * h + 2 * s + k;
                    let minus = vbicq_u8(four, vtstq_u8(hmask[k], bit));
                    let low = vandq_u8(bits[k], m3);
                    let q = vsubq_s8(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(minus));
                    let scale = i32::from(scales[i]) - 32;
                    acc = scaled::<DOTPROD>(acc, q, &q8[i], scale);
                }
                bits = bits.map(|b| vshrq_n_u8::<2>(b));
            }
        }
        sumf += d * vaddvq_s32(acc) as f32;
    }
    sumf
}

/// Q4_K/Q5_K's minimums against the block sums: `sum(mins[j / 2] * bsums[j])`.
#[inline]
#[target_feature(enable = "neon")]
fn k4_mins(mins: [u8; 8], y: &BlockQ8K) -> i32 {
    let m = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(u64::from_le_bytes(mins))));
    // Each min twice: mins 0-3 over sums 0-7, 4-7 over 8-15.
    let (lo, hi) = (vzip1q_s16(m, m), vzip2q_s16(m, m));
    bsums_dot(y, (lo, hi))
}

/// Q4_K/Q5_K's sub-blocks: values 64j + 32t + 16k + l, from `quants(j, t, k)` (signed bytes,
/// `t = 0` low nibbles, `t = 1` high), sub-block `2j + t` (32 values) with `scales[2j + t]`.
#[inline]
#[target_feature(enable = "neon")]
fn k4_sum<const DOTPROD: bool>(
    scales: [u8; 8],
    y: &BlockQ8K,
    mut quants: impl FnMut(usize) -> [[int8x16_t; 2]; 2],
) -> i32 {
    let q8 = q8_pieces(y);
    let mut acc = vdupq_n_s32(0);
    for j in 0..4 {
        let q = quants(j);
        for t in 0..2 {
            let i = 2 * j + t;
            let s = dot::<DOTPROD>(vdupq_n_s32(0), q[t][0], load_i8(&q8[2 * i]));
            let s = dot::<DOTPROD>(s, q[t][1], load_i8(&q8[2 * i + 1]));
            acc = vmlaq_n_s32(acc, s, i32::from(scales[i]));
        }
    }
    vaddvq_s32(acc)
}

#[inline]
#[target_feature(enable = "neon")]
fn q4_k<const DOTPROD: bool>(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = super_scales(x.d, x.dmin, y);
        let (scales, mins) = scales_mins_k4(&x.scales);
        let summs = k4_mins(mins, y);
        // Value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high one.
        let q4: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.qs);
        let sumi = k4_sum::<DOTPROD>(scales, y, |j| {
            let b = [load_u8(&q4[2 * j]), load_u8(&q4[2 * j + 1])];
            [
                b.map(|b| vreinterpretq_s8_u8(vandq_u8(b, m4))),
                b.map(|b| vreinterpretq_s8_u8(vshrq_n_u8::<4>(b))),
            ]
        });
        sumf += d * sumi as f32 - dmin * summs as f32;
    }
    sumf
}

#[inline]
#[target_feature(enable = "neon")]
fn q5_k<const DOTPROD: bool>(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let m16 = vdupq_n_u8(0x10);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = super_scales(x.d, x.dmin, y);
        let (scales, mins) = scales_mins_k4(&x.scales);
        let summs = k4_mins(mins, y);
        // As Q4_K, plus 16 where bit 2j (low nibbles) or 2j + 1 (high) of qh[l] is set.
        let q4: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.qs);
        let mut high = halves(&x.qh).map(|h| load_u8(&h));
        let sumi = k4_sum::<DOTPROD>(scales, y, |j| {
            let b = [load_u8(&q4[2 * j]), load_u8(&q4[2 * j + 1])];
            let mut q = [[vdupq_n_s8(0); 2]; 2];
            for k in 0..2 {
                let h_lo = vandq_u8(vshlq_n_u8::<4>(high[k]), m16);
                let h_hi = vandq_u8(vshlq_n_u8::<3>(high[k]), m16);
                q[0][k] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b[k], m4), h_lo));
                q[1][k] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(b[k]), h_hi));
            }
            high = high.map(|h| vshrq_n_u8::<2>(h));
            q
        });
        sumf += d * sumi as f32 - dmin * summs as f32;
    }
    sumf
}

#[inline]
#[target_feature(enable = "neon")]
fn q6_k<const DOTPROD: bool>(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let m3 = vdupq_n_u8(3);
    let m32 = vdupq_n_s8(32);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (d, _) = super_scales(x.d, 0, y);
        // Within half j: values 32t + 16k + l take the low nibble of ql[16k + l] (t = 0), of
        // ql[32 + 16k + l] (t = 1), the high nibbles of those (t = 2, 3), and bits 2t..2t + 2
        // of qh[16k + l] on top, minus 32; sub-block 8j + 2t + k.
        let ql: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.ql);
        let qh: &[[u8; 16]; 4] = bytemuck::cast_ref(&x.qh);
        let q8 = q8_pieces(y);
        let mut acc = vdupq_n_s32(0);
        for j in 0..2 {
            for k in 0..2 {
                let l0 = load_u8(&ql[4 * j + k]);
                let l1 = load_u8(&ql[4 * j + 2 + k]);
                let h = load_u8(&qh[2 * j + k]);
                let q = [
                    vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8::<4>(vandq_u8(h, m3))),
                    vorrq_u8(
                        vandq_u8(l1, m4),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(h), m3)),
                    ),
                    vorrq_u8(
                        vshrq_n_u8::<4>(l0),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(h), m3)),
                    ),
                    vorrq_u8(vshrq_n_u8::<4>(l1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(h))),
                ];
                for (t, q) in q.into_iter().enumerate() {
                    let i = 8 * j + 2 * t + k;
                    let q = vsubq_s8(vreinterpretq_s8_u8(q), m32);
                    acc = scaled::<DOTPROD>(acc, q, &q8[i], i32::from(x.scales[i]));
                }
            }
        }
        sumf += d * vaddvq_s32(acc) as f32;
    }
    sumf
}

entry_points!(
    (
        vec_dot_q2_k_q8_k,
        matvec_q2_k_q8_k,
        q2_k,
        BlockQ2K,
        BlockQ8K,
        "Q2_K weights (`d * sc * q - dmin * m`, 2-bit `q`) against Q8_K activations."
    ),
    (
        vec_dot_q3_k_q8_k,
        matvec_q3_k_q8_k,
        q3_k,
        BlockQ3K,
        BlockQ8K,
        "Q3_K weights (`d * (sc - 32) * (q - 4)`, 3-bit `q`) against Q8_K activations."
    ),
    (
        vec_dot_q4_k_q8_k,
        matvec_q4_k_q8_k,
        q4_k,
        BlockQ4K,
        BlockQ8K,
        "Q4_K weights (`d * sc * q - dmin * m`, 4-bit `q`) against Q8_K activations."
    ),
    (
        vec_dot_q5_k_q8_k,
        matvec_q5_k_q8_k,
        q5_k,
        BlockQ5K,
        BlockQ8K,
        "Q5_K weights (`d * sc * q - dmin * m`, 5-bit `q`) against Q8_K activations."
    ),
    (
        vec_dot_q6_k_q8_k,
        matvec_q6_k_q8_k,
        q6_k,
        BlockQ6K,
        BlockQ8K,
        "Q6_K weights (`d * sc * (q - 32)`, 6-bit `q`, signed 8-bit `sc`) against Q8_K \
         activations."
    ),
);
