//! NEON dot products of the K-quants with Q8_K activations, in the arithmetic of the AVX2
//! kernels (`x86/avx2/vec_dot_k.rs`). Per super-block the quants are decoded sixteen at a
//! time, multiplied with the activation quants by [`dot4`] and weighted by their sub-block
//! scale (`MLA` by a scalar) into eight i32 lanes ([`I32x8`]: the first and second 16 values
//! of each 32-value piece apart, as the two halves of an AVX2 register), which are converted
//! and scaled by `d` into one eight-lane f32 accumulator with a fused multiply-add; the
//! lanes are summed once, at the end, by [`hsum_f32x8`]. Minimums meet the activation's
//! 16-value sums `bsums` in AVX2's lanes too. Every lane holds the AVX2 kernel's integer, so
//! the f32 steps, and the result, are the same.

use super::quantize::bsums;
use super::{
    dot4, fma_f32, fma_scaled, fp16x4, halves, hsum_f32x4, hsum_f32x8, load_i8, load_u8,
    zero_f32x8, F32x8, I32x8,
};
use crate::scalar::{scales_mins_k4, scales_q3_k};
use core::arch::aarch64::*;
use formats::quant::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

/// The activation quants of a super-block as 16-byte pieces.
#[inline(always)]
fn q8_pieces(y: &BlockQ8K) -> &[[i8; 16]; QK_K / 16] {
    bytemuck::cast_ref(&y.qs)
}

/// `acc + scale * (a . b)` in [`dot4`]'s lanes: sixteen values of a sub-block with its scale.
#[inline]
#[target_feature(enable = "neon")]
fn scaled<const DOTPROD: bool>(
    acc: int32x4_t,
    a: int8x16_t,
    b: &[i8; 16],
    scale: i32,
) -> int32x4_t {
    vmlaq_n_s32(acc, dot4::<DOTPROD>(vdupq_n_s32(0), a, load_i8(b)), scale)
}

/// A super-block's two f32 scales as AVX2 computes them: `(y.d * fp16(d), -y.d * fp16(dmin))`.
#[inline]
#[target_feature(enable = "neon")]
fn super_scales(d: u16, dmin: u16, y: &BlockQ8K) -> (f32, f32) {
    let s = fp16x4([d, dmin, 0, 0]);
    (y.d * vgetq_lane_f32::<0>(s), -y.d * vgetq_lane_f32::<1>(s))
}

/// `[a[2l] * b[2l] + a[2l + 1] * b[2l + 1]]` for lanes `l` 0..4 from eight i16 each: AVX2's
/// `madd_epi16` on one 128-bit half.
#[inline]
#[target_feature(enable = "neon")]
fn madd_i16(a: int16x8_t, b: int16x8_t) -> int32x4_t {
    let lo = vmull_s16(vget_low_s16(a), vget_low_s16(b));
    vpaddq_s32(lo, vmull_high_s16(a, b))
}

/// Sixteen bytes as i16: `(bytes 0..8, bytes 8..16)`, zero-extended.
#[inline]
#[target_feature(enable = "neon")]
fn widen_u8(v: uint8x16_t) -> (int16x8_t, int16x8_t) {
    (
        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
        vreinterpretq_s16_u16(vmovl_high_u8(v)),
    )
}

