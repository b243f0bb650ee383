//! The kernels for AArch64 CPUs, after ggml's `ggml-cpu/arch/arm/quants.c`: the same file and
//! function names as [`crate::scalar`], which they are tested against (`tests/parity.rs`).
//!
//! Every kernel is written once, generic over `const DOTPROD: bool`, and instantiated twice:
//! the functions of this module (`neon::vec_dot_q4_0_q8_0`, ...) with
//! `#[target_feature(enable = "neon")]` for every AArch64 CPU, and those of [`dotprod`]
//! (`neon::dotprod::vec_dot_q4_0_q8_0`, ...) with `"neon,dotprod"` for CPUs with the
//! dot-product extension (Cortex-A55/A76 and later, Apple M1, Graviton 2, ...). Their one
//! safety condition is that the CPU has those features, which `dispatch.rs` checks before it
//! hands them out. The activation quantizers do not multiply and have one version.
//!
//! **Integer exactness.** Sixteen signed bytes times sixteen signed bytes are summed into four
//! i32 lanes by [`dot`]: with `SDOT` directly (four products per lane), without it by widening
//! multiplies into i16 (`SMULL`: a product of two i8 always fits) and pairwise accumulation
//! into i32 (`SADALP`). Both are exact for any bytes, so every kernel sums the same integers as
//! the oracle; only the order of the f32 additions differs (a vector accumulator of four lanes
//! for the 32-value block types, one running sum per super-block for the K-quants). The
//! K-quant kernels rely on the activation's `bsums` being the sums of its quants, as
//! `quantize_row_q8_k` writes them.
//!
//! **No `vdotq_s32`.** The dot-product intrinsics are still unstable in Rust (`stdarch_neon_
//! dotprod`), so [`sdot`] issues the instruction through `asm!`; the `.arch_extension`
//! directive lets the assembler accept it in the baseline instantiation too, where the branch
//! that holds it is dead (`DOTPROD` is a constant false there) and never runs.

/// `pub unsafe fn $vec_dot(x, y)` and `pub unsafe fn $matvec(w, act, out)` for NEON from the
/// generic `$body::<DOTPROD>(x, y)`, in this module (`DOTPROD = false`, feature `neon`) and in a
/// `dotprod` submodule (`DOTPROD = true`, features `neon,dotprod`).
macro_rules! entry_points {
    ($(($vec_dot:ident, $matvec:ident, $body:ident, $w:ty, $a:ty, $doc:literal)),+ $(,)?) => {
        $(
            #[doc = $doc]
            ///
            /// # Safety
            /// The CPU must support NEON (every AArch64 CPU does).
            #[target_feature(enable = "neon")]
            pub unsafe fn $vec_dot(x: &[$w], y: &[$a]) -> f32 {
                $body::<false>(x, y)
            }

            #[doc = concat!("[`", stringify!($vec_dot), "`] on every row of a matrix: `out[r]` \
                for row `r` of `w`, which holds `out.len()` rows of `act.len()` blocks (a short \
                `w` leaves the last outputs untouched).")]
            ///
            /// # Safety
            /// The CPU must support NEON (every AArch64 CPU does).
            #[target_feature(enable = "neon")]
            pub unsafe fn $matvec(w: &[$w], act: &[$a], out: &mut [f32]) {
                super::rows_of(w, act, out, |row, act| $body::<false>(row, act));
            }
        )+

        /// The same kernels with the dot-product extension (`SDOT`).
        pub mod dotprod {
            use super::*;
            $(
                #[doc = $doc]
                ///
                /// # Safety
                /// The CPU must support NEON and the dot-product extension (`dotprod`).
                #[target_feature(enable = "neon,dotprod")]
                pub unsafe fn $vec_dot(x: &[$w], y: &[$a]) -> f32 {
                    $body::<true>(x, y)
                }

                #[doc = concat!("[`", stringify!($vec_dot), "`] on every row of a matrix.")]
                ///
                /// # Safety
                /// The CPU must support NEON and the dot-product extension (`dotprod`).
                #[target_feature(enable = "neon,dotprod")]
                pub unsafe fn $matvec(w: &[$w], act: &[$a], out: &mut [f32]) {
                    super::super::rows_of(w, act, out, |row, act| $body::<true>(row, act));
                }
            )+
        }
    };
}

mod float;
mod quantize;
mod vec_dot;
mod vec_dot_k;

pub use float::*;
pub use quantize::*;
pub use vec_dot::*;
pub use vec_dot_k::*;

/// The kernels with the dot-product extension: the same names as in [`neon`](self) (the float
/// kernels, which do not multiply integers, are only there).
pub mod dotprod {
    pub use super::vec_dot::dotprod::*;
    pub use super::vec_dot_k::dotprod::*;
}

use bytemuck::Pod;
use core::arch::aarch64::*;
use core::arch::asm;

