//! ggml's original block quants: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, blocks of 32 weights with an
//! f16 scale (and, for the `_1` types, an f16 minimum).
//!
//! `quantize_row_*_ref` is ggml's plain reference quantizer; `quantize_*` quantizes whole rows
//! and, given importance weights, runs ggml's weighted scale search (`quantize_row_*_impl`).
//! Both are bit-exact with ggml for every finite input; see [`super::search`] for the rules
//! that keeps them so.

use super::search::{c_max, fabsf, make_qkx_quants, make_qx_quants, roundf, signed_absmax, sqrtf};
use super::{fp16_bits_to_fp32, fp32_to_fp16_bits};

/// Weights per Q4_0 block.
pub const QK4_0: usize = 32;
/// Weights per Q4_1 block.
pub const QK4_1: usize = 32;
/// Weights per Q5_0 block.
pub const QK5_0: usize = 32;
/// Weights per Q5_1 block.
pub const QK5_1: usize = 32;
/// Weights per Q8_0 block.
pub const QK8_0: usize = 32;
/// Values per Q8_1 block.
pub const QK8_1: usize = 32;

/// Q4_0: 32 weights as 4-bit signed quants `q - 8` times an f16 scale; 4.5 bits per weight.
/// Weight `j` is the low nibble of `qs[j]`, weight `j + 16` the high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Nibbles.
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 weights as 4-bit quants `q * d + m`; 5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Nibbles.
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// Q5_0: 32 weights as 5-bit signed quants `q - 16` times an f16 scale; 5.5 bits per weight.
/// The fifth bit of weight `j` is bit `j` of the little-endian `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Fifth bits, little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// Q5_1: 32 weights as 5-bit quants `q * d + m`; 6 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Fifth bits, little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// Q8_0: 32 weights as `i8` times an f16 scale; 8.5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Quants.
    pub qs: [i8; QK8_0],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Q8_1: 32 values as `i8` times an f16 scale `d`, plus `s = d * sum(q)` (f16); 9 bits per
/// value. ggml's activation format for the `_1` weight types (Q4_1, Q5_1): their per-block
/// minimum `m` contributes `m * s` to a dot product, one multiply per block.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// `d` times the sum of the quants (f16 bits).
    pub s: u16,
    /// Quants.
    pub qs: [i8; QK8_1],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

/// C's `(int8_t)f` / `(uint8_t)f` as ggml's x86-64 build computes it: truncate to a 32-bit
/// integer (`cvttss2si`, which yields `i32::MIN`, the "integer indefinite", for NaN and
/// out-of-range values) and keep the low byte. Rust's saturating `as` differs for infinities,
/// which ggml's scales do produce from finite but tiny inputs (`1 / d` overflows).
#[inline]
fn c_trunc_low_byte(f: f32) -> u8 {
    // 2^31; NaN is outside the range too.
    const LIMIT: f32 = 2_147_483_648.0;
    let i = if (-LIMIT..LIMIT).contains(&f) {
        f as i32
    } else {
        i32::MIN
    };
    i as u8
}

/// `MIN(n, (int8_t)f)` stored to a `uint8_t`, as the reference quantizers write a quant.
#[inline]
fn min_trunc_i8(n: i8, f: f32) -> u8 {
    (c_trunc_low_byte(f) as i8).min(n) as u8
}

/// Minimum and maximum of a block, starting from `FLT_MAX` / `-FLT_MAX` as ggml does.
#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `1 / d`, or 0 when `d` is 0 (C's `d ? 1.0f/d : 0.0f`).
#[inline]
fn inverse_or_zero(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Pack 32 five-bit quants: low nibbles into `qs` (`j` low, `j + 16` high), fifth bits into the
/// little-endian u32 `qh`.
#[inline]
fn pack_q5(l: &[u8; 32], qs: &mut [u8; 16], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for j in 0..16 {
        let (xi0, xi1) = (l[j], l[j + 16]);
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        h |= u32::from((xi0 & 0x10) >> 4) << j;
        h |= u32::from((xi1 & 0x10) >> 4) << (j + 16);
    }
    *qh = h.to_le_bytes();
}

/// Pack 32 four-bit quants: `j` in the low nibble of `qs[j]`, `j + 16` in the high nibble.
#[inline]
fn pack_q4(l: &[u8; 32], qs: &mut [u8; 16]) {
    for j in 0..16 {
        qs[j] = l[j] | (l[j + 16] << 4);
    }
}

/// The mean square of a row, ggml's `sigma2` in `quantize_row_*_impl`.
#[inline]
fn row_sigma2(row: &[f32]) -> f32 {
    let mut sum_x2 = 0f32;
    for &v in row {
        sum_x2 += v * v;
    }
    sum_x2 / row.len() as f32
}

/// The error weights of ggml's `quantize_row_*_impl` for one block:
/// `qw[j] * sqrt(sigma2 + x[j]^2)`.
#[inline]
fn block_weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; 32] {
    core::array::from_fn(|j| qw[j] * sqrtf(sigma2 + xb[j] * xb[j]))
}

