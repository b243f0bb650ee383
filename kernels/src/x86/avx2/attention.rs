//! AVX2 flash attention over an f16 cache (`crate::attention`): the steps of the portable
//! version on the AVX2 table (`vec_dot_f16_f16`, `vec_scale_f16`, `vec_mad_f16`, libm's `expf`
//! and one fused multiply-add for the running sum), inlined, position by position for all the
//! queries at once, so that each position's keys and values are read from memory once for all
//! of them. Each query keeps its own maximum, sum and f16 accumulator: its result is the
//! portable version's, bit for bit (`tests/parity.rs`).
//!
//! For heads of a multiple of 32 values up to [`MAX_HEAD`] (every llama-family model we know),
//! the f16 to f32 conversions, which are exact, are done once instead of once per query and
//! position: the queries once per call, each position's key and value once for all queries.
//! The products, sums and roundings are the same instructions in the same order.
//!
//! The fast tables (issue #14) take [`attend_f16_fast`] instead: the same position loop with
//! f32 value accumulators, closer to the exact result and not bit-identical to ggml's.

use super::expf::expf_slice;
use super::vec::load_f16x8;
use super::{fp16, vec_dot_f16_f16, vec_mad_f16, vec_scale_f16};
use crate::attention::{query_len, F16Query, MAX_QUERIES};
use core::arch::x86_64::*;

/// Flash attention of `queries` over the f16 keys `k` and values `v` (see
/// `KernelTable::attend_f16`, which checks the shapes).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn attend_f16(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    vkq: &mut [u16],
) {
    let nq = queries.len().min(MAX_QUERIES);
    let queries = &mut queries[..nq];
    let hd = query_len(queries);
    if hd > 0 && hd.is_multiple_of(32) && hd <= MAX_HEAD {
        // SAFETY: the caller guarantees the CPU features, the same for this kernel.
        unsafe { attend_f16_converted(queries, k, v, stride, scale, hd) };
        return;
    }
    let mut m = [f32::NEG_INFINITY; MAX_QUERIES];
    let mut sum = [0f32; MAX_QUERIES];
    let vkq = &mut vkq[..queries.len() * hd];
    vkq.fill(0);
    let n_pos = queries.iter().map(|q| q.n_pos).max().unwrap_or(0);
    for p in 0..n_pos {
        let (kr, vr) = (&k[p * stride..][..hd], &v[p * stride..][..hd]);
        for (g, (query, acc)) in queries.iter().zip(vkq.chunks_exact_mut(hd)).enumerate() {
            if p >= query.n_pos {
                continue;
            }
            // SAFETY: the caller guarantees the CPU features, the same for this kernel.
            let score = unsafe { vec_dot_f16_f16(kr, query.q16) } * scale;
            let (mut ms, mut vs) = (1f32, 1f32);
            if score > m[g] {
                // A new maximum: rescale what was accumulated.
                ms = crate::scalar::expf(m[g] - score);
                m[g] = score;
                // SAFETY: as above.
                unsafe { vec_scale_f16(acc, ms) };
            } else {
                vs = crate::scalar::expf(score - m[g]);
            }
            // SAFETY: as above.
            unsafe { vec_mad_f16(acc, vr, vs) };
            // ggml's build fuses `S * ms + vs`.
            sum[g] = _mm_cvtss_f32(_mm_fmadd_ss(
                _mm_set_ss(sum[g]),
                _mm_set_ss(ms),
                _mm_set_ss(vs),
            ));
        }
    }
    finish(queries, vkq, &sum, hd);
}

/// The longest head [`attend_f16_converted`] takes.
const MAX_HEAD: usize = 256;

/// `load_f16x8` of `x[8 * j..]` for every `j` into `out` (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn convert(x: &[u16], out: &mut [__m256]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = load_f16x8(&x[8 * j..]);
    }
}

