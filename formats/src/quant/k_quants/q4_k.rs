//! Q4_K: 8 sub-blocks of 32 weights, `x = d * sc * q - dmin * m` with 4-bit `q` and 6-bit
//! sub-block scale `sc` and min `m`.

use super::{requantize_k4, scale_min_k4_impl, scale_min_k4_ref, split_blocks};
use crate::quant::k_search::get_scale_min_k4;
use crate::quant::{fp16_bits_to_fp32, QK_K};

/// A Q4_K super-block: 256 weights in 144 bytes, 4.5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale of the scales (f16 bits).
    pub d: u16,
    /// Super-block scale of the mins (f16 bits).
    pub dmin: u16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (see `get_scale_min_k4`).
    pub scales: [u8; 12],
    /// 4-bit quants: byte `l` of each 32 holds elements `l` (low nibble) and `l + 32` (high)
    /// of its 64.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4K>() == 144);

fn pack(l: &[u8; QK_K], qs: &mut [u8; QK_K / 2]) {
    for (q, l) in qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
        for (i, q) in q.iter_mut().enumerate() {
            *q = l[i] | (l[i + 32] << 4);
        }
    }
}

/// ggml's `quantize_row_q4_K_ref`.
pub fn quantize_row_q4_k_ref(x: &[f32], y: &mut [BlockQ4K]) {
    let mut l = [0u8; QK_K];
    for (x, y) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        (y.d, y.dmin) = scale_min_k4_ref(x, 15, -1.0, 20, &mut l, &mut y.scales);
        requantize_k4(x, y.d, y.dmin, &y.scales, 15, &mut l);
        pack(&l, &mut y.qs);
    }
}

/// ggml's `quantize_row_q4_K_impl`: one row, with importance weights `qw`.
fn quantize_row_q4_k_impl(x: &[f32], y: &mut [BlockQ4K], qw: &[f32]) {
    let mut l = [0u8; QK_K];
    for ((x, y), qw) in split_blocks(x, y, qw) {
        (y.d, y.dmin) = scale_min_k4_impl(x, qw, 15, false, &mut l, &mut y.scales);
        requantize_k4(x, y.d, y.dmin, &y.scales, 15, &mut l);
        pack(&l, &mut y.qs);
    }
}

/// ggml's `quantize_q4_K`: whole rows of `n_per_row`; [`quantize_row_q4_k_ref`] without
/// importance weights, ggml's weighted search (`quantize_row_q4_K_impl`) with them.
pub fn quantize_q4_k(
    src: &[f32],
    dst: &mut [BlockQ4K],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    match quant_weights {
        None => quantize_row_q4_k_ref(src, dst),
        Some(qw) => {
            let nb = n_per_row / QK_K;
            for (x, y) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(nb)) {
                quantize_row_q4_k_impl(x, y, qw);
            }
        }
    }
}

/// ggml's `dequantize_row_q4_K`.
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = fp16_bits_to_fp32(b.d);
        let min = fp16_bits_to_fp32(b.dmin);
        for (j, (y, q)) in y
            .chunks_exact_mut(64)
            .zip(b.qs.chunks_exact(32))
            .enumerate()
        {
            let (sc1, m1) = get_scale_min_k4(2 * j, &b.scales);
            let (sc2, m2) = get_scale_min_k4(2 * j + 1, &b.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (lo, hi) = y.split_at_mut(32);
            for ((a, b), &q) in lo.iter_mut().zip(hi).zip(q) {
                *a = d1 * f32::from(q & 0xf) - m1;
                *b = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}
