//! AVX2 flash attention over an f16 cache (`crate::attention`): the steps of the portable
//! version on the AVX2 table (`vec_dot_f16_f16`, `vec_scale_f16`, `vec_mad_f16`, libm's `expf`
//! and one fused multiply-add for the running sum), inlined, position by position for all the
//! queries at once, so that each position's keys and values are read from memory once for all
//! of them. Each query keeps its own maximum, sum and f16 accumulator: its result is the
//! portable version's, bit for bit (`tests/parity.rs`).

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
    for (g, (query, acc)) in queries.iter_mut().zip(vkq.chunks_exact(hd)).enumerate() {
        let inv = if sum[g] == 0.0 { 0.0 } else { 1.0 / sum[g] };
        for (o, &a) in query.out.iter_mut().zip(acc) {
            *o = fp16(a) * inv;
        }
    }
}
