//! Compute kernels for the sintra runtime: pure math on typed slices, no I/O, no allocation.
//!
//! Every matrix-vector product is computed as ggml's CPU backend computes it: the activation
//! row is quantized once into the weight type's *vec_dot type* ([`vec_dot_type`]: Q8_0 for
//! Q4_0, Q8_1 for Q4_1, Q8_K for the K-quants, ...), then each weight row is dotted with it
//! block by block, in integers where the types are integers, and scaled.
//!
//! - [`scalar`] is the oracle: plain Rust written for the auto-vectorizer, the same math (and,
//!   where practical, the same accumulation order) as ggml's `*_generic` functions. The SIMD
//!   folders that come later use the same file and function names and are tested against it.
//! - [`matvec`], [`vec_dot`], [`quantize_activation`] are the type-erased entry points the
//!   runtime calls on byte slices (GGUF tensor data and its own activation buffers). They check
//!   every length and alignment and return a [`KernelError`]; they never panic.
//!
//! **Byte order.** Blocks are read in place (`bytemuck`), so the kernels assume a
//! little-endian target, like GGUF files and every target sintra ships for.
#![cfg_attr(not(test), no_std)]

mod error;
mod matvec;
pub mod scalar;

pub use error::{KernelError, Operand};
pub use matvec::{
    activation_bytes, matvec, quantize_activation, supported, vec_dot, vec_dot_type, WEIGHT_TYPES,
};

/// The instruction set the kernels in use are written for (reported by `sintra-rt --version`
/// and the bench output). Only the scalar oracle exists so far; issue #4 adds run-time dispatch.
pub fn isa_name() -> &'static str {
    "scalar"
}

#[cfg(test)]
mod tests;
