//! The default decode kernels for Q8_0 and Q4_0 weights on CPUs with the dot-product extension,
//! free of AVX2's eight-lane float order (issue #14's fast path; the `neon+dotprod-exact` table
//! keeps the AVX2-identical ones for the cross-ISA tests).
//!
//! A block's 32 products are summed exactly in integers: two `SDOT`s into one register, and the
//! registers of four rows folded into one by three pairwise adds (`ADDP`), so that lane `r`
//! holds row `r`'s block sum. One conversion, one scale product and one `FMLA` then serve four
//! rows: `acc[r] = fma(d_x[r] * d_y, sum[r], acc[r])`, block after block, the scalar oracle's
//! order with a fused multiply-add. Q4_0's nibbles stay unsigned (0..16): the block sum is
//! `sum(q * y) - 8 * sum(y)`, with `sum(y)` taken once per activation block for every row.
//! A row's arithmetic does not depend on the rows beside it (integer sums are exact; each lane
//! is rounded on its own), so a matrix's rows agree bit for bit with the one-row kernel,
//! whatever rows a thread was given.
//!
//! Per four row-blocks of Q8_0 this is 4 `MOVI`, 8 loads, 8 `SDOT`, 3 `ADDP`, one conversion,
//! four half loads with one `FCVTL`, one `FMUL` and one `FMLA`, against four times 2 `MOVI`,
//! 2 loads, 2 `SDOT`, 2 conversions, a half conversion, an `FMUL` and 2 `FMLA` in AVX2's order.

use super::{fp16, fp16x4, halves, load_i8, load_u8, sdot};
use core::arch::aarch64::*;
use formats::quant::{BlockQ4_0, BlockQ8_0};

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

/// An activation block: its quants, its scale, and (for Q4_0) `8 * sum(quants)`.
#[derive(Clone, Copy)]
struct Act {
    q: [int8x16_t; 2],
    d: f32,
    eight_sum: i32,
}

/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn act(y: &BlockQ8_0, sum: bool) -> Act {
    let q = halves(&y.qs).map(|h| load_i8(&h));
    let eight_sum = if sum {
        // SAFETY: the caller guarantees the dot-product extension.
        8 * vaddvq_s32(unsafe { block_lanes(q, [vdupq_n_s8(1); 2]) })
    } else {
        0
    };
    Act {
        q,
        d: fp16(y.d),
        eight_sum,
    }
}

/// A weight block's quants against the activation, as lanes ([`block_lanes`]).
trait Weights: Copy {
    /// Whether the block sum takes `8 * sum(y)` off (unsigned Q4_0 nibbles).
    const OFFSET: bool;
    fn d(&self) -> u16;
    /// # Safety
    /// The CPU must support the dot-product extension.
    unsafe fn lanes(&self, y: &Act) -> int32x4_t;
}

impl Weights for BlockQ8_0 {
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
    const OFFSET: bool = true;
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn lanes(&self, y: &Act) -> int32x4_t {
        let q = load_u8(&self.qs);
        let nibbles = [
            vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))),
            vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)),
        ];
        // SAFETY: the caller guarantees the dot-product extension.
        unsafe { block_lanes(nibbles, y.q) }
    }
}

/// Rows `x` (four) against `y`: their four sums.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn four_rows<W: Weights>(x: [&[W]; ROWS], y: &[BlockQ8_0]) -> [f32; ROWS] {
    let mut acc = vdupq_n_f32(0.0);
    for (b, yb) in y.iter().enumerate() {
        // SAFETY: the caller guarantees the dot-product extension.
        let a = unsafe { act(yb, W::OFFSET) };
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
unsafe fn one_row<W: Weights>(x: &[W], y: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (w, yb) in x.iter().zip(y) {
        // SAFETY: the caller guarantees the dot-product extension.
        let a = unsafe { act(yb, W::OFFSET) };
        // SAFETY: as above.
        let mut sum = vaddvq_s32(unsafe { w.lanes(&a) });
        if W::OFFSET {
            sum -= a.eight_sum;
        }
        let d = vmulq_n_f32(fp16x4([w.d(), 0, 0, 0]), a.d);
        acc = vfmaq_f32(acc, vcvtq_f32_s32(vdupq_n_s32(sum)), d);
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
unsafe fn matvec<W: Weights>(w: &[W], act: &[BlockQ8_0], out: &mut [f32]) {
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
