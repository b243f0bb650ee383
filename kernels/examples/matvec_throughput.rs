//! Single-thread matrix-vector throughput of every kernel table this CPU runs, in GB/s of
//! weights read (median of the samples, and their spread), on SmolLM2-135M's FFN shapes.
//!
//! ```sh
//! cargo run --release -p kernels --example matvec_throughput [-- SECONDS_PER_CASE [TYPES]]
//! ```
//!
//! The FFN matrices (0.4 to 1 MB) stay in L2/L3, so they measure the kernels; the
//! classifier-sized one measures DRAM bandwidth as much as the kernels. The `sintra-rt
//! bench` tokens/s is the end-to-end figure.

use formats::quant::GgmlType;
use kernels::{Isa, KernelTable};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TYPES: &[GgmlType] = &[
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

/// (rows, row length): FFN down (576 outputs of 1536) and up/gate (1536 of 576), which stay
/// in L2/L3, and the classifier (49152 of 576, 15 to 40 MB), which streams from DRAM.
const SHAPES: &[(usize, usize)] = &[(576, 1536), (1536, 576), (49152, 576)];

/// The row length for weights of type `w` closest below `n` that is whole blocks: a
/// K-quant row is whole 256-value super-blocks, which 576 is not (SmolLM2's K-quant files
/// keep those tensors in other types), so its shapes with 576 use 512.
fn row_length(w: GgmlType, n: usize) -> usize {
    n / w.block_size() * w.block_size()
}

const SAMPLES: usize = 11;

/// splitmix64 to a roughly normal f32 (sum of uniforms): enough for timing.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let mut v = 0f32;
            for _ in 0..4 {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                v += (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            v
        })
        .collect()
}

/// 8-byte aligned copy of `bytes` (the entry points read blocks in place).
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// Median and (min, max) of GB/s over the samples.
fn measure(
    table: &KernelTable,
    w: GgmlType,
    weights: &[u8],
    (rows, n): (usize, usize),
    act: &[u8],
    budget: Duration,
) -> (f64, f64, f64) {
    let mut out = vec![0f32; rows];
    let mut run = || {
        table
            .matvec(w, black_box(weights), 0..rows, n, black_box(act), &mut out)
            .unwrap();
        black_box(&out);
    };
    // Calibrate the calls per sample to the budget.
    let t = Instant::now();
    let mut calls = 0;
    while t.elapsed() < budget / (4 * SAMPLES as u32) {
        run();
        calls += 1;
    }
    let per_sample = (calls * 4).max(1);
    let mut gbs: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_sample {
                run();
            }
            (weights.len() * per_sample) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    gbs.sort_by(f64::total_cmp);
    (gbs[SAMPLES / 2], gbs[0], gbs[SAMPLES - 1])
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(seconds);
    // Optional comma-separated type names (`q4_1,q8_0`): only those.
    let only: Option<Vec<String>> = std::env::args()
        .nth(2)
        .map(|s| s.split(',').map(str::to_lowercase).collect());
    let tables: Vec<&KernelTable> = Isa::ALL.iter().filter_map(|&i| kernels::table(i)).collect();
    println!(
        "single-thread matvec, GB/s of weights: median [min-max] of {SAMPLES} samples, \
         ~{seconds} s per case; kernels detected: {}",
        kernels::detect()
    );
    print!("| type | rows x n | MB |");
    for t in &tables {
        print!(" {} GB/s |", t.isa());
    }
    println!(" speed-up |");
    print!("| --- | --- | ---: |");
    for _ in &tables {
        print!(" ---: |");
    }
    println!(" ---: |");
    for &w in TYPES {
        if only
            .as_ref()
            .is_some_and(|o| !o.contains(&w.name().to_lowercase()))
        {
            continue;
        }
        for &(rows, n) in SHAPES {
            let n = row_length(w, n);
            let bytes = formats::quant::quantize(w, &values(rows * n, 1), n, None).unwrap();
            let weights = aligned(&bytes);
            let weights = &bytemuck::cast_slice::<u64, u8>(&weights)[..bytes.len()];
            let x = values(n, 2);
            let mut act = vec![0u64; kernels::activation_bytes(w, n).unwrap().div_ceil(8)];
            let act_len = kernels::activation_bytes(w, n).unwrap();
            let act = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut act)[..act_len];
            kernels::table(Isa::Scalar)
                .unwrap()
                .quantize_activation(w, &x, act)
                .unwrap();
            print!("| {w} | {rows} x {n} | {:.2} |", bytes.len() as f64 / 1e6);
            let mut medians = Vec::new();
            for t in &tables {
                let (med, lo, hi) = measure(t, w, weights, (rows, n), act, budget);
                print!(" {med:.2} [{lo:.2}-{hi:.2}] |");
                medians.push(med);
            }
            println!(" {:.1}x |", medians[medians.len() - 1] / medians[0]);
        }
    }
}