/// The position loop of the converted kernels: each position's key and value converted to f32
/// once, the scores of the queries that see it (`score(g, key)`, scaled), their `expf`
/// arguments against each query's running maximum (`m - s` at a new maximum, which becomes
/// `m`, else `s - m`), the exponentials eight at a time, then `add(g, e, new_max, value)` for
/// each of those queries.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn positions(
    queries: &[F16Query<'_>],
    (k, v, stride, lanes): (&[u16], &[u16], usize, usize),
    mut score: impl FnMut(usize, &[__m256]) -> f32,
    mut add: impl FnMut(usize, f32, bool, &[__m256]),
) {
    let hd = 8 * lanes;
    let mut m = [f32::NEG_INFINITY; MAX_QUERIES];
    let (mut kf, mut vf) = (
        [_mm256_setzero_ps(); MAX_HEAD / 8],
        [_mm256_setzero_ps(); MAX_HEAD / 8],
    );
    let n_pos = queries.iter().map(|q| q.n_pos).max().unwrap_or(0);
    let nq = queries.len();
    for p in 0..n_pos {
        convert(&k[p * stride..][..hd], &mut kf[..lanes]);
        convert(&v[p * stride..][..hd], &mut vf[..lanes]);
        let mut arg = [0f32; MAX_QUERIES];
        let mut new_max = [false; MAX_QUERIES];
        for (g, query) in queries.iter().enumerate() {
            if p >= query.n_pos {
                continue;
            }
            let s = score(g, &kf[..lanes]);
            if s > m[g] {
                arg[g] = m[g] - s;
                new_max[g] = true;
                m[g] = s;
            } else {
                arg[g] = s - m[g];
            }
        }
        let mut e = [0f32; MAX_QUERIES];
        // SAFETY: this function's features are `expf_slice`'s.
        unsafe { expf_slice(&arg[..nq], &mut e[..nq]) };
        for (g, query) in queries.iter().enumerate() {
            if p < query.n_pos {
                add(g, e[g], new_max[g], &vf[..lanes]);
            }
        }
    }
}

/// Each query's head converted to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn converted_queries(
    queries: &[F16Query<'_>],
    lanes: usize,
) -> [[__m256; MAX_HEAD / 8]; MAX_QUERIES] {
    let mut q = [[_mm256_setzero_ps(); MAX_HEAD / 8]; MAX_QUERIES];
    for (qf, query) in q.iter_mut().zip(queries.iter()) {
        convert(query.q16, &mut qf[..lanes]);
    }
    q
}

/// [`attend_f16`] for heads of `hd` values, `hd` a multiple of 32 and at most [`MAX_HEAD`]:
/// `vec_dot_f16_f16`'s four accumulators and folds, `vec_scale_f16`'s and `vec_mad_f16`'s
/// products and roundings to f16, on values converted to f32 once, with each query's
/// accumulator held in registers as f32 values rounded to f16 precision at every step (a
/// rounding in a register is the store and reload's, without the trip through memory). Per
/// query, the steps of the portable version, bit for bit. The common head sizes have their
/// loops unrolled.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_f16_converted(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    hd: usize,
) {
    match hd / 8 {
        8 => converted_heads::<8>(queries, k, v, stride, scale, hd),
        16 => converted_heads::<16>(queries, k, v, stride, scale, hd),
        32 => converted_heads::<32>(queries, k, v, stride, scale, hd),
        _ => converted_heads::<0>(queries, k, v, stride, scale, hd),
    }
}

/// Round eight f32 to f16 precision (nearest even), as a store to halves and a reload do.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_f16(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(x))
}

/// [`attend_f16_converted`] for heads of `hd` values, `8 * L` where `L` is not 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn converted_heads<const L: usize>(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    hd: usize,
) {
    let lanes = if L > 0 { L } else { hd / 8 };
    let q = converted_queries(queries, lanes);
    let mut acc = [[_mm256_setzero_ps(); MAX_HEAD / 8]; MAX_QUERIES];
    let mut sum = [0f32; MAX_QUERIES];
    let score = |g: usize, kf: &[__m256]| {
        // `vec_dot_f16_f16(k, q)`: four accumulators over steps of 32, folded 0+2, 1+3.
        let mut s4 = [_mm256_setzero_ps(); 4];
        for step in 0..lanes / 4 {
            for (j, s) in s4.iter_mut().enumerate() {
                let i = 4 * step + j;
                *s = _mm256_fmadd_ps(kf[i], q[g][i], *s);
            }
        }
        let a = _mm256_add_ps(s4[0], s4[2]);
        let b = _mm256_add_ps(s4[1], s4[3]);
        let t = _mm256_add_ps(a, b);
        let t0 = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
        let t1 = _mm_hadd_ps(t0, t0);
        let dot = f64::from(_mm_cvtss_f32(_mm_hadd_ps(t1, t1))) as f32;
        dot * scale
    };
    let add = |g: usize, e: f32, new_max: bool, vf: &[__m256]| {
        let acc = &mut acc[g][..lanes];
        let (ms, vs) = if new_max {
            // A new maximum: rescale what was accumulated (`vec_scale_f16(acc, e)`).
            let ms = _mm256_set1_ps(e);
            for a in acc.iter_mut() {
                *a = round_f16(_mm256_mul_ps(*a, ms));
            }
            (e, 1f32)
        } else {
            (1f32, e)
        };
        // `vec_mad_f16(acc, v, vs)`.
        let vv = _mm256_set1_ps(vs);
        for (a, vj) in acc.iter_mut().zip(&vf[..lanes]) {
            *a = round_f16(_mm256_fmadd_ps(*vj, vv, *a));
        }
        sum[g] = _mm_cvtss_f32(_mm_fmadd_ss(
            _mm_set_ss(sum[g]),
            _mm_set_ss(ms),
            _mm_set_ss(vs),
        ));
    };
    positions(queries, (k, v, stride, lanes), score, add);
    finish_f32(queries, &acc, &sum, lanes);
}

