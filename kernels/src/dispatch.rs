//! Run-time choice of the kernels: the CPU's features are detected once, the best
//! [`KernelTable`] for them is stored in a static and every entry point goes through it.
//!
//! The crate is `no_std`, so there is no `is_x86_feature_detected!`: on x86-64 the features
//! are read with `cpuid` and `xgetbv` directly ([`avx2_fma_f16c`]). Nothing here reads the
//! environment either; the runtime maps its `SINTRA_KERNELS` variable to [`use_isa`] (see
//! `runtime/src/main.rs`), so tests and users can force the scalar oracle.
//!
//! **Soundness.** The tables hold plain `fn` pointers, the AVX2 ones wrapping `unsafe`
//! `#[target_feature]` functions. Only [`table`] hands out a table, and it hands out the AVX2
//! one only after the CPU was found to have AVX2, FMA and F16C with OS support for the YMM
//! registers: that check is the safety argument of every wrapper in [`AVX2`].
//!
//! On AArch64 NEON is part of the architecture, so the [`NEON`] table is always available;
//! [`NEON_DOTPROD`] is handed out only once the CPU was found to have the dot-product
//! extension ([`cpu_has_dotprod`]): through `std::arch::is_aarch64_feature_detected!` (the
//! OS's `AT_HWCAP`) with the crate's `std` feature, which the runtime enables. A `no_std`
//! build without it cannot ask and keeps to the baseline.

use crate::attention::AttendF16;
use crate::error::KernelError;
use crate::matmul::MatmulKernels;
use crate::scalar;
use core::sync::atomic::{AtomicU8, Ordering};
use formats::quant::{
    BlockIq4Nl, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
};

/// An instruction set a [`KernelTable`] is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// The portable oracle ([`crate::scalar`]), on every CPU.
    Scalar,
    /// [`Isa::Avx2`] without load-time packing: every product in ggml's order, llama.cpp's
    /// logits bit for bit (a test mode, `SINTRA_KERNELS=avx2-exact`).
    Avx2Exact,
    /// [`Isa::Avx512`] without load-time packing (`avx512-exact`).
    Avx512Exact,
    /// [`Isa::Avx2Vnni`] without load-time packing (`avx2+vnni-exact`).
    Avx2VnniExact,
    /// [`Isa::Avx512Vnni`] without load-time packing (`avx512+vnni-exact`).
    Avx512VnniExact,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen and later). Q4_0, Q4_1, Q5_0 and Q8_0
    /// matrices are packed at load time in groups of eight rows (`x86::avx2::packed`: one row
    /// per lane; Q4_0 in llama.cpp's repacked order, the others in their own) and attention
    /// keeps f32 accumulators; within tolerance of llama.cpp's logits, not bit for bit.
    Avx2,
    /// [`Isa::Avx2`] with AVX-512 F, BW and VL but not VNNI (Skylake-X, Skylake-SP): the packed
    /// kernels compiled for EVEX (32 vector registers), the rest AVX2's; its exact form is
    /// [`Isa::Avx2Exact`].
    Avx512Bw,
    /// [`Isa::Avx2`] with AVX-512 F, BW, VL and VNNI but without AVX-VNNI (Ice Lake, Tiger
    /// Lake, Rocket Lake, Zen 4): the prompt's matrix products of Q4_0, Q5_0 and Q8_0 weights
    /// two (row, token) pairs to a 512-bit register with EVEX `vpdpbusd` (same results); the
    /// rest AVX2's.
    Avx512,
    /// [`Isa::Avx2`] with AVX-VNNI (`vpdpbusd` on 256-bit registers: Alder Lake, Sapphire
    /// Rapids, Zen 5 and later): the same kernels but the prompt's matrix products of the
    /// signed 32-value types, whose integer sums it does in one instruction (same results).
    Avx2Vnni,
    /// [`Isa::Avx2Vnni`] with AVX-512 F, BW, VL and VNNI (Sapphire Rapids, Granite Rapids,
    /// Zen 5): the prompt's matrix products of Q4_0, Q5_0 and Q8_0 weights two (row, token)
    /// pairs to a 512-bit register (same results); the rest AVX2 + AVX-VNNI's. CPUs with
    /// AVX-512 VNNI but not AVX-VNNI (Ice Lake, Zen 4) get [`Isa::Avx512`].
    Avx512Vnni,
    /// AArch64 with NEON (Advanced SIMD), on every AArch64 CPU.
    Neon,
    /// [`Isa::NeonDotprod`] in the AVX2 table's arithmetic throughout: the x86 build's logits
    /// bit for bit (the cross-ISA tests' table, `SINTRA_KERNELS=dotprod-exact`).
    NeonDotprodExact,
    /// AArch64 with NEON and the dot-product extension (`SDOT`; Armv8.2 and later): the Q8_0,
    /// Q4_0 and Q4_1 decode kernels in their own, faster order (`arm::neon::fast`), the rest
    /// [`Isa::NeonDotprodExact`]'s.
    NeonDotprod,
    /// [`Isa::NeonDotprod`] with the int8 matrix multiplication extension (`SMMLA`; Armv8.6:
    /// Cortex-A510/A710/X2 and later, Graviton 3, Apple M2): prompt products of packed Q8_0,
    /// Q4_0 and Q4_1 weights two rows by two tokens per instruction (same results).
    NeonI8mm,
    /// 32-bit ARM (armv7) with NEON and VFPv4 (Cortex-A7, A53 and A72 on a 32-bit OS: the
    /// Raspberry Pi 2 and later): Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K in NEON
    /// (`arm::armv7`, inline assembly), the rest the scalar oracle's.
    Armv7Neon,
}

