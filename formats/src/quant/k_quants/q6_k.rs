//! Q6_K: 16 sub-blocks of 16 weights, `x = d * sc * (q - 32)` with 6-bit `q` (low 4 bits in
//! `ql`, high 2 in `qh`) and signed 8-bit sub-block scale `sc`.

use crate::quant::k_search::{fabsf, make_qx_quants, nearest_int, GROUP_MAX_EPS};
use crate::quant::{fp16_bits_to_fp32, fp32_to_fp16_bits, QK_K};

/// A Q6_K super-block: 256 weights in 210 bytes, 6.5625 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits: within each 128, byte `l` holds elements `l` (low nibble) and `l + 64`
    /// (high), byte `32 + l` elements `l + 32` and `l + 96`.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits: within each 128, byte `l` holds those of elements `l`, `l + 32`, `l + 64`,
    /// `l + 96` in bits 0-1, 2-3, 4-5, 6-7.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);

/// Quantize one super-block; `qw` are its importance weights, if any.
fn quantize_block(x: &[f32], y: &mut BlockQ6K, qw: Option<&[f32]>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..QK_K / 16 {
        let qw = qw.map(|w| &w[16 * ib..16 * ib + 16]);
        let scale = make_qx_quants(
            32,
            &x[16 * ib..16 * ib + 16],
            &mut l[16 * ib..16 * ib + 16],
            1,
            qw,
        );
        scales[ib] = scale;
        let abs_scale = fabsf(scale);
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        y.d = fp32_to_fp16_bits(0.0);
        return;
    }
    let iscale = -128.0 / max_scale;
    y.d = fp32_to_fp16_bits(1.0 / iscale);
    for (s, &scale) in y.scales.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * scale).min(127) as i8;
    }
    let d_all = fp16_bits_to_fp32(y.d);
    for j in 0..QK_K / 16 {
        let d = d_all * f32::from(y.scales[j]);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    for ((ql, qh), l) in
        y.ql.chunks_exact_mut(64)
            .zip(y.qh.chunks_exact_mut(32))
            .zip(l.chunks_exact(128))
    {
        let l = |i: usize| l[i] as u8;
        for i in 0..32 {
            ql[i] = (l(i) & 0xf) | ((l(i + 64) & 0xf) << 4);
            ql[i + 32] = (l(i + 32) & 0xf) | ((l(i + 96) & 0xf) << 4);
            qh[i] = (l(i) >> 4)
                | ((l(i + 32) >> 4) << 2)
                | ((l(i + 64) >> 4) << 4)
                | ((l(i + 96) >> 4) << 6);
        }
    }
}

/// ggml's `quantize_row_q6_K_ref`.
pub fn quantize_row_q6_k_ref(x: &[f32], y: &mut [BlockQ6K]) {
    for (x, y) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        quantize_block(x, y, None);
    }
}

/// ggml's `quantize_q6_K`: whole rows of `n_per_row`; [`quantize_row_q6_k_ref`] without
/// importance weights, ggml's weighted search (`quantize_row_q6_K_impl`) with them.
pub fn quantize_q6_k(
    src: &[f32],
    dst: &mut [BlockQ6K],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    match quant_weights {
        None => quantize_row_q6_k_ref(src, dst),
        Some(qw) => {
            let nb = n_per_row / QK_K;
            for (x, y) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(nb)) {
                for ((x, y), qw) in super::split_blocks(x, y, qw) {
                    quantize_block(x, y, Some(qw));
                }
            }
        }
    }
}

/// ggml's `dequantize_row_q6_K`.
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = fp16_bits_to_fp32(b.d);
        let parts = y
            .chunks_exact_mut(128)
            .zip(b.ql.chunks_exact(64))
            .zip(b.qh.chunks_exact(32));
        for (n, ((y, ql), qh)) in parts.enumerate() {
            let sc = &b.scales[8 * n..8 * n + 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                y[l] = d * f32::from(sc[is]) * f32::from(q1);
                y[l + 32] = d * f32::from(sc[is + 2]) * f32::from(q2);
                y[l + 64] = d * f32::from(sc[is + 4]) * f32::from(q3);
                y[l + 96] = d * f32::from(sc[is + 6]) * f32::from(q4);
            }
        }
    }
}
