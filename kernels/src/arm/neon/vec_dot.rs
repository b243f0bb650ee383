//! NEON dot products of the 32-value block types with their Q8_0 / Q8_1 activations (after
//! ggml's `ggml_vec_dot_*` in `arch/arm/quants.c`): a block's 32 products summed exactly into
//! four i32 lanes by [`dot`], converted and multiplied by the block's scale into an f32
//! accumulator; two blocks per step with an accumulator each, so the two multiply-add chains
//! overlap. The weights' quants are turned into signed bytes first (`q - 8`, `q - 16`, the
//! IQ4_NL table), so the products are the oracle's.

use super::{dot, fp16x4, halves, load_i8, load_u8};
use core::arch::aarch64::*;
use formats::quant::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// The skeleton of every kernel here: blocks in pairs, `step(x, y, accumulator)` adding one
/// block into the accumulator of its parity, then the odd block out; returns the sum of the
/// two accumulators.
#[inline]
#[target_feature(enable = "neon")]
fn blocks<X, Y>(
    x: &[X],
    y: &[Y],
    mut step: impl FnMut(&X, &Y, float32x4_t) -> float32x4_t,
) -> float32x4_t {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [vdupq_n_f32(0.0); 2];
    let mut pairs_x = x.chunks_exact(2);
    let mut pairs_y = y.chunks_exact(2);
    for (xp, yp) in (&mut pairs_x).zip(&mut pairs_y) {
        acc[0] = step(&xp[0], &yp[0], acc[0]);
        acc[1] = step(&xp[1], &yp[1], acc[1]);
    }
    for (xb, yb) in pairs_x.remainder().iter().zip(pairs_y.remainder()) {
        acc[0] = step(xb, yb, acc[0]);
    }
    vaddq_f32(acc[0], acc[1])
}

/// `acc + d * sum`, the per-block float step.
#[inline]
#[target_feature(enable = "neon")]
fn scale_into(acc: float32x4_t, sum: int32x4_t, d: f32) -> float32x4_t {
    vmlaq_n_f32(acc, vcvtq_f32_s32(sum), d)
}

/// The 32 products of a block: `lo` (values 0..16) with the first 16 activation quants,
/// `hi` (16..32) with the last 16.
#[inline]
#[target_feature(enable = "neon")]
fn block_sum<const DOTPROD: bool>(lo: int8x16_t, hi: int8x16_t, y: &[i8; 32]) -> int32x4_t {
    let [y0, y1] = halves(y).map(|h| load_i8(&h));
    dot::<DOTPROD>(dot::<DOTPROD>(vdupq_n_s32(0), lo, y0), hi, y1)
}

/// A nibble block's quants as bytes: (values 0..16 = low nibbles, 16..32 = high nibbles).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; 16]) -> (uint8x16_t, uint8x16_t) {
    let q = load_u8(qs);
    (vandq_u8(q, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(q))
}

/// The fifth bits of a Q5 block in the layout of [`nibbles`]: 0x10 where bit `i` of the
/// little-endian `qh` (value `i`) is set.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes(qh)));
    // Byte i of a half takes byte i / 8 of the word (bytes 2, 3 for values 16..32)...
    let pick = |lo: u64, hi: u64| vqtbl1q_u8(bytes, vcombine_u8(vcreate_u8(lo), vcreate_u8(hi)));
    let low = pick(0, 0x0101_0101_0101_0101);
    let high = pick(0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    // ...and keeps bit i % 8: 0x10 where it is set.
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let m16 = vdupq_n_u8(0x10);
    let fifth = |v| vandq_u8(vtstq_u8(v, bit), m16);
    (fifth(low), fifth(high))
}

/// `(lo - offset, hi - offset)` as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn signed(q: (uint8x16_t, uint8x16_t), offset: i8) -> (int8x16_t, int8x16_t) {
    let o = vdupq_n_s8(offset);
    (
        vsubq_s8(vreinterpretq_s8_u8(q.0), o),
        vsubq_s8(vreinterpretq_s8_u8(q.1), o),
    )
}

/// `(lo | fifth lo, hi | fifth hi)`.
#[inline]
#[target_feature(enable = "neon")]
fn five_bit(qs: &[u8; 16], qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    let (lo, hi) = nibbles(qs);
    let (h_lo, h_hi) = fifth_bits(qh);
    (vorrq_u8(lo, h_lo), vorrq_u8(hi, h_hi))
}

/// The sum of the four lanes.
#[inline]
#[target_feature(enable = "neon")]
fn finish(acc: float32x4_t) -> f32 {
    vaddvq_f32(acc)
}

#[inline]
#[target_feature(enable = "neon")]
fn q4_0<const DOTPROD: bool>(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    finish(blocks(x, y, |x, y, acc| {
        let (lo, hi) = signed(nibbles(&x.qs), 8);
        let d = vgetq_lane_f32::<0>(fp16x4([x.d, 0, 0, 0])) * super::fp16(y.d);
        scale_into(acc, block_sum::<DOTPROD>(lo, hi, &y.qs), d)
    }))
}

