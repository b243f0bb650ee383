//! Q2_K: 16 sub-blocks of 16 weights, `x = d * sc * q - dmin * m` with 2-bit `q` and 4-bit
//! sub-block scale `sc` and min `m`.

use super::{pack_2bit, split_blocks};
use crate::quant::k_search::{
    fabsf, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int, sqrtf,
};
use crate::quant::{fp16_bits_to_fp32, fp32_to_fp16_bits, QK_K};

/// A Q2_K super-block: 256 weights in 84 bytes, 2.625 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2K {
    /// Sub-block scales (low nibble) and mins (high nibble), 4 bits each.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants, four per byte: byte `l` of each 32-byte group holds elements `l`, `l + 32`,
    /// `l + 64`, `l + 96` of its 128 in bits 0-1, 2-3, 4-5, 6-7.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales (f16 bits).
    pub d: u16,
    /// Super-block scale of the mins (f16 bits).
    pub dmin: u16,
}
const _: () = assert!(core::mem::size_of::<BlockQ2K>() == 84);

/// Requantize each sub-block of `x` with the block's final (f16-rounded) scales and mins, into
/// `l` (left as they are where a sub-block's scale is zero), then pack.
fn finish(x: &[f32], y: &mut BlockQ2K, l: &mut [u8; QK_K]) {
    let dm = fp16_bits_to_fp32(y.d);
    let mm = fp16_bits_to_fp32(y.dmin);
    for j in 0..QK_K / 16 {
        let d = dm * f32::from(y.scales[j] & 0xf);
        if d == 0.0 {
            continue;
        }
        let m = mm * f32::from(y.scales[j] >> 4);
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + m) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(l, &mut y.qs);
}

/// ggml's `quantize_row_q2_K_ref`.
pub fn quantize_row_q2_k_ref(x: &[f32], y: &mut [BlockQ2K]) {
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    for (x, y) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32; // scales are positive as the min is subtracted
        let mut max_min = 0.0f32;
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = fabsf(v);
            }
            let ls = &mut l[16 * j..16 * j + 16];
            scales[j] = make_qkx2_quants(
                3,
                xs,
                &weights,
                ls,
                &mut mins[j],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..QK_K / 16 {
                y.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            y.d = fp32_to_fp16_bits(max_scale / Q4SCALE);
        } else {
            y.scales = [0; QK_K / 16];
            y.d = fp32_to_fp16_bits(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..QK_K / 16 {
                y.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            y.dmin = fp32_to_fp16_bits(max_min / Q4SCALE);
        } else {
            y.dmin = fp32_to_fp16_bits(0.0);
        }
        finish(x, y, &mut l);
    }
}

/// ggml's `quantize_row_q2_K_impl`: one row, with importance weights `qw` (one per element).
fn quantize_row_q2_k_impl(x: &[f32], y: &mut [BlockQ2K], qw: &[f32]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut ls = [0u8; QK_K / 16];
    let mut lm = [0u8; QK_K / 16];
    for ((x, y), qw) in split_blocks(x, y, qw) {
        let mut sw = [0f32; QK_K / 16];
        let mut sumx2 = 0.0f32;
        for &v in x {
            sumx2 += v * v;
        }
        let sigma2 = sumx2 / QK_K as f32;
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for ((w, &q), &v) in weight.iter_mut().zip(&qw[16 * j..]).zip(xs) {
                *w = q * sqrtf(sigma2 + v * v);
            }
            for &w in &weight {
                sw[j] += w;
            }
            let lj = &mut l[16 * j..16 * j + 16];
            scales[j] = make_qkx3_quants(
                3,
                xs,
                Some(&weight),
                lj,
                &mut mins[j],
                &mut laux,
                -0.9,
                0.05,
                36,
                false,
            );
        }
        let dm = make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = make_qp_quants(15, &mins, &mut lm, &sw);
        y.d = fp32_to_fp16_bits(dm);
        y.dmin = fp32_to_fp16_bits(mm);
        for j in 0..QK_K / 16 {
            y.scales[j] = ls[j] | (lm[j] << 4);
        }
        finish(x, y, &mut l);
    }
}

/// ggml's `quantize_q2_K`: whole rows of `n_per_row`; [`quantize_row_q2_k_ref`] without
/// importance weights, ggml's weighted search (`quantize_row_q2_K_impl`) with them.
pub fn quantize_q2_k(
    src: &[f32],
    dst: &mut [BlockQ2K],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    match quant_weights {
        None => quantize_row_q2_k_ref(src, dst),
        Some(qw) => {
            let nb = n_per_row / QK_K;
            for (x, y) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(nb)) {
                quantize_row_q2_k_impl(x, y, qw);
            }
        }
    }
}

/// ggml's `dequantize_row_q2_K`.
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = fp16_bits_to_fp32(b.d);
        let min = fp16_bits_to_fp32(b.dmin);
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let q = &b.qs[32 * n..32 * n + 32];
            for (k, y) in y.chunks_exact_mut(16).enumerate() {
                // Sub-blocks of 16 alternate between the two halves of the 32 bytes.
                let (shift, half) = (2 * (k / 2), 16 * (k % 2));
                let sc = b.scales[8 * n + k];
                let dl = d * f32::from(sc & 0xf);
                let ml = min * f32::from(sc >> 4);
                for (v, &q) in y.iter_mut().zip(&q[half..half + 16]) {
                    *v = dl * f32::from((q >> shift) & 3) - ml;
                }
            }
        }
    }
}
