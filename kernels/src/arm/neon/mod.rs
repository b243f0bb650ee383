//! The kernels for AArch64 CPUs: the same file and function names as [`crate::scalar`], which
//! they are tested against (`tests/parity.rs`), and **the same f32 arithmetic as the AVX2
//! kernels** (`x86::avx2`, ggml's x86 order), so that an AArch64 build computes the x86 build's
//! logits bit for bit (issue #5; `tests/cross_isa.rs` holds both to one golden file).
//!
//! Every kernel is written once, generic over `const DOTPROD: bool`, and instantiated twice:
//! the functions of this module (`neon::vec_dot_q4_0_q8_0`, ...) with
//! `#[target_feature(enable = "neon")]` for every AArch64 CPU, and those of [`dotprod`]
//! (`neon::dotprod::vec_dot_q4_0_q8_0`, ...) with `"neon,dotprod"` for CPUs with the
//! dot-product extension (Cortex-A55/A76 and later, Apple M1, Graviton 2, ...). Their one
//! safety condition is that the CPU has those features, which `dispatch.rs` checks before it
//! hands them out. The activation quantizers, the float kernels and the vector steps do not
//! multiply integers and have one version.
//!
//! **The AVX2 order.** Each 8-lane `__m256` accumulator of an AVX2 kernel is an [`F32x8`] here:
//! two `float32x4_t`, lanes 0-3 and 4-7, updated with `FMLA` (fused, like `vfmadd`) by the
//! same per-block scale products, and reduced by the same tree ([`hsum_f32x8`]: the halves
//! added lane by lane, then lanes 0+2 and 1+3, then those two), never `FADDP`'s pairwise
//! order. What goes into a lane must be the same integer as well: AVX2's `maddubs`/`madd`
//! put the products of bytes `4l..4l + 4` of a 32-byte piece into i32 lane `l`, and so does
//! [`dot4`] (with `SDOT`, or without it by widening multiplies and pairwise adds); the
//! K-quants keep their two halves' integer sums apart ([`I32x8`]) as the two 128-bit halves
//! of the AVX2 register are. Integer sums are exact on both (no i16 pair saturates for the
//! operands the activation quantizers produce), so only the float steps needed copying.
//!
//! **The fast path.** [`fast`] holds the default table's Q8_0, Q4_0 and Q4_1 decode kernels,
//! which leave the AVX2 order (issue #14): four rows' exact integer block sums in one register, one
//! fused multiply-add per block and row. The `neon+dotprod-exact` table keeps this module's
//! AVX2-order kernels for the cross-ISA tests.
//!
//! **Integer exactness.** [`dot4`] is exact for any bytes. The K-quant kernels rely on the
//! activation's `bsums` being the sums of its quants, as `quantize_row_q8_k` writes them.
//!
//! **No `vdotq_s32`, no `vcvt_f32_f16`.** The dot-product intrinsics are still unstable in
//! Rust (`stdarch_neon_dotprod`) and the f16 conversions stable only above this crate's MSRV,
//! so [`sdot`], [`fcvtl`] and `vec.rs`'s `FCVTN` are issued through `asm!`; the `.arch_extension`
//! directive lets the assembler accept `SDOT` in the baseline instantiation too, where the
//! branch that holds it is dead (`DOTPROD` is a constant false there) and never runs.

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

pub mod fast;
mod float;
pub mod packed;
mod quantize;
mod vec;
mod vec_dot;
mod vec_dot_k;

pub use float::*;
pub use quantize::*;
pub use vec::*;
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

