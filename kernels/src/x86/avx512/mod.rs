//! AVX-512 kernels (F, BW, VL and VNNI): the prompt's matrix products of the signed 32-value
//! types (`matmul.rs`), two (row, token) pairs to a 512-bit register, in two sets: one for
//! CPUs that also have AVX-VNNI (Sapphire Rapids, Granite Rapids, Zen 5; everything else the
//! AVX2 + AVX-VNNI table's), one for those that do not (Ice Lake, Tiger Lake, Rocket Lake,
//! Zen 4; everything else the AVX2 table's). Every public function is an `unsafe fn` with the
//! `#[target_feature]`s its documentation names: the caller (`dispatch.rs`) guarantees the CPU
//! and OS support all of them.

mod matmul;

pub(crate) use matmul::{MATMUL, MATMUL_NO_AVXVNNI};
