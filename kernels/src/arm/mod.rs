//! Arm kernels, one module per instruction-set level. AArch64 always has NEON (Advanced SIMD),
//! so [`neon`] is the baseline there; its `dotprod` variants (the `SDOT` instruction of
//! Armv8.2's dot-product extension) are chosen at run time by `dispatch.rs` where the CPU has
//! the feature. Compiled with `#[target_feature]`, never `-C target-cpu`. On 32-bit ARM
//! (armv7), [`armv7`] has NEON kernels in inline assembly, chosen where the kernel reports NEON
//! and VFPv4.

#[cfg(target_arch = "arm")]
pub mod armv7;
#[cfg(target_arch = "aarch64")]
pub mod neon;
