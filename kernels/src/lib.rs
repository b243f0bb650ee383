//! Compute kernels for the sintra runtime: pure math on typed slices, no I/O, no allocation.
//!
//! Every matrix-vector product is computed as ggml's CPU backend computes it: the activation
//! row is quantized once into the weight type's *vec_dot type* ([`vec_dot_type`]: Q8_0 for
//! Q4_0, Q8_1 for Q4_1, Q8_K for the K-quants, ...), then each weight row is dotted with it
//! block by block, in integers where the types are integers, and scaled.
//!
//! - [`scalar`] is the oracle: plain Rust written for the auto-vectorizer, the same math (and,
//!   where practical, the same accumulation order) as ggml's `*_generic` functions.
//! - `x86::avx2` (on x86-64) has the same file and function names, written with AVX2, FMA and
//!   F16C intrinsics after ggml's `arch/x86/quants.c`; its tests hold it to the oracle.
//! - `arm::neon` (on AArch64) likewise, in two versions: NEON for every AArch64 CPU and
//!   `arm::neon::dotprod` for CPUs with the `SDOT` instruction; both compute the AVX2 kernels'
//!   f32 values bit for bit (their lanes, FMAs and sum trees), so the two ISAs give the same
//!   logits (`tests/cross_isa.rs` holds them to one golden file; the `neon+dotprod-exact`
//!   table). The default `neon+dotprod` table decodes Q8_0, Q4_0 and Q4_1 with
//!   `arm::neon::fast` and their packed forms, which sum in their own order (within the parity tests' tolerance of the oracle).
//! - `arm::armv7` (on 32-bit ARM) has NEON kernels for six weight types in inline assembly
//!   (Rust's 32-bit NEON intrinsics are unstable), summing in their own order, within the
//!   parity tests' tolerance of the oracle; the rest of that table is the oracle's.
//! - `dispatch.rs` detects the CPU's features once and picks a [`KernelTable`] ([`active`]);
//!   [`use_isa`] / [`force_scalar`] override the choice (the runtime's `SINTRA_KERNELS`).
//! - [`matvec`], [`matmul`], [`vec_dot`], [`quantize_activation`] are the type-erased entry
//!   points the runtime calls on byte slices (and [`KernelTable::attend_f16`], flash attention
//!   over its f16 cache) (GGUF tensor data and its own activation buffers), through
//!   the active table. They check every length and alignment and return a [`KernelError`];
//!   they never panic.
//!
//! **Features.** `std` (off by default; the runtime turns it on) lets the AArch64 dispatch ask
//! the OS whether the CPU has the dot-product extension (and the armv7 one whether it has NEON
//! and VFPv4); without it the crate stays `no_std` and AArch64 runs the baseline NEON kernels,
//! armv7 the scalar ones.
//!
//! **Byte order.** Blocks are read in place (`bytemuck`), so the kernels assume a
//! little-endian target, like GGUF files and every target sintra ships for.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub mod arm;
mod attention;
#[cfg(feature = "cuda")]
pub mod cuda;
mod dispatch;
mod error;
mod matmul;
mod matvec;
pub mod packed;
pub mod scalar;
mod vec;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use attention::{F16Query, MAX_QUERIES};
pub use dispatch::{active, detect, force_scalar, isa_name, table, use_isa, Isa, KernelTable};
pub use error::{KernelError, Operand};
pub use matmul::matmul;
pub use matvec::{
    activation_bytes, matvec, quantize_activation, supported, vec_dot, vec_dot_type, WEIGHT_TYPES,
};
pub use vec::{swiglu_f32, vec_dot_f16, vec_mad_f16, vec_scale_f16};

#[cfg(test)]
mod tests;