/// Flash attention for the fast tables (issue #14): `attend_f16_converted`'s loop with each
/// query's value accumulator in f32 registers instead of an f16 buffer rounded at every
/// position (ggml's order, which the exact tables keep), and the dot products in two chains.
/// No conversion to f16 and back per position and query; the result is closer to the exact
/// softmax-weighted sum, not bit-identical to llama.cpp's. Heads of a multiple of 8 values up
/// to `MAX_HEAD` (256); others take [`attend_f16`]. `vkq` is not used.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn attend_f16_fast(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    vkq: &mut [u16],
) {
    let nq = queries.len().min(MAX_QUERIES);
    let queries = &mut queries[..nq];
    let hd = query_len(queries);
    if hd == 0 || !hd.is_multiple_of(8) || hd > MAX_HEAD {
        // SAFETY: the caller guarantees the CPU features, the same for this kernel.
        unsafe { attend_f16(queries, k, v, stride, scale, vkq) };
        return;
    }
    // The common head sizes with their loops unrolled.
    match hd / 8 {
        8 => fast_heads::<8>(queries, k, v, stride, scale, hd),
        16 => fast_heads::<16>(queries, k, v, stride, scale, hd),
        32 => fast_heads::<32>(queries, k, v, stride, scale, hd),
        _ => fast_heads::<0>(queries, k, v, stride, scale, hd),
    }
}

/// [`attend_f16_fast`] for heads of `hd` values, `8 * L` where `L` is not 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fast_heads<const L: usize>(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    hd: usize,
) {
    let lanes = if L > 0 { L } else { hd / 8 };
    let q = converted_queries(queries, lanes);
    let mut acc = [[_mm256_setzero_ps(); MAX_HEAD / 8]; MAX_QUERIES];
    let mut sum = [0f32; MAX_QUERIES];
    let score = |g: usize, kf: &[__m256]| {
        let mut s2 = [_mm256_setzero_ps(); 2];
        for (i, (kf, qf)) in kf[..lanes].iter().zip(&q[g][..lanes]).enumerate() {
            s2[i % 2] = _mm256_fmadd_ps(*kf, *qf, s2[i % 2]);
        }
        super::hsum_f32x8(_mm256_add_ps(s2[0], s2[1])) * scale
    };
    let add = |g: usize, e: f32, new_max: bool, vf: &[__m256]| {
        let acc = &mut acc[g][..lanes];
        if new_max {
            // A new maximum: rescale what was accumulated; this value's weight is 1.
            let ms = _mm256_set1_ps(e);
            for (a, vj) in acc.iter_mut().zip(&vf[..lanes]) {
                *a = _mm256_fmadd_ps(*a, ms, *vj);
            }
            sum[g] = _mm_cvtss_f32(_mm_fmadd_ss(
                _mm_set_ss(sum[g]),
                _mm_set_ss(e),
                _mm_set_ss(1.0),
            ));
        } else {
            let vv = _mm256_set1_ps(e);
            for (a, vj) in acc.iter_mut().zip(&vf[..lanes]) {
                *a = _mm256_fmadd_ps(*vj, vv, *a);
            }
            sum[g] += e;
        }
    };
    positions(queries, (k, v, stride, lanes), score, add);
    finish_f32(queries, &acc, &sum, lanes);
}

/// Each query's result: its accumulator in registers (`lanes` of them) divided by its sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_f32(
    queries: &mut [F16Query<'_>],
    acc: &[[__m256; MAX_HEAD / 8]; MAX_QUERIES],
    sum: &[f32; MAX_QUERIES],
    lanes: usize,
) {
    for (g, query) in queries.iter_mut().enumerate() {
        let inv = _mm256_set1_ps(if sum[g] == 0.0 { 0.0 } else { 1.0 / sum[g] });
        for (o, a) in query.out.chunks_exact_mut(8).zip(&acc[g][..lanes]) {
            // SAFETY: `o` is 8 writable f32s; `storeu` needs no alignment.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_mul_ps(*a, inv)) };
        }
    }
}

/// Each query's result: its f16 accumulator (`hd` halves of `vkq` each) divided by its sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish(queries: &mut [F16Query<'_>], vkq: &[u16], sum: &[f32], hd: usize) {
    for (g, (query, acc)) in queries.iter_mut().zip(vkq.chunks_exact(hd)).enumerate() {
        let inv = if sum[g] == 0.0 { 0.0 } else { 1.0 / sum[g] };
        for (o, &a) in query.out.iter_mut().zip(acc) {
            *o = fp16(a) * inv;
        }
    }
}