/// `out[r] = dot(row r of w, act)`: one call of a one-row kernel per weight row (none when the
/// activation is empty: then every output is zero).
#[inline(always)]
fn rows_of<W, A>(w: &[W], act: &[A], out: &mut [f32], dot: impl Fn(&[W], &[A]) -> f32) {
    if act.is_empty() {
        out.fill(0.0);
        return;
    }
    for (o, row) in out.iter_mut().zip(w.chunks_exact(act.len())) {
        *o = dot(row, act);
    }
}

/// The 16 bytes of `v` (a block field, or a 16-byte piece of one) as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn load_i8<T: Pod>(v: &T) -> int8x16_t {
    const { assert!(size_of::<T>() == 16) };
    // SAFETY: `v` is a reference to 16 readable bytes (asserted above); `ld1` has no alignment
    // requirement.
    unsafe { vld1q_s8((v as *const T).cast()) }
}

/// The 16 bytes of `v` (a block field, or a 16-byte piece of one) as unsigned bytes.
#[inline]
#[target_feature(enable = "neon")]
fn load_u8<T: Pod>(v: &T) -> uint8x16_t {
    vreinterpretq_u8_s8(load_i8(v))
}

/// The 8 i16 of `v` (half of Q8_K's `bsums`).
#[inline]
#[target_feature(enable = "neon")]
fn load_i16(v: &[i16; 8]) -> int16x8_t {
    // SAFETY: `v` is a reference to eight readable i16; `ld1` needs only their alignment.
    unsafe { vld1q_s16(v.as_ptr()) }
}

/// Store 16 signed bytes into `v` (a 16-byte piece of a block field).
#[inline]
#[target_feature(enable = "neon")]
fn store_i8(v: &mut [i8; 16], x: int8x16_t) {
    // SAFETY: `v` is a unique reference to 16 writable bytes; `st1` has no alignment
    // requirement.
    unsafe { vst1q_s8(v.as_mut_ptr(), x) }
}

/// Four f16 (bits, one per u32 lane) to f32, exactly: the oracle's branch-free conversion
/// (`scalar::fp16`) lane-wise, exponent and mantissa moved to their f32 places and rebiased by
/// one exact multiply by `2^112` (subnormal halves included), infinities and NaNs given the
/// f32 exponent 255 with their payload. (`FCVTL`'s intrinsic, `vcvt_f32_f16`, is stable only
/// since Rust 1.94, above this crate's MSRV.)
#[inline]
#[target_feature(enable = "neon")]
fn fp16_lanes(h: uint32x4_t) -> float32x4_t {
    const TWO_POW_112: f32 = f32::from_bits((112 + 127) << 23);
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let magnitude = vandq_u32(h, vdupq_n_u32(0x7fff));
    let shifted = vshlq_n_u32::<13>(magnitude);
    let finite = vreinterpretq_u32_f32(vmulq_n_f32(vreinterpretq_f32_u32(shifted), TWO_POW_112));
    let special = vorrq_u32(shifted, vdupq_n_u32(0x7f80_0000));
    let is_special = vcgeq_u32(magnitude, vdupq_n_u32(0x7c00));
    let abs = vbslq_u32(is_special, special, finite);
    vreinterpretq_f32_u32(vorrq_u32(abs, sign))
}

/// Four f16 (bits) to f32, exactly ([`fp16_lanes`]).
#[inline]
#[target_feature(enable = "neon")]
fn fp16x4(h: [u16; 4]) -> float32x4_t {
    let bits =
        u64::from(h[0]) | u64::from(h[1]) << 16 | u64::from(h[2]) << 32 | u64::from(h[3]) << 48;
    fp16_lanes(vmovl_u16(vcreate_u16(bits)))
}

/// One f16 (bits) to f32, exactly.
#[inline]
#[target_feature(enable = "neon")]
fn fp16(h: u16) -> f32 {
    vgetq_lane_f32::<0>(fp16x4([h, 0, 0, 0]))
}

/// `acc + ` the products of `a` and `b` summed in fours: lane `l` adds bytes `4l..4l + 4`
/// with `SDOT`; without it lane `l` adds bytes `2l, 2l + 1, 2l + 8, 2l + 9` (the lanes differ,
/// the total is the same). Exact for any bytes.
#[inline]
#[target_feature(enable = "neon")]
fn dot<const DOTPROD: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if DOTPROD {
        // SAFETY: `DOTPROD` is true only in the `dotprod` kernels, which run only on CPUs with
        // the dot-product extension (their `# Safety` condition).
        unsafe { sdot(acc, a, b) }
    } else {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// `SDOT acc.4s, a.16b, b.16b`.
///
/// # Safety
/// The CPU must support the dot-product extension (`dotprod`).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the caller guarantees the instruction exists; it reads and writes only the
    // three vector registers named.
    unsafe {
        asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Two 16-value halves of a 32-byte block field.
#[inline(always)]
fn halves<T: Pod>(v: &[T; 32]) -> &[[T; 16]; 2] {
    bytemuck::cast_ref(v)
}