/// The weighted search of ggml's `quantize_row_q{4,5}_1_impl` for one block (its
/// `make_qkx3_quants`): quants `0..=nmax` into `l`, and the block's `d` and `m` as f16 bits.
#[inline]
fn search_block_1(nmax: i32, xb: &[f32], weight: &[f32; 32], l: &mut [u8; 32]) -> (u16, u16) {
    let mut laux = [0u8; 32];
    let mut min = 0f32;
    let d = make_qkx_quants::<3>(
        nmax,
        xb,
        Some(weight),
        l,
        &mut min,
        &mut laux,
        -0.9,
        0.05,
        36,
        false,
    );
    (fp32_to_fp16_bits(d), fp32_to_fp16_bits(-min))
}

/// ggml's `quantize_q4_0` and its siblings: without importance weights the whole input goes
/// through the reference quantizer; with them each row goes through the weighted one.
#[inline]
fn quantize_rows<B>(
    src: &[f32],
    dst: &mut [B],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
    reference: fn(&[f32], &mut [B]),
    weighted: fn(&[f32], &mut [B], &[f32]),
) {
    match quant_weights {
        None => reference(src, dst),
        Some(qw) => {
            let blocks_per_row = n_per_row / 32;
            for (row, out) in src
                .chunks_exact(n_per_row)
                .zip(dst.chunks_exact_mut(blocks_per_row))
            {
                weighted(row, out, qw);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q4_0

/// Reference Q4_0 quantizer (ggml's `quantize_row_q4_0_ref`): scale `max / -8` from the value
/// of largest magnitude.
pub fn quantize_row_q4_0_ref(x: &[f32], y: &mut [BlockQ4_0]) {
    for (xb, yb) in x.chunks_exact(QK4_0).zip(y) {
        let (_, max) = signed_absmax(xb);
        let d = max / -8.0;
        let id = inverse_or_zero(d);
        yb.d = fp32_to_fp16_bits(d);
        for j in 0..QK4_0 / 2 {
            let xi0 = min_trunc_i8(15, xb[j] * id + 8.5);
            let xi1 = min_trunc_i8(15, xb[j + QK4_0 / 2] * id + 8.5);
            yb.qs[j] = xi0 | (xi1 << 4);
        }
    }
}

/// ggml's `quantize_row_q4_0_impl` for one row with importance weights.
fn quantize_row_q4_0_impl(x: &[f32], y: &mut [BlockQ4_0], quant_weights: &[f32]) {
    let sigma2 = row_sigma2(x);
    let mut l = [0i8; QK4_0];
    for ((xb, qw), yb) in x
        .chunks_exact(QK4_0)
        .zip(quant_weights.chunks_exact(QK4_0))
        .zip(y)
    {
        let weight = block_weights(xb, qw, sigma2);
        let d = make_qx_quants(8, xb, &mut l, 1, Some(&weight));
        yb.d = fp32_to_fp16_bits(d);
        pack_q4(&l.map(|v| v as u8), &mut yb.qs);
    }
}

/// Quantize whole rows of `n_per_row` values to Q4_0 (ggml's `quantize_q4_0`).
pub fn quantize_q4_0(
    src: &[f32],
    dst: &mut [BlockQ4_0],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    quantize_rows(
        src,
        dst,
        n_per_row,
        quant_weights,
        quantize_row_q4_0_ref,
        quantize_row_q4_0_impl,
    );
}

/// Dequantize Q4_0 blocks into `y` (32 values per block).
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
        let d = fp16_bits_to_fp32(xb.d);
        for (j, &q) in xb.qs.iter().enumerate() {
            yb[j] = (i32::from(q & 0x0f) - 8) as f32 * d;
            yb[j + QK4_0 / 2] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q4_1

/// Reference Q4_1 quantizer (ggml's `quantize_row_q4_1_ref`): `d = (max - min) / 15`.
pub fn quantize_row_q4_1_ref(x: &[f32], y: &mut [BlockQ4_1]) {
    for (xb, yb) in x.chunks_exact(QK4_1).zip(y) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = inverse_or_zero(d);
        yb.d = fp32_to_fp16_bits(d);
        yb.m = fp32_to_fp16_bits(min);
        for j in 0..QK4_1 / 2 {
            let xi0 = min_trunc_i8(15, (xb[j] - min) * id + 0.5);
            let xi1 = min_trunc_i8(15, (xb[j + QK4_1 / 2] - min) * id + 0.5);
            yb.qs[j] = xi0 | (xi1 << 4);
        }
    }
}

/// ggml's `quantize_row_q4_1_impl` for one row with importance weights.
fn quantize_row_q4_1_impl(x: &[f32], y: &mut [BlockQ4_1], quant_weights: &[f32]) {
    let sigma2 = row_sigma2(x);
    let mut l = [0u8; QK4_1];
    for ((xb, qw), yb) in x
        .chunks_exact(QK4_1)
        .zip(quant_weights.chunks_exact(QK4_1))
        .zip(y)
    {
        let weight = block_weights(xb, qw, sigma2);
        (yb.d, yb.m) = search_block_1(15, xb, &weight, &mut l);
        pack_q4(&l, &mut yb.qs);
    }
}

/// Quantize whole rows of `n_per_row` values to Q4_1 (ggml's `quantize_q4_1`).
pub fn quantize_q4_1(
    src: &[f32],
    dst: &mut [BlockQ4_1],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    quantize_rows(
        src,
        dst,
        n_per_row,
        quant_weights,
        quantize_row_q4_1_ref,
        quantize_row_q4_1_impl,
    );
}

/// Dequantize Q4_1 blocks into `y` (32 values per block).
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
        let d = fp16_bits_to_fp32(xb.d);
        let m = fp16_bits_to_fp32(xb.m);
        for (j, &q) in xb.qs.iter().enumerate() {
            yb[j] = f32::from(q & 0x0f) * d + m;
            yb[j + QK4_1 / 2] = f32::from(q >> 4) * d + m;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q5_0

/// Reference Q5_0 quantizer (ggml's `quantize_row_q5_0_ref`): scale `max / -16`.
pub fn quantize_row_q5_0_ref(x: &[f32], y: &mut [BlockQ5_0]) {
    for (xb, yb) in x.chunks_exact(QK5_0).zip(y) {
        let (_, max) = signed_absmax(xb);
        let d = max / -16.0;
        let id = inverse_or_zero(d);
        yb.d = fp32_to_fp16_bits(d);
        let l: [u8; QK5_0] = core::array::from_fn(|j| min_trunc_i8(31, xb[j] * id + 16.5));
        pack_q5(&l, &mut yb.qs, &mut yb.qh);
    }
}

/// ggml's `quantize_row_q5_0_impl` for one row with importance weights.
fn quantize_row_q5_0_impl(x: &[f32], y: &mut [BlockQ5_0], quant_weights: &[f32]) {
    let sigma2 = row_sigma2(x);
    let mut l = [0i8; QK5_0];
    for ((xb, qw), yb) in x
        .chunks_exact(QK5_0)
        .zip(quant_weights.chunks_exact(QK5_0))
        .zip(y)
    {
        let weight = block_weights(xb, qw, sigma2);
        let d = make_qx_quants(16, xb, &mut l, 1, Some(&weight));
        yb.d = fp32_to_fp16_bits(d);
        pack_q5(&l.map(|v| v as u8), &mut yb.qs, &mut yb.qh);
    }
}

/// Quantize whole rows of `n_per_row` values to Q5_0 (ggml's `quantize_q5_0`).
pub fn quantize_q5_0(
    src: &[f32],
    dst: &mut [BlockQ5_0],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    quantize_rows(
        src,
        dst,
        n_per_row,
        quant_weights,
        quantize_row_q5_0_ref,
        quantize_row_q5_0_impl,
    );
}

/// The fifth bits of weights `j` and `j + 16` from `qh`, already shifted to bit 4.
#[inline]
fn high_bits(qh: u32, j: usize) -> (u8, u8) {
    (
        (((qh >> j) << 4) & 0x10) as u8,
        ((qh >> (j + 12)) & 0x10) as u8,
    )
}

/// Dequantize Q5_0 blocks into `y` (32 values per block).
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
        let d = fp16_bits_to_fp32(xb.d);
        let qh = u32::from_le_bytes(xb.qh);
        for (j, &q) in xb.qs.iter().enumerate() {
            let (h0, h1) = high_bits(qh, j);
            yb[j] = (i32::from((q & 0x0f) | h0) - 16) as f32 * d;
            yb[j + QK5_0 / 2] = (i32::from((q >> 4) | h1) - 16) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q5_1

/// Reference Q5_1 quantizer (ggml's `quantize_row_q5_1_ref`): `d = (max - min) / 31`.
pub fn quantize_row_q5_1_ref(x: &[f32], y: &mut [BlockQ5_1]) {
    for (xb, yb) in x.chunks_exact(QK5_1).zip(y) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = inverse_or_zero(d);
        yb.d = fp32_to_fp16_bits(d);
        yb.m = fp32_to_fp16_bits(min);
        // ggml converts straight to uint8_t here, without a clamp.
        let l: [u8; QK5_1] = core::array::from_fn(|j| c_trunc_low_byte((xb[j] - min) * id + 0.5));
        pack_q5(&l, &mut yb.qs, &mut yb.qh);
    }
}

/// ggml's `quantize_row_q5_1_impl` for one row with importance weights.
fn quantize_row_q5_1_impl(x: &[f32], y: &mut [BlockQ5_1], quant_weights: &[f32]) {
    let sigma2 = row_sigma2(x);
    let mut l = [0u8; QK5_1];
    for ((xb, qw), yb) in x
        .chunks_exact(QK5_1)
        .zip(quant_weights.chunks_exact(QK5_1))
        .zip(y)
    {
        let weight = block_weights(xb, qw, sigma2);
        (yb.d, yb.m) = search_block_1(31, xb, &weight, &mut l);
        pack_q5(&l, &mut yb.qs, &mut yb.qh);
    }
}

/// Quantize whole rows of `n_per_row` values to Q5_1 (ggml's `quantize_q5_1`).
pub fn quantize_q5_1(
    src: &[f32],
    dst: &mut [BlockQ5_1],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    quantize_rows(
        src,
        dst,
        n_per_row,
        quant_weights,
        quantize_row_q5_1_ref,
        quantize_row_q5_1_impl,
    );
}

/// Dequantize Q5_1 blocks into `y` (32 values per block).
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
        let d = fp16_bits_to_fp32(xb.d);
        let m = fp16_bits_to_fp32(xb.m);
        let qh = u32::from_le_bytes(xb.qh);
        for (j, &q) in xb.qs.iter().enumerate() {
            let (h0, h1) = high_bits(qh, j);
            yb[j] = f32::from((q & 0x0f) | h0) * d + m;
            yb[j + QK5_1 / 2] = f32::from((q >> 4) | h1) * d + m;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q8_0

/// Reference Q8_0 quantizer (ggml's `quantize_row_q8_0_ref`; ggml's `quantize_q8_0` ignores
/// importance weights and calls this too): `d = amax / 127`, quants rounded half away from
/// zero.
pub fn quantize_row_q8_0_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y) {
        yb.d = fp32_to_fp16_bits(quantize_block_q8(xb, &mut yb.qs));
    }
}

/// The block of ggml's `quantize_row_q8_0_ref` and `quantize_row_q8_1_ref`: `d = amax / 127`,
/// quants `roundf(x / d)` (half away from zero) stored as C stores a float to `int8_t`.
/// Returns `d` (before its rounding to f16).
#[inline]
fn quantize_block_q8(xb: &[f32], qs: &mut [i8; 32]) -> f32 {
    let mut amax = 0f32;
    for &v in xb {
        amax = c_max(amax, fabsf(v));
    }
    let d = amax / 127.0;
    let id = inverse_or_zero(d);
    for (q, &v) in qs.iter_mut().zip(xb) {
        *q = round_to_low_byte(v * id) as i8;
    }
    d
}

/// `(int8_t)roundf(f)`, as C stores it, without a call to `roundf` on the common path: for
/// |f| < 2^22 truncation is exact and the dropped fraction decides the step away from zero
/// (the same result as `roundf`, bit for bit); everything else takes the general path.
#[inline]
fn round_to_low_byte(f: f32) -> u8 {
    if fabsf(f) < 4_194_304.0 {
        let t = f as i32;
        let frac = f - t as f32;
        (t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)) as u8
    } else {
        c_trunc_low_byte(roundf(f))
    }
}

/// Dequantize Q8_0 blocks into `y` (32 values per block).
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
        let d = fp16_bits_to_fp32(xb.d);
        for (out, &q) in yb.iter_mut().zip(&xb.qs) {
            *out = f32::from(q) * d;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q8_1

/// Reference Q8_1 quantizer (ggml's `quantize_row_q8_1_ref`): Q8_0's quants and scale, and
/// `s = sum(q) * d` rounded to f16 (`d` before its own rounding, as ggml computes it).
pub fn quantize_row_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in x.chunks_exact(QK8_1).zip(y) {
        let d = quantize_block_q8(xb, &mut yb.qs);
        let sum: i32 = yb.qs.iter().map(|&q| i32::from(q)).sum();
        yb.d = fp32_to_fp16_bits(d);
        yb.s = fp32_to_fp16_bits(sum as f32 * d);
    }
}

/// Dequantize Q8_1 blocks into `y` (32 values per block): `d * q`; `s` is redundant. ggml
/// declares but never defines `dequantize_row_q8_1`; this is the obvious meaning.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
        let d = fp16_bits_to_fp32(xb.d);
        for (out, &q) in yb.iter_mut().zip(&xb.qs) {
            *out = f32::from(q) * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use bytemuck::Zeroable;

    /// Deterministic pseudo-random values in `-1..1` (xorshift).
    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Quantize then dequantize with the given routines, returning the max abs error and the
    /// block scale bound it should stay under.
    macro_rules! round_trip {
        ($block:ty, $quant:expr, $dequant:expr, $x:expr, $w:expr) => {{
            let x: &[f32] = $x;
            let n_per_row = 64;
            let mut blocks = vec![<$block as bytemuck::Zeroable>::zeroed(); x.len() / 32];
            $quant(x, &mut blocks, n_per_row, $w);
            let mut y = vec![0f32; x.len()];
            $dequant(&blocks, &mut y);
            x.iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        }};
    }

    fn q8_0_rows(x: &[f32], y: &mut [BlockQ8_0], _n: usize, _w: Option<&[f32]>) {
        quantize_row_q8_0_ref(x, y);
    }

    #[test]
    fn round_trip_error_is_bounded_by_the_step() {
        let x = noise(256, 7);
        let w: Vec<f32> = noise(64, 3).iter().map(|v| v.abs() + 0.1).collect();
        // Half a step of each type for values in -1..1, plus f16 rounding of the scale.
        for wt in [None, Some(&w[..])] {
            assert!(
                round_trip!(BlockQ4_0, quantize_q4_0, dequantize_row_q4_0, &x, wt)
                    <= 1.0 / 8.0 + 1e-2
            );
            assert!(
                round_trip!(BlockQ4_1, quantize_q4_1, dequantize_row_q4_1, &x, wt)
                    <= 2.0 / 15.0 + 1e-2
            );
            assert!(
                round_trip!(BlockQ5_0, quantize_q5_0, dequantize_row_q5_0, &x, wt)
                    <= 1.0 / 16.0 + 1e-2
            );
            assert!(
                round_trip!(BlockQ5_1, quantize_q5_1, dequantize_row_q5_1, &x, wt)
                    <= 2.0 / 31.0 + 1e-2
            );
        }
        assert!(
            round_trip!(BlockQ8_0, q8_0_rows, dequantize_row_q8_0, &x, None) <= 1.0 / 127.0 + 1e-3
        );
    }

    #[test]
    fn zero_and_constant_rows_round_trip() {
        let w = [1.0f32; 64];
        // Zero rows are exact; constants are off by at most the f16 rounding of the scale.
        for c in [0.0f32, 0.5, -3.0, 1e-3] {
            let x = [c; 64];
            let tol = c.abs() * 2e-3;
            for wt in [None, Some(&w[..])] {
                assert!(
                    round_trip!(BlockQ4_0, quantize_q4_0, dequantize_row_q4_0, &x, wt) <= tol,
                    "q4_0 {c}"
                );
                assert!(
                    round_trip!(BlockQ4_1, quantize_q4_1, dequantize_row_q4_1, &x, wt) <= tol,
                    "q4_1 {c}"
                );
                assert!(
                    round_trip!(BlockQ5_0, quantize_q5_0, dequantize_row_q5_0, &x, wt) <= tol,
                    "q5_0 {c}"
                );
                assert!(
                    round_trip!(BlockQ5_1, quantize_q5_1, dequantize_row_q5_1, &x, wt) <= tol,
                    "q5_1 {c}"
                );
            }
            assert!(
                round_trip!(BlockQ8_0, q8_0_rows, dequantize_row_q8_0, &x, None) <= tol,
                "q8_0 {c}"
            );
        }
    }

    #[test]
    fn known_bytes_for_a_ramp() {
        // x = j - 16 for j in 0..32: max magnitude -16, so Q4_0's d = 2 and Q8_0's d = 16/127.
        let x: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
        let mut b = [BlockQ4_0::zeroed(); 1];
        quantize_row_q4_0_ref(&x, &mut b);
        assert_eq!(fp16_bits_to_fp32(b[0].d), 2.0);
        // x[0] = -16 -> -8 + 8.5 -> 0; x[16] = 0 -> 8.
        assert_eq!(b[0].qs[0], 0x80);
        let mut b = [BlockQ8_0::zeroed(); 1];
        quantize_row_q8_0_ref(&x, &mut b);
        assert_eq!(b[0].qs[0], -127);
        assert_eq!(b[0].qs[16], 0);
    }

    #[test]
    fn non_finite_and_extreme_inputs_do_not_panic() {
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
            1e-40,
            -1e-45,
            1e-38,
        ];
        let mut x = noise(64, 11);
        for (i, s) in specials.iter().enumerate() {
            x[i * 5] = *s;
        }
        let tiny: Vec<f32> = noise(64, 5).iter().map(|v| v * 1e-39).collect();
        let w = [1.0f32; 64];
        for x in [&x[..], &tiny[..], &[f32::NAN; 64][..]] {
            for wt in [None, Some(&w[..])] {
                let _ = round_trip!(BlockQ4_0, quantize_q4_0, dequantize_row_q4_0, x, wt);
                let _ = round_trip!(BlockQ4_1, quantize_q4_1, dequantize_row_q4_1, x, wt);
                let _ = round_trip!(BlockQ5_0, quantize_q5_0, dequantize_row_q5_0, x, wt);
                let _ = round_trip!(BlockQ5_1, quantize_q5_1, dequantize_row_q5_1, x, wt);
            }
            let _ = round_trip!(BlockQ8_0, q8_0_rows, dequantize_row_q8_0, x, None);
        }
    }

    #[test]
    fn q8_1_matches_q8_0_and_carries_the_scaled_sum() {
        let x = noise(96, 21);
        let mut a = [BlockQ8_0::zeroed(); 3];
        let mut b = [BlockQ8_1::zeroed(); 3];
        quantize_row_q8_0_ref(&x, &mut a);
        quantize_row_q8_1_ref(&x, &mut b);
        for (a, b) in a.iter().zip(&b) {
            assert_eq!((a.d, a.qs), (b.d, b.qs));
            let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
            let d = fp16_bits_to_fp32(b.d);
            let s = fp16_bits_to_fp32(b.s);
            assert!((s - sum as f32 * d).abs() <= 1e-3 * (sum as f32 * d).abs() + 1e-6);
        }
        let mut y = vec![0f32; 96];
        dequantize_row_q8_1(&b, &mut y);
        let mut z = vec![0f32; 96];
        dequantize_row_q8_0(&a, &mut z);
        assert_eq!(y, z);
    }

    #[test]
    fn c_truncation_matches_x86() {
        assert_eq!(c_trunc_low_byte(16.9), 16);
        assert_eq!(c_trunc_low_byte(-0.9), 0);
        assert_eq!(c_trunc_low_byte(-1.5), 0xff);
        assert_eq!(c_trunc_low_byte(200.0), 200);
        assert_eq!(c_trunc_low_byte(f32::INFINITY), 0);
        assert_eq!(c_trunc_low_byte(f32::NAN), 0);
        assert_eq!(c_trunc_low_byte(3e9), 0);
    }
}
