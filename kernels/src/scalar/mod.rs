//! The scalar kernels: the oracle every SIMD folder (`x86/avx2`, `arm/neon`) is tested
//! against, and the fallback on CPUs without one. Same file and function names as those
//! folders: `quantize.rs` (activation quantizers), `vec_dot.rs` (32-value block types and
//! floats), `vec_dot_k.rs` (K-quants).
//!
//! The typed functions trust their shapes: `x` and `y` hold the same number of blocks (values,
//! for the float types), and quantizer outputs hold one block per input block. A mismatch is
//! not undefined behaviour, only a short result (the extra blocks are ignored). The checked
//! entry points in the crate root establish the shapes.
//!
//! Inner loops run over fixed-size arrays with constant trip counts, so the compiler removes
//! bounds checks and vectorizes them for the baseline target (SSE2, NEON) without any
//! `target-cpu` flag.

mod quantize;
mod vec_dot;
mod vec_dot_k;

pub use quantize::*;
pub use vec_dot::*;
pub use vec_dot_k::*;
// The scale unpacking, shared with the SIMD kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) use vec_dot_k::{scales_mins_k4, scales_q3_k};

use formats::quant::fp16_bits_to_fp32;

/// f16 bits to f32 (exact), ggml's `GGML_CPU_FP16_TO_FP32`.
#[inline(always)]
fn fp16(h: u16) -> f32 {
    fp16_bits_to_fp32(h)
}
