//! Activation quantizers: an f32 row into the vec_dot type of a weight type, once per
//! matrix-vector product (ggml's `from_float` of the vec_dot type in `type_traits_cpu`).
//!
//! Q8_0 and Q8_1 are bit-exact with ggml's `quantize_row_q8_0_ref` / `quantize_row_q8_1_ref`
//! (and so with `formats`) for every input without NaN; with a NaN in a block the block's
//! scale may differ (C's `MAX` forgets a NaN depending on where it sits, the lanes here
//! visit the values in another order). The result is garbage either way.

use formats::quant::{
    fp32_to_bf16_bits, fp32_to_fp16_bits, quantize_row_q8_k_ref, BlockQ8K, BlockQ8_0, BlockQ8_1,
};

/// `x` as whole arrays of `N` values (a ragged tail, which callers never pass, is dropped).
#[inline(always)]
fn arrays<const N: usize>(x: &[f32]) -> &[[f32; N]] {
    bytemuck::cast_slice(&x[..x.len() / N * N])
}

/// C's `(int8_t)roundf(x)` as ggml's x86-64 build computes it: round half away from zero,
/// truncate to i32 (`cvttss2si`: NaN and anything outside the i32 range give `i32::MIN`) and
/// keep the low byte. Branch-free so the block loop vectorizes.
#[inline(always)]
fn round_to_i8(x: f32) -> i8 {
    const LIMIT: f32 = 2_147_483_648.0;
    // Exact: the fraction is representable and, for |x| >= 2^23, zero.
    let t = x as i32;
    let frac = x - t as f32;
    // Wrapping: out of range `t` saturated and `r` is discarded below.
    let r = t
        .wrapping_add(i32::from(frac >= 0.5))
        .wrapping_sub(i32::from(frac <= -0.5));
    let in_range = x.abs() < LIMIT;
    (if in_range { r } else { i32::MIN }) as i8
}

/// One block of ggml's Q8_0 / Q8_1 reference quantizer: `d = amax / 127`, quants
/// `roundf(x * (1 / d))`. Returns `d` (before its rounding to f16).
#[inline(always)]
fn quantize_block_q8(x: &[f32; 32], qs: &mut [i8; 32]) -> f32 {
    // The absolute maximum in 8 lanes (max is order-free without NaN), C's `MAX` per lane.
    let mut lanes = [0f32; 8];
    for chunk in x.chunks_exact(8) {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            let a = v.abs();
            *m = if *m > a { *m } else { a };
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &a| if m > a { m } else { a });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_to_i8(v * id);
    }
    d
}

/// Quantize a row to Q8_0, one block per 32 values (ggml's `quantize_row_q8_0`): the
/// activation format of Q4_0, Q5_0, Q8_0 and IQ4_NL weights.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        yb.d = fp32_to_fp16_bits(quantize_block_q8(xb, &mut yb.qs));
    }
}

/// Quantize a row to Q8_1, one block per 32 values (ggml's `quantize_row_q8_1`): Q8_0 plus
/// `s = d * sum(q)`, the activation format of Q4_1 and Q5_1 weights.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in arrays::<32>(x).iter().zip(y) {
        let d = quantize_block_q8(xb, &mut yb.qs);
        let sum: i32 = yb.qs.iter().map(|&q| i32::from(q)).sum();
        yb.d = fp32_to_fp16_bits(d);
        yb.s = fp32_to_fp16_bits(sum as f32 * d);
    }
}

/// Quantize a row to Q8_K, one block per 256 values (ggml's `quantize_row_q8_K`, which is its
/// reference): the activation format of the K-quants.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    quantize_row_q8_k_ref(x, y);
}

/// Convert a row to f16 bits (round to nearest even, ggml's NaN), the activation format of
/// F16 weights.
pub fn quantize_row_f16(x: &[f32], y: &mut [u16]) {
    for (h, &v) in y.iter_mut().zip(x) {
        *h = fp32_to_fp16_bits(v);
    }
}

/// Convert a row to bf16 bits (round to nearest even, ggml's NaN), the activation format of
/// BF16 weights.
pub fn quantize_row_bf16(x: &[f32], y: &mut [u16]) {
    for (h, &v) in y.iter_mut().zip(x) {
        *h = fp32_to_bf16_bits(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;
    use formats::quant::{quantize_row_q8_0_ref, quantize_row_q8_1_ref};

    #[test]
    fn round_to_i8_is_c_roundf_then_int8() {
        for (x, q) in [
            (0.5f32, 1i8),
            (-0.5, -1),
            (0.499_999_97, 0),
            (-0.499_999_97, 0),
            (1.5, 2),
            (2.5, 3),
            (-2.5, -3),
            (126.5, 127),
            (127.4, 127),
            (127.5, -128),
            (-128.6, 127),
            (3e9, 0),
            (-3e9, 0),
            (f32::INFINITY, 0),
            (f32::NAN, 0),
            (2_000_000_000.0, 0),
        ] {
            assert_eq!(round_to_i8(x), q, "{x}");
        }
    }

    /// Blocks that exercise the rounding and the scale: random magnitudes over many octaves,
    /// ties, constants, zeros, huge and tiny (subnormal-scale) blocks, infinities.
    fn awkward_rows() -> std::vec::Vec<std::vec::Vec<f32>> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut rows = std::vec::Vec::new();
        for octave in [-140i32, -126, -100, -20, -3, 0, 3, 20, 60, 120, 127] {
            let scale = 2f32.powi(octave);
            rows.push(
                (0..96)
                    .map(|_| ((next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale)
                    .collect(),
            );
        }
        // Exact ties after scaling: amax 127 makes d = 1 and x * id = x.
        rows.push((0..96).map(|i| (i as f32 - 48.0) * 0.5 + 0.25).collect());
        let mut ties: std::vec::Vec<f32> = (0..96).map(|i| (i % 64) as f32 - 31.5).collect();
        ties[0] = 127.0;
        ties[32] = -127.0;
        ties[64] = 127.0;
        rows.push(ties);
        rows.push(std::vec![0.0; 96]);
        rows.push(std::vec![-3.25; 96]);
        rows.push(std::vec![f32::MAX; 96]);
        let mut inf = std::vec![1.0f32; 96];
        inf[5] = f32::INFINITY;
        inf[40] = f32::NEG_INFINITY;
        rows.push(inf);
        rows
    }

    #[test]
    fn q8_0_and_q8_1_are_bit_exact_with_the_reference() {
        for x in awkward_rows() {
            let mut a = [BlockQ8_0::zeroed(); 3];
            let mut b = [BlockQ8_0::zeroed(); 3];
            quantize_row_q8_0(&x, &mut a);
            quantize_row_q8_0_ref(&x, &mut b);
            assert_eq!(bytemuck::bytes_of(&a), bytemuck::bytes_of(&b), "{x:?}");
            let mut a = [BlockQ8_1::zeroed(); 3];
            let mut b = [BlockQ8_1::zeroed(); 3];
            quantize_row_q8_1(&x, &mut a);
            quantize_row_q8_1_ref(&x, &mut b);
            assert_eq!(bytemuck::bytes_of(&a), bytemuck::bytes_of(&b), "{x:?}");
        }
    }
}
