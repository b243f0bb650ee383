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
//! The fast tables (issue #14) take [`attend_f16_fast`] instead: tiles of positions, each
//! converted once for all the queries, scores eight at a time, ggml's vectorized `expf` and
//! f32 value accumulators; closer to the exact result and not bit-identical to ggml's.

use super::expf::expf_slice;
use super::vec::{load_f16x8, v_expf};
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

/// Each query's head converted to f32, in buffers of `C` registers a head.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn converted_queries<const C: usize>(
    queries: &[F16Query<'_>],
    lanes: usize,
) -> [[__m256; C]; MAX_QUERIES] {
    let mut q = [[_mm256_setzero_ps(); C]; MAX_QUERIES];
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
    let q = converted_queries::<{ MAX_HEAD / 8 }>(queries, lanes);
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

/// Flash attention for the fast tables (issue #14), in tiles of [`TILE`] positions instead of
/// one position at a time: each tile's keys and values are converted to f32 once for all the
/// queries; each query's scores over the tile are eight dot products at a time (eight
/// independent chains, summed across by one transpose), its running maximum moves once per
/// tile (rescaling the accumulator then), its weights are ggml's vectorized `expf` eight at a
/// time, and its values are accumulated in f32 registers. Not bit-identical to llama.cpp's
/// (f16 accumulators, libm's `expf` per position); closer to the exact softmax-weighted sum. A
/// query's result depends only on its own head and positions (tiles start at the first
/// position for every query), so queries attended together give each one's result alone.
/// Heads of a multiple of 8 values up to `MAX_HEAD` (256); others take [`attend_f16`]. `vkq`
/// is not used.
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
        8 => tiled_heads::<8, 8>(queries, k, v, stride, scale, hd),
        16 => tiled_heads::<16, 16>(queries, k, v, stride, scale, hd),
        32 => tiled_heads::<32, 32>(queries, k, v, stride, scale, hd),
        _ => tiled_heads::<0, { MAX_HEAD / 8 }>(queries, k, v, stride, scale, hd),
    }
}

/// Positions per tile of [`attend_f16_fast`] (a multiple of 8).
const TILE: usize = 32;

/// Rows `t0..t1` of the cache (`x`, rows `stride` apart, `lanes` registers each) into `out`
/// (a tile's keys or values as f32, position `t0 + i` in row `i`), the rows past `t1` up to
/// the next multiple of 8 zeroed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn convert_tile<const C: usize>(
    x: &[u16],
    (stride, lanes): (usize, usize),
    t0: usize,
    t1: usize,
    out: &mut [[__m256; C]; TILE],
) {
    for (i, row) in out
        .iter_mut()
        .enumerate()
        .take((t1 - t0).next_multiple_of(8))
    {
        let p = t0 + i;
        if p < t1 {
            convert(&x[p * stride..][..8 * lanes], &mut row[..lanes]);
        } else {
            row[..lanes].fill(_mm256_setzero_ps());
        }
    }
}

/// The sums of the lanes of each of `d[0..8]`, in that order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_across(d: &[__m256; 8]) -> __m256 {
    let t0 = _mm256_hadd_ps(d[0], d[1]);
    let t1 = _mm256_hadd_ps(d[2], d[3]);
    let t2 = _mm256_hadd_ps(d[4], d[5]);
    let t3 = _mm256_hadd_ps(d[6], d[7]);
    let u0 = _mm256_hadd_ps(t0, t1);
    let u1 = _mm256_hadd_ps(t2, t3);
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(u0, u1),
        _mm256_permute2f128_ps::<0x31>(u0, u1),
    )
}

