//! Plain floating-point element types: F16 (IEEE binary16) and BF16 (bfloat16), little-endian,
//! one value per element. Conversions round to nearest even like ggml's
//! `ggml_compute_fp32_to_fp16` / `ggml_compute_fp32_to_bf16`, including their NaN handling.

use half::{bf16, f16};

/// f32 -> f16 bits. NaNs become ggml's canonical quiet NaN (`0x7e00`, sign kept), everything
/// else rounds to nearest even (overflow -> infinity, underflow -> subnormal or zero).
#[inline]
pub fn fp32_to_fp16_bits(x: f32) -> u16 {
    if x.is_nan() {
        let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
        return sign | 0x7e00;
    }
    f16::from_f32(x).to_bits()
}

/// f16 bits -> f32 (exact).
#[inline]
pub fn fp16_bits_to_fp32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// f32 -> bf16 bits: round to nearest even; NaNs are forced quiet keeping their top bits, as
/// ggml does; subnormals are kept.
#[inline]
pub fn fp32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> f32 (exact).
#[inline]
pub fn bf16_bits_to_fp32(h: u16) -> f32 {
    bf16::from_bits(h).to_f32()
}

/// Quantize a row to little-endian F16; `dst` holds `2 * src.len()` bytes.
pub fn quantize_row_f16(src: &[f32], dst: &mut [u8]) {
    for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&fp32_to_fp16_bits(s).to_le_bytes());
    }
}

/// Dequantize little-endian F16 bytes.
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = fp16_bits_to_fp32(u16::from_le_bytes([s[0], s[1]]));
    }
}

/// Quantize a row to little-endian BF16; `dst` holds `2 * src.len()` bytes.
pub fn quantize_row_bf16(src: &[f32], dst: &mut [u8]) {
    for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&fp32_to_bf16_bits(s).to_le_bytes());
    }
}

/// Dequantize little-endian BF16 bytes.
pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16_bits_to_fp32(u16::from_le_bytes([s[0], s[1]]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounds_to_nearest_even_and_canonicalises_nan() {
        assert_eq!(fp32_to_fp16_bits(1.0), 0x3c00);
        assert_eq!(fp32_to_fp16_bits(65520.0), 0x7c00); // rounds up to infinity
        assert_eq!(fp32_to_fp16_bits(f32::NAN), 0x7e00);
        assert_eq!(fp32_to_fp16_bits(-f32::NAN), 0xfe00);
        assert_eq!(fp32_to_fp16_bits(5.960_464_5e-8), 0x0001); // smallest subnormal
        assert_eq!(fp16_bits_to_fp32(0x3555), 0.333_251_95);
    }

    #[test]
    fn bf16_matches_ggml_rules() {
        assert_eq!(fp32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is a tie: rounds to even (down).
        assert_eq!(fp32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(fp32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(fp32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(bf16_bits_to_fp32(0x3f80), 1.0);
    }
}