/// Four halves (bits) to f32 (`FCVTL`, part of AArch64's Advanced SIMD): exact for every
/// finite half and the infinities, as F16C's `vcvtph2ps` (a signalling NaN comes out quiet,
/// as there). (`vcvt_f32_f16` is stable only since Rust 1.94, above this crate's MSRV.)
#[inline]
#[target_feature(enable = "neon")]
fn fcvtl(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `FCVTL` is part of the Advanced SIMD instructions every AArch64 CPU has; it
    // reads and writes only the two vector registers named.
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            h = in(vreg) h,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// The high four halves of `h` to f32 (`FCVTL2`), as [`fcvtl`].
#[inline]
#[target_feature(enable = "neon")]
fn fcvtl2(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: as in `fcvtl`.
    unsafe {
        asm!(
            "fcvtl2 {out:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// Eight halves (bits) to f32 ([`fcvtl`]): lanes 0-3, 4-7.
#[inline]
#[target_feature(enable = "neon")]
fn fp16x8(h: uint16x8_t) -> [float32x4_t; 2] {
    [fcvtl(vget_low_u16(h)), fcvtl2(h)]
}

/// Four halves (bits) to f32 ([`fcvtl`]).
#[inline]
#[target_feature(enable = "neon")]
fn fp16x4(h: [u16; 4]) -> float32x4_t {
    let bits =
        u64::from(h[0]) | u64::from(h[1]) << 16 | u64::from(h[2]) << 32 | u64::from(h[3]) << 48;
    fcvtl(vcreate_u16(bits))
}

/// One half (bits) to f32 ([`fcvtl`]).
#[inline]
#[target_feature(enable = "neon")]
fn fp16(h: u16) -> f32 {
    vgetq_lane_f32::<0>(fp16x4([h, 0, 0, 0]))
}

/// `acc + ` the products of `a` and `b` summed in fours: lane `l` adds bytes `4l..4l + 4`,
/// the lanes of AVX2's `madd(maddubs(a, b), 1)`. One `SDOT` with the dot-product extension;
/// without it widening multiplies into i16 (`SMULL`: a product of two i8 always fits), adds
/// of neighbouring products into i32 (`SADDLP`) and of neighbouring pairs (`ADDP`). Exact for
/// any bytes.
#[inline]
#[target_feature(enable = "neon")]
fn dot4<const DOTPROD: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if DOTPROD {
        // SAFETY: `DOTPROD` is true only in the `dotprod` kernels, which run only on CPUs with
        // the dot-product extension (their `# Safety` condition).
        unsafe { sdot(acc, a, b) }
    } else {
        let lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
        let hi = vpaddlq_s16(vmull_high_s8(a, b));
        vaddq_s32(acc, vpaddq_s32(lo, hi))
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

/// A 4-bit block's 16 bytes as its two halves of unsigned nibbles (values 0..16, signed bytes):
/// the low nibbles (values 0..16 of the block) and the high ones (16..32).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(q: uint8x16_t) -> [int8x16_t; 2] {
    [
        vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))),
        vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)),
    ]
}

/// An AVX2 `__m256` of f32: lanes 0-3 in `[0]`, lanes 4-7 in `[1]`.
type F32x8 = [float32x4_t; 2];

/// An AVX2 `__m256i` of i32, as [`F32x8`].
type I32x8 = [int32x4_t; 2];

/// Eight zero lanes.
#[inline]
#[target_feature(enable = "neon")]
fn zero_f32x8() -> F32x8 {
    [vdupq_n_f32(0.0); 2]
}

/// `fma(d, f32(sums), acc)` lane by lane: `_mm256_fmadd_ps(set1(d), cvtepi32_ps(sums), acc)`
/// (one rounding, as `FMLA`; the conversions round to nearest even on both).
#[inline]
#[target_feature(enable = "neon")]
fn fma_scaled(acc: F32x8, sums: I32x8, d: f32) -> F32x8 {
    [
        vfmaq_n_f32(acc[0], vcvtq_f32_s32(sums[0]), d),
        vfmaq_n_f32(acc[1], vcvtq_f32_s32(sums[1]), d),
    ]
}

/// The sum of the eight lanes in AVX2's `hsum_f32x8` order: the halves lane by lane, then
/// [`hsum_f32x4`].
#[inline]
#[target_feature(enable = "neon")]
fn hsum_f32x8(v: F32x8) -> f32 {
    hsum_f32x4(vaddq_f32(v[1], v[0]))
}

/// The sum of the four lanes in AVX2's `hsum_f32x4` order: `(s0 + s2) + (s1 + s3)`.
#[inline]
#[target_feature(enable = "neon")]
fn hsum_f32x4(s: float32x4_t) -> f32 {
    vpadds_f32(vadd_f32(vget_low_f32(s), vget_high_f32(s)))
}

/// `a * b + c` with one rounding (`FMADD`; `f32::mul_add` needs `std`).
#[inline]
#[target_feature(enable = "neon")]
fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    vget_lane_f32::<0>(vfma_n_f32(vdup_n_f32(c), vdup_n_f32(a), b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::quant::fp16_bits_to_fp32;

    /// `FCVTL` gives every half's value exactly (NaNs stay NaN), one lane at a time and in
    /// every lane of the wide conversions.
    #[test]
    fn half_conversions_are_exact_for_every_bit_pattern() {
        let same = |a: f32, h: u16| {
            let b = fp16_bits_to_fp32(h);
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{h:#06x}: {a} vs {b}"
            );
        };
        for base in (0..=u16::MAX).step_by(8) {
            let h: [u16; 8] = core::array::from_fn(|i| base + i as u16);
            // SAFETY: every AArch64 CPU has NEON.
            let (one, wide) = unsafe {
                let one = fp16(h[0]);
                let wide = fp16x8(vld1q_u16(h.as_ptr()));
                (one, wide)
            };
            same(one, h[0]);
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` has room for eight f32.
            unsafe {
                vst1q_f32(lanes.as_mut_ptr(), wide[0]);
                vst1q_f32(lanes.as_mut_ptr().add(4), wide[1]);
            }
            for (&a, &h) in lanes.iter().zip(&h) {
                same(a, h);
            }
        }
    }
}
