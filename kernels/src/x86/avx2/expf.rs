//! `expf` of eight floats at once, bit-identical to the C library's scalar `expf` on x86-64
//! glibc with FMA (`__expf_fma`, which its `ifunc` picks on every CPU the AVX2 table runs on),
//! the function ggml's flash attention calls once per query and position.
//!
//! glibc's `expf` (after ARM's optimized routines) works in double precision:
//! `e^x = 2^(k/32) * 2^(r/32)`, `k` the nearest integer to `x * 32/ln 2` and `r` the rest,
//! `2^(k/32)` from a 32-entry table with `k / 32` added to its exponent bits, and `2^(r/32)` a
//! cubic. Compiled with FMA, `x * 32/ln 2` is never rounded on its own: `k` comes from
//! `fma(32/ln 2, x, 0x1.8p52)` and `r` from `fma(32/ln 2, x, -k)`, and the cubic is three
//! FMAs. The steps below are those of glibc 2.36's `__expf_fma` (read from its machine code),
//! four lanes to a register: the same operations on the same doubles give the same bits.
//! Inputs of magnitude 88 or more, infinities and NaN (glibc's slow path, with its overflow
//! and underflow results) are handed to the scalar `expf` itself.
//! `tests/attention.rs` compares both on millions of inputs.

use core::arch::x86_64::*;

/// `32 / ln 2` (glibc's `__exp2f_data.invln2_scaled`; the constants are its bits).
const INV_LN2_N: u64 = 0x4047_1547_652b_82fe;
/// `0x1.8p52`: added to round to an integer in the low mantissa bits.
const SHIFT: u64 = 0x4338_0000_0000_0000;
/// The cubic's coefficients for `r` (highest first), scaled for `N = 32`.
const C: [u64; 3] = [
    0x3ebc_6af8_4b91_2394,
    0x3f2e_bfce_50fa_c4f3,
    0x3f96_2e42_ff0c_52d6,
];
/// `2^(i/32)` as f64 bits, less `i << 47` (glibc's `__exp2f_data.tab`), so that adding `k << 47`
/// gives `2^(k/32)`.
const TAB: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];
/// glibc's fast path takes inputs whose top 12 bits, sign dropped, are at most this
/// (`|x| < 88`).
const FAST_TOP: i32 = 0x42a;

/// The fast path for four lanes: `x` as doubles in, `expf(x)` as floats out.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn expf4(xd: __m256d) -> __m128 {
    let inv = _mm256_set1_pd(f64::from_bits(INV_LN2_N));
    let shift = _mm256_set1_pd(f64::from_bits(SHIFT));
    let z = _mm256_fmadd_pd(inv, xd, shift);
    let ki = _mm256_castpd_si256(z);
    let kd = _mm256_sub_pd(z, shift);
    let r = _mm256_fmsub_pd(inv, xd, kd);
    let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    // SAFETY: every index is masked to 0..32, inside `TAB`.
    let t = unsafe { _mm256_i64gather_epi64::<8>(TAB.as_ptr().cast(), idx) };
    let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
    let z = _mm256_fmadd_pd(
        r,
        _mm256_set1_pd(f64::from_bits(C[0])),
        _mm256_set1_pd(f64::from_bits(C[1])),
    );
    let r2 = _mm256_mul_pd(r, r);
    let y = _mm256_fmadd_pd(r, _mm256_set1_pd(f64::from_bits(C[2])), _mm256_set1_pd(1.0));
    let y = _mm256_fmadd_pd(z, r2, y);
    _mm256_cvtpd_ps(_mm256_mul_pd(y, s))
}

/// `expf` of each lane of `x`, bit-identical to the C library's (see the module docs).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn expf8(x: __m256) -> __m256 {
    let lo = expf4(_mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    let hi = expf4(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)));
    let mut y = _mm256_set_m128(hi, lo);
    let top = _mm256_and_si256(
        _mm256_srli_epi32::<20>(_mm256_castps_si256(x)),
        _mm256_set1_epi32(0x7ff),
    );
    let slow = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(
        top,
        _mm256_set1_epi32(FAST_TOP),
    )));
    if slow != 0 {
        let (mut xs, mut ys) = ([0f32; 8], [0f32; 8]);
        // SAFETY: both are 32 bytes; `storeu`/`loadu` need no alignment.
        unsafe {
            _mm256_storeu_ps(xs.as_mut_ptr(), x);
            _mm256_storeu_ps(ys.as_mut_ptr(), y);
        }
        for (i, (y, &x)) in ys.iter_mut().zip(&xs).enumerate() {
            if slow & (1 << i) != 0 {
                *y = crate::scalar::expf(x);
            }
        }
        // SAFETY: as above.
        y = unsafe { _mm256_loadu_ps(ys.as_ptr()) };
    }
    y
}

/// `out[i] = expf(x[i])` for every `i` (the shorter length), eight at a time.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn expf_slice(x: &[f32], out: &mut [f32]) {
    for (xs, os) in x.chunks(8).zip(out.chunks_mut(8)) {
        let n = xs.len().min(os.len());
        let mut a = [0f32; 8];
        a[..n].copy_from_slice(&xs[..n]);
        // SAFETY: `a` is 32 readable bytes; `loadu` needs no alignment.
        let e = expf8(unsafe { _mm256_loadu_ps(a.as_ptr()) });
        // SAFETY: `a` is 32 writable bytes; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), e) };
        os[..n].copy_from_slice(&a[..n]);
    }
}
