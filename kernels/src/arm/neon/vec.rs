//! NEON element-wise vector operations with the arithmetic of the AVX2 ones
//! (`x86/avx2/vec.rs`, ggml's x86 code): the f16 accumulator steps of flash attention (one
//! fused multiply-add, or one multiply, then a round-to-nearest-even conversion to f16) and
//! the SiLU-gated unit with ggml's AVX2 `expf` ([`v_expf`], operation for operation), eight
//! values per step and the same values left to the scalar tail, so that an AArch64 build's
//! residual stream is the x86 build's to the last bit (issue #5).

use super::fp16x8;
use core::arch::aarch64::*;
use core::arch::asm;

/// Values per step: AVX2's eight lanes.
const LANES: usize = 8;

/// Eight halves as f32 ([`fp16x8`]): lanes 0-3, 4-7.
#[inline]
#[target_feature(enable = "neon")]
fn load_f16x8(x: &[u16; LANES]) -> [float32x4_t; 2] {
    // SAFETY: `x` is a reference to eight readable u16; `ld1` needs only their alignment.
    fp16x8(unsafe { vld1q_u16(x.as_ptr()) })
}

/// Four f32 to halves, rounded to nearest even (`FCVTN`, as F16C's `vcvtps2ph` with
/// `_MM_FROUND_TO_NEAREST_INT`).
#[inline]
#[target_feature(enable = "neon")]
fn to_f16x4(v: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    // SAFETY: `FCVTN` (single to half precision) is part of AArch64's Advanced SIMD, which
    // every AArch64 CPU has; it reads and writes only the two vector registers named.
    unsafe {
        asm!(
            "fcvtn {out:v}.4h, {v:v}.4s",
            v = in(vreg) v,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// Store eight f32 as halves into `y`.
#[inline]
#[target_feature(enable = "neon")]
fn store_f16x8(y: &mut [u16; LANES], v: [float32x4_t; 2]) {
    let h = vcombine_u16(to_f16x4(v[0]), to_f16x4(v[1]));
    // SAFETY: `y` is a unique reference to eight writable u16; `st1` needs only their
    // alignment.
    unsafe { vst1q_u16(y.as_mut_ptr(), h) }
}

/// `f(y chunk, x chunk)` on every whole chunk of eight halves of `y` and `x` (their common
/// length), then on the tail padded to eight: every lane is computed on its own, so a padded
/// lane is what AVX2's one-lane tail computes.
#[inline(always)]
fn f16_steps(y: &mut [u16], x: &[u16], f: impl Fn(&mut [u16; LANES], &[u16; LANES])) {
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let body = n / LANES * LANES;
    let (yc, yt) = y.split_at_mut(body);
    let (xc, xt) = x.split_at(body);
    let yc: &mut [[u16; LANES]] = bytemuck::cast_slice_mut(yc);
    let xc: &[[u16; LANES]] = bytemuck::cast_slice(xc);
    for (y, x) in yc.iter_mut().zip(xc) {
        f(y, x);
    }
    if !yt.is_empty() {
        let (mut yp, mut xp) = ([0u16; LANES], [0u16; LANES]);
        yp[..yt.len()].copy_from_slice(yt);
        xp[..xt.len()].copy_from_slice(xt);
        f(&mut yp, &xp);
        yt.copy_from_slice(&yp[..yt.len()]);
    }
}

/// `y[i] = f16(fma(x[i], v, y[i]))`: the AVX2 `vec_mad_f16` (ggml's `ggml_vec_mad_f16`).
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn vec_mad_f16(y: &mut [u16], x: &[u16], v: f32) {
    f16_steps(y, x, |y, x| {
        let (xv, yv) = (load_f16x8(x), load_f16x8(y));
        let sum = [vfmaq_n_f32(yv[0], xv[0], v), vfmaq_n_f32(yv[1], xv[1], v)];
        store_f16x8(y, sum);
    });
}

/// `y[i] = f16(y[i] * v)`: the AVX2 `vec_scale_f16` (ggml's `ggml_vec_scale_f16`).
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn vec_scale_f16(y: &mut [u16], v: f32) {
    let scale = |y: &mut [u16; LANES]| {
        let yv = load_f16x8(y);
        store_f16x8(y, [vmulq_n_f32(yv[0], v), vmulq_n_f32(yv[1], v)]);
    };
    let body = y.len() / LANES * LANES;
    let (yc, tail) = y.split_at_mut(body);
    for y in bytemuck::cast_slice_mut::<u16, [u16; LANES]>(yc) {
        scale(y);
    }
    if !tail.is_empty() {
        let mut padded = [0u16; LANES];
        padded[..tail.len()].copy_from_slice(tail);
        scale(&mut padded);
        tail.copy_from_slice(&padded[..tail.len()]);
    }
}

/// ggml's `ggml_v_expf` for AVX2 + FMA (the AVX2 table's `v_expf`), operation for operation
/// on four lanes: `_mm256_fmadd_ps(a, b, c)` is `vfmaq_f32(c, a, b)` and
/// `_mm256_fnmadd_ps(a, b, c)` is `vfmsq_f32(c, a, b)`, each with one rounding. AVX2 takes
/// its slow path for eight lanes where any lane is special; here for four: the other lanes
/// come out the same either way (`fma(k, j, k)`).
#[inline]
#[target_feature(enable = "neon")]
fn v_expf(x: float32x4_t) -> float32x4_t {
    let set = vdupq_n_f32;
    let bits = vreinterpretq_u32_f32;
    let float = vreinterpretq_f32_u32;
    let r = set(f32::from_bits(0x4b40_0000)); // 0x1.8p23
    let z = vfmaq_f32(r, x, set(f32::from_bits(0x3fb8_aa3b))); // log2(e)
    let n = vsubq_f32(z, r);
    let b = vfmsq_f32(
        vfmsq_f32(x, n, set(f32::from_bits(0x3f31_7200))), // 0x1.62e4p-1
        n,
        set(f32::from_bits(0x35bf_be8e)), // 0x1.7f7d1cp-20
    );
    let e = vshlq_n_u32::<23>(bits(z));
    let k = float(vaddq_u32(e, bits(set(1.0))));
    let abs_n = vabsq_f32(n);
    let c = vcgtq_f32(abs_n, set(126.0));
    let u = vmulq_f32(b, b);
    let j = vfmaq_f32(
        vmulq_f32(set(f32::from_bits(0x3f7f_fff6)), b), // 0x1.ffffecp-1
        vfmaq_f32(
            vfmaq_f32(
                set(f32::from_bits(0x3efffedb)),  // 0x1.fffdb6p-2
                set(f32::from_bits(0x3e2a_af33)), // 0x1.555e66p-3
                b,
            ),
            vfmaq_f32(
                set(f32::from_bits(0x3d2b_9f17)), // 0x1.573e2ep-5
                set(f32::from_bits(0x3c07_2010)), // 0x1.0e4020p-7
                b,
            ),
            u,
        ),
        u,
    );
    if vmaxvq_u32(c) == 0 {
        return vfmaq_f32(k, j, k);
    }
    let g = vandq_u32(vcleq_f32(n, set(0.0)), vdupq_n_u32(0x8200_0000));
    let s1 = float(vaddq_u32(g, vdupq_n_u32(0x7f00_0000)));
    let s2 = float(vsubq_u32(e, g));
    let d = vcgtq_f32(abs_n, set(192.0));
    let scaled = vmulq_f32(vfmaq_f32(s2, s2, j), s1);
    let normal = vfmaq_f32(k, k, j);
    vbslq_f32(d, vmulq_f32(s1, s1), vbslq_f32(c, scaled, normal))
}

/// `gate[i] = silu(gate[i]) * up[i]` as the AVX2 `swiglu_f32` (ggml's `ggml_vec_swiglu_f32`):
/// eight values at a time through [`v_expf`] (`x / (1 + e^(0 - x))`), the tail of fewer than
/// eight with libm's `expf`, as there.
///
/// # Safety
/// The CPU must support NEON (every AArch64 CPU does).
#[target_feature(enable = "neon")]
pub unsafe fn swiglu_f32(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (gate, up) = (&mut gate[..n], &up[..n]);
    let body = n / LANES * LANES;
    let (gc, gt) = gate.split_at_mut(body);
    let (uc, ut) = up.split_at(body);
    let gc: &mut [[f32; 4]] = bytemuck::cast_slice_mut(gc);
    let uc: &[[f32; 4]] = bytemuck::cast_slice(uc);
    for (g, u) in gc.iter_mut().zip(uc) {
        // SAFETY: `g` and `u` are four f32 each; `ld1`/`st1` need only their alignment.
        unsafe {
            let x = vld1q_f32(g.as_ptr());
            let e = v_expf(vsubq_f32(vdupq_n_f32(0.0), x));
            let silu = vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e));
            vst1q_f32(g.as_mut_ptr(), vmulq_f32(silu, vld1q_f32(u.as_ptr())));
        }
    }
    for (g, &u) in gt.iter_mut().zip(ut) {
        *g = *g / (1.0 + crate::scalar::expf(-*g)) * u;
    }
}
