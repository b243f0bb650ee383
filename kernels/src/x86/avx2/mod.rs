//! The kernels for x86-64 CPUs with AVX2, FMA and F16C (Intel Haswell, AMD Zen and later),
//! after ggml's `ggml-cpu/arch/x86/quants.c`: the same file and function names as
//! [`crate::scalar`], which they are tested against (`tests/parity.rs`).
//!
//! Every public function is an `unsafe fn` with `#[target_feature(enable = "avx2,fma,f16c")]`:
//! its one safety condition is that the CPU has those features, which `dispatch.rs` checks
//! before it hands them out. Inside, the intrinsics are safe to call (the features are
//! enabled); the only `unsafe` left are the loads and stores, each from or to a whole block
//! field through a reference (`load256`, `load128`, `store256`).
//!
//! **Integer exactness.** The products are summed in integers as in the oracle, through
//! `maddubs` (u8 x i8 pairs into i16) and `madd` (i16 pairs into i32), which are exact as
//! long as a pair of products fits an i16: every kernel here keeps its unsigned operand at
//! most 128 and its signed one within -127..=127, which the activation quantizers guarantee
//! (a quant of -128 never comes out of them for finite input); where two `maddubs` results
//! are added in i16 first (the nibble types) the four products stay within `4 * 31 * 127`.
//! Only the order of the float additions differs from the oracle: per-lane accumulators
//! (eight lanes, or four per row) instead of one running sum.
//! The K-quant kernels also rely on the activation's `bsums` being the sums of its quants,
//! as `quantize_row_q8_k` writes them.
//!
//! **Against ggml.** The kernels sum in ggml's order (eight lanes, one accumulator, its FMAs
//! and horizontal sums), so their results are bit-identical to the AVX2 kernels llama.cpp
//! runs (`tests/tests/vec_dot_vs_ggml.rs`). Where llama.cpp repacks a matrix into 8-row
//! interleaved blocks (Q4_0, Q4_K and IQ4_NL with a multiple of 8 rows) it multiplies in
//! another order, which the `gemv_*_8x8_*` kernels reproduce and `crate::matvec` picks for
//! such matrices (`vec_dot.rs`).
//!
//! Each `vec_dot_*` has a `matvec_*` twin: the same kernel over the rows of a matrix, each
//! row's result bit-identical to `vec_dot_*` on it. For the 32-value block types `matvec_*`
//! takes several rows per pass over the activation, so that what the rows share (the
//! activation's quants, its scale, its block sums) is loaded and converted once.
//!
//! `matmul/` has the matrix-matrix products of prompt processing: the same per-pair
//! arithmetic as `vec_dot_*`, each weight block unpacked once for several tokens.
//!
//! `packed.rs` is issue #14's fast path: Q4_0, Q4_1, Q5_0 and Q8_0 matrices the runtime packed
//! at load time in groups of eight rows (`crate::packed`), one row per lane, multiplied by the
//! activation's words broadcast (no horizontal sums, each block's float step once per eight
//! rows). The default x86 tables use it; the `-exact` tables (`avx2-exact`, ...) do not pack
//! and keep ggml's order throughout (the bit-for-bit tests' tables).

/// `pub unsafe fn $name(w, act, out)`: `out[r] = $dot(row r of w, act)`, where `w` holds
/// `out.len()` rows of `act.len()` blocks (a short `w` leaves the last outputs untouched).
macro_rules! matvec_of {
    ($name:ident, $dot:ident, $w:ty, $a:ty) => {
        #[doc = concat!("[`", stringify!($dot), "`] on every row of a matrix: `out[r]` for row `r`.")]
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name(w: &[$w], act: &[$a], out: &mut [f32]) {
            if act.is_empty() {
                out.fill(0.0);
                return;
            }
            for (o, row) in out.iter_mut().zip(w.chunks_exact(act.len())) {
                // SAFETY: the caller guarantees the CPU features, the same for both.
                *o = unsafe { $dot(row, act) };
            }
        }
    };
}

mod attention;
mod expf;
mod matmul;
mod packed;
mod quantize;
mod vec;
mod vec_dot;
mod vec_dot_k;

