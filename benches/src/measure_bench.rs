//! `measure-bench`: how repeatable the planner's speed figures are (issue #13). The same model
//! file is measured `--times` times in one run by the planner's measurement protocol (warm-up,
//! rounds until the median settles, outliers re-run), through `sintra-rt serve` as every run
//! measures, and the spread of the stored figures is printed: each figure's deviation from
//! their median, the largest, and the machine (CPU model and flags) with its load.
//!
//! ```sh
//! cargo run --release -p sintra-benches --bin measure-bench -- [--model FILE] [--times 10] [--threads 2]
//! ```

use anyhow::Context as _;
use planner::measure::wire::{QualitySpec, WireMeasurer};
use planner::measure::BenchSpec;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("measure-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Opts {
    model: PathBuf,
    times: usize,
    threads: u32,
}

fn parse() -> anyhow::Result<Opts> {
    let mut o = Opts {
        model: sintra_tests::smollm2_q4_1(),
        times: 10,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let mut v = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{f} needs a value"))
        };
        match f.as_str() {
            "--model" => o.model = v()?.into(),
            "--times" => o.times = v()?.parse().context("--times")?,
            "--threads" => o.threads = v()?.parse().context("--threads")?,
            "-h" | "--help" => {
                println!("measure-bench [--model FILE] [--times 10] [--threads 2]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    anyhow::ensure!(o.times >= 2, "--times must be at least 2");
    Ok(o)
}

fn run() -> anyhow::Result<()> {
    let o = parse()?;
    // The planner starts the `sintra-rt` next to this binary.
    sintra_tests::build_runtime_beside_this_binary()?;
    let eval = sintra_tests::data_file("eval.txt");
    let base = std::env::temp_dir().join(format!("measure-bench-{}", std::process::id()));
    let quality = QualitySpec::new(&o.model, &eval, 512, 1, o.threads, base)?;
    let spec = BenchSpec {
        n_prompt: 64,
        n_gen: 32,
        reps: 3,
        threads: o.threads,
    };
    let mut m = WireMeasurer::new(None, spec, quality, Duration::from_secs(300));
    println!("machine: {}", sintra_tests::machine());
    println!(
        "model: {} ({} thread(s); pp{} + tg{} x {} repetitions a round, as `sintra` measures)",
        o.model.display(),
        o.threads,
        spec.n_prompt,
        spec.n_gen,
        spec.reps
    );
    println!("\n| # | tg tok/s (median) | 95% CI | range | samples | outliers | others' CPU | load avg |");
    println!("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |");
    let mut figures = Vec::new();
    for i in 1..=o.times {
        let s = m.measure_original()?;
        let t = s.tg.context("no spread in the measurement")?;
        let (others, avg) = s.load.map_or(("-".into(), "-".into()), |l| {
            (
                format!("{:.0}%", 100.0 * l.others_cpu_share),
                format!("{:.2}", l.load_avg_1m),
            )
        });
        println!(
            "| {i} | {:.2} | {:.2}-{:.2} | {:.2}-{:.2} | {} | {} | {others} | {avg} |",
            t.median, t.ci_lo, t.ci_hi, t.min, t.max, t.n, t.outliers
        );
        figures.push(s.tg_tps);
    }
    let mut sorted = figures.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let med = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let worst = figures
        .iter()
        .map(|f| (f / med - 1.0) * 100.0)
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or(0.0);
    println!(
        "\n{n} figures: median {med:.2} tok/s, range {:.2}-{:.2}, largest deviation from the median {worst:+.1}% (goal: within 15%: {})",
        sorted[0],
        sorted[n - 1],
        if worst.abs() <= 15.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
