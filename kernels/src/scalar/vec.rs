//! Element-wise vector operations of the forward pass outside the matrix products (ggml's
//! `vec.h`): the f16 value accumulator of flash attention and the SiLU-gated unit. The AVX2
//! twins reproduce ggml's SIMD arithmetic bit for bit; these are the readable oracle.

use super::fp16;
use formats::quant::fp32_to_fp16_bits;

extern "C" {
    /// The C library's `expf`, which `f32::exp` calls where `std` is linked (this crate is
    /// `no_std`) and which ggml's scalar code (`ggml_silu_f32`, flash attention) calls too.
    #[link_name = "expf"]
    fn libm_expf(x: f32) -> f32;
}

/// `e^x` by the C library (see [`libm_expf`]).
pub fn expf(x: f32) -> f32 {
    // SAFETY: `expf` is a pure function of its argument, defined for every f32.
    unsafe { libm_expf(x) }
}

/// `y[i] = f16(y[i] + x[i] * v)` over halves (ggml's `ggml_vec_mad_f16`: the f16 V
/// accumulator of flash attention, rounded back to f16 at every step).
pub fn vec_mad_f16(y: &mut [u16], x: &[u16], v: f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = fp32_to_fp16_bits(fp16(*y) + fp16(x) * v);
    }
}

/// `y[i] = f16(y[i] * v)` over halves (ggml's `ggml_vec_scale_f16`).
pub fn vec_scale_f16(y: &mut [u16], v: f32) {
    for y in y.iter_mut() {
        *y = fp32_to_fp16_bits(fp16(*y) * v);
    }
}

/// `gate[i] = silu(gate[i]) * up[i]`, `silu(x) = x / (1 + e^-x)` (ggml's `swiglu`).
pub fn swiglu_f32(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + expf(-*g)) * u;
    }
}
