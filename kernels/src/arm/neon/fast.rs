//! The default decode kernels for Q8_0, Q4_0 and Q4_1 weights on CPUs with the dot-product
//! extension, free of AVX2's eight-lane float order (issue #14's fast path; the
//! `neon+dotprod-exact` table keeps the AVX2-identical ones for the cross-ISA tests).
//!
//! A block's 32 products are summed exactly in integers: two `SDOT`s into one register, and the
//! registers of four rows folded into one by three pairwise adds (`ADDP`), so that lane `r`
//! holds row `r`'s block sum. One conversion, one scale product and one `FMLA` then serve four
//! rows: `acc[r] = fma(d_x[r] * d_y, sum[r], acc[r])`, block after block, the scalar oracle's
//! order with a fused multiply-add. Q4_0's nibbles stay unsigned (0..16): the block sum is
//! `sum(q * y) - 8 * sum(y)`, with `sum(y)` taken once per activation block for every row.
//! Q4_1's too (`d * q + m` against Q8_1 activations), its minimum one more `FMLA` per block:
//! `acc[r] = fma(m_x[r], s_y, acc[r])`, with `s_y` the activation's `d * sum(y)`.
//! A row's arithmetic does not depend on the rows beside it (integer sums are exact; each lane
//! is rounded on its own), so a matrix's rows agree bit for bit with the one-row kernel,
//! whatever rows a thread was given; the packed kernels ([`super::packed`]) compute the same
//! values.
//!
//! Per four row-blocks of Q8_0 this is 4 `MOVI`, 8 loads, 8 `SDOT`, 3 `ADDP`, one conversion,
//! four half loads with one `FCVTL`, one `FMUL` and one `FMLA`, against four times 2 `MOVI`,
//! 2 loads, 2 `SDOT`, 2 conversions, a half conversion, an `FMUL` and 2 `FMLA` in AVX2's order.

use super::{fp16, fp16x4, halves, load_i8, load_u8, nibbles, sdot};
use crate::packed::Activation;
use core::arch::aarch64::*;
use formats::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Rows per pass: the row-blocked skeleton's (`vec_dot::matvec`).
use super::vec_dot::ROWS;

/// A block's 32 products of `a` and `b` (values 0..16 and 16..32) in the four lanes of one
/// register (their sum is the block's sum).
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn block_lanes(a: [int8x16_t; 2], b: [int8x16_t; 2]) -> int32x4_t {
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { sdot(sdot(vdupq_n_s32(0), a[0], b[0]), a[1], b[1]) }
}

/// Four rows' block lanes folded into their four block sums (lane `r`: row `r`'s).
#[inline]
#[target_feature(enable = "neon")]
fn fold4(s: [int32x4_t; ROWS]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]))
}

/// An activation block: its quants, its scale, (for Q4_0) `8 * sum(quants)` and (for Q4_1)
/// `d * sum(quants)`.
#[derive(Clone, Copy)]
struct Act {
    q: [int8x16_t; 2],
    d: f32,
    eight_sum: i32,
    s: f32,
}

/// Activation block `y` as weights `W` take it.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn act<W: Weights>(y: &W::Y) -> Act {
    let q = halves(y.qs()).map(|h| load_i8(&h));
    let eight_sum = if W::OFFSET {
        // SAFETY: the caller guarantees the dot-product extension.
        8 * vaddvq_s32(unsafe { block_lanes(q, [vdupq_n_s8(1); 2]) })
    } else {
        0
    };
    Act {
        q,
        d: fp16(y.d()),
        eight_sum,
        s: if W::MIN { fp16(y.s()) } else { 0.0 },
    }
}

/// A weight block's quants against the activation, as lanes ([`block_lanes`]).
trait Weights: Copy {
    /// The activation blocks it is multiplied with.
    type Y: Activation;
    /// Whether the block sum takes `8 * sum(y)` off (unsigned Q4_0 nibbles).
    const OFFSET: bool;
    /// Whether each block adds `m_x * s_y` (Q4_1's minimum).
    const MIN: bool = false;
    fn d(&self) -> u16;
    /// The minimum (f16 bits), where [`Self::MIN`].
    fn m(&self) -> u16 {
        0
    }
    /// # Safety
    /// The CPU must support the dot-product extension.
    unsafe fn lanes(&self, y: &Act) -> int32x4_t;
}

impl Weights for BlockQ8_0 {
    type Y = BlockQ8_0;
    const OFFSET: bool = false;
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn lanes(&self, y: &Act) -> int32x4_t {
        let q = halves(&self.qs).map(|h| load_i8(&h));
        // SAFETY: the caller guarantees the dot-product extension.
        unsafe { block_lanes(q, y.q) }
    }
}

impl Weights for BlockQ4_0 {
    type Y = BlockQ8_0;
    const OFFSET: bool = true;
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn lanes(&self, y: &Act) -> int32x4_t {
        // SAFETY: the caller guarantees the dot-product extension.
        unsafe { block_lanes(nibbles(load_u8(&self.qs)), y.q) }
    }
}