impl Isa {
    /// Every instruction set, in order of preference (last is best).
    pub const ALL: &'static [Isa] = &[
        Isa::Scalar,
        Isa::Avx2Exact,
        Isa::Avx512Exact,
        Isa::Avx2VnniExact,
        Isa::Avx512VnniExact,
        Isa::Avx2,
        Isa::Avx512Bw,
        Isa::Avx512,
        Isa::Avx2Vnni,
        Isa::Avx512Vnni,
        Isa::Neon,
        Isa::NeonDotprodExact,
        Isa::NeonDotprod,
        Isa::NeonI8mm,
        Isa::Armv7Neon,
    ];

    /// The lowercase name (`"scalar"`, `"avx2"`, `"avx512"`, `"avx2+vnni"`, `"avx512+vnni"`,
    /// `"neon"`, `"neon+dotprod"`, ...; an exact test mode ends in `-exact`), as
    /// `SINTRA_KERNELS` and `--version` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Exact => "avx2-exact",
            Isa::Avx512Exact => "avx512-exact",
            Isa::Avx2VnniExact => "avx2+vnni-exact",
            Isa::Avx512VnniExact => "avx512+vnni-exact",
            Isa::Avx2 => "avx2",
            Isa::Avx512Bw => "avx512bw",
            Isa::Avx512 => "avx512",
            Isa::Avx2Vnni => "avx2+vnni",
            Isa::Avx512Vnni => "avx512+vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprodExact => "neon+dotprod-exact",
            Isa::NeonDotprod => "neon+dotprod",
            Isa::NeonI8mm => "neon+i8mm",
            Isa::Armv7Neon => "armv7+neon",
        }
    }

    /// The instruction set called `name` ([`Isa::name`]; `"dotprod"` also names
    /// [`Isa::NeonDotprod`] and `"vnni"` [`Isa::Avx2Vnni`]), if there is one.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name {
            "dotprod" => return Some(Isa::NeonDotprod),
            "dotprod-exact" => return Some(Isa::NeonDotprodExact),
            "i8mm" => return Some(Isa::NeonI8mm),
            "vnni" => return Some(Isa::Avx2Vnni),
            "vnni-exact" => return Some(Isa::Avx2VnniExact),
            _ => {}
        }
        Isa::ALL.iter().copied().find(|isa| isa.name() == name)
    }

    /// The table for the same CPU without the fast path's own summation order (packing, or on
    /// AArch64 the fast kernels): its results are llama.cpp's bit for bit; `self` where that is
    /// already so.
    pub fn exact(self) -> Isa {
        match self {
            Isa::Avx2 | Isa::Avx512Bw => Isa::Avx2Exact,
            Isa::Avx512 => Isa::Avx512Exact,
            Isa::Avx2Vnni => Isa::Avx2VnniExact,
            Isa::Avx512Vnni => Isa::Avx512VnniExact,
            Isa::NeonDotprod | Isa::NeonI8mm => Isa::NeonDotprodExact,
            other => other,
        }
    }

    /// Whether this build has kernels for `self` and the CPU it runs on can execute them.
    pub fn available(self) -> bool {
        table(self).is_some()
    }
}

impl core::fmt::Display for Isa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// `out[r] = dot(row r of w, act)`: `w` holds `out.len()` rows of `act.len()` blocks each.
pub(crate) type Matvec<W, A> = fn(w: &[W], act: &[A], out: &mut [f32]);

/// The kernels of one instruction set: an activation quantizer per vec-dot type and a
/// matrix-vector and a matrix-matrix product per weight type. Get one from [`active`] or [`table`]; its methods
/// (`quantize_activation`, `vec_dot`, `matvec`, in `matvec.rs`) are the checked entry points.
#[derive(Debug)]
pub struct KernelTable {
    pub(crate) isa: Isa,
    pub(crate) quantize_q8_0: fn(&[f32], &mut [BlockQ8_0]),
    pub(crate) quantize_q8_1: fn(&[f32], &mut [BlockQ8_1]),
    pub(crate) quantize_q8_k: fn(&[f32], &mut [BlockQ8K]),
    pub(crate) f32: Matvec<f32, f32>,
    pub(crate) f16: Matvec<u16, u16>,
    pub(crate) bf16: Matvec<u16, u16>,
    pub(crate) q4_0: Matvec<BlockQ4_0, BlockQ8_0>,
    pub(crate) q4_1: Matvec<BlockQ4_1, BlockQ8_1>,
    pub(crate) q5_0: Matvec<BlockQ5_0, BlockQ8_0>,
    pub(crate) q5_1: Matvec<BlockQ5_1, BlockQ8_1>,
    pub(crate) q8_0: Matvec<BlockQ8_0, BlockQ8_0>,
    pub(crate) iq4_nl: Matvec<BlockIq4Nl, BlockQ8_0>,
    pub(crate) q2_k: Matvec<BlockQ2K, BlockQ8K>,
    pub(crate) q3_k: Matvec<BlockQ3K, BlockQ8K>,
    pub(crate) q4_k: Matvec<BlockQ4K, BlockQ8K>,
    pub(crate) q5_k: Matvec<BlockQ5K, BlockQ8K>,
    pub(crate) q6_k: Matvec<BlockQ6K, BlockQ8K>,
    /// The matrix-matrix products (`matmul.rs`).
    pub(crate) matmul: &'static MatmulKernels,
    /// Where llama.cpp multiplies Q4_0, Q4_K and IQ4_NL matrices whose row count is a
    /// multiple of 8 in another order than its `vec_dot` on this instruction set (it repacks
    /// them into 8-row interleaved blocks on AVX2), the kernels that reproduce that order
    /// ([`crate::matvec`] picks them for such matrices); `None` where it does not.
    pub(crate) interleaved: Option<Interleaved>,
    /// Kernels for weights packed at load time in groups of `packed::GROUP` rows
    /// (`crate::packed`); `None`: this table multiplies the file's layout only.
    pub(crate) packed: Option<crate::packed::PackedKernels>,
    pub(crate) vec_mad_f16: fn(&mut [u16], &[u16], f32),
    pub(crate) vec_scale_f16: fn(&mut [u16], f32),
    pub(crate) swiglu_f32: fn(&mut [f32], &[f32]),
    /// Flash attention over an f16 cache (`attention.rs`); `None`: from the steps above.
    pub(crate) attend_f16: Option<AttendF16>,
}

/// Kernels in llama.cpp's 8-row interleaved order ([`KernelTable::interleaved`]).
#[derive(Debug)]
pub(crate) struct Interleaved {
    pub(crate) q4_0: Matvec<BlockQ4_0, BlockQ8_0>,
    pub(crate) q4_k: Matvec<BlockQ4K, BlockQ8K>,
    pub(crate) iq4_nl: Matvec<BlockIq4Nl, BlockQ8_0>,
    /// The matrix-matrix form of `q4_0` (`None`: tiled over it).
    pub(crate) q4_0_matmul: Option<crate::matmul::Matmul<BlockQ4_0, BlockQ8_0>>,
    /// The matrix-matrix form of `q4_k` (`None`: tiled over it).
    pub(crate) q4_k_matmul: Option<crate::matmul::Matmul<BlockQ4K, BlockQ8K>>,
}

impl KernelTable {
    /// The instruction set these kernels are written for.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// One call of a one-row kernel per weight row. A weight row has as many blocks as the
/// activation (their block sizes are equal), which is at least one.
#[inline(always)]
fn dot_rows<W, A>(w: &[W], act: &[A], out: &mut [f32], kernel: impl Fn(&[W], &[A]) -> f32) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(act.len())) {
        *o = kernel(row, act);
    }
}

