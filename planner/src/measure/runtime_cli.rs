//! The real measurements, by running the `sintra-rt` binary as a subprocess on this host:
//! `sintra-rt bench ... --json` for speed and `sintra-rt perplexity ... --save-logits` /
//! `--kl-divergence-base` for quality. This module is the one seam to swap for the
//! `formats::wire` client (`sintra-rt serve`) when the device channel lands; nothing else in
//! the planner knows how the runtime is reached.

use super::{BenchSpec, Benchmarker, Candidate, Critic, Device, Quality, Speed};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `$SINTRA_RT`, or `sintra-rt` next to the running `sintra` executable.
pub fn find_runtime() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SINTRA_RT") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SINTRA_RT={} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating the sintra executable")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let p = dir.join(format!("sintra-rt{}", std::env::consts::EXE_SUFFIX));
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "sintra-rt not found next to {} nor in $SINTRA_RT: build it with `cargo build --release -p runtime` or set SINTRA_RT",
        exe.display()
    )
}

/// This machine, running the host's `sintra-rt`.
#[derive(Debug, Clone)]
pub struct LocalDevice {
    pub runtime: PathBuf,
    /// Whether the profile describes this host (`--auto-detect` or no `connection`).
    pub is_profile: bool,
}

impl Device for LocalDevice {
    fn name(&self) -> String {
        "host".into()
    }
    fn is_profile_device(&self) -> bool {
        self.is_profile
    }
}

fn spinner(msg: String) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Run the runtime; its stdout on success, else an error with its stderr's last lines.
fn run(runtime: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<String> {
    tracing::debug!(runtime = %runtime.display(), ?args, "running sintra-rt");
    let pb = spinner(what.to_string());
    let out = Command::new(runtime)
        .args(args)
        .output()
        .with_context(|| format!("starting {}", runtime.display()))?;
    pb.finish_and_clear();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "sintra-rt {what} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(stdout)
}

/// Speed through `sintra-rt bench --json`.
#[derive(Debug)]
pub struct RuntimeBenchmarker {
    pub device: LocalDevice,
    pub spec: BenchSpec,
}

impl Benchmarker for RuntimeBenchmarker {
    fn bench(&mut self, c: &Candidate<'_>) -> Result<Speed> {
        let path = c.path.context("benchmark needs a written model")?;
        let s = self.spec;
        let (p, n, r, t) = (
            s.n_prompt.to_string(),
            s.n_gen.to_string(),
            s.reps.to_string(),
            s.threads.to_string(),
        );
        let args: Vec<&std::ffi::OsStr> = [
            "bench".as_ref(),
            "-m".as_ref(),
            path.as_os_str(),
            "-p".as_ref(),
            p.as_ref(),
            "-n".as_ref(),
            n.as_ref(),
            "-r".as_ref(),
            r.as_ref(),
            "-t".as_ref(),
            t.as_ref(),
            "--json".as_ref(),
        ]
        .to_vec();
        let out = run(&self.device.runtime, &args, "benchmark")?;
        let mut speed = parse_bench_json(&out, s.n_prompt)?;
        speed.measured_on = if self.device.is_profile_device() {
            self.device.name()
        } else {
            format!("{} (not the profile's device)", self.device.name())
        };
        Ok(speed)
    }
}

/// Parse llama-bench-shaped JSON: one entry with `n_prompt > 0`, one with `n_gen > 0`.
pub fn parse_bench_json(text: &str, n_prompt: u32) -> Result<Speed> {
    let v: serde_json::Value =
        serde_json::from_str(text).context("sintra-rt bench printed no valid JSON")?;
    let rows = v
        .as_array()
        .context("sintra-rt bench JSON is not an array")?;
    let mut tg = None;
    let mut pp = None;
    let mut rss = None;
    for r in rows {
        let num = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
        let avg = num("avg_ts").context("bench entry without avg_ts")?;
        if num("n_gen").unwrap_or(0.0) > 0.0 {
            tg = Some((avg, num("stddev_ts").unwrap_or(0.0)));
        } else if num("n_prompt").unwrap_or(0.0) > 0.0 {
            pp = Some(avg);
        }
        if let Some(x) = r.get("peak_rss_bytes").and_then(serde_json::Value::as_u64) {
            rss = Some(rss.map_or(x, |y: u64| y.max(x)));
        }
    }
    let (tg_tps, tg_sd) = tg.context("sintra-rt bench reported no generation (tg) entry")?;
    let pp_tps = pp.context("sintra-rt bench reported no prompt (pp) entry")?;
    if !(tg_tps > 0.0 && pp_tps > 0.0) {
        bail!("sintra-rt bench reported a non-positive speed (tg {tg_tps}, pp {pp_tps})");
    }
    Ok(Speed {
        tg_tps,
        tg_sd,
        pp_tps,
        latency_ms: 1000.0 * n_prompt as f64 / pp_tps,
        peak_rss_bytes: rss,
        measured_on: String::new(),
    })
}

/// Quality through `sintra-rt perplexity`: the original's log-probabilities are saved once
/// (cached by model fingerprint, text and window), then each candidate is scored against them.
#[derive(Debug)]
pub struct RuntimeCritic {
    pub runtime: PathBuf,
    pub original: PathBuf,
    pub text: PathBuf,
    pub ctx: u32,
    pub chunks: u32,
    pub threads: u32,
    /// Where the original's saved logits live (created on first use).
    pub base_logits: PathBuf,
}

impl RuntimeCritic {
    fn common_args(&self, model: &Path) -> Vec<std::ffi::OsString> {
        vec![
            "perplexity".into(),
            "-m".into(),
            model.into(),
            "-f".into(),
            self.text.clone().into(),
            "-c".into(),
            self.ctx.to_string().into(),
            "--chunks".into(),
            self.chunks.to_string().into(),
            "-t".into(),
            self.threads.to_string().into(),
        ]
    }

    fn ensure_base(&self) -> Result<()> {
        if self.base_logits.is_file() {
            return Ok(());
        }
        if let Some(d) = self.base_logits.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let tmp = self.base_logits.with_extension("tmp");
        let mut args = self.common_args(&self.original);
        args.push("--save-logits".into());
        args.push(tmp.clone().into());
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let res = run(&self.runtime, &refs, "scoring the original model");
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &self.base_logits)
            .with_context(|| format!("renaming into {}", self.base_logits.display()))?;
        Ok(())
    }
}

