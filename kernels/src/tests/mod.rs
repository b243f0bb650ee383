//! Tests of the kernels through the public entry points: accuracy against `formats`'
//! dequantizers in f64 (`accuracy`), the byte-level API's checks (`entry_points`), every
//! SIMD kernel against its scalar twin (`parity`), the NEON tables against the AVX2 table's
//! recorded results, bit for bit (`cross_isa`), and the kernels in llama.cpp's 8-row
//! interleaved order against a model of it (`interleaved`).
//!
//! Test data comes from a tiny deterministic PRNG, so every machine (and qemu) sees the same.

mod accuracy;
mod attention;
mod cross_isa;
mod entry_points;
mod interleaved;
mod matmul;
mod packed;
mod parity;

use crate::{activation_bytes, quantize_activation, vec_dot_type};
use formats::quant::GgmlType;

/// splitmix64: deterministic test data without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Student-t with 3 degrees of freedom: occasional outliers, like real activations.
    fn heavy(&mut self) -> f64 {
        let z = self.normal();
        let chi2: f64 = (0..3).map(|_| self.normal().powi(2)).sum();
        z / (chi2 / 3.0).sqrt().max(1e-3)
    }
}

/// Bytes with 8-byte alignment (u64 storage), as the entry points want buffers.
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn zeroed(len: usize) -> Self {
        Aligned {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let mut a = Aligned::zeroed(bytes.len());
        a.bytes_mut().copy_from_slice(bytes);
        a
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// `x` quantized as the activation for weights of type `w`.
fn activation(w: GgmlType, x: &[f32]) -> Aligned {
    let mut act = Aligned::zeroed(activation_bytes(w, x.len()).unwrap());
    quantize_activation(w, x, act.bytes_mut()).unwrap();
    act
}

/// The values an activation buffer stands for, exactly (f64), for weights of type `w`.
fn activation_values(w: GgmlType, act: &[u8]) -> Vec<f64> {
    use formats::quant::{bf16_bits_to_fp32, fp16_bits_to_fp32, BlockQ8K, BlockQ8_0, BlockQ8_1};
    let f16 = |h: u16| f64::from(fp16_bits_to_fp32(h));
    match vec_dot_type(w) {
        GgmlType::Q8_0 => bytemuck::cast_slice::<u8, BlockQ8_0>(act)
            .iter()
            .flat_map(|b| b.qs.map(|q| f16(b.d) * f64::from(q)))
            .collect(),
        GgmlType::Q8_1 => bytemuck::cast_slice::<u8, BlockQ8_1>(act)
            .iter()
            .flat_map(|b| b.qs.map(|q| f16(b.d) * f64::from(q)))
            .collect(),
        GgmlType::Q8_K => bytemuck::cast_slice::<u8, BlockQ8K>(act)
            .iter()
            .flat_map(|b| b.qs.map(|q| f64::from(b.d) * f64::from(q)))
            .collect(),
        GgmlType::F16 => bytemuck::cast_slice::<u8, u16>(act)
            .iter()
            .map(|&h| f16(h))
            .collect(),
        GgmlType::BF16 => bytemuck::cast_slice::<u8, u16>(act)
            .iter()
            .map(|&h| f64::from(bf16_bits_to_fp32(h)))
            .collect(),
        GgmlType::F32 => bytemuck::cast_slice::<u8, f32>(act)
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        t => panic!("no activation type {t}"),
    }
}
