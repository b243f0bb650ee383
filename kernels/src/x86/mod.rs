//! x86-64 kernels, one module per instruction-set level. Each is compiled into every x86-64
//! build (with `#[target_feature]`, never `-C target-cpu`) and chosen at run time by
//! `dispatch.rs`.

pub mod avx2;
pub mod avx512;
