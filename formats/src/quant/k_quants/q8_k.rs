//! Q8_K: 256 weights `x = d * q` with 8-bit `q`, an f32 scale and the sums of each 16 quants
//! (the intermediate format ggml's K-quant dot products quantize activations to).

use crate::quant::k_search::{fabsf, nearest_int};
use crate::quant::QK_K;

/// A Q8_K super-block: 256 weights in 292 bytes, 9.125 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8K {
    /// Scale (f32).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sum of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(core::mem::size_of::<BlockQ8K>() == 292);

/// ggml's `quantize_row_q8_K_ref`.
pub fn quantize_row_q8_k_ref(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, y) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            let ax = fabsf(v);
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            y.d = 0.0;
            y.qs = [0; QK_K];
            // ggml leaves bsums as they were here; zero them (no reader uses them: the block
            // is all zeros).
            y.bsums = [0; QK_K / 16];
            continue;
        }
        // -127 rather than -128 (ggml: so that IQ2_XXS's AVX path stays simple).
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| i16::from(q)).sum();
        }
        y.d = 1.0 / iscale;
    }
}

/// ggml's `dequantize_row_q8_K`.
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (v, &q) in y.iter_mut().zip(&b.qs) {
            *v = b.d * f32::from(q);
        }
    }
}