pub use attention::*;
pub use expf::expf_slice;
pub(crate) use matmul::MATMUL;
pub(crate) use matmul::MATMUL_VNNI;
pub use matmul::{
    gemm_q4_0_8x8_q8_0, gemm_q4_0_8x8_q8_0_evex, gemm_q4_0_8x8_q8_0_vnni, matmul_q4_0_q8_0,
    matmul_q4_0_q8_0_offset, matmul_q5_0_q8_0, matmul_q5_0_q8_0_offset, matmul_q8_0_q8_0,
    matmul_q8_0_q8_0_offset,
};
pub(crate) use matmul::{unsigned_q4_0, unsigned_q5_0, unsigned_q8_0};

pub use packed::*;
pub use quantize::*;
pub use vec::*;
pub use vec_dot::*;
pub use vec_dot_k::*;

use bytemuck::Pod;
use core::arch::x86_64::*;

/// The 32 bytes of `v` (a block field) in a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load256<T: Pod>(v: &T) -> __m256i {
    const { assert!(size_of::<T>() == 32) };
    // SAFETY: `v` is a reference to 32 readable bytes (asserted above); `loadu` has no
    // alignment requirement.
    unsafe { _mm256_loadu_si256((v as *const T).cast()) }
}

/// The 16 bytes of `v` (a block field) in a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load128<T: Pod>(v: &T) -> __m128i {
    const { assert!(size_of::<T>() == 16) };
    // SAFETY: `v` is a reference to 16 readable bytes (asserted above); `loadu` has no
    // alignment requirement.
    unsafe { _mm_loadu_si128((v as *const T).cast()) }
}

/// Bytes `4j..4j + 4` of `v` (a 32-byte block field) as an i32 in every lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn broadcast_word<T: Pod>(v: &T, j: usize) -> __m256i {
    const { assert!(size_of::<T>() == 32) };
    assert!(j < 8);
    // SAFETY: `v` is a reference to 32 readable bytes (asserted above) and `4j + 4 <= 32`;
    // `read_unaligned` has no alignment requirement, and any 4 bytes are a valid i32.
    let word = unsafe {
        (v as *const T)
            .cast::<u8>()
            .add(4 * j)
            .cast::<i32>()
            .read_unaligned()
    };
    _mm256_set1_epi32(word)
}

/// Store a register into the 32 bytes of `v` (a block field).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store256<T: Pod>(v: &mut T, x: __m256i) {
    const { assert!(size_of::<T>() == 32) };
    // SAFETY: `v` is a unique reference to 32 writable bytes (asserted above) of a `Pod`
    // type, for which any bytes are valid; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256((v as *mut T).cast(), x) }
}

/// How far ahead of the weights in use [`prefetch_ahead`] asks for them. A single core
/// streaming a matrix from DRAM keeps too few cache misses in flight for the hardware
/// prefetchers alone: asking this far ahead doubled the classifier-sized (30 MB) Q8_0
/// matvec here, from 5 to 10-14 GB/s (`kernels-bench --rows 49152 --cols 576 q8_0`), and
/// costs the cache-resident sizes nothing measurable.
const PREFETCH_BYTES: usize = 2048;

/// Ask for the cache lines [`PREFETCH_BYTES`] past those of the weight block `x` (in a
/// matrix, rows follow each other, so this runs ahead into the next rows).
#[inline(always)]
fn prefetch_ahead<X>(x: &X) {
    let base = (x as *const X).cast::<i8>().wrapping_add(PREFETCH_BYTES);
    for line in (0..size_of::<X>()).step_by(64) {
        // SAFETY: a prefetch is a hint: it never faults and never reads architecturally, so
        // any address will do (computed with `wrapping_add`, never dereferenced).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line)) };
    }
}

/// f16 bits to f32 (exact), with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn fp16(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// The sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_f32x8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
    hsum_f32x4(s)
}

/// The sum of the four lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_f32x4(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The sum of the four i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32x4(s: __m128i) -> i32 {
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32x8(v: __m256i) -> i32 {
    hsum_i32x4(_mm_add_epi32(
        _mm256_castsi256_si128(v),
        _mm256_extracti128_si256::<1>(v),
    ))
}

/// Unsigned bytes times signed bytes, summed in fours into eight i32 lanes: lane `l` holds
/// bytes `4l..4l + 4`. Exact while each pair of products fits an i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Signed bytes times signed bytes, as [`dot_u8_i8`]: the sign of `x` moves onto `y`
/// (`|x| * sign(x) y`). Exact for `x` in -128..=127 and `y` in -127..=127.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}
