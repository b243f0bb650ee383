//! Q5_K: 8 sub-blocks of 32 weights, `x = d * sc * q - dmin * m` with 5-bit `q` (low 4 bits in
//! `qs`, high bit in `qh`) and 6-bit sub-block scale `sc` and min `m`.

use super::{requantize_k4, scale_min_k4_impl, scale_min_k4_ref, split_blocks};
use crate::quant::k_search::get_scale_min_k4;
use crate::quant::{fp16_bits_to_fp32, QK_K};

/// A Q5_K super-block: 256 weights in 176 bytes, 5.5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale of the scales (f16 bits).
    pub d: u16,
    /// Super-block scale of the mins (f16 bits).
    pub dmin: u16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as Q4_K's.
    pub scales: [u8; 12],
    /// High bits: element `64 * n + l` in bit `2n` of byte `l`, element `64 * n + 32 + l` in
    /// bit `2n + 1`.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, packed as Q4_K's quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5K>() == 176);

fn pack(l: &[u8; QK_K], y: &mut BlockQ5K) {
    y.qh = [0; QK_K / 8];
    for (n, (ql, l)) in
        y.qs.chunks_exact_mut(32)
            .zip(l.chunks_exact(64))
            .enumerate()
    {
        let (m1, m2) = (1u8 << (2 * n), 2u8 << (2 * n));
        for (j, q) in ql.iter_mut().enumerate() {
            let (mut l1, mut l2) = (l[j], l[j + 32]);
            if l1 > 15 {
                l1 -= 16;
                y.qh[j] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                y.qh[j] |= m2;
            }
            *q = l1 | (l2 << 4);
        }
    }
}

/// ggml's `quantize_row_q5_K_ref`.
pub fn quantize_row_q5_k_ref(x: &[f32], y: &mut [BlockQ5K]) {
    let mut l = [0u8; QK_K];
    for (x, y) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        (y.d, y.dmin) = scale_min_k4_ref(x, 31, -0.5, 15, &mut l, &mut y.scales);
        requantize_k4(x, y.d, y.dmin, &y.scales, 31, &mut l);
        pack(&l, y);
    }
}

/// ggml's `quantize_row_q5_K_impl`: one row, with importance weights `qw`.
fn quantize_row_q5_k_impl(x: &[f32], y: &mut [BlockQ5K], qw: &[f32]) {
    let mut l = [0u8; QK_K];
    for ((x, y), qw) in split_blocks(x, y, qw) {
        (y.d, y.dmin) = scale_min_k4_impl(x, qw, 31, true, &mut l, &mut y.scales);
        requantize_k4(x, y.d, y.dmin, &y.scales, 31, &mut l);
        pack(&l, y);
    }
}

/// ggml's `quantize_q5_K`: whole rows of `n_per_row`; [`quantize_row_q5_k_ref`] without
/// importance weights, ggml's weighted search (`quantize_row_q5_K_impl`) with them.
pub fn quantize_q5_k(
    src: &[f32],
    dst: &mut [BlockQ5K],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    match quant_weights {
        None => quantize_row_q5_k_ref(src, dst),
        Some(qw) => {
            let nb = n_per_row / QK_K;
            for (x, y) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(nb)) {
                quantize_row_q5_k_impl(x, y, qw);
            }
        }
    }
}

/// ggml's `dequantize_row_q5_K`.
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = fp16_bits_to_fp32(b.d);
        let min = fp16_bits_to_fp32(b.dmin);
        for (j, (y, ql)) in y
            .chunks_exact_mut(64)
            .zip(b.qs.chunks_exact(32))
            .enumerate()
        {
            let (sc1, m1) = get_scale_min_k4(2 * j, &b.scales);
            let (sc2, m2) = get_scale_min_k4(2 * j + 1, &b.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let (lo, hi) = y.split_at_mut(32);
            for (((a, b), &q), &h) in lo.iter_mut().zip(hi).zip(ql).zip(&b.qh) {
                *a = d1 * f32::from((q & 0xf) + if h & u1 != 0 { 16 } else { 0 }) - m1;
                *b = d2 * f32::from((q >> 4) + if h & u2 != 0 { 16 } else { 0 }) - m2;
            }
        }
    }
}