/// A Q4_1 / Q5_1 block against a Q8_1 block: the scaled quant sum into `acc`, `m * s`
/// into `mins`.
#[inline]
#[target_feature(enable = "neon")]
fn step_with_min(
    acc: float32x4_t,
    mins: &mut f32,
    sum: int32x4_t,
    (d, m): (u16, u16),
    y: &BlockQ8_1,
) -> float32x4_t {
    let s = fp16x4([d, m, y.d, y.s]);
    let (xd, xm) = (vgetq_lane_f32::<0>(s), vgetq_lane_f32::<1>(s));
    let (yd, ys) = (vgetq_lane_f32::<2>(s), vgetq_lane_f32::<3>(s));
    *mins += xm * ys;
    scale_into(acc, sum, xd * yd)
}

#[inline]
#[target_feature(enable = "neon")]
fn q4_1<const DOTPROD: bool>(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut mins = 0f32;
    let acc = blocks(x, y, |x, y, acc| {
        let (lo, hi) = signed(nibbles(&x.qs), 0);
        let sum = block_sum::<DOTPROD>(lo, hi, &y.qs);
        step_with_min(acc, &mut mins, sum, (x.d, x.m), y)
    });
    finish(acc) + mins
}

#[inline]
#[target_feature(enable = "neon")]
fn q5_0<const DOTPROD: bool>(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    finish(blocks(x, y, |x, y, acc| {
        let (lo, hi) = signed(five_bit(&x.qs, x.qh), 16);
        let d = fp16x4([x.d, y.d, 0, 0]);
        let d = vgetq_lane_f32::<0>(d) * vgetq_lane_f32::<1>(d);
        scale_into(acc, block_sum::<DOTPROD>(lo, hi, &y.qs), d)
    }))
}

#[inline]
#[target_feature(enable = "neon")]
fn q5_1<const DOTPROD: bool>(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut mins = 0f32;
    let acc = blocks(x, y, |x, y, acc| {
        let (lo, hi) = signed(five_bit(&x.qs, x.qh), 0);
        let sum = block_sum::<DOTPROD>(lo, hi, &y.qs);
        step_with_min(acc, &mut mins, sum, (x.d, x.m), y)
    });
    finish(acc) + mins
}

#[inline]
#[target_feature(enable = "neon")]
fn q8_0<const DOTPROD: bool>(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    finish(blocks(x, y, |x, y, acc| {
        let [lo, hi] = halves(&x.qs).map(|h| load_i8(&h));
        let d = fp16x4([x.d, y.d, 0, 0]);
        let d = vgetq_lane_f32::<0>(d) * vgetq_lane_f32::<1>(d);
        scale_into(acc, block_sum::<DOTPROD>(lo, hi, &y.qs), d)
    }))
}

#[inline]
#[target_feature(enable = "neon")]
fn iq4_nl<const DOTPROD: bool>(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
    let values = load_i8(&KVALUES_IQ4NL);
    finish(blocks(x, y, |x, y, acc| {
        let (lo, hi) = nibbles(&x.qs);
        let (lo, hi) = (vqtbl1q_s8(values, lo), vqtbl1q_s8(values, hi));
        let d = fp16x4([y.d, x.d, 0, 0]);
        let d = vgetq_lane_f32::<0>(d) * vgetq_lane_f32::<1>(d);
        scale_into(acc, block_sum::<DOTPROD>(lo, hi, &y.qs), d)
    }))
}

entry_points!(
    (
        vec_dot_q4_0_q8_0,
        matvec_q4_0_q8_0,
        q4_0,
        BlockQ4_0,
        BlockQ8_0,
        "Q4_0 weights (`d * (q - 8)`) against Q8_0 activations."
    ),
    (
        vec_dot_q4_1_q8_1,
        matvec_q4_1_q8_1,
        q4_1,
        BlockQ4_1,
        BlockQ8_1,
        "Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`."
    ),
    (
        vec_dot_q5_0_q8_0,
        matvec_q5_0_q8_0,
        q5_0,
        BlockQ5_0,
        BlockQ8_0,
        "Q5_0 weights (`d * (q - 16)`) against Q8_0 activations."
    ),
    (
        vec_dot_q5_1_q8_1,
        matvec_q5_1_q8_1,
        q5_1,
        BlockQ5_1,
        BlockQ8_1,
        "Q5_1 weights (`d * q + m`) against Q8_1 activations."
    ),
    (
        vec_dot_q8_0_q8_0,
        matvec_q8_0_q8_0,
        q8_0,
        BlockQ8_0,
        BlockQ8_0,
        "Q8_0 weights against Q8_0 activations."
    ),
    (
        vec_dot_iq4_nl_q8_0,
        matvec_iq4_nl_q8_0,
        iq4_nl,
        BlockIq4Nl,
        BlockQ8_0,
        "IQ4_NL weights (`d * KVALUES_IQ4NL[q]`) against Q8_0 activations: the nibbles index \
         the sixteen values with one table lookup (`TBL`) per half."
    ),
);