/// The scalar oracle, on every CPU.
static SCALAR: KernelTable = SCALAR_TABLE;

const SCALAR_TABLE: KernelTable = KernelTable {
    isa: Isa::Scalar,
    quantize_q8_0: scalar::quantize_row_q8_0,
    quantize_q8_1: scalar::quantize_row_q8_1,
    quantize_q8_k: scalar::quantize_row_q8_k,
    f32: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_f32),
    f16: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_f16_f16),
    bf16: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_bf16_bf16),
    q4_0: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q4_0_q8_0),
    q4_1: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q4_1_q8_1),
    q5_0: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q5_0_q8_0),
    q5_1: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q5_1_q8_1),
    q8_0: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q8_0_q8_0),
    iq4_nl: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_iq4_nl_q8_0),
    q2_k: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q2_k_q8_k),
    q3_k: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q3_k_q8_k),
    q4_k: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q4_k_q8_k),
    q5_k: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q5_k_q8_k),
    q6_k: |w, a, out| dot_rows(w, a, out, scalar::vec_dot_q6_k_q8_k),
    matmul: &MatmulKernels::TILED,
    interleaved: None,
    packed: None,
    vec_mad_f16: scalar::vec_mad_f16,
    vec_scale_f16: scalar::vec_scale_f16,
    swiglu_f32: scalar::swiglu_f32,
    attend_f16: None,
};

/// The packed kernels (`crate::packed::PackedKernels`) of one instruction set: `$wrap!` (the
/// table's safe-closure macro) around `x86::avx2`'s eight packed entry points ending in
/// `$suffix` (`matvec_q8_0x8_q8_0$suffix`, ...).
#[cfg(target_arch = "x86_64")]
macro_rules! packed_x86 {
    ($wrap:ident, [$mv8:ident, $mv4:ident, $mm8:ident, $mm4:ident, $mv5:ident, $mm5:ident, $mv41:ident, $mm41:ident]) => {
        crate::packed::PackedKernels {
            q8_0: $wrap!($mv8(w, first, a, out)),
            q4_0: $wrap!($mv4(w, first, a, out)),
            q8_0_mm: $wrap!($mm8(w, first, a, outs)),
            q4_0_mm: $wrap!($mm4(w, first, a, outs)),
            q5_0: Some((
                $wrap!($mv5(w, first, a, out)),
                $wrap!($mm5(w, first, a, outs)),
            )),
            q4_1: Some((
                $wrap!($mv41(w, first, a, out)),
                $wrap!($mm41(w, first, a, outs)),
            )),
        }
    };
}

/// A safe `fn` calling the armv7 NEON kernel `$f` row by row, for [`ARMV7_NEON`] only.
#[cfg(target_arch = "arm")]
macro_rules! armv7 {
    ($f:ident) => {
        |w, a, out| {
            dot_rows(w, a, out, |x, y| {
                // SAFETY: this closure is only reachable through the ARMV7_NEON table, which
                // `table` returns only once `cpu_has_armv7_neon` found NEON, VFPv4 and
                // half-precision conversion.
                unsafe { crate::arm::armv7::$f(x, y) }
            })
        }
    };
}

/// NEON on 32-bit ARM for the types the planner writes most (`arm::armv7`), the scalar oracle
/// for the rest.
#[cfg(target_arch = "arm")]
static ARMV7_NEON: KernelTable = KernelTable {
    isa: Isa::Armv7Neon,
    q4_0: armv7!(vec_dot_q4_0_q8_0),
    q4_1: armv7!(vec_dot_q4_1_q8_1),
    q5_0: armv7!(vec_dot_q5_0_q8_0),
    q8_0: armv7!(vec_dot_q8_0_q8_0),
    q4_k: armv7!(vec_dot_q4_k_q8_k),
    q6_k: armv7!(vec_dot_q6_k_q8_k),
    ..SCALAR_TABLE
};

/// Whether the CPU has NEON, VFPv4 and half-precision conversion (`AT_HWCAP`'s `HWCAP_NEON`,
/// `HWCAP_VFPv4`, `HWCAP_HALF`; Linux only). Without `std` (no C library to ask), no.
#[cfg(target_arch = "arm")]
fn cpu_has_armv7_neon() -> bool {
    #[cfg(all(target_os = "linux", any(test, feature = "std")))]
    {
        const AT_HWCAP: core::ffi::c_ulong = 16;
        const HALF: core::ffi::c_ulong = 1 << 1;
        const NEON: core::ffi::c_ulong = 1 << 12;
        const VFPV4: core::ffi::c_ulong = 1 << 16;
        unsafe extern "C" {
            fn getauxval(kind: core::ffi::c_ulong) -> core::ffi::c_ulong;
        }
        // SAFETY: glibc's and musl's `getauxval` takes any type and returns 0 for one the
        // kernel did not pass; it has no other effect.
        let hwcap = unsafe { getauxval(AT_HWCAP) };
        hwcap & (HALF | NEON | VFPV4) == HALF | NEON | VFPV4
    }
    #[cfg(not(all(target_os = "linux", any(test, feature = "std"))))]
    {
        false
    }
}

/// A safe `fn` calling the AVX2 kernel `$f` with the arguments `$arg`s, for [`AVX2`] only.
#[cfg(target_arch = "x86_64")]
macro_rules! avx2 {
    ($f:ident($($arg:ident),+)) => {
        |$($arg),+| {
            // SAFETY: this closure is only reachable through the AVX2 table, which `table`
            // returns only once `avx2_fma_f16c` found AVX2, FMA and F16C usable.
            unsafe { crate::x86::avx2::$f($($arg),+) }
        }
    };
}

/// AVX2 (with FMA and F16C) where this crate has a kernel, the scalar oracle elsewhere (F32
/// and BF16, which the runtime does not use for its large matrices).
#[cfg(target_arch = "x86_64")]
static AVX2: KernelTable = fast(
    Isa::Avx2,
    packed_x86!(
        avx2,
        [
            matvec_q8_0x8_q8_0,
            matvec_q4_0x8_q8_0,
            matmul_q8_0x8_q8_0,
            matmul_q4_0x8_q8_0,
            matvec_q5_0x8_q8_0,
            matmul_q5_0x8_q8_0,
            matvec_q4_1x8_q8_1,
            matmul_q4_1x8_q8_1
        ]
    ),
    AVX2_TABLE,
);

/// An x86 table's fast form (issue #14): its exact form `exact` with `packed` kernels for weights
/// packed at load time and flash attention with f32 accumulators (`x86::avx2::attend_f16_fast`).
#[cfg(target_arch = "x86_64")]
const fn fast(isa: Isa, packed: crate::packed::PackedKernels, exact: KernelTable) -> KernelTable {
    KernelTable {
        isa,
        packed: Some(packed),
        attend_f16: Some(avx2!(attend_f16_fast(queries, k, v, stride, scale, vkq))),
        ..exact
    }
}

