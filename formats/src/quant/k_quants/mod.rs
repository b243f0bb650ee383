//! ggml's K-quants: super-blocks of [`QK_K`] = 256 weights with quantized sub-block scales.
//! Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (each with ggml's importance-weighted search), and Q8_K,
//! the intermediate format of ggml's dot products. Transcribed from ggml's `ggml-quants.c`
//! and bit-exact with it; the searches are in [`super::k_search`].

mod q2_k;
mod q3_k;
mod q4_k;
mod q5_k;
mod q6_k;
mod q8_k;

pub use q2_k::*;
pub use q3_k::*;
pub use q4_k::*;
pub use q5_k::*;
pub use q6_k::*;
pub use q8_k::*;

use super::k_search::{
    fabsf, get_scale_min_k4, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int, sqrtf,
};
use super::{fp16_bits_to_fp32, fp32_to_fp16_bits, QK_K};

/// The super-blocks of one row with their values and importance weights: `(x, y)`, `qw`.
fn split_blocks<'a, B>(
    x: &'a [f32],
    y: &'a mut [B],
    qw: &'a [f32],
) -> impl Iterator<Item = ((&'a [f32], &'a mut B), &'a [f32])> {
    x.chunks_exact(QK_K)
        .zip(y.iter_mut())
        .zip(qw.chunks_exact(QK_K))
}

/// Pack 2-bit quants (Q2_K, Q3_K's low bits): within each 128, byte `l` holds elements `l`,
/// `l + 32`, `l + 64`, `l + 96` in bits 0-1, 2-3, 4-5, 6-7.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (q, l) in qs.chunks_exact_mut(32).zip(l.chunks_exact(128)) {
        for (i, q) in q.iter_mut().enumerate() {
            *q = l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6);
        }
    }
}

/// Store the 6-bit scale `ls` and min `lm` of sub-block `j` (in order 0..8) into Q4_K/Q5_K's
/// 12 packed bytes, as ggml does (bits above 6 are not masked, as in ggml).
fn set_scale_min_k4(scales: &mut [u8; 12], j: usize, ls: u8, lm: u8) {
    if j < 4 {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        scales[j - 4] |= (ls >> 4) << 6;
        scales[j] |= (lm >> 4) << 6;
    }
}

/// Q4_K/Q5_K's reference sub-block search (`quantize_row_q{4,5}_K_ref`): scales, mins and
/// quants `l` of the eight 32-weight sub-blocks with `make_qkx2_quants`, then the scales and
/// mins quantized to 6 bits against their maxima. Returns `(d, dmin)` as f16 bits.
fn scale_min_k4_ref(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
    packed: &mut [u8; 12],
) -> (u16, u16) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut max_scale = 0.0f32; // scales are positive as the min is subtracted
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = sqrtf(sum_x2 / 32.0);
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + fabsf(v);
        }
        let lj = &mut l[32 * j..32 * j + 32];
        scales[j] = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            lj,
            &mut mins[j],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..QK_K / 32 {
        // Truncated to uint8_t before the MIN, as in C.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        set_scale_min_k4(packed, j, ls, lm);
    }
    (
        fp32_to_fp16_bits(max_scale / 63.0),
        fp32_to_fp16_bits(max_min / 63.0),
    )
}

/// Q4_K/Q5_K's importance-weighted search (`quantize_row_q{4,5}_K_impl`): sub-blocks with
/// `make_qkx3_quants`, then scales and mins with `make_qp_quants` weighted by each
/// sub-block's total weight. `clamp63` is Q5_K's extra `MIN(63, ...)` on the 6-bit values.
fn scale_min_k4_impl(
    x: &[f32],
    qw: &[f32],
    nmax: i32,
    clamp63: bool,
    l: &mut [u8; QK_K],
    packed: &mut [u8; 12],
) -> (u16, u16) {
    let mut laux = [0u8; 32];
    let mut ls = [0u8; QK_K / 32];
    let mut lm = [0u8; QK_K / 32];
    let mut weights = [0f32; 32];
    let mut sw = [0f32; QK_K / 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    let sigma2 = 2.0 * sum_x2 / QK_K as f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        for ((w, &q), &v) in weights.iter_mut().zip(&qw[32 * j..]).zip(xs) {
            *w = q * sqrtf(sigma2 + v * v);
        }
        let mut sumw = 0.0f32;
        for &w in &weights {
            sumw += w;
        }
        sw[j] = sumw;
        let lj = &mut l[32 * j..32 * j + 32];
        scales[j] = make_qkx3_quants(
            nmax,
            xs,
            Some(&weights),
            lj,
            &mut mins[j],
            &mut laux,
            -0.9,
            0.05,
            36,
            false,
        );
    }
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    for j in 0..QK_K / 32 {
        let (s, m) = if clamp63 {
            (ls[j].min(63), lm[j].min(63))
        } else {
            (ls[j], lm[j])
        };
        set_scale_min_k4(packed, j, s, m);
    }
    (fp32_to_fp16_bits(d_block), fp32_to_fp16_bits(m_block))
}

/// Requantize each 32-weight sub-block to `0..=nmax` with its final (f16-rounded, 6-bit)
/// scale and min; sub-blocks whose scale is zero keep the quants of the search.
fn requantize_k4(x: &[f32], d: u16, dmin: u16, packed: &[u8; 12], nmax: i32, l: &mut [u8; QK_K]) {
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, packed);
        let d = fp16_bits_to_fp32(d) * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = fp16_bits_to_fp32(dmin) * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

#[cfg(test)]
mod tests;