/// [`attend_f16_fast`] for heads of `hd` values, `8 * L` where `L` is not 0, in buffers of `C`
/// registers a head (`L`, or `MAX_HEAD / 8` for any head size): the smallest buffers that
/// hold the head, as they are set to zero at every call.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tiled_heads<const L: usize, const C: usize>(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    hd: usize,
) {
    let lanes = if L > 0 { L } else { hd / 8 };
    let q = converted_queries::<C>(queries, lanes);
    let mut acc = [[_mm256_setzero_ps(); C]; MAX_QUERIES];
    let mut m = [f32::NEG_INFINITY; MAX_QUERIES];
    let mut sum = [0f32; MAX_QUERIES];
    let mut rows = [[_mm256_setzero_ps(); C]; TILE];
    // Each query's weights over the tile.
    let mut w = [[0f32; TILE]; MAX_QUERIES];
    let n_pos = queries.iter().map(|q| q.n_pos).max().unwrap_or(0);
    let scale8 = _mm256_set1_ps(scale);
    for t0 in (0..n_pos).step_by(TILE) {
        let t1 = (t0 + TILE).min(n_pos);
        convert_tile(k, (stride, lanes), t0, t1, &mut rows);
        for (g, query) in queries.iter().enumerate() {
            let end = query.n_pos.min(t1);
            if end <= t0 {
                continue;
            }
            let qg = &q[g][..lanes];
            // Scores, eight positions at a time; positions past the query's own are -inf.
            let mut s = [_mm256_set1_ps(f32::NEG_INFINITY); TILE / 8];
            let mut top = _mm256_set1_ps(f32::NEG_INFINITY);
            for (b, sb) in s.iter_mut().enumerate().take((end - t0).div_ceil(8)) {
                let mut d = [_mm256_setzero_ps(); 8];
                for (i, di) in d.iter_mut().enumerate() {
                    for (kf, qf) in rows[8 * b + i][..lanes].iter().zip(qg) {
                        *di = _mm256_fmadd_ps(*kf, *qf, *di);
                    }
                }
                let valid = (end - t0 - 8 * b).min(8) as i32;
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane));
                *sb = _mm256_blendv_ps(
                    _mm256_set1_ps(f32::NEG_INFINITY),
                    _mm256_mul_ps(sum_across(&d), scale8),
                    keep,
                );
                top = _mm256_max_ps(top, *sb);
            }
            let top = hmax_f32x8(top);
            let accg = &mut acc[g][..lanes];
            if top > m[g] {
                // A new maximum: rescale what was accumulated (nothing before the first tile).
                if m[g] != f32::NEG_INFINITY {
                    let f = _mm256_cvtss_f32(v_expf(_mm256_set1_ps(m[g] - top)));
                    let f8 = _mm256_set1_ps(f);
                    for a in accg.iter_mut() {
                        *a = _mm256_mul_ps(*a, f8);
                    }
                    sum[g] *= f;
                }
                m[g] = top;
            }
            let m8 = _mm256_set1_ps(m[g]);
            let mut total = _mm256_setzero_ps();
            for (b, sb) in s.iter().enumerate().take((end - t0).div_ceil(8)) {
                let e = v_expf(_mm256_sub_ps(*sb, m8));
                total = _mm256_add_ps(total, e);
                // SAFETY: `w[g][8 * b..]` holds 8 writable f32s (`TILE` is a multiple of 8).
                unsafe { _mm256_storeu_ps(w[g][8 * b..].as_mut_ptr(), e) };
            }
            sum[g] += super::hsum_f32x8(total);
        }
        convert_tile(v, (stride, lanes), t0, t1, &mut rows);
        for (g, query) in queries.iter().enumerate() {
            let end = query.n_pos.min(t1);
            if end <= t0 {
                continue;
            }
            let mut a = acc[g];
            for (row, &wp) in rows[..end - t0].iter().zip(&w[g]) {
                let wp = _mm256_set1_ps(wp);
                for (a, vf) in a[..lanes].iter_mut().zip(&row[..lanes]) {
                    *a = _mm256_fmadd_ps(*vf, wp, *a);
                }
            }
            acc[g] = a;
        }
    }
    finish_f32(queries, &acc, &sum, lanes);
}

/// The largest of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax_f32x8(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Each query's result: its accumulator in registers (`lanes` of them) divided by its sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_f32<const C: usize>(
    queries: &mut [F16Query<'_>],
    acc: &[[__m256; C]; MAX_QUERIES],
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