/// [`AVX2`] without packing (`Isa::Avx2Exact`).
#[cfg(target_arch = "x86_64")]
static AVX2_EXACT: KernelTable = AVX2_TABLE;

/// The AVX2 kernels in llama.cpp's 8-row interleaved order.
#[cfg(target_arch = "x86_64")]
const AVX2_INTERLEAVED: Interleaved = Interleaved {
    q4_0: avx2!(gemv_q4_0_8x8_q8_0(w, a, out)),
    q4_k: avx2!(gemv_q4_k_8x8_q8_k(w, a, out)),
    iq4_nl: avx2!(gemv_iq4_nl_8x8_q8_0(w, a, out)),
    q4_0_matmul: Some(avx2!(gemm_q4_0_8x8_q8_0(w, a, outs))),
    q4_k_matmul: Some(avx2!(gemm_q4_k_8x8_q8_k(w, a, outs))),
};

#[cfg(target_arch = "x86_64")]
const AVX2_TABLE: KernelTable = KernelTable {
    isa: Isa::Avx2Exact,
    quantize_q8_0: avx2!(quantize_row_q8_0(x, y)),
    quantize_q8_1: avx2!(quantize_row_q8_1(x, y)),
    quantize_q8_k: avx2!(quantize_row_q8_k(x, y)),
    f32: SCALAR.f32,
    f16: avx2!(matvec_f16_f16(w, a, out)),
    bf16: SCALAR.bf16,
    q4_0: avx2!(matvec_q4_0_q8_0(w, a, out)),
    q4_1: avx2!(matvec_q4_1_q8_1(w, a, out)),
    q5_0: avx2!(matvec_q5_0_q8_0(w, a, out)),
    q5_1: avx2!(matvec_q5_1_q8_1(w, a, out)),
    q8_0: avx2!(matvec_q8_0_q8_0(w, a, out)),
    iq4_nl: avx2!(matvec_iq4_nl_q8_0(w, a, out)),
    q2_k: avx2!(matvec_q2_k_q8_k(w, a, out)),
    q3_k: avx2!(matvec_q3_k_q8_k(w, a, out)),
    q4_k: avx2!(matvec_q4_k_q8_k(w, a, out)),
    q5_k: avx2!(matvec_q5_k_q8_k(w, a, out)),
    q6_k: avx2!(matvec_q6_k_q8_k(w, a, out)),
    matmul: &crate::x86::avx2::MATMUL,
    interleaved: Some(AVX2_INTERLEAVED),
    packed: None,
    vec_mad_f16: avx2!(vec_mad_f16(y, x, v)),
    vec_scale_f16: avx2!(vec_scale_f16(y, v)),
    swiglu_f32: avx2!(swiglu_f32(gate, up)),
    attend_f16: Some(avx2!(attend_f16(queries, k, v, stride, scale, vkq))),
};

/// A safe `fn` calling the AVX-512 BW kernel `$f`, for [`AVX512_BW`] only.
#[cfg(target_arch = "x86_64")]
macro_rules! avx512_bw {
    ($f:ident($($arg:ident),+)) => {
        |$($arg),+| {
            // SAFETY: this closure is only reachable through the AVX512_BW table, which
            // `table` returns only once `cpu_has_avx512bw` found AVX2, FMA, F16C and AVX-512
            // F, BW and VL usable.
            unsafe { crate::x86::avx2::$f($($arg),+) }
        }
    };
}

/// AVX2's table with its packed kernels compiled for AVX-512 BW (EVEX encoding: 32 vector
/// registers), for AVX-512 CPUs without VNNI.
#[cfg(target_arch = "x86_64")]
static AVX512_BW: KernelTable = fast(
    Isa::Avx512Bw,
    packed_x86!(
        avx512_bw,
        [
            matvec_q8_0x8_q8_0_bw,
            matvec_q4_0x8_q8_0_bw,
            matmul_q8_0x8_q8_0_bw,
            matmul_q4_0x8_q8_0_bw,
            matvec_q5_0x8_q8_0_bw,
            matmul_q5_0x8_q8_0_bw,
            matvec_q4_1x8_q8_1_bw,
            matmul_q4_1x8_q8_1_bw
        ]
    ),
    AVX2_TABLE,
);

/// A safe `fn` calling the AVX2 + AVX-VNNI kernel `$f`, for [`AVX2_VNNI`] only.
#[cfg(target_arch = "x86_64")]
macro_rules! avx2_vnni {
    ($f:ident($($arg:ident),+)) => {
        |$($arg),+| {
            // SAFETY: this closure is only reachable through the AVX2_VNNI table, which
            // `table` returns only once `avx2_fma_f16c` and `cpu_has_avxvnni` found AVX2, FMA,
            // F16C and AVX-VNNI usable.
            unsafe { crate::x86::avx2::$f($($arg),+) }
        }
    };
}

/// AVX2's table with AVX-VNNI matrix-matrix products (`x86::avx2::MATMUL_VNNI`, and the Q4_0
/// GEMM in the interleaved order).
#[cfg(target_arch = "x86_64")]
static AVX2_VNNI: KernelTable = fast(Isa::Avx2Vnni, AVX2_VNNI_PACKED, AVX2_VNNI_TABLE);

/// [`AVX2_VNNI`] without packing (`Isa::Avx2VnniExact`).
#[cfg(target_arch = "x86_64")]
static AVX2_VNNI_EXACT: KernelTable = AVX2_VNNI_TABLE;

/// The AVX-VNNI kernels for packed weights.
#[cfg(target_arch = "x86_64")]
const AVX2_VNNI_PACKED: crate::packed::PackedKernels = packed_x86!(
    avx2_vnni,
    [
        matvec_q8_0x8_q8_0_vnni,
        matvec_q4_0x8_q8_0_vnni,
        matmul_q8_0x8_q8_0_vnni,
        matmul_q4_0x8_q8_0_vnni,
        matvec_q5_0x8_q8_0_vnni,
        matmul_q5_0x8_q8_0_vnni,
        matvec_q4_1x8_q8_1_vnni,
        matmul_q4_1x8_q8_1_vnni
    ]
);

/// [`AVX2_VNNI`] as a constant, for the tables built on it.
#[cfg(target_arch = "x86_64")]
const AVX2_VNNI_TABLE: KernelTable = KernelTable {
    isa: Isa::Avx2VnniExact,
    matmul: &crate::x86::avx2::MATMUL_VNNI,
    interleaved: Some(Interleaved {
        q4_0_matmul: Some(avx2_vnni!(gemm_q4_0_8x8_q8_0_vnni(w, a, outs))),
        ..AVX2_INTERLEAVED
    }),
    ..AVX2_TABLE
};