#[inline]
#[target_feature(enable = "neon")]
fn q2_k<const DOTPROD: bool>(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let m3 = vdupq_n_u8(3);
    let mut acc = zero_f32x8();
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = super_scales(x.d, x.dmin, y);
        // Minimums (high nibbles of the scales) against the block sums, lane l taking
        // sub-blocks 2l and 2l + 1.
        let mins = widen_u8(vshrq_n_u8::<4>(load_u8(&x.scales)));
        let (b0, b1) = bsums(y);
        let prod = [madd_i16(mins.0, b0), madd_i16(mins.1, b1)];
        acc = fma_scaled(acc, prod, dmin);

        // Sub-block 8j + 2s + k (16 values): bits 2s..2s + 2 of qs[32j + 16k..][..16], times
        // the low nibble of its scale byte, into the lanes of half k.
        let q2: &[[u8; 16]; 4] = bytemuck::cast_ref(&x.qs);
        let q8 = q8_pieces(y);
        let mut sumi: I32x8 = [vdupq_n_s32(0); 2];
        for j in 0..2 {
            let mut bits = [load_u8(&q2[2 * j]), load_u8(&q2[2 * j + 1])];
            for s in 0..4 {
                for (k, b) in bits.iter().enumerate() {
                    let i = 8 * j + 2 * s + k;
                    let q = vreinterpretq_s8_u8(vandq_u8(*b, m3));
                    let scale = i32::from(x.scales[i] & 0x0f);
                    sumi[k] = scaled::<DOTPROD>(sumi[k], q, &q8[i], scale);
                }
                bits = bits.map(|b| vshrq_n_u8::<2>(b));
            }
        }
        acc = fma_scaled(acc, sumi, d);
    }
    hsum_f32x8(acc)
}

#[inline]
#[target_feature(enable = "neon")]
fn q3_k<const DOTPROD: bool>(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let m3 = vdupq_n_u8(3);
    let four = vdupq_n_u8(4);
    let mut acc = zero_f32x8();
    for (x, y) in x.iter().zip(y) {
        let (d, _) = super_scales(x.d, 0, y);
        let scales = scales_q3_k(&x.scales);
        let hmask = halves(&x.hmask).map(|h| load_u8(&h));
        // Value 128h + 32s + 16k + l: bits 2s..2s + 2 of qs[32h + 16k + l], minus 4 unless
        // bit 4h + s of hmask[16k + l] is set; sub-block 8h + 2s + k, into the lanes of half k.
        let q3: &[[u8; 16]; 4] = bytemuck::cast_ref(&x.qs);
        let q8 = q8_pieces(y);
        let mut sumi: I32x8 = [vdupq_n_s32(0); 2];
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
                    sumi[k] = scaled::<DOTPROD>(sumi[k], q, &q8[i], scale);
                }
                bits = bits.map(|b| vshrq_n_u8::<2>(b));
            }
        }
        acc = fma_scaled(acc, sumi, d);
    }
    hsum_f32x8(acc)
}

/// Q4_K/Q5_K's minimums against the block sums in AVX2's four lanes: lane `l` is
/// `mins[2l] * (bsums[4l] + bsums[4l + 1]) + mins[2l + 1] * (bsums[4l + 2] + bsums[4l + 3])`.
#[inline]
#[target_feature(enable = "neon")]
fn k4_min_products(mins: [u8; 8], y: &BlockQ8K) -> int32x4_t {
    let (b0, b1) = bsums(y);
    let pair_sums = vpaddq_s16(b0, b1);
    let m = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(u64::from_le_bytes(mins))));
    madd_i16(m, pair_sums)
}

/// Q4_K/Q5_K's sub-blocks: values 64j + 32t + 16k + l, from `quants(j)[t][k]` (bytes below
/// 32, `t = 0` low nibbles, `t = 1` high), sub-block `2j + t` (32 values) with
/// `scales[2j + t]`, into the lanes of half k.
#[inline]
#[target_feature(enable = "neon")]
fn k4_sums<const DOTPROD: bool>(
    scales: [u8; 8],
    y: &BlockQ8K,
    mut quants: impl FnMut(usize) -> [[int8x16_t; 2]; 2],
) -> I32x8 {
    let q8 = q8_pieces(y);
    let mut sumi: I32x8 = [vdupq_n_s32(0); 2];
    for j in 0..4 {
        let q = quants(j);
        for t in 0..2 {
            let i = 2 * j + t;
            for k in 0..2 {
                let scale = i32::from(scales[i]);
                sumi[k] = scaled::<DOTPROD>(sumi[k], q[t][k], &q8[2 * i + k], scale);
            }
        }
    }
    sumi
}

