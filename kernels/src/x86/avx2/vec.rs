//! AVX2 element-wise vector operations, bit-identical to ggml's AVX2 code (`vec.h`,
//! `vec.cpp`): the f16 accumulator steps of flash attention (one FMA, or one multiply, then
//! F16C's round-to-nearest-even) and the SiLU-gated unit with ggml's vectorized `expf`
//! (after ARM's optimized routines, error below 1.5 ulp), so that the residual stream is
//! llama.cpp's to the last bit (issue #3).

use core::arch::x86_64::*;

/// The first eight halves of `x` (at least eight) as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_f16x8(x: &[u16]) -> __m256 {
    assert!(x.len() >= 8);
    // SAFETY: `x` has at least 16 readable bytes (asserted); `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
}

/// Store eight f32 as halves (round to nearest even) into the first eight of `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store_f16x8(y: &mut [u16], v: __m256) {
    assert!(y.len() >= 8);
    let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(v);
    // SAFETY: `y` has at least 16 writable bytes (asserted); `storeu` needs no alignment.
    unsafe { _mm_storeu_si128(y.as_mut_ptr().cast(), h) }
}

/// One half to f32 and back, for the tails (F16C on one lane).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_tail(y: &mut u16, f: impl Fn(__m128) -> __m128) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(*y)));
    let h = _mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(f(v));
    *y = _mm_extract_epi16::<0>(h) as u16;
}

/// `y[i] = f16(fma(x[i], v, y[i]))`: ggml's `ggml_vec_mad_f16` (its scalar tail is contracted
/// into the same FMA by its build).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_mad_f16(y: &mut [u16], x: &[u16], v: f32) {
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let vv = _mm256_set1_ps(v);
    let body = n / 8 * 8;
    let (yc, yt) = y.split_at_mut(body);
    let (xc, xt) = x.split_at(body);
    for (y, x) in yc.chunks_exact_mut(8).zip(xc.chunks_exact(8)) {
        let sum = _mm256_fmadd_ps(load_f16x8(x), vv, load_f16x8(y));
        store_f16x8(y, sum);
    }
    for (y, &x) in yt.iter_mut().zip(xt) {
        let xv = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(x)));
        f16_tail(y, |yv| _mm_fmadd_ss(xv, _mm_set_ss(v), yv));
    }
}

/// `y[i] = f16(y[i] * v)`: ggml's `ggml_vec_scale_f16`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_scale_f16(y: &mut [u16], v: f32) {
    let vv = _mm256_set1_ps(v);
    let body = y.len() / 8 * 8;
    let (yc, yt) = y.split_at_mut(body);
    for y in yc.chunks_exact_mut(8) {
        let prod = _mm256_mul_ps(load_f16x8(y), vv);
        store_f16x8(y, prod);
    }
    for y in yt.iter_mut() {
        f16_tail(y, |yv| _mm_mul_ss(yv, _mm_set_ss(v)));
    }
}

/// ggml's `ggml_v_expf` for AVX2 + FMA, operation for operation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn v_expf(x: __m256) -> __m256 {
    let set = _mm256_set1_ps;
    let r = set(f32::from_bits(0x4b40_0000)); // 0x1.8p23
    let z = _mm256_fmadd_ps(x, set(f32::from_bits(0x3fb8_aa3b)), r); // log2(e)
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(
        n,
        set(f32::from_bits(0x35bf_be8e)), // 0x1.7f7d1cp-20
        _mm256_fnmadd_ps(n, set(f32::from_bits(0x3f31_7200)), x), // 0x1.62e4p-1
    );
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(set(1.0))));
    let abs_n = _mm256_andnot_ps(set(-0.0), n);
    let c = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, set(126.0)));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                set(f32::from_bits(0x3c07_2010)), // 0x1.0e4020p-7
                b,
                set(f32::from_bits(0x3d2b_9f17)), // 0x1.573e2ep-5
            ),
            u,
            _mm256_fmadd_ps(
                set(f32::from_bits(0x3e2a_af33)), // 0x1.555e66p-3
                b,
                set(f32::from_bits(0x3efffedb)), // 0x1.fffdb6p-2
            ),
        ),
        u,
        _mm256_mul_ps(set(f32::from_bits(0x3f7f_fff6)), b), // 0x1.ffffecp-1
    );
    if _mm256_movemask_ps(_mm256_castsi256_ps(c)) == 0 {
        return _mm256_fmadd_ps(j, k, k);
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
        _mm256_set1_epi32(0x8200_0000_u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let d = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, set(192.0)));
    let (c, d) = (_mm256_castsi256_ps(c), _mm256_castsi256_ps(d));
    _mm256_or_ps(
        _mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(
            d,
            _mm256_or_ps(
                _mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)),
            ),
        ),
    )
}

/// `gate[i] = silu(gate[i]) * up[i]` as ggml's `ggml_vec_swiglu_f32`: eight lanes at a time
/// through [`v_expf`] (`x / (1 + e^-x)`), the tail with libm's `expf`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn swiglu_f32(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (gate, up) = (&mut gate[..n], &up[..n]);
    let body = n / 8 * 8;
    let (gc, gt) = gate.split_at_mut(body);
    let (uc, ut) = up.split_at(body);
    for (g, u) in gc.chunks_exact_mut(8).zip(uc.chunks_exact(8)) {
        // SAFETY: `g` and `u` are eight f32 each (exact chunks); loadu/storeu need no
        // alignment.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr());
            let e = v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
            _mm256_storeu_ps(
                g.as_mut_ptr(),
                _mm256_mul_ps(silu, _mm256_loadu_ps(u.as_ptr())),
            );
        }
    }
    for (g, &u) in gt.iter_mut().zip(ut) {
        *g = *g / (1.0 + crate::scalar::expf(-*g)) * u;
    }
}