/// A safe `fn` calling the AVX2 + AVX-512 VNNI kernel `$f`, for [`AVX512`] and [`AVX512_VNNI`]
/// only.
#[cfg(target_arch = "x86_64")]
macro_rules! avx512_vnni {
    ($f:ident($($arg:ident),+)) => {
        |$($arg),+| {
            // SAFETY: this closure is only reachable through the AVX512 and AVX512_VNNI
            // tables, which `table` returns only once `avx2_fma_f16c` and `cpu_has_avx512vnni`
            // found AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI usable.
            unsafe { crate::x86::avx2::$f($($arg),+) }
        }
    };
}

/// The AVX-512 VNNI kernels (EVEX `vpdpbusd` on 256-bit registers) for packed weights, of
/// [`AVX512`] and [`AVX512_VNNI`].
#[cfg(target_arch = "x86_64")]
const AVX512_PACKED: crate::packed::PackedKernels = packed_x86!(
    avx512_vnni,
    [
        matvec_q8_0x8_q8_0_evex,
        matvec_q4_0x8_q8_0_evex,
        matmul_q8_0x8_q8_0_evex,
        matmul_q4_0x8_q8_0_evex,
        matvec_q5_0x8_q8_0_evex,
        matmul_q5_0x8_q8_0_evex,
        matvec_q4_1x8_q8_1_evex,
        matmul_q4_1x8_q8_1_evex
    ]
);

/// AVX2's table with AVX-512 VNNI matrix-matrix products for Q4_0, Q5_0 and Q8_0 that need
/// no AVX-VNNI (`x86::avx512::MATMUL_NO_AVXVNNI`).
#[cfg(target_arch = "x86_64")]
static AVX512: KernelTable = fast(Isa::Avx512, AVX512_PACKED, AVX512_TABLE);

/// [`AVX512`] without packing (`Isa::Avx512Exact`).
#[cfg(target_arch = "x86_64")]
static AVX512_EXACT: KernelTable = AVX512_TABLE;

#[cfg(target_arch = "x86_64")]
const AVX512_TABLE: KernelTable = KernelTable {
    isa: Isa::Avx512Exact,
    matmul: &crate::x86::avx512::MATMUL_NO_AVXVNNI,
    interleaved: Some(Interleaved {
        q4_0_matmul: Some(|w, a, outs| {
            // SAFETY: this closure is only reachable through the AVX512 table, which `table`
            // returns only once `avx2_fma_f16c` and `cpu_has_avx512vnni` found AVX2, FMA, F16C
            // and AVX-512 F, BW, VL and VNNI usable.
            unsafe { crate::x86::avx2::gemm_q4_0_8x8_q8_0_evex(w, a, outs) }
        }),
        ..AVX2_INTERLEAVED
    }),
    ..AVX2_TABLE
};

/// AVX2 + AVX-VNNI's table with AVX-512 VNNI matrix-matrix products for Q4_0, Q5_0 and Q8_0
/// (`x86::avx512::MATMUL`); its packed kernels are [`AVX512`]'s (EVEX `vpdpbusd` measured
/// faster than AVX-VNNI's VEX form on Sapphire Rapids).
#[cfg(target_arch = "x86_64")]
static AVX512_VNNI: KernelTable = fast(Isa::Avx512Vnni, AVX512_PACKED, AVX512_VNNI_TABLE);

/// [`AVX512_VNNI`] without packing (`Isa::Avx512VnniExact`).
#[cfg(target_arch = "x86_64")]
static AVX512_VNNI_EXACT: KernelTable = AVX512_VNNI_TABLE;

#[cfg(target_arch = "x86_64")]
const AVX512_VNNI_TABLE: KernelTable = KernelTable {
    isa: Isa::Avx512VnniExact,
    matmul: &crate::x86::avx512::MATMUL,
    ..AVX2_VNNI_TABLE
};

/// A safe `fn` calling the NEON kernel `$f` (`neon::$f`, or `neon::dotprod::$f` when
/// written `dotprod::$f`) with the arguments `$arg`s, for [`NEON`] and [`NEON_DOTPROD`] only.
#[cfg(target_arch = "aarch64")]
macro_rules! neon {
    (dotprod::$f:ident($($arg:ident),+)) => {
        |$($arg),+| {
            // SAFETY: this closure is only reachable through the NEON_DOTPROD table, which
            // `table` returns only once `cpu_has_dotprod` found the dot-product extension
            // (and NEON, which every AArch64 CPU has).
            unsafe { crate::arm::neon::dotprod::$f($($arg),+) }
        }
    };
    ($f:ident($($arg:ident),+)) => {
        |$($arg),+| {
            // SAFETY: every AArch64 CPU has NEON (it is part of the architecture, and of the
            // aarch64 targets' baseline features).
            unsafe { crate::arm::neon::$f($($arg),+) }
        }
    };
}

/// NEON for every kernel, on every AArch64 CPU, with the arithmetic of the AVX2 table's kernels
/// (F32 and BF16: the scalar oracle's, as there), so that both compute the same logits.
#[cfg(target_arch = "aarch64")]
static NEON: KernelTable = KernelTable {
    isa: Isa::Neon,
    quantize_q8_0: neon!(quantize_row_q8_0(x, y)),
    quantize_q8_1: neon!(quantize_row_q8_1(x, y)),
    quantize_q8_k: neon!(quantize_row_q8_k(x, y)),
    f32: neon!(matvec_f32(w, a, out)),
    f16: neon!(matvec_f16_f16(w, a, out)),
    bf16: neon!(matvec_bf16_bf16(w, a, out)),
    q4_0: neon!(matvec_q4_0_q8_0(w, a, out)),
    q4_1: neon!(matvec_q4_1_q8_1(w, a, out)),
    q5_0: neon!(matvec_q5_0_q8_0(w, a, out)),
    q5_1: neon!(matvec_q5_1_q8_1(w, a, out)),
    q8_0: neon!(matvec_q8_0_q8_0(w, a, out)),
    iq4_nl: neon!(matvec_iq4_nl_q8_0(w, a, out)),
    q2_k: neon!(matvec_q2_k_q8_k(w, a, out)),
    q3_k: neon!(matvec_q3_k_q8_k(w, a, out)),
    q4_k: neon!(matvec_q4_k_q8_k(w, a, out)),
    q5_k: neon!(matvec_q5_k_q8_k(w, a, out)),
    q6_k: neon!(matvec_q6_k_q8_k(w, a, out)),
    // Tiled over the matrix-vector kernels until NEON has unpack-once kernels (`matmul.rs`).
    matmul: &MatmulKernels::TILED,
    interleaved: None,
    packed: None,
    vec_mad_f16: neon!(vec_mad_f16(y, x, v)),
    vec_scale_f16: neon!(vec_scale_f16(y, v)),
    swiglu_f32: neon!(swiglu_f32(gate, up)),
    attend_f16: None,
};

