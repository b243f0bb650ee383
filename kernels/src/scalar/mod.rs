//! The scalar kernels: the oracle every SIMD folder (`x86/avx2`, `arm/neon`) is tested
//! against, and the fallback on CPUs without one. Same file and function names as those
//! folders: `quantize.rs` (activation quantizers), `vec_dot.rs` (32-value block types and
//! floats), `vec_dot_k.rs` (K-quants), `vec.rs` (element-wise steps of attention and the FFN).
//!
//! The typed functions trust their shapes: `x` and `y` hold the same number of blocks (values,
//! for the float types), and quantizer outputs hold one block per input block. A mismatch is
//! a caller's bug, never undefined behaviour: the dot products assert it in debug builds,
//! otherwise the shorter length wins. The checked entry points in the crate root establish
//! the shapes.
//!
//! Inner loops run over fixed-size arrays with constant trip counts, so the compiler removes
//! bounds checks and vectorizes them for the baseline target (SSE2, NEON) without any
//! `target-cpu` flag.

mod quantize;
mod vec;
mod vec_dot;
mod vec_dot_k;

pub use quantize::*;
pub use vec::*;
pub use vec_dot::*;
pub use vec_dot_k::*;
// The scale unpacking, shared with the SIMD kernels.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
/// The legacy types' integer block sums, for the packed kernels' test model.
#[cfg(test)]
pub(crate) use vec_dot::{dot_5bit, dot_nibbles};
pub(crate) use vec_dot_k::scales_mins_k4;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) use vec_dot_k::scales_q3_k;

/// f16 bits to f32, exactly (ggml's `GGML_CPU_FP16_TO_FP32`), without branches so loops over
/// halves vectorize: the exponent and mantissa are moved to their f32 places, which reads as
/// the value times `2^-112`, and one exact multiply by `2^112` rebiases it (subnormal halves
/// included). Infinities and NaNs (exponent 31) get the f32 exponent 255 instead, payload kept.
/// `formats::quant::fp16_bits_to_fp32` (the `half` crate) gives the same values but takes a
/// branchy software path, or a run-time CPU check per call, on targets without F16C.
#[inline(always)]
pub(crate) fn fp16(h: u16) -> f32 {
    const TWO_POW_112: f32 = f32::from_bits((112 + 127) << 23);
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7fff;
    let finite = f32::from_bits(magnitude << 13) * TWO_POW_112;
    let special = f32::from_bits((magnitude << 13) | 0x7f80_0000);
    let abs = if magnitude >= 0x7c00 { special } else { finite };
    f32::from_bits(abs.to_bits() | sign)
}

/// bf16 bits to f32, exactly: the top half of an f32.
#[inline(always)]
fn bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::quant::{bf16_bits_to_fp32, fp16_bits_to_fp32};

    #[test]
    fn half_conversions_are_exact_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let (a, b) = (fp16(h), fp16_bits_to_fp32(h));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{h:#06x}"
            );
            let (a, b) = (bf16(h), bf16_bits_to_fp32(h));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{h:#06x}"
            );
        }
    }
}