#[inline]
#[target_feature(enable = "neon")]
fn q4_k<const DOTPROD: bool>(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let mut acc = zero_f32x8();
    let mut acc_m = vdupq_n_f32(0.0);
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = super_scales(x.d, x.dmin, y);
        let (scales, mins) = scales_mins_k4(&x.scales);
        let prod = k4_min_products(mins, y);
        acc_m = vfmaq_n_f32(acc_m, vcvtq_f32_s32(prod), dmin);
        // Value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high one.
        let q4: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.qs);
        let sumi = k4_sums::<DOTPROD>(scales, y, |j| {
            let b = [load_u8(&q4[2 * j]), load_u8(&q4[2 * j + 1])];
            [
                b.map(|b| vreinterpretq_s8_u8(vandq_u8(b, m4))),
                b.map(|b| vreinterpretq_s8_u8(vshrq_n_u8::<4>(b))),
            ]
        });
        acc = fma_scaled(acc, sumi, d);
    }
    hsum_f32x8(acc) + hsum_f32x4(acc_m)
}

#[inline]
#[target_feature(enable = "neon")]
fn q5_k<const DOTPROD: bool>(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let m16 = vdupq_n_u8(0x10);
    let mut acc = zero_f32x8();
    let mut summs = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = super_scales(x.d, x.dmin, y);
        let (scales, mins) = scales_mins_k4(&x.scales);
        // As AVX2 (and ggml): the minimums summed in integers, one multiply-add per block.
        let min_sum = vaddvq_s32(k4_min_products(mins, y));
        summs = fma_f32(dmin, min_sum as f32, summs);
        // As Q4_K, plus 16 where bit 2j (low nibbles) or 2j + 1 (high) of qh[l] is set.
        let q4: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.qs);
        let mut high = halves(&x.qh).map(|h| load_u8(&h));
        let sumi = k4_sums::<DOTPROD>(scales, y, |j| {
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
        acc = fma_scaled(acc, sumi, d);
    }
    hsum_f32x8(acc) + summs
}

#[inline]
#[target_feature(enable = "neon")]
fn q6_k<const DOTPROD: bool>(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let m3 = vdupq_n_u8(3);
    let mut acc: F32x8 = zero_f32x8();
    for (x, y) in x.iter().zip(y) {
        let (d, _) = super_scales(x.d, 0, y);
        // As AVX2: the quants unsigned (0..64), the 32 subtracted once per super-block as
        // `32 * (sc[2l] * bsums[2l] + sc[2l + 1] * bsums[2l + 1])` in lane l.
        let sc = load_i8(&x.scales);
        let (b0, b1) = bsums(y);
        let offsets = [
            madd_i16(b0, vmovl_s8(vget_low_s8(sc))),
            madd_i16(b1, vmovl_high_s8(sc)),
        ];
        let mut sumi: I32x8 = offsets.map(|o| vnegq_s32(vshlq_n_s32::<5>(o)));

        // Within half j: values 32t + 16k + l take the low nibble of ql[16k + l] (t = 0), of
        // ql[32 + 16k + l] (t = 1), the high nibbles of those (t = 2, 3), and bits 2t..2t + 2
        // of qh[16k + l] on top; sub-block 8j + 2t + k, into the lanes of half k.
        let ql: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.ql);
        let qh: &[[u8; 16]; 4] = bytemuck::cast_ref(&x.qh);
        let q8 = q8_pieces(y);
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
                    let q = vreinterpretq_s8_u8(q);
                    sumi[k] = scaled::<DOTPROD>(sumi[k], q, &q8[i], i32::from(x.scales[i]));
                }
            }
        }
        acc = fma_scaled(acc, sumi, d);
    }
    hsum_f32x8(acc)
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