/// NEON with `SDOT` for the integer products, in the AVX2 table's arithmetic (the x86 build's
/// logits bit for bit); the quantizers and float kernels, which have no integer products, are
/// [`NEON`]'s.
#[cfg(target_arch = "aarch64")]
static NEON_DOTPROD_EXACT: KernelTable = NEON_DOTPROD_EXACT_TABLE;

#[cfg(target_arch = "aarch64")]
const NEON_DOTPROD_EXACT_TABLE: KernelTable = KernelTable {
    isa: Isa::NeonDotprodExact,
    quantize_q8_0: NEON.quantize_q8_0,
    quantize_q8_1: NEON.quantize_q8_1,
    quantize_q8_k: NEON.quantize_q8_k,
    f32: NEON.f32,
    f16: NEON.f16,
    bf16: NEON.bf16,
    q4_0: neon!(dotprod::matvec_q4_0_q8_0(w, a, out)),
    q4_1: neon!(dotprod::matvec_q4_1_q8_1(w, a, out)),
    q5_0: neon!(dotprod::matvec_q5_0_q8_0(w, a, out)),
    q5_1: neon!(dotprod::matvec_q5_1_q8_1(w, a, out)),
    q8_0: neon!(dotprod::matvec_q8_0_q8_0(w, a, out)),
    iq4_nl: neon!(dotprod::matvec_iq4_nl_q8_0(w, a, out)),
    q2_k: neon!(dotprod::matvec_q2_k_q8_k(w, a, out)),
    q3_k: neon!(dotprod::matvec_q3_k_q8_k(w, a, out)),
    q4_k: neon!(dotprod::matvec_q4_k_q8_k(w, a, out)),
    q5_k: neon!(dotprod::matvec_q5_k_q8_k(w, a, out)),
    q6_k: neon!(dotprod::matvec_q6_k_q8_k(w, a, out)),
    matmul: &MatmulKernels::TILED,
    interleaved: None,
    packed: None,
    vec_mad_f16: NEON.vec_mad_f16,
    vec_scale_f16: NEON.vec_scale_f16,
    swiglu_f32: NEON.swiglu_f32,
    attend_f16: None,
};

/// The default on CPUs with the dot-product extension: [`NEON_DOTPROD_EXACT`] with Q8_0, Q4_0
/// and Q4_1 kernels free of AVX2's float order: `arm::neon::fast` on the file's layout (four rows'
/// block sums folded into one register) and `arm::neon::packed` on weights the runtime packed
/// at load time; within the parity tests' tolerance of the scalar oracle, not bit-identical to
/// the x86 build.
#[cfg(target_arch = "aarch64")]
static NEON_DOTPROD: KernelTable = NEON_DOTPROD_TABLE;

/// [`NEON_DOTPROD`]'s kernels for packed weights (`arm::neon::packed`; [`NEON_I8MM`] shares
/// its matrix-vector ones).
#[cfg(target_arch = "aarch64")]
const NEON_DOTPROD_PACKED: crate::packed::PackedKernels = crate::packed::PackedKernels {
    q8_0: |w, first, a, out| {
        // SAFETY: these closures are only reachable through the NEON_DOTPROD and NEON_I8MM
        // tables, which `table` returns only once `cpu_has_dotprod` found the dot-product
        // extension.
        unsafe { crate::arm::neon::packed::matvec_q8_0x4_q8_0(w, first, a, out) }
    },
    q4_0: |w, first, a, out| {
        // SAFETY: as for `q8_0` above.
        unsafe { crate::arm::neon::packed::matvec_q4_0x4_q8_0(w, first, a, out) }
    },
    q8_0_mm: |w, first, a, outs| {
        // SAFETY: as for `q8_0` above.
        unsafe { crate::arm::neon::packed::matmul_q8_0x4_q8_0(w, first, a, outs) }
    },
    q4_0_mm: |w, first, a, outs| {
        // SAFETY: as for `q8_0` above.
        unsafe { crate::arm::neon::packed::matmul_q4_0x4_q8_0(w, first, a, outs) }
    },
    q5_0: None,
    q4_1: Some((
        |w, first, a, out| {
            // SAFETY: as for `q8_0` above.
            unsafe { crate::arm::neon::packed::matvec_q4_1x4_q8_1(w, first, a, out) }
        },
        |w, first, a, outs| {
            // SAFETY: as for `q8_0` above.
            unsafe { crate::arm::neon::packed::matmul_q4_1x4_q8_1(w, first, a, outs) }
        },
    )),
};

#[cfg(target_arch = "aarch64")]
const NEON_DOTPROD_TABLE: KernelTable = KernelTable {
    isa: Isa::NeonDotprod,
    q4_0: |w, a, out| {
        // SAFETY: this closure is only reachable through the NEON_DOTPROD table, which `table`
        // returns only once `cpu_has_dotprod` found the dot-product extension.
        unsafe { crate::arm::neon::fast::matvec_q4_0_q8_0(w, a, out) }
    },
    q8_0: |w, a, out| {
        // SAFETY: as for `q4_0` above.
        unsafe { crate::arm::neon::fast::matvec_q8_0_q8_0(w, a, out) }
    },
    q4_1: |w, a, out| {
        // SAFETY: as for `q4_0` above.
        unsafe { crate::arm::neon::fast::matvec_q4_1_q8_1(w, a, out) }
    },
    packed: Some(NEON_DOTPROD_PACKED),
    ..NEON_DOTPROD_EXACT_TABLE
};

