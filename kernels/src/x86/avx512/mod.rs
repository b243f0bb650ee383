//! AVX-512 kernels (F, BW, VL and VNNI, on CPUs that also have AVX-VNNI: Sapphire Rapids,
//! Granite Rapids, Zen 5): the prompt's matrix products of the signed 32-value types
//! (`matmul.rs`), two (row, token) pairs to a 512-bit register. Everything else is the AVX2 +
//! AVX-VNNI table's. Every public function is an `unsafe fn` with
//! `#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,avxvnni")]`:
//! the caller (`dispatch.rs`) guarantees the CPU and OS support all of them.

mod matmul;

pub(crate) use matmul::MATMUL;
