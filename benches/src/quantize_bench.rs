//! Quantization throughput: our reference quantizers against ggml's (`ggml_quantize_chunk`,
//! what `llama-quantize` calls), on every 2-D tensor of SmolLM2-135M dequantized to F32, with
//! the same rayon pool and the same row chunks for both.
//!
//! `cargo run --release -p sintra-benches --bin quantize-bench -- [--threads N] [--reps R]`
//!
//! Rows that are not a whole number of 256-value super-blocks (SmolLM2's 576-wide rows) fall
//! back as llama.cpp's `llama-quantize` does: Q4_K -> Q5_0.

use formats::gguf::GgufFile;
use formats::quant::{self, GgmlType};
use rayon::prelude::*;
use std::time::Instant;

/// Rows per work item: llama-quantize's chunk is 32 * 512 values.
const CHUNK_VALUES: usize = 32 * 512;

struct Tensor {
    row: usize,
    values: Vec<f32>,
}

/// (tensor index, first row, row count) items covering every tensor.
fn work_items(tensors: &[Tensor]) -> Vec<(usize, usize, usize)> {
    let mut items = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let rows = t.values.len() / t.row;
        let per = (CHUNK_VALUES / t.row).max(1);
        let mut r = 0;
        while r < rows {
            let n = per.min(rows - r);
            items.push((i, r, n));
            r += n;
        }
    }
    items
}

fn run(
    tensors: &[Tensor],
    items: &[(usize, usize, usize)],
    ty: GgmlType,
    ggml: bool,
) -> (f64, usize) {
    let start = Instant::now();
    let bytes: usize = items
        .par_iter()
        .map(|&(i, r, n)| {
            let t = &tensors[i];
            let ty = ty.fallback_for_row(t.row as u64);
            let src = &t.values[r * t.row..(r + n) * t.row];
            let out = if ggml {
                sintra_tests::ggml::quantize(ty, src, t.row, None)
            } else {
                quant::quantize(ty, src, t.row, None).expect("quantize")
            };
            std::hint::black_box(&out);
            out.len()
        })
        .sum();
    (start.elapsed().as_secs_f64(), bytes)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut reps = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--threads" | "-t" => threads = num("--threads"),
            "--reps" | "-r" => reps = num("--reps").max(1),
            _ => panic!("unknown argument {a}; usage: quantize-bench [--threads N] [--reps R]"),
        }
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");

    let path = sintra_tests::smollm2_q4_1();
    let file = GgufFile::open(&path).expect("open model");
    let tensors: Vec<Tensor> = file
        .tensors()
        .filter(|t| t.info.dims.len() == 2)
        .map(|t| Tensor {
            row: t.info.row_len() as usize,
            values: quant::dequantize(t.info.ty, t.data).expect("dequantize"),
        })
        .collect();
    let n_values: usize = tensors.iter().map(|t| t.values.len()).sum();
    let items = work_items(&tensors);
    eprintln!(
        "{} 2-D tensors of {}, {:.1} M values from F32, {} work items, {threads} threads, {reps} repetitions",
        tensors.len(),
        path.file_name().unwrap().to_string_lossy(),
        n_values as f64 / 1e6,
        items.len()
    );

    println!("| target | impl   | median s | min s  | max s  | M values/s | bytes out  | ours/ggml time |");
    println!("|--------|--------|----------|--------|--------|------------|------------|----------------|");
    for ty in [GgmlType::Q4_K, GgmlType::Q8_0] {
        let mut times = [Vec::new(), Vec::new()];
        let mut sizes = [0usize; 2];
        // Interleave the two implementations so drift on a shared machine hits both alike.
        for _ in 0..reps {
            for (k, ggml) in [(0, true), (1, false)] {
                let (t, b) = run(&tensors, &items, ty, ggml);
                times[k].push(t);
                sizes[k] = b;
            }
        }
        assert_eq!(sizes[0], sizes[1], "different output sizes for {ty}");
        let med: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
        for (k, label) in [(0, "ggml"), (1, "sintra")] {
            let v = &times[k];
            let min = v.iter().cloned().fold(f64::MAX, f64::min);
            let max = v.iter().cloned().fold(0.0, f64::max);
            let ratio = if k == 1 {
                format!("{:.2}x", med[1] / med[0])
            } else {
                String::new()
            };
            println!(
                "| {:<6} | {label:<6} | {:>8.3} | {min:>6.3} | {max:>6.3} | {:>10.1} | {:>10} | {ratio:>14} |",
                ty.to_string(),
                med[k],
                n_values as f64 / med[k] / 1e6,
                sizes[k]
            );
        }
    }
}