/// [`NEON_DOTPROD`] with `SMMLA` prompt products of packed weights
/// (`arm::neon::packed::matmul_*_i8mm`).
#[cfg(target_arch = "aarch64")]
static NEON_I8MM: KernelTable = KernelTable {
    isa: Isa::NeonI8mm,
    packed: Some(crate::packed::PackedKernels {
        q8_0_mm: |w, first, a, outs| {
            // SAFETY: this closure is only reachable through the NEON_I8MM table, which `table`
            // returns only once `cpu_has_dotprod` and `cpu_has_i8mm` found both extensions.
            unsafe { crate::arm::neon::packed::matmul_q8_0x4_q8_0_i8mm(w, first, a, outs) }
        },
        q4_0_mm: |w, first, a, outs| {
            // SAFETY: as for `q8_0_mm` above.
            unsafe { crate::arm::neon::packed::matmul_q4_0x4_q8_0_i8mm(w, first, a, outs) }
        },
        q4_1: Some((
            |w, first, a, out| {
                // SAFETY: as for `q8_0_mm` above (the dot-product extension is enough).
                unsafe { crate::arm::neon::packed::matvec_q4_1x4_q8_1(w, first, a, out) }
            },
            |w, first, a, outs| {
                // SAFETY: as for `q8_0_mm` above.
                unsafe { crate::arm::neon::packed::matmul_q4_1x4_q8_1_i8mm(w, first, a, outs) }
            },
        )),
        ..NEON_DOTPROD_PACKED
    }),
    ..NEON_DOTPROD_TABLE
};

/// Whether the CPU has the int8 matrix multiplication extension, asked of the OS once (with
/// `std`; a `no_std` build cannot ask and says no).
#[cfg(target_arch = "aarch64")]
fn cpu_has_i8mm() -> bool {
    #[cfg(any(test, feature = "std"))]
    {
        std::arch::is_aarch64_feature_detected!("i8mm")
    }
    #[cfg(not(any(test, feature = "std")))]
    {
        false
    }
}

/// Whether the CPU has the dot-product extension, asked of the OS once (with `std`; a
/// `no_std` build cannot ask and says no).
#[cfg(target_arch = "aarch64")]
fn cpu_has_dotprod() -> bool {
    #[cfg(any(test, feature = "std"))]
    {
        // The standard library caches the answer (read from `AT_HWCAP` on Linux).
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(any(test, feature = "std")))]
    {
        false
    }
}

/// Whether the CPU has AVX2, FMA and F16C and the OS saves the YMM registers (without the
/// latter the instructions fault even where `cpuid` lists them).
#[cfg(target_arch = "x86_64")]
// `__cpuid` is a safe function since Rust 1.87 and an unsafe one before.
#[allow(unused_unsafe)]
fn avx2_fma_f16c() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    const FMA: u32 = 1 << 12;
    const OSXSAVE: u32 = 1 << 27;
    const AVX: u32 = 1 << 28;
    const F16C: u32 = 1 << 29;
    const AVX2: u32 = 1 << 5;
    // XCR0 bits 1 and 2: the OS saves the SSE and AVX (upper YMM) state.
    const XCR0_SSE_AVX: u64 = 0b110;

    // SAFETY: `cpuid` exists on every x86-64 CPU; leaf 0 is always valid.
    let max_leaf = unsafe { __cpuid(0) }.eax;
    if max_leaf < 7 {
        return false;
    }
    // SAFETY: as above; leaf 1 <= max_leaf.
    let ecx = unsafe { __cpuid(1) }.ecx;
    let leaf1 = FMA | OSXSAVE | AVX | F16C;
    if ecx & leaf1 != leaf1 {
        return false;
    }
    // SAFETY: OSXSAVE is set, so the OS enabled `xgetbv` (the `xsave` feature it needs).
    if unsafe { xcr0() } & XCR0_SSE_AVX != XCR0_SSE_AVX {
        return false;
    }
    // SAFETY: as above; leaf 7 <= max_leaf.
    unsafe { __cpuid_count(7, 0) }.ebx & AVX2 != 0
}

/// Whether the CPU has AVX-VNNI (CPUID.(EAX=7,ECX=1):EAX bit 4), asked once. Its registers
/// are AVX's, whose OS support [`avx2_fma_f16c`] checks.
#[cfg(target_arch = "x86_64")]
// `__cpuid` is a safe function since Rust 1.87 and an unsafe one before.
#[allow(unused_unsafe)]
fn cpu_has_avxvnni() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    static HAS: AtomicU8 = AtomicU8::new(UNKNOWN);
    asked_once(&HAS, || {
        // SAFETY: `cpuid` exists on every x86-64 CPU; leaf 0 is always valid.
        let max_leaf = unsafe { __cpuid(0) }.eax;
        // SAFETY: leaf 7 is asked only where it exists, its subleaf 1 only where leaf 7
        // subleaf 0 says it does (EAX: the highest subleaf).
        max_leaf >= 7
            && unsafe { __cpuid_count(7, 0) }.eax >= 1
            && unsafe { __cpuid_count(7, 1) }.eax & (1 << 4) != 0
    })
}

/// Whether the CPU has AVX-512 F, BW, VL and VNNI (CPUID.(EAX=7,ECX=0): EBX bits 16, 30, 31,
/// ECX bit 11) and the OS saves the opmask and ZMM registers (XCR0 bits 5 to 7), asked once.
/// Callers check AVX2 ([`avx2_fma_f16c`], which also makes `xgetbv` usable) first.
#[cfg(target_arch = "x86_64")]
// `__cpuid` is a safe function since Rust 1.87 and an unsafe one before.
#[allow(unused_unsafe)]
fn cpu_has_avx512vnni() -> bool {
    use core::arch::x86_64::__cpuid_count;
    const EBX: u32 = (1 << 16) | (1 << 30) | (1 << 31);
    const ECX: u32 = 1 << 11;
    const XCR0_ZMM: u64 = 0b1110_0000;
    static HAS: AtomicU8 = AtomicU8::new(UNKNOWN);
    asked_once(&HAS, || {
        if !cpu_has_avx2() {
            return false;
        }
        // SAFETY: `cpu_has_avx2` found leaf 7 (and OSXSAVE, which makes `xgetbv` usable).
        let leaf7 = unsafe { __cpuid_count(7, 0) };
        // SAFETY: as above.
        leaf7.ebx & EBX == EBX && leaf7.ecx & ECX == ECX && unsafe { xcr0() } & XCR0_ZMM == XCR0_ZMM
    })
}

/// Whether the CPU has AVX2, FMA, F16C and AVX-512 F, BW and VL and the OS saves the ZMM
/// registers.
#[cfg(target_arch = "x86_64")]
// `__cpuid_count` is a safe function since Rust 1.87 and an unsafe one before.
#[allow(unused_unsafe)]
fn cpu_has_avx512bw() -> bool {
    use core::arch::x86_64::__cpuid_count;
    const EBX: u32 = (1 << 16) | (1 << 30) | (1 << 31);
    const XCR0_ZMM: u64 = 0b1110_0000;
    static HAS: AtomicU8 = AtomicU8::new(UNKNOWN);
    asked_once(&HAS, || {
        if !cpu_has_avx2() {
            return false;
        }
        // SAFETY: `cpu_has_avx2` found leaf 7 (and OSXSAVE, which makes `xgetbv` usable).
        let leaf7 = unsafe { __cpuid_count(7, 0) };
        // SAFETY: as above.
        leaf7.ebx & EBX == EBX && unsafe { xcr0() } & XCR0_ZMM == XCR0_ZMM
    })
}

