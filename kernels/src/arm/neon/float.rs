//! NEON dot products of the float types (ggml's `ggml_vec_dot_f16` and friends in
//! `ggml-cpu/vec.cpp`), each with the arithmetic of the x86 table's kernel for that type:
//!
//! - F16 as the AVX2 kernel ([`vec_dot_f16_f16`]), ggml's x86 order;
//! - F32 and BF16 **bit-identical to the scalar ones** (which the AVX2 table runs too): each
//!   product rounded to f32 (four at a time), widened to f64 and added into the oracle's eight
//!   f64 lanes (lane `l` takes the values `8c + l`, two lanes per register), the lanes then
//!   summed in order and the tail after them, one value at a time.

use super::F32x8;
use core::arch::aarch64::*;

/// Values per step: the oracle's eight lanes.
const LANES: usize = 8;

/// The eight f64 lanes of the scalar `dot_f64_lanes`, given each step's eight f32 products as
/// two registers (values `8c..8c + 4`, `8c + 4..8c + 8`) from `products(c)`; then the lanes
/// and the tail (`tail(i)`, the product of values `i >= 8 * steps`) in order.
#[inline]
#[target_feature(enable = "neon")]
fn dot_f64_lanes(
    n: usize,
    products: impl Fn(usize) -> (float32x4_t, float32x4_t),
    tail: impl Fn(usize) -> f32,
) -> f32 {
    let steps = n / LANES;
    let mut acc = [vdupq_n_f64(0.0); 4];
    for c in 0..steps {
        let (p0, p1) = products(c);
        acc[0] = vaddq_f64(acc[0], vcvt_f64_f32(vget_low_f32(p0)));
        acc[1] = vaddq_f64(acc[1], vcvt_high_f64_f32(p0));
        acc[2] = vaddq_f64(acc[2], vcvt_f64_f32(vget_low_f32(p1)));
        acc[3] = vaddq_f64(acc[3], vcvt_high_f64_f32(p1));
    }
    let mut sum = 0f64;
    for a in acc {
        sum += vgetq_lane_f64::<0>(a);
        sum += vgetq_lane_f64::<1>(a);
    }
    for i in steps * LANES..n {
        sum += f64::from(tail(i));
    }
    sum as f32
}

/// `x` and `y` cut to their common length, as whole steps of eight and the rest.
#[inline(always)]
fn common<'a, T>(x: &'a [T], y: &'a [T]) -> (&'a [T], &'a [T], usize) {
    let n = x.len().min(y.len());
    (&x[..n], &y[..n], n)
}

/// F32 weights against F32 activations.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let (x, y, n) = common(x, y);
    let xs: &[[f32; LANES]] = bytemuck::cast_slice(&x[..n / LANES * LANES]);
    let ys: &[[f32; LANES]] = bytemuck::cast_slice(&y[..n / LANES * LANES]);
    let load = |v: &[f32; LANES], half: usize| {
        // SAFETY: `v[4 * half..]` holds four readable f32 (`half` is 0 or 1).
        unsafe { vld1q_f32(v.as_ptr().add(4 * half)) }
    };
    dot_f64_lanes(
        n,
        |c| {
            (
                vmulq_f32(load(&xs[c], 0), load(&ys[c], 0)),
                vmulq_f32(load(&xs[c], 1), load(&ys[c], 1)),
            )
        },
        |i| x[i] * y[i],
    )
}

/// Eight 16-bit values of a step.
#[inline]
#[target_feature(enable = "neon")]
fn load_u16(v: &[u16; LANES]) -> uint16x8_t {
    // SAFETY: `v` is a reference to eight readable u16.
    unsafe { vld1q_u16(v.as_ptr()) }
}

/// F16 weights against F16 activations (f16 bits) as the AVX2 kernel (ggml's
/// `ggml_vec_dot_f16` on x86): four eight-lane accumulators ([`F32x8`]) over steps of 32
/// values, one fused multiply-add each, folded 0+2, 1+3, then 0+1, the halves added and two
/// pairwise adds; a tail of fewer than 32 values added one product at a time in f64, the sum
/// rounded to f32 at the end. (Flash attention's `K . Q`, and F16 weights.)
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn vec_dot_f16_f16(x: &[u16], y: &[u16]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let (x, y, n) = common(x, y);
    let body = n / 32 * 32;
    let xs: &[[u16; LANES]] = bytemuck::cast_slice(&x[..body]);
    let ys: &[[u16; LANES]] = bytemuck::cast_slice(&y[..body]);
    let f32x8 = |v: &[u16; LANES]| super::fp16x8(load_u16(v));
    let mut sum: [F32x8; 4] = [[vdupq_n_f32(0.0); 2]; 4];
    for (xs, ys) in xs.chunks_exact(4).zip(ys.chunks_exact(4)) {
        for (j, s) in sum.iter_mut().enumerate() {
            let (a, b) = (f32x8(&xs[j]), f32x8(&ys[j]));
            *s = [vfmaq_f32(s[0], a[0], b[0]), vfmaq_f32(s[1], a[1], b[1])];
        }
    }
    let add = |a: F32x8, b: F32x8| [vaddq_f32(a[0], b[0]), vaddq_f32(a[1], b[1])];
    let v = add(add(sum[0], sum[2]), add(sum[1], sum[3]));
    // `hadd(t0, t0)` twice: (t0 + t1) + (t2 + t3).
    let t0 = vaddq_f32(v[0], v[1]);
    let t1 = vpaddq_f32(t0, t0);
    let mut total = f64::from(vpadds_f32(vget_low_f32(t1)));
    for (&a, &b) in x[body..].iter().zip(&y[body..]) {
        total += f64::from(super::fp16(a) * super::fp16(b));
    }
    total as f32
}

/// BF16 weights against BF16 activations (bf16 bits): the top halves of f32s.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn vec_dot_bf16_bf16(x: &[u16], y: &[u16]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let (x, y, n) = common(x, y);
    let xs: &[[u16; LANES]] = bytemuck::cast_slice(&x[..n / LANES * LANES]);
    let ys: &[[u16; LANES]] = bytemuck::cast_slice(&y[..n / LANES * LANES]);
    let halves = |v: &[u16; LANES]| {
        let h = load_u16(v);
        (
            vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
            vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
        )
    };
    let bf16 = |h: u16| f32::from_bits(u32::from(h) << 16);
    dot_f64_lanes(
        n,
        |c| {
            let (a, b) = (halves(&xs[c]), halves(&ys[c]));
            (vmulq_f32(a.0, b.0), vmulq_f32(a.1, b.1))
        },
        |i| bf16(x[i]) * bf16(y[i]),
    )
}

/// [`vec_dot_f32`] on every row of a matrix.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn matvec_f32(w: &[f32], act: &[f32], out: &mut [f32]) {
    // SAFETY: the caller guarantees NEON, the same condition.
    super::rows_of(w, act, out, |row, act| unsafe { vec_dot_f32(row, act) });
}

/// [`vec_dot_f16_f16`] on every row of a matrix.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn matvec_f16_f16(w: &[u16], act: &[u16], out: &mut [f32]) {
    // SAFETY: the caller guarantees NEON, the same condition.
    super::rows_of(w, act, out, |row, act| unsafe { vec_dot_f16_f16(row, act) });
}

/// [`vec_dot_bf16_bf16`] on every row of a matrix.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn matvec_bf16_bf16(w: &[u16], act: &[u16], out: &mut [f32]) {
    // SAFETY: the caller guarantees NEON, the same condition.
    super::rows_of(w, act, out, |row, act| unsafe {
        vec_dot_bf16_bf16(row, act)
    });
}
