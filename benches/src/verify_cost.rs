//! What checking a draft costs (issue #17): a decode step (`Llama::forward`, the crew) against a
//! batched pass over n tokens with every row's logits (`Llama::forward_batch`, what speculative
//! decoding runs to check n - 1 drafted tokens), at one position of a cached context. Rounds
//! interleave every size, so the machine's drift falls on all of them alike; prints the median
//! and range of each in ms and the median in decode steps, which with a draft's cost per token
//! and its acceptance gives the speed-up speculative decoding can reach
//! (`docs/issue17/spec-bench.md`).
//!
//! `cargo run --release -p sintra-benches --bin verify-cost [-- MODEL.gguf] [--pos 300]
//! [--threads 2] [--rounds 60]` (default model: the setup cache's SmolLM2 Q4_1).

use anyhow::{bail, Context, Result};
use runtime::model::{KvType, Llama, ModelError};
use runtime::tasks;
use std::path::PathBuf;
use std::time::Instant;

/// Batch sizes measured: one token (no draft) to eight drafted tokens.
const SIZES: [usize; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

fn main() -> Result<()> {
    let (mut model, mut pos, mut threads, mut rounds) = (None, 300usize, 2u32, 60usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--pos" => pos = value("--pos")?.parse().context("--pos")?,
            "--threads" => threads = value("--threads")?.parse().context("--threads")?,
            "--rounds" => rounds = value("--rounds")?.parse().context("--rounds")?,
            "-h" | "--help" => {
                println!("usage: verify-cost [MODEL.gguf] [--pos 300] [--threads 2] [--rounds 60]");
                return Ok(());
            }
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => model = Some(PathBuf::from(s)),
        }
    }
    if pos == 0 || rounds == 0 {
        bail!("--pos and --rounds must be at least 1");
    }
    let path = model.unwrap_or_else(sintra_tests::smollm2_q4_1);
    let loaded = tasks::open_model(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut m = Llama::new(&loaded.file, pos + SIZES[SIZES.len() - 1] + 1, KvType::F16)?;
    let pool = tasks::pool(threads);
    let n_vocab = m.config.n_vocab as u32;
    let token = |i: usize| (i as u32).wrapping_mul(7919).wrapping_add(13) % n_vocab;
    // The context: `pos` tokens cached, then every measurement at position `pos`.
    let context: Vec<u32> = (0..pos).map(token).collect();
    m.forward_batch::<ModelError>(&context, 0, &pool, pos, |_, _| Ok(()))?;
    let mut decode = Vec::with_capacity(rounds);
    let mut batch: Vec<Vec<f64>> = SIZES.iter().map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..=rounds {
        let t = Instant::now();
        m.forward(token(pos), pos, &pool)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        // Round 0 warms up.
        if round > 0 {
            decode.push(ms);
        }
        for (n, times) in SIZES.iter().zip(batch.iter_mut()) {
            let tokens: Vec<u32> = (0..*n).map(|i| token(pos + i)).collect();
            let t = Instant::now();
            m.forward_batch::<ModelError>(&tokens, pos, &pool, 0, |_, _| Ok(()))?;
            if round > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    println!("machine: {}", sintra_tests::machine());
    println!(
        "model: {}, position {pos}, {threads} threads, {rounds} rounds (median [min-max] ms)\n",
        path.display()
    );
    let step = tasks::median(&decode);
    println!("| pass | ms | decode steps |");
    println!("| ---- | -: | -----------: |");
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        format!("{:.2} [{lo:.2}-{hi:.2}]", tasks::median(v))
    };
    println!("| decode step | {} | 1.00 |", range(&decode));
    for (n, times) in SIZES.iter().zip(&batch) {
        println!(
            "| batch of {n} ({} drafted) | {} | {:.2} |",
            n - 1,
            range(times),
            tasks::median(times) / step
        );
    }
    Ok(())
}
