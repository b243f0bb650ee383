//! Dot products of the 32-value block types with their Q8_0 / Q8_1 activations, and of the
//! float types (ggml's `ggml_vec_dot_*_generic` in `ggml-cpu/quants.c`, `ggml_vec_dot_f16`
//! and friends in `ggml-cpu/vec.cpp`).
//!
//! Per block the quants are multiplied and summed exactly in integers, then scaled in f32 with
//! the same grouping as ggml's C, block after block, so a result differs from ggml's generic
//! code only where its compiler contracts a multiply-add into an FMA.

use super::{bf16, fp16};
use formats::quant::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// `sum(v[j] * y[j])` over the 32 values of a Q4/Q5-style block, where `v[j]` (low nibble of
/// byte `j`) pairs with `y[j]` and `v[j + 16]` (high nibble) with `y[j + 16]`: ggml's
/// `sumi0 + sumi1`, the same integer. The two products of byte `j` are added in `i16` first
/// (`|v| <= 127`, `|y| <= 128`, so a pair stays within `+-32512`), the shape SIMD code has
/// too, which lets the compiler widen half as many lanes.
#[inline(always)]
fn dot_pairs(v: impl Fn(usize) -> (i16, i16), y: &[i8; 32]) -> i32 {
    let mut pairs = [0i16; 16];
    for (j, p) in pairs.iter_mut().enumerate() {
        let (v0, v1) = v(j);
        *p = v0 * i16::from(y[j]) + v1 * i16::from(y[j + 16]);
    }
    pairs.iter().map(|&p| i32::from(p)).sum()
}

/// [`dot_pairs`] for 4-bit quants minus `offset` (0 or 8; the difference is taken in `i8`,
/// which lets the compiler see two sign-extended bytes and use a multiply-add).
#[inline(always)]
pub(crate) fn dot_nibbles(qs: &[u8; 16], offset: i8, y: &[i8; 32]) -> i32 {
    dot_pairs(
        |j| {
            (
                i16::from((qs[j] & 0x0f) as i8 - offset),
                i16::from((qs[j] >> 4) as i8 - offset),
            )
        },
        y,
    )
}

/// [`dot_pairs`] for 5-bit quants minus `offset` (0 or 16, taken in `i8` as in
/// [`dot_nibbles`]): the fifth bit of value `j` is bit `j` of the little-endian `qh`.
#[inline(always)]
pub(crate) fn dot_5bit(qs: &[u8; 16], qh: [u8; 4], offset: i8, y: &[i8; 32]) -> i32 {
    let qh = u32::from_le_bytes(qh);
    dot_pairs(
        |j| {
            let h0 = if qh & (1 << j) != 0 { 0x10 } else { 0 };
            let h1 = if qh & (1 << (j + 16)) != 0 { 0x10 } else { 0 };
            (
                i16::from(((qs[j] & 0x0f) | h0) as i8 - offset),
                i16::from(((qs[j] >> 4) | h1) as i8 - offset),
            )
        },
        y,
    )
}

/// Q4_0 weights (`d * (q - 8)`) against Q8_0 activations.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = dot_nibbles(&x.qs, 8, &y.qs);
        sumf += sumi as f32 * fp16(x.d) * fp16(y.d);
    }
    sumf
}

/// Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`.
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = dot_nibbles(&x.qs, 0, &y.qs);
        sumf += (fp16(x.d) * fp16(y.d)) * sumi as f32 + fp16(x.m) * fp16(y.s);
    }
    sumf
}

/// Q5_0 weights (`d * (q - 16)`) against Q8_0 activations.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = dot_5bit(&x.qs, x.qh, 16, &y.qs);
        sumf += (fp16(x.d) * fp16(y.d)) * sumi as f32;
    }
    sumf
}

/// Q5_1 weights (`d * q + m`) against Q8_1 activations.
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = dot_5bit(&x.qs, x.qh, 0, &y.qs);
        sumf += (fp16(x.d) * fp16(y.d)) * sumi as f32 + fp16(x.m) * fp16(y.s);
    }
    sumf
}

/// Q8_0 weights against Q8_0 activations.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += i32::from(x.qs[j]) * i32::from(y.qs[j]);
        }
        sumf += sumi as f32 * (fp16(x.d) * fp16(y.d));
    }
    sumf
}

/// IQ4_NL weights (`d * KVALUES_IQ4NL[q]`) against Q8_0 activations.
pub fn vec_dot_iq4_nl_q8_0(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let d = fp16(y.d) * fp16(x.d);
        let sumi = dot_pairs(
            |j| {
                (
                    i16::from(KVALUES_IQ4NL[usize::from(x.qs[j] & 0x0f)]),
                    i16::from(KVALUES_IQ4NL[usize::from(x.qs[j] >> 4)]),
                )
            },
            &y.qs,
        );
        sumf += d * sumi as f32;
    }
    sumf
}

/// Lanes of the float dot products: independent f64 accumulators, so the loop vectorizes
/// (a single accumulator would pin the order of every addition).
const FLOAT_LANES: usize = 8;

/// `sum(f(x[i]) * f(y[i]))` with each product rounded to f32, as ggml's generic code rounds
/// it, and accumulated in f64 (ggml's `ggml_float`) over [`FLOAT_LANES`] lanes, then the
/// lanes and the tail in order.
#[inline(always)]
fn dot_f64_lanes<T: Copy>(x: &[T], y: &[T], f: impl Fn(T) -> f32) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut lanes = [0f64; FLOAT_LANES];
    let xc = x.chunks_exact(FLOAT_LANES);
    let yc = y.chunks_exact(FLOAT_LANES);
    let (xt, yt) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for l in 0..FLOAT_LANES {
            lanes[l] += f64::from(f(xs[l]) * f(ys[l]));
        }
    }
    let mut sum = 0f64;
    for lane in lanes {
        sum += lane;
    }
    for (&a, &b) in xt.iter().zip(yt) {
        sum += f64::from(f(a) * f(b));
    }
    sum as f32
}

/// F16 weights against F16 activations (f16 bits). The products of two halves are exact in
/// f32.
pub fn vec_dot_f16_f16(x: &[u16], y: &[u16]) -> f32 {
    dot_f64_lanes(x, y, fp16)
}

/// BF16 weights against BF16 activations (bf16 bits). The products are exact in f32 unless
/// they overflow or underflow it.
pub fn vec_dot_bf16_bf16(x: &[u16], y: &[u16]) -> f32 {
    dot_f64_lanes(x, y, bf16)
}

/// F32 weights against F32 activations.
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    dot_f64_lanes(x, y, |v| v)
}