impl Weights for BlockQ4_1 {
    type Y = BlockQ8_1;
    const OFFSET: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> u16 {
        self.m
    }
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn lanes(&self, y: &Act) -> int32x4_t {
        // SAFETY: the caller guarantees the dot-product extension.
        unsafe { block_lanes(nibbles(load_u8(&self.qs)), y.q) }
    }
}

/// Rows `x` (four) against `y`: their four sums.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn four_rows<W: Weights>(x: [&[W]; ROWS], y: &[W::Y]) -> [f32; ROWS] {
    let mut acc = vdupq_n_f32(0.0);
    for (b, yb) in y.iter().enumerate() {
        // SAFETY: the caller guarantees the dot-product extension.
        let a = unsafe { act::<W>(yb) };
        let blocks = [&x[0][b], &x[1][b], &x[2][b], &x[3][b]];
        let mut sums = fold4(blocks.map(|w| {
            // SAFETY: as above.
            unsafe { w.lanes(&a) }
        }));
        if W::OFFSET {
            sums = vsubq_s32(sums, vdupq_n_s32(a.eight_sum));
        }
        let d = vmulq_n_f32(fp16x4(blocks.map(|w| w.d())), a.d);
        acc = vfmaq_f32(acc, vcvtq_f32_s32(sums), d);
        if W::MIN {
            acc = vfmaq_n_f32(acc, fp16x4(blocks.map(|w| w.m())), a.s);
        }
    }
    [
        vgetq_lane_f32::<0>(acc),
        vgetq_lane_f32::<1>(acc),
        vgetq_lane_f32::<2>(acc),
        vgetq_lane_f32::<3>(acc),
    ]
}

/// One row `x` against `y`, in the arithmetic of one lane of [`four_rows`].
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn one_row<W: Weights>(x: &[W], y: &[W::Y]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (w, yb) in x.iter().zip(y) {
        // SAFETY: the caller guarantees the dot-product extension.
        let a = unsafe { act::<W>(yb) };
        // SAFETY: as above.
        let mut sum = vaddvq_s32(unsafe { w.lanes(&a) });
        if W::OFFSET {
            sum -= a.eight_sum;
        }
        let d = vmulq_n_f32(fp16x4([w.d(), 0, 0, 0]), a.d);
        acc = vfmaq_f32(acc, vcvtq_f32_s32(vdupq_n_s32(sum)), d);
        if W::MIN {
            acc = vfmaq_n_f32(acc, fp16x4([w.m(), 0, 0, 0]), a.s);
        }
    }
    vgetq_lane_f32::<0>(acc)
}

/// The rows of `w` (`out.len()` rows of `act.len()` blocks; a short `w` leaves the last
/// outputs untouched) against `act`.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn matvec<W: Weights>(w: &[W], act: &[W::Y], out: &mut [f32]) {
    super::vec_dot::matvec(
        w,
        act,
        out,
        |r| {
            // SAFETY: the caller guarantees the dot-product extension.
            unsafe { four_rows(r, act) }
        },
        |[r]| {
            // SAFETY: as above.
            [unsafe { one_row(r, act) }]
        },
    );
}

/// Q8_0 weights against Q8_0 activations, in the order of this module.
///
/// # Safety
/// The CPU must support NEON and the dot-product extension (`dotprod`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { one_row(&x[..n], &y[..n]) }
}

/// [`vec_dot_q8_0_q8_0`] on every row of a matrix.
///
/// # Safety
/// The CPU must support NEON and the dot-product extension (`dotprod`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn matvec_q8_0_q8_0(w: &[BlockQ8_0], act: &[BlockQ8_0], out: &mut [f32]) {
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { matvec(w, act, out) }
}

/// Q4_0 weights (`d * (q - 8)`) against Q8_0 activations, in the order of this module.
///
/// # Safety
/// The CPU must support NEON and the dot-product extension (`dotprod`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { one_row(&x[..n], &y[..n]) }
}

/// [`vec_dot_q4_0_q8_0`] on every row of a matrix.
///
/// # Safety
/// The CPU must support NEON and the dot-product extension (`dotprod`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn matvec_q4_0_q8_0(w: &[BlockQ4_0], act: &[BlockQ8_0], out: &mut [f32]) {
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { matvec(w, act, out) }
}

/// Q4_1 weights (`d * q + m`) against Q8_1 activations, in the order of this module.
///
/// # Safety
/// The CPU must support NEON and the dot-product extension (`dotprod`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { one_row(&x[..n], &y[..n]) }
}

/// [`vec_dot_q4_1_q8_1`] on every row of a matrix.
///
/// # Safety
/// The CPU must support NEON and the dot-product extension (`dotprod`).
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn matvec_q4_1_q8_1(w: &[BlockQ4_1], act: &[BlockQ8_1], out: &mut [f32]) {
    // SAFETY: the caller guarantees the dot-product extension.
    unsafe { matvec(w, act, out) }
}
