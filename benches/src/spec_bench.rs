//! Speculative decoding, measured (issue #17): greedy generation of 128 tokens after ten prompts
//! of held-out text, with and without drafts, by the real `sintra-rt bench --draft/--lookup`
//! (plain and speculative runs interleaved, three repetitions each after a warm-up, the two
//! outputs checked identical by the runtime). Drafts are made by `sintra compress` from the
//! same SmolLM2 file: Q4_0 with all 30 blocks, and Q4_0 without the 7 blocks of least
//! influence on the calibration text (what `sintra --draft auto` makes); prompt lookup needs
//! no file and is measured on the same continuations and on summarise-this-text chat prompts
//! (passages of ~2,000 bytes).
//! Prints, per source, the median speed-up over the prompts with its range and the share of
//! drafted tokens kept. `cargo build --release -p planner -p runtime && cargo run --release -p
//! sintra-benches --bin spec-bench [-- TARGET.gguf]`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const DRAFTS: [(&str, &str); 2] = [
    ("Q4_0, 30 blocks", r#"{"default_type":"Q4_0"}"#),
    (
        "Q4_0, 7 least influential blocks dropped",
        r#"{"default_type":"Q4_0","drop_layers":[3,13,14,15,17,25,26]}"#,
    ),
];

fn main() -> Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the bench's directory")?
        .to_path_buf();
    let (sintra, rt) = (bin_dir.join("sintra"), bin_dir.join("sintra-rt"));
    if !sintra.is_file() || !rt.is_file() {
        bail!("build sintra and sintra-rt first: cargo build --release -p planner -p runtime");
    }
    let target: PathBuf = std::env::args()
        .nth(1)
        .map_or_else(sintra_tests::smollm2_q4_1, PathBuf::from);
    println!("machine: {}", sintra_tests::machine());
    println!("target: {}", target.display());
    let dir = tempfile::tempdir()?;
    let mut sources: Vec<(String, Vec<String>)> = Vec::new();
    for (i, (name, recipe)) in DRAFTS.iter().enumerate() {
        let r = dir.path().join(format!("draft{i}.json"));
        std::fs::write(&r, recipe)?;
        let out = dir.path().join(format!("draft{i}.gguf"));
        let st = Command::new(&sintra)
            .arg("compress")
            .arg(sintra_tests::smollm2_q4_1())
            .arg("--recipe")
            .arg(&r)
            .arg("-o")
            .arg(&out)
            .output()?;
        if !st.status.success() {
            bail!("sintra compress: {}", String::from_utf8_lossy(&st.stderr));
        }
        let size = std::fs::metadata(&out)?.len() as f64 / (1 << 20) as f64;
        sources.push((
            format!("draft {name} ({size:.1} MiB, {recipe})"),
            vec!["--draft".into(), out.display().to_string()],
        ));
    }
    sources.push(("prompt lookup".into(), vec!["--lookup".into()]));

    let text = std::fs::read_to_string(sintra_tests::data_file("eval.txt"))?;
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.len() > 200)
        .collect();
    let cut = |p: &str, n: usize| {
        let mut end = p.len().min(n);
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        p[..end].to_string()
    };
    let prompts: Vec<String> = paragraphs
        .iter()
        .step_by(5)
        .take(10)
        .map(|p| cut(p, 600))
        .collect();
    println!("\n## Continuations of held-out text (10 prompts, 128 tokens, greedy)\n");
    for (name, args) in &sources {
        report(&rt, &target, dir.path(), name, args, &prompts, false)?;
    }
    // Summaries repeat their source: what prompt lookup is for. A paragraph of the book is
    // ~360 bytes, too short to be worth summarising: each prompt is a passage of consecutive
    // paragraphs (~2,000 bytes, ~530 tokens), from ten places spread over the text.
    let all: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let summaries: Vec<String> = (0..10)
        .map(|i| {
            let mut passage = String::new();
            for p in all.iter().skip(i * all.len() / 10) {
                if passage.len() >= 2000 {
                    break;
                }
                passage.push_str(p);
                passage.push_str("\n\n");
            }
            format!(
                "Summarize the following text in a few sentences.\n\n{}",
                passage.trim_end()
            )
        })
        .collect();
    println!("\n## Summarise-this-text chat prompts (10 prompts, 128 tokens, greedy)\n");
    report(
        &rt,
        &target,
        dir.path(),
        "prompt lookup",
        &["--lookup".to_string()],
        &summaries,
        true,
    )?;
    Ok(())
}

/// `sintra-rt bench` with `args` on every prompt; prints each result and the summary.
fn report(
    rt: &Path,
    target: &Path,
    dir: &Path,
    name: &str,
    args: &[String],
    prompts: &[String],
    chat: bool,
) -> Result<()> {
    let mut ratios = Vec::new();
    let (mut drafted, mut accepted) = (0u64, 0u64);
    let (mut plain, mut spec) = (Vec::new(), Vec::new());
    for (i, p) in prompts.iter().enumerate() {
        let f = dir.join(format!("prompt{i}.txt"));
        std::fs::write(&f, p)?;
        let mut cmd = Command::new(rt);
        cmd.arg("bench")
            .arg("-m")
            .arg(target)
            .args(args)
            .arg("-f")
            .arg(&f)
            .args(["-n", "128", "-r", "3", "-t", "2", "--json"]);
        if chat {
            cmd.arg("--chat");
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "sintra-rt bench {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let r = v["speedup"].as_f64().context("speedup")?;
        ratios.push(r);
        drafted += v["drafted"].as_u64().unwrap_or(0);
        accepted += v["accepted"].as_u64().unwrap_or(0);
        plain.push(v["plain_median_ts"].as_f64().unwrap_or(0.0));
        spec.push(v["speculative_median_ts"].as_f64().unwrap_or(0.0));
    }
    let med = runtime::tasks::median;
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
    println!(
        "- {name}: speed-up median {:.2}x (range {lo:.2}-{hi:.2} over {} prompts), {:.1}% of {drafted} drafted tokens kept; median tok/s {:.1} without, {:.1} with; outputs identical",
        med(&ratios),
        ratios.len(),
        100.0 * accepted as f64 / drafted.max(1) as f64,
        med(&plain),
        med(&spec),
    );
    Ok(())
}