impl Critic for RuntimeCritic {
    fn quality(&mut self, c: &Candidate<'_>) -> Result<Quality> {
        let path = c.path.context("quality needs a written model")?;
        self.ensure_base()?;
        let mut args = self.common_args(path);
        args.push("--kl-divergence-base".into());
        args.push(self.base_logits.clone().into());
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = run(&self.runtime, &refs, "evaluating quality")?;
        parse_perplexity(&out)
    }
}

/// Parse `sintra-rt perplexity --kl-divergence-base` output.
pub fn parse_perplexity(text: &str) -> Result<Quality> {
    let after = |prefix: &str| -> Result<f64> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .with_context(|| format!("sintra-rt perplexity printed no '{prefix}' line"))?;
        let rest = line.trim_start()[prefix.len()..].trim();
        let num = rest.split_whitespace().next().unwrap_or("");
        num.trim_start_matches('+')
            .parse::<f64>()
            .with_context(|| format!("'{prefix}' is followed by '{num}', not a number"))
    };
    let ppl = after("Final estimate: PPL =")?;
    let kld = after("Mean KLD:")?;
    let top1 = after("Same top p:")? / 100.0;
    let ppl_base = after("PPL(base):")?;
    Ok(Quality {
        kld,
        top1,
        ppl,
        ppl_base,
        delta_ppl: ppl - ppl_base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_runtime_outputs() {
        let bench = r#"[
  {"n_prompt": 64, "n_gen": 0, "avg_ts": 320.5, "stddev_ts": 3.1, "peak_rss_bytes": 100},
  {"n_prompt": 0, "n_gen": 32, "avg_ts": 40.25, "stddev_ts": 0.5, "peak_rss_bytes": 120}
]"#;
        let s = parse_bench_json(bench, 64).unwrap();
        assert_eq!((s.tg_tps, s.tg_sd, s.pp_tps), (40.25, 0.5, 320.5));
        assert_eq!(s.peak_rss_bytes, Some(120));
        assert!((s.latency_ms - 1000.0 * 64.0 / 320.5).abs() < 1e-9);
        assert!(parse_bench_json("[]", 64).is_err());
        assert!(parse_bench_json("nope", 64).is_err());

        let ppl = "Final estimate: PPL = 12.3456 +/- 0.12345\nscored 1020 positions\nMean KLD:        0.051234 ± 0.001000\nSame top p:      91.250 ± 0.500 %\nPPL(base):       12.0000\nPPL(Q)-PPL(base): +0.3456\n";
        let q = parse_perplexity(ppl).unwrap();
        assert_eq!(
            (q.kld, q.top1, q.ppl, q.ppl_base),
            (0.051234, 0.9125, 12.3456, 12.0)
        );
        assert!(parse_perplexity("Final estimate: PPL = 3").is_err());
    }
}
