//! Q3_K: 16 sub-blocks of 16 weights, `x = d * (sc - 32) * (q - 4)` with 3-bit `q` (low 2 bits
//! in `qs`, high bit in `hmask`) and 6-bit sub-block scale `sc`.

use super::{pack_2bit, split_blocks};
use crate::quant::k_search::{fabsf, make_q3_quants, make_qx_quants, nearest_int, sqrtf};
use crate::quant::{fp16_bits_to_fp32, fp32_to_fp16_bits, QK_K};

/// A Q3_K super-block: 256 weights in 110 bytes, 3.4375 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ3K {
    /// High bit of each quant: element `j` in bit `j / 32` of byte `j % 32`.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of each quant, packed as Q2_K's.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales (offset by 32): low nibbles in bytes 0-7 (sub-blocks 0-7 low,
    /// 8-15 high nibble), the top 2 bits in bytes 8-11 (sub-block `j` at byte `8 + j % 4`,
    /// bits `2 * (j / 4)`).
    pub scales: [u8; 12],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(core::mem::size_of::<BlockQ3K>() == 110);

/// Store 6-bit scale `l` (0..64) of sub-block `j` into the packed scales (zeroed beforehand).
fn set_scale(scales: &mut [u8; 12], j: usize, l: i32) {
    if j < 8 {
        scales[j] = (l & 0xf) as u8;
    } else {
        scales[j - 8] |= ((l & 0xf) << 4) as u8;
    }
    scales[8 + j % 4] |= ((l >> 4) << (2 * (j / 4))) as u8;
}

/// The signed scale of sub-block `j`.
fn get_scale(scales: &[u8; 12], j: usize) -> i8 {
    let low = if j < 8 {
        scales[j] & 0xf
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// Requantize with the block's final scales into `l` (kept where a scale is zero), then split
/// off the high bits into `hmask` and pack the rest.
fn finish(x: &[f32], y: &mut BlockQ3K, l: &mut [i8; QK_K]) {
    let d_all = fp16_bits_to_fp32(y.d);
    for j in 0..QK_K / 16 {
        let d = d_all * f32::from(get_scale(&y.scales, j));
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
        }
    }
    y.hmask = [0; QK_K / 8];
    let mut low = [0u8; QK_K];
    for (j, (&q, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
        let mut q = q;
        if q > 3 {
            y.hmask[j % (QK_K / 8)] |= 1 << (j / (QK_K / 8));
            q -= 4;
        }
        *lo = q as u8;
    }
    pack_2bit(&low, &mut y.qs);
}

/// ggml's `quantize_row_q3_K_ref`.
pub fn quantize_row_q3_k_ref(x: &[f32], y: &mut [BlockQ3K]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for (x, y) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(
                4,
                &x[16 * j..16 * j + 16],
                &mut l[16 * j..16 * j + 16],
                true,
            );
            let scale = fabsf(scales[j]);
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }
        y.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..QK_K / 16 {
                // C stores nearest_int's result in an int8_t before clamping.
                let l = nearest_int(iscale * scales[j]) as i8;
                set_scale(&mut y.scales, j, i32::from(l).clamp(-32, 31) + 32);
            }
            y.d = fp32_to_fp16_bits(1.0 / iscale);
        } else {
            y.d = fp32_to_fp16_bits(0.0);
        }
        finish(x, y, &mut l);
    }
}

/// ggml's `quantize_row_q3_K_impl`: one row, with importance weights `qw`.
fn quantize_row_q3_k_impl(x: &[f32], y: &mut [BlockQ3K], qw: &[f32]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut sw = [0f32; QK_K / 16];
    let mut ls = [0i8; QK_K / 16];
    for ((x, y), qw) in split_blocks(x, y, qw) {
        let mut sumx2 = 0.0f32;
        for &v in x {
            sumx2 += v * v;
        }
        let sigma2 = 2.0 * sumx2 / QK_K as f32;
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for ((w, &q), &v) in weight.iter_mut().zip(&qw[16 * j..]).zip(xs) {
                *w = q * sqrtf(sigma2 + v * v);
            }
            let mut sumw = 0.0f32;
            for &w in &weight {
                sumw += w;
            }
            sw[j] = sumw;
            scales[j] = make_qx_quants(4, xs, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
        }
        y.scales = [0; 12];
        let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
        for j in 0..QK_K / 16 {
            set_scale(&mut y.scales, j, i32::from(ls[j]));
        }
        y.d = fp32_to_fp16_bits(d_block);
        finish(x, y, &mut l);
    }
}

/// ggml's `quantize_q3_K`: whole rows of `n_per_row`; [`quantize_row_q3_k_ref`] without
/// importance weights, ggml's weighted search (`quantize_row_q3_K_impl`) with them.
pub fn quantize_q3_k(
    src: &[f32],
    dst: &mut [BlockQ3K],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    match quant_weights {
        None => quantize_row_q3_k_ref(src, dst),
        Some(qw) => {
            let nb = n_per_row / QK_K;
            for (x, y) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(nb)) {
                quantize_row_q3_k_impl(x, y, qw);
            }
        }
    }
}

/// ggml's `dequantize_row_q3_K`.
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = fp16_bits_to_fp32(b.d);
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let q = &b.qs[32 * n..32 * n + 32];
            for (k, y) in y.chunks_exact_mut(16).enumerate() {
                let (shift, half) = (2 * (k / 2), 16 * (k % 2));
                let m = 1u8 << (4 * n + k / 2);
                let dl = d_all * f32::from(get_scale(&b.scales, 8 * n + k));
                let (q, hm) = (&q[half..half + 16], &b.hmask[half..half + 16]);
                for ((v, &q), &h) in y.iter_mut().zip(q).zip(hm) {
                    let hi = if h & m != 0 { 0 } else { 4 };
                    *v = dl * f32::from(((q >> shift) & 3) as i8 - hi);
                }
            }
        }
    }
}
