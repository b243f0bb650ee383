//! Entry points of the vector operations outside the matrix products, through the active
//! table: the steps of flash attention over an f16 KV cache (`vec_dot_f16`, `vec_mad_f16`,
//! `vec_scale_f16`) and the SiLU-gated unit (`swiglu_f32`). Slices of unequal length use
//! their common length; nothing here panics.

use crate::dispatch::{active, KernelTable};

impl KernelTable {
    /// `dot(x, y)` over halves, summed as ggml's `ggml_vec_dot_f16` on x86 (AVX2, and NEON in
    /// the same order) or in f64 lanes (scalar).
    pub fn vec_dot_f16(&self, x: &[u16], y: &[u16]) -> f32 {
        let n = x.len().min(y.len());
        if n == 0 {
            return 0.0;
        }
        let mut out = [0f32];
        (self.f16)(&x[..n], &y[..n], &mut out);
        out[0]
    }

    /// `y[i] = f16(y[i] + x[i] * v)` (one FMA on AVX2 and NEON).
    pub fn vec_mad_f16(&self, y: &mut [u16], x: &[u16], v: f32) {
        (self.vec_mad_f16)(y, x, v)
    }

    /// `y[i] = f16(y[i] * v)`.
    pub fn vec_scale_f16(&self, y: &mut [u16], v: f32) {
        (self.vec_scale_f16)(y, v)
    }

    /// `gate[i] = silu(gate[i]) * up[i]`.
    pub fn swiglu_f32(&self, gate: &mut [f32], up: &[f32]) {
        (self.swiglu_f32)(gate, up)
    }
}

/// [`KernelTable::vec_dot_f16`] with the kernels in use.
pub fn vec_dot_f16(x: &[u16], y: &[u16]) -> f32 {
    active().vec_dot_f16(x, y)
}

/// [`KernelTable::vec_mad_f16`] with the kernels in use.
pub fn vec_mad_f16(y: &mut [u16], x: &[u16], v: f32) {
    active().vec_mad_f16(y, x, v)
}

/// [`KernelTable::vec_scale_f16`] with the kernels in use.
pub fn vec_scale_f16(y: &mut [u16], v: f32) {
    active().vec_scale_f16(y, v)
}

/// [`KernelTable::swiglu_f32`] with the kernels in use.
pub fn swiglu_f32(gate: &mut [f32], up: &[f32]) {
    active().swiglu_f32(gate, up)
}