/// A CPU feature's answer kept in `cell` ([`UNKNOWN`] until `ask` is first called).
#[cfg(target_arch = "x86_64")]
fn asked_once(cell: &AtomicU8, ask: impl FnOnce() -> bool) -> bool {
    match cell.load(Ordering::Relaxed) {
        UNKNOWN => {
            let has = ask();
            cell.store(if has { YES } else { NO }, Ordering::Relaxed);
            has
        }
        state => state == YES,
    }
}

/// The states of an [`asked_once`] cell.
#[cfg(target_arch = "x86_64")]
const UNKNOWN: u8 = 0;
#[cfg(target_arch = "x86_64")]
const NO: u8 = 1;
#[cfg(target_arch = "x86_64")]
const YES: u8 = 2;

/// The extended control register 0 (which register states the OS saves).
///
/// # Safety
/// The CPU must support `xgetbv` and the OS must have enabled it (CPUID.1:ECX.OSXSAVE).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller guarantees `xgetbv` is usable.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

/// The table for `isa` if this build has it and the CPU can run it.
pub fn table(isa: Isa) -> Option<&'static KernelTable> {
    match isa {
        Isa::Scalar => Some(&SCALAR),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if cpu_has_avx2() => Some(&AVX2),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Exact if cpu_has_avx2() => Some(&AVX2_EXACT),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Bw if cpu_has_avx512bw() => Some(&AVX512_BW),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if cpu_has_avx2() && cpu_has_avx512vnni() => Some(&AVX512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Exact if cpu_has_avx2() && cpu_has_avx512vnni() => Some(&AVX512_EXACT),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni if cpu_has_avx2() && cpu_has_avxvnni() => Some(&AVX2_VNNI),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2VnniExact if cpu_has_avx2() && cpu_has_avxvnni() => Some(&AVX2_VNNI_EXACT),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if cpu_has_avx2() && cpu_has_avxvnni() && cpu_has_avx512vnni() => {
            Some(&AVX512_VNNI)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512VnniExact if cpu_has_avx2() && cpu_has_avxvnni() && cpu_has_avx512vnni() => {
            Some(&AVX512_VNNI_EXACT)
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => Some(&NEON),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDotprodExact if cpu_has_dotprod() => Some(&NEON_DOTPROD_EXACT),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDotprod if cpu_has_dotprod() => Some(&NEON_DOTPROD),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonI8mm if cpu_has_dotprod() && cpu_has_i8mm() => Some(&NEON_I8MM),
        #[cfg(target_arch = "arm")]
        Isa::Armv7Neon if cpu_has_armv7_neon() => Some(&ARMV7_NEON),
        _ => None,
    }
}

/// [`avx2_fma_f16c`], asked once (`cpuid` is slow under virtualization).
#[cfg(target_arch = "x86_64")]
fn cpu_has_avx2() -> bool {
    static HAS_AVX2: AtomicU8 = AtomicU8::new(UNKNOWN);
    asked_once(&HAS_AVX2, avx2_fma_f16c)
}

/// The best instruction set this build has kernels for that the CPU can run.
pub fn detect() -> Isa {
    Isa::ALL
        .iter()
        .rev()
        .copied()
        .find(|&isa| isa.available())
        .unwrap_or(Isa::Scalar)
}

/// The instruction set in use, an index into [`Isa::ALL`] plus one; 0 until the first call
/// (which detects).
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The table every free entry point ([`crate::matvec`], ...) uses: [`detect`]'s choice
/// unless [`use_isa`] picked another.
pub fn active() -> &'static KernelTable {
    let isa = match ACTIVE.load(Ordering::Relaxed) {
        0 => {
            let isa = detect();
            store(isa);
            isa
        }
        i => Isa::ALL[usize::from(i) - 1],
    };
    // Stored only after `table` accepted it (or chosen by `detect`, which asks `table`).
    table(isa).unwrap_or(&SCALAR)
}

fn store(isa: Isa) {
    let i = Isa::ALL.iter().position(|&x| x == isa).unwrap_or(0);
    ACTIVE.store(i as u8 + 1, Ordering::Relaxed);
}

/// Make `isa` the instruction set of the free entry points, for the whole process (threads
/// already inside a kernel finish with the old one), or [`KernelError::IsaUnavailable`] if
/// this build or CPU cannot run it.
pub fn use_isa(isa: Isa) -> Result<(), KernelError> {
    if table(isa).is_none() {
        return Err(KernelError::IsaUnavailable(isa));
    }
    store(isa);
    Ok(())
}

/// Use the scalar oracle from now on ([`use_isa`]`(Isa::Scalar)`, which cannot fail).
pub fn force_scalar() {
    store(Isa::Scalar);
}

/// The name of the instruction set in use (reported by `sintra-rt --version` and the bench
/// output): `"avx2"`, `"neon"`, `"neon+dotprod"` or `"scalar"`.
pub fn isa_name() -> &'static str {
    active().isa.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name reads back as its instruction set (`SINTRA_KERNELS` and `--version` use
    /// them), `dotprod` is the short name of NEON with the dot-product extension, and an
    /// instruction set this build or CPU lacks is refused by name.
    #[test]
    fn names_round_trip_and_unavailable_sets_are_refused() {
        for &isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name("dotprod"), Some(Isa::NeonDotprod));
        assert_eq!(Isa::from_name("sse2"), None);
        assert!(Isa::Scalar.available());
        // Only refusals and the detected choice: other tests in this process use the active
        // table and must not see it change under them.
        for &isa in Isa::ALL.iter().filter(|isa| !isa.available()) {
            assert_eq!(use_isa(isa), Err(KernelError::IsaUnavailable(isa)));
        }
        use_isa(detect()).unwrap();
        assert_eq!(isa_name(), detect().name());
        let arm = cfg!(target_arch = "aarch64");
        assert_eq!(Isa::Neon.available(), arm);
        assert!(!Isa::NeonDotprod.available() || arm);
        assert_eq!(
            Isa::NeonDotprodExact.available(),
            Isa::NeonDotprod.available()
        );
        assert_eq!(Isa::from_name("dotprod-exact"), Some(Isa::NeonDotprodExact));
        assert_eq!(Isa::from_name("i8mm"), Some(Isa::NeonI8mm));
        assert!(!Isa::NeonI8mm.available() || Isa::NeonDotprod.available());
    }
}
