//! Fit before download, checked (issue #16): how far `sintra --dry-run --model-id owner/repo`'s
//! predictions land from what the run then measures.
//!
//! SmolLM2-135M-Instruct and gemma-3-270m from the setup cache are exported as BF16 Hugging
//! Face checkpoints and served by the loopback Hub double (`sintra_tests::hub`, a TEST DOUBLE:
//! no network here); for each, in one `SINTRA_HOME`, in this order:
//!
//! 1. `sintra --auto-detect --model-id owner/repo --dry-run` (config.json only): the prediction;
//! 2. `sintra --auto-detect --model-id owner/repo` (download, convert, optimize): the report's
//!    "Fit before download" table holds each candidate's predicted and measured tokens/s.
//!
//! The second model's prior comes from the first model's measurements on this machine (its
//! `history.db`), as a user's second model would. Prints each report's table and its median
//! error. `cargo build --release -p planner -p runtime && cargo run --release -p
//! sintra-benches --bin fit-check [-- --max-iters N]`.

use anyhow::{bail, Context, Result};
use sintra_tests::hf_export::{self, Dtype, ExportOptions};
use sintra_tests::hub::HubServer;
use std::path::Path;
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let max_iters = match args.iter().position(|a| a == "--max-iters") {
        Some(i) => args.get(i + 1).context("--max-iters N")?.clone(),
        None => "5".into(),
    };
    println!("machine: {}", sintra_tests::machine());
    let opts = ExportOptions {
        dtype: Dtype::BF16,
        max_shard_bytes: None,
    };
    let models = [
        (
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            sintra_tests::smollm2_q4_1(),
        ),
        ("google/gemma-3-270m", sintra_tests::gemma3_270m_q4_k_m()),
    ];
    let root = tempfile::tempdir()?;
    for (repo, gguf) in &models {
        let ck = hf_export::cached(gguf, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dir = root.path().join(repo);
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::symlink(&ck, dir.join("main"))?;
    }
    let hub = HubServer::start(root.path())?;
    let home = tempfile::tempdir()?;
    // Beside this binary: `cargo build --release` builds sintra and sintra-rt there.
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the bench's directory")?
        .to_path_buf();
    let sintra = bin_dir.join("sintra");
    if !sintra.is_file() || !bin_dir.join("sintra-rt").is_file() {
        bail!("build sintra and sintra-rt first: cargo build --release -p planner -p runtime");
    }
    let eval = sintra_tests::data_file("eval.txt");
    let calib = sintra_tests::data_file("calibration.txt");
    for (repo, _) in &models {
        let run = |extra: &[&str]| -> Result<String> {
            let out = Command::new(&sintra)
                .args(["--auto-detect", "--model-id", repo])
                .args(extra)
                .env("SINTRA_HOME", home.path())
                .env("HF_ENDPOINT", hub.url())
                .current_dir(home.path())
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                bail!(
                    "sintra {repo} {extra:?} failed:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(text)
        };
        println!("\n== {repo}: dry run (config.json only)\n");
        println!("{}", run(&["--dry-run"])?);
        println!("== {repo}: the run\n");
        let text = run(&[
            "--max-iters",
            &max_iters,
            "--eval-text",
            eval.to_str().unwrap_or_default(),
            "--calib-text",
            calib.to_str().unwrap_or_default(),
            "--output-dir",
            "outputs",
        ])?;
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        println!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        let report = latest_report(&home.path().join("outputs"))?;
        let section = report
            .split("## Fit before download")
            .nth(1)
            .context("no fit section in the report")?;
        println!("\n## Fit before download{section}");
    }
    Ok(())
}

fn latest_report(outputs: &Path) -> Result<String> {
    let mut runs: Vec<_> = std::fs::read_dir(outputs)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    runs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let last = runs.last().context("no run directory")?;
    Ok(std::fs::read_to_string(last.join("report.md"))?)
}
