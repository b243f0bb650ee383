//! Single-thread matrix-vector throughput of the kernels (every table this CPU runs: the
//! scalar oracle, AVX2 on x86-64, NEON and NEON with `dotprod` on AArch64, the latter through
//! the kernels' `std` feature, which this crate enables) against ggml's CPU dot products (the SIMD kernels llama.cpp runs on
//! this machine, and ggml's plain-C `*_generic` ones), in GB/s of weights read: a SmolLM2
//! FFN-down-sized matrix, 576 rows of 1536 values, by default.
//!
//! `cargo run --release -p sintra-benches --bin kernels-bench -- [--rows R] [--cols N]
//! [--samples S] [--tokens B] [TYPE...]`
//!
//! Each sample times enough whole matvecs to last about 20 ms; the table gives the median
//! and the min..max spread of the samples. The activation is quantized once, outside the
//! timing, as the runtime does per layer input. With `--tokens B` (B > 1) the tables' matrix
//! products (`kernels::matmul`, prompt processing) run instead, on B activations at once, in
//! GB/s of weights times B (what B matrix-vector products would have to read), beside ggml's
//! CPU dot products called once per token.

use formats::quant::{self, GgmlType};
use sintra_tests::ggml::VecDot;
use sintra_tests::rows::{make_row, Rng, RowKind};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Bytes in u64 storage: 8-byte aligned, as the kernels want their buffers.
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// GB/s samples of `f`, which reads `bytes` bytes of weights per call.
fn measure(bytes: usize, samples: usize, mut f: impl FnMut()) -> Vec<f64> {
    // Calibrate: calls per ~20 ms sample.
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(20) {
        f();
        calls += 1;
    }
    (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            (bytes as f64 * f64::from(calls)) / t.elapsed().as_secs_f64() / 1e9
        })
        .collect()
}

/// "median (min..max)" of GB/s samples.
fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    format!("{median:6.2} ({:.2}..{:.2})", v[0], v[v.len() - 1])
}

fn main() {
    let mut rows = 576usize;
    let mut cols = 1536usize;
    let mut samples = 15usize;
    let mut tokens = 1usize;
    let mut types = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--rows" => rows = value(),
            "--cols" => cols = value(),
            "--samples" => samples = value().max(1),
            "--tokens" => tokens = value().max(1),
            name => types
                .push(GgmlType::from_name(name).unwrap_or_else(|| panic!("unknown type {name}"))),
        }
    }
    if types.is_empty() {
        types = kernels::WEIGHT_TYPES.to_vec();
    }

    if tokens > 1 {
        println!(
            "matmul {rows}x{cols} times {tokens} tokens, one thread, GB/s of weights times {tokens}: median (min..max) of {samples} samples"
        );
    } else {
        println!(
            "matvec {rows}x{cols}, one thread, GB/s of weights: median (min..max) of {samples} samples"
        );
    }
    let tables: Vec<&kernels::KernelTable> = kernels::Isa::ALL
        .iter()
        .filter_map(|&isa| kernels::table(isa))
        .collect();
    print!("{:<7} {:>9}", "type", "MiB");
    for t in &tables {
        print!("  {:>24}", format!("sintra {}", t.isa()));
    }
    println!("  {:>24}  {:>24}", "ggml generic C", "ggml CPU (llama.cpp)");
    let mut rng = Rng::new(0xbe7c4);
    for w in types {
        if !kernels::supported(w) || cols % w.block_size() != 0 {
            println!("{w:<7} skipped: no kernel or {cols} is not whole blocks");
            continue;
        }
        let values = make_row(RowKind::Normal, rows * cols, &mut rng);
        let w_bytes = quant::quantize(w, &values, cols, None).unwrap();
        let w_words = aligned(&w_bytes);
        let w_bytes = &bytemuck::cast_slice::<u64, u8>(&w_words)[..w_bytes.len()];
        let act_len = kernels::activation_bytes(w, cols).unwrap();
        let mut act_words = vec![0u64; (act_len * tokens).div_ceil(8)];
        let acts = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut act_words)[..act_len * tokens];
        for a in acts.chunks_exact_mut(act_len) {
            let x = make_row(RowKind::Normal, cols, &mut rng);
            kernels::quantize_activation(w, &x, a).unwrap();
        }
        let acts = &*acts;
        let act = &acts[..act_len];
        let mut out = vec![0f32; rows];
        let mut outs = vec![0f32; rows * tokens];

        let ours: Vec<String> = tables
            .iter()
            .map(|t| {
                if tokens > 1 {
                    return summary(measure(w_bytes.len() * tokens, samples, || {
                        let mut parts: Vec<&mut [f32]> = outs.chunks_exact_mut(rows).collect();
                        t.matmul(w, black_box(w_bytes), 0..rows, cols, acts, &mut parts)
                            .unwrap();
                        black_box(&parts);
                    }));
                }
                summary(measure(w_bytes.len(), samples, || {
                    t.matvec(w, black_box(w_bytes), 0..rows, cols, act, &mut out)
                        .unwrap();
                    black_box(&out);
                }))
            })
            .collect();
        let generic = VecDot::generic(w).map(|k| {
            summary(measure(w_bytes.len(), samples, || {
                k.matvec(cols, black_box(w_bytes), act, &mut out);
                black_box(&out);
            }))
        });
        let cpu = VecDot::cpu(w);
        let theirs = measure(w_bytes.len() * tokens, samples, || {
            for a in acts.chunks_exact(act_len) {
                cpu.matvec(cols, black_box(w_bytes), a, &mut out);
                black_box(&out);
            }
        });
        print!(
            "{:<7} {:>9.3}",
            w.to_string(),
            w_bytes.len() as f64 / (1 << 20) as f64
        );
        for o in ours {
            print!("  {o:>24}");
        }
        println!(
            "  {:>24}  {:>24}",
            generic.unwrap_or_else(|| "-".into()),
            summary(theirs)
        );
    }
}
