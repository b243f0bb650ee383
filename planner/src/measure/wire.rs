//! The real measurements, through `formats::wire` sessions with `sintra-rt serve` (see
//! [`crate::device`]): the planner never runs the runtime's command line.
//!
//! - **Quality** is a property of the file, measured on the host by a local `sintra-rt serve`:
//!   the original's log-probabilities on the held-out text are saved once (cached by model
//!   fingerprint, text, window and chunks), then each candidate's KL divergence, top-1
//!   agreement and perplexity are measured against them.
//! - **Speed** is a property of the device, measured on the profile's device: the same local
//!   session when the profile has no `connection` (one process, one handshake for the whole
//!   run), else a second session over SSH that deploys the runtime built for the profile's
//!   target triple once and each candidate as it comes (under one remote name, by SHA-256, with
//!   the profile's exec prefix).
//!
//! A runtime that dies, hangs or garbles the stream fails the experiment being measured (the
//! loop records it); the session is dropped and the next measurement starts a fresh one.

use super::{stats, Baseline, BenchSpec, Candidate, Measurer, Quality, Speed};
use crate::device::{text_for_windows, DeviceError, DeviceSpec, Session, Transport};
use anyhow::{bail, Context, Result};
use formats::wire::{BenchRequest, BenchResult, LogitsMode, PerplexityRequest, Progress};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name every candidate takes on a remote device (one file, replaced each time).
const REMOTE_CANDIDATE: &str = "candidate.gguf";
/// A candidate's draft there (one file, replaced each time).
const REMOTE_DRAFT: &str = "draft.gguf";
/// Tokens generated greedily per speculative measurement, and repetitions of each kind.
const DRAFT_N_GEN: u32 = 96;
const DRAFT_REPS: u32 = 3;
/// Bytes of held-out text the speculative measurement continues.
const DRAFT_PROMPT_BYTES: usize = 1200;
/// The original's name there (uploaded once: it is re-measured beside every candidate).
const REMOTE_ORIGINAL: &str = "original.gguf";
/// Rounds of repetitions at most per measurement (each round is one benchmark request).
const MAX_ROUNDS: u32 = 6;
/// Rounds at least: the original and the candidate each measured twice, interleaved.
const MIN_ROUNDS: u32 = 2;
/// Held-out windows scored when two figures are within each other's noise: this many times
/// the run's `--eval-chunks`.
pub const MORE_WINDOWS: u32 = 4;

/// One runtime: its session, opened on first use and dropped when the runtime is lost.
#[derive(Debug)]
struct Runtime {
    spec: DeviceSpec,
    session: Option<Session>,
    /// The model the session has mapped now.
    loaded: Option<PathBuf>,
    /// Handshakes so far (a run should need one per runtime unless a runtime died).
    opened: u32,
}

impl Runtime {
    fn new(spec: DeviceSpec) -> Runtime {
        Runtime {
            spec,
            session: None,
            loaded: None,
            opened: 0,
        }
    }

    fn session(&mut self) -> Result<&mut Session, DeviceError> {
        if self.session.is_none() {
            let s = Session::open(&self.spec, None)?;
            tracing::info!(
                device = %self.spec.name(),
                runtime = %s.hello.runtime_version,
                target = %s.hello.target,
                isa = %s.hello.isa,
                gpu = %crate::device::gpu_summary(s.hello.gpu.as_ref()),
                "runtime session open"
            );
            self.opened += 1;
            self.loaded = None;
            self.session = Some(s);
        }
        Ok(self.session.as_mut().expect("opened above"))
    }

    /// Run `f` on the session; an error that leaves the runtime unusable (it died, hung or
    /// sent garbage) drops the session so that the next call starts a fresh one.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Session) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        let r = self.session().and_then(f);
        if let Err(e) = &r {
            let usable = matches!(
                e,
                DeviceError::Runtime { .. } | DeviceError::Setup(_) | DeviceError::Command { .. }
            );
            if !usable {
                tracing::warn!(device = %self.spec.name(), error = %e, "runtime lost; the next measurement starts a new one");
                self.session = None;
                self.loaded = None;
            }
        }
        r
    }

    /// Map `model` in the session unless it is mapped already; on a remote device it is kept
    /// as `remote_name` (uploaded only when its SHA-256 there differs).
    fn load(&mut self, model: &Path, remote_name: &str) -> Result<(), DeviceError> {
        if self.loaded.as_deref() == Some(model) {
            return Ok(());
        }
        let name = match &self.spec.transport {
            Transport::Ssh(_) => remote_name.to_string(),
            _ => String::new(),
        };
        self.loaded = None;
        self.call(|s| s.load_file(model, &name))?;
        self.loaded = Some(model.to_path_buf());
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = s.shutdown() {
                tracing::debug!(error = %e, "runtime shutdown");
            }
        }
    }
}

/// A spinner whose message follows the runtime's progress reports.
fn spinner(what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn progress(pb: &indicatif::ProgressBar, what: &str) -> impl FnMut(&Progress) {
    let pb = pb.clone();
    let what = what.to_string();
    move |p: &Progress| pb.set_message(format!("{what} [{}/{}] {}", p.done, p.total, p.note))
}

/// What a quality measurement scores.
#[derive(Debug, Clone)]
pub struct QualitySpec {
    /// The original model, the reference.
    pub original: PathBuf,
    /// The held-out text, already cut to what the most windows need.
    pub text: String,
    /// Window size, tokens.
    pub n_ctx: u32,
    /// Windows scored per candidate (more, [`MORE_WINDOWS`] times as many, when figures are
    /// within the noise).
    pub chunks: u32,
    pub threads: u32,
    /// Where the original's log-probabilities are kept (one file per number of windows, written
    /// once, atomically): this path with `-k{windows}.bin` appended.
    pub base_logits_prefix: PathBuf,
}

impl QualitySpec {
    /// Read the held-out text and cut it to what `MORE_WINDOWS * chunks` windows of `n_ctx`
    /// tokens need.
    pub fn new(
        original: &Path,
        text_file: &Path,
        n_ctx: u32,
        chunks: u32,
        threads: u32,
        base_logits_prefix: PathBuf,
    ) -> Result<QualitySpec> {
        let text = std::fs::read_to_string(text_file)
            .with_context(|| format!("reading the held-out text {}", text_file.display()))?;
        Ok(QualitySpec {
            original: original.to_path_buf(),
            text: text_for_windows(&text, n_ctx, MORE_WINDOWS * chunks).to_string(),
            n_ctx,
            chunks,
            threads,
            base_logits_prefix,
        })
    }

    /// The original's log-probabilities over `windows` windows.
    pub fn base_logits(&self, windows: u32) -> PathBuf {
        let mut p = self.base_logits_prefix.clone().into_os_string();
        p.push(format!("-k{windows}.bin"));
        p.into()
    }

    fn request(&self, windows: u32, logits: LogitsMode) -> PerplexityRequest {
        PerplexityRequest {
            text: text_for_windows(&self.text, self.n_ctx, windows).to_string(),
            n_ctx: self.n_ctx,
            max_chunks: Some(windows),
            threads: self.threads,
            logits,
        }
    }
}

/// Measures through `sintra-rt serve`: quality on a local runtime, speed on the profile's
/// device (the same runtime when that is this host).
#[derive(Debug)]
pub struct WireMeasurer {
    host: Runtime,
    /// The profile's device when it is not this host.
    device: Option<Runtime>,
    bench: BenchSpec,
    quality: QualitySpec,
    /// The original's generation speed, measured before the loop (the run's reference).
    reference_tps: Option<f64>,
    /// No spinners (a fleet shows each device's stage its own way).
    quiet: bool,
}

impl WireMeasurer {
    /// `device`: the profile's device, `None` for this host. `timeout`: the longest silence
    /// allowed from a runtime.
    pub fn new(
        device: Option<DeviceSpec>,
        bench: BenchSpec,
        quality: QualitySpec,
        timeout: Duration,
    ) -> WireMeasurer {
        let host = DeviceSpec {
            transport: Transport::Local { exec_prefix: None },
            runtime_target: None,
            runtime: None,
            timeout,
        };
        WireMeasurer {
            host: Runtime::new(host),
            device: device.map(Runtime::new),
            bench,
            quality,
            reference_tps: None,
            quiet: false,
        }
    }

    /// Without spinners.
    pub fn quiet(mut self) -> WireMeasurer {
        self.quiet = true;
        self
    }

    /// Open the session with the speed device (if it is not open) and return its handshake:
    /// what the device is, and the first place an unreachable device shows.
    pub fn connect(&mut self) -> Result<formats::wire::Hello, DeviceError> {
        let rt = self.device.as_mut().unwrap_or(&mut self.host);
        rt.session().map(|s| s.hello.clone())
    }

    /// Sessions opened with the speed device when it is not this host.
    pub fn opened_on_device(&self) -> u32 {
        self.device.as_ref().map_or(0, |d| d.opened)
    }

    /// The original's generation speed on the speed device, once measured.
    pub fn reference(&self) -> Option<f64> {
        self.reference_tps
    }

    /// Where speed is measured, as `measured_on` says it.
    pub fn speed_device(&self) -> String {
        let rt = self.device.as_ref().unwrap_or(&self.host);
        match &rt.spec.transport {
            Transport::Local { .. } => "host".to_string(),
            _ => rt.spec.name(),
        }
    }

    /// One round: a benchmark request of `reps` repetitions (after the runtime's warm-up).
    fn bench_round(&mut self, path: &Path, remote_name: &str, what: &str) -> Result<BenchResult> {
        let s = self.bench;
        let req = BenchRequest {
            n_prompt: s.n_prompt,
            n_gen: s.n_gen,
            threads: s.threads,
            repetitions: s.reps.max(1),
            kv_f32: false,
        };
        let rt = self.device.as_mut().unwrap_or(&mut self.host);
        let quiet = self.quiet;
        let pb = spinner(what, quiet);
        let r = rt.load(path, remote_name).and_then(|()| {
            let mut on_progress = progress(&pb, what);
            rt.call(|sess| sess.bench(req, &mut on_progress))
        });
        pb.finish_and_clear();
        Ok(r?)
    }

    /// The measurement protocol for `path` on the profile's device: rounds of repetitions (each
    /// after a discarded warm-up) until the median is known to within
    /// [`stats::SETTLED_REL`] or [`MAX_ROUNDS`], outliers left out (and so re-run: a round is
    /// added while too few samples remain); with `interleave`, the original is measured in
    /// rounds alternating with the candidate's: the candidate's speed relative to it, and how
    /// far the machine drifted from the run's reference meanwhile, are recorded beside the
    /// candidate's own figure.
    fn measure(&mut self, path: &Path, interleave: bool) -> Result<Speed> {
        let on = self.speed_device();
        let original = self.quality.original.clone();
        let interleave = interleave && self.reference_tps.is_some() && path != original;
        let mut cand: Vec<BenchResult> = Vec::new();
        let mut base: Vec<BenchResult> = Vec::new();
        for round in 1..=MAX_ROUNDS {
            if interleave {
                let what =
                    format!("benchmarking the original on {on} (round {round}, interleaved)");
                base.push(self.bench_round(&original, REMOTE_ORIGINAL, &what)?);
            }
            let name = if path == original {
                REMOTE_ORIGINAL
            } else {
                REMOTE_CANDIDATE
            };
            let what = format!("benchmarking on {on} (round {round})");
            cand.push(self.bench_round(path, name, &what)?);
            let settled = |rs: &[BenchResult]| {
                samples(rs, true)
                    .and_then(|v| stats::Spread::of(&v))
                    .is_some_and(|sp| sp.settled())
            };
            if round >= MIN_ROUNDS && settled(&cand) && (!interleave || settled(&base)) {
                break;
            }
        }
        let mut speed = speed_from(&cand, self.bench.n_prompt, on)?;
        if interleave {
            let reference_tps = self.reference_tps.expect("checked");
            let tg = samples(&base, true)
                .and_then(|v| stats::Spread::of(&v))
                .context("the original's interleaved rounds gave no generation samples")?;
            speed.baseline = Some(Baseline {
                tg,
                reference_tps,
                ratio: speed.tg_tps / tg.median,
            });
        }
        Ok(speed)
    }

    /// Measure the original model by the protocol and keep it as the run's reference, against
    /// which every candidate's interleaved rounds are scaled.
    pub fn measure_original(&mut self) -> Result<Speed> {
        let original = self.quality.original.clone();
        let s = self.measure(&original, false)?;
        self.reference_tps = Some(s.tg_tps);
        Ok(s)
    }

    /// A reference measured earlier (a resumed run keeps its own).
    pub fn set_reference(&mut self, tps: f64) {
        self.reference_tps = Some(tps);
    }

    /// Save the original's log-probabilities over `windows` windows unless they are cached
    /// (done by the first quality measurement otherwise; call it while the original is loaded
    /// to spare a reload).
    pub fn ensure_base(&mut self, windows: u32) -> Result<()> {
        let q = &self.quality;
        let path = q.base_logits(windows);
        if path.is_file() {
            return Ok(());
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let req = q.request(
            windows,
            LogitsMode::Save {
                path: tmp.display().to_string(),
            },
        );
        let original = q.original.clone();
        let what = format!("scoring the original model ({windows} windows)");
        let quiet = self.quiet;
        let pb = spinner(&what, quiet);
        let r = self
            .host
            .load(&original, REMOTE_ORIGINAL)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let mut on = progress(&pb, &what);
                Ok(self.host.call(|s| s.perplexity(req, &mut on))?)
            });
        pb.finish_and_clear();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("scoring the original model {}", original.display())));
            }
        };
        if r.n_chunks < windows {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "the held-out text gave {} windows of {} tokens, fewer than the {windows} asked for (--eval-chunks {} and up to {MORE_WINDOWS} times that)",
                r.n_chunks,
                self.quality.n_ctx,
                self.quality.chunks
            );
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }

    /// Quality of `path` over `windows` windows of the held-out text.
    fn score(&mut self, path: &Path, windows: u32) -> Result<Quality> {
        self.ensure_base(windows)?;
        let req = self.quality.request(
            windows,
            LogitsMode::KlDivergence {
                base_path: self.quality.base_logits(windows).display().to_string(),
            },
        );
        let what = format!("evaluating quality on the host ({windows} windows)");
        let quiet = self.quiet;
        let pb = spinner(&what, quiet);
        let host = &mut self.host;
        let r = host.load(path, REMOTE_CANDIDATE).and_then(|()| {
            let mut on = progress(&pb, &what);
            host.call(|s| s.perplexity(req, &mut on))
        });
        pb.finish_and_clear();
        let r = r?;
        let k = r
            .kld
            .context("the runtime answered a kl-divergence run without kl divergence")?;
        if r.n_chunks < windows {
            bail!(
                "the candidate scored {} windows, fewer than the {windows} of the original",
                r.n_chunks
            );
        }
        Ok(Quality {
            kld: k.kld_mean,
            kld_se: k.kld_err,
            top1: k.same_top,
            top1_se: k.same_top_err,
            ppl: r.ppl,
            ppl_base: k.ppl_base,
            delta_ppl: r.ppl - k.ppl_base,
            windows,
        })
    }

    /// End the sessions politely (the runtimes exit).
    fn close(&mut self) {
        self.host.shutdown();
        if let Some(d) = &mut self.device {
            d.shutdown();
        }
    }
}

impl Drop for WireMeasurer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Every repetition's tokens/s of the generation (`gen`) or prompt runs of `rounds`.
fn samples(rounds: &[BenchResult], gen: bool) -> Option<Vec<f64>> {
    let v: Vec<f64> = rounds
        .iter()
        .flat_map(|b| {
            b.runs
                .iter()
                .filter(move |r| if gen { r.n_gen > 0 } else { r.n_prompt > 0 })
        })
        .flat_map(|r| r.samples_tok_s.iter().copied())
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Speed from the rounds of one file: medians over every repetition (outliers left out), the
/// largest peak RSS, and the load of the busiest round.
pub fn speed_from(rounds: &[BenchResult], n_prompt: u32, on: String) -> Result<Speed> {
    let tg_samples =
        samples(rounds, true).context("the runtime reported no generation (tg) run")?;
    let pp_samples = samples(rounds, false).context("the runtime reported no prompt (pp) run")?;
    let tg = stats::Spread::of(&tg_samples);
    let pp = stats::Spread::of(&pp_samples);
    let (Some(tg), Some(pp)) = (tg, pp) else {
        bail!("the runtime reported a speed that is not positive (tg {tg_samples:?}, pp {pp_samples:?})");
    };
    let sd = formats::wire::BenchRun {
        n_prompt: 0,
        n_gen: 1,
        samples_tok_s: tg_samples,
    }
    .mean_std()
    .1;
    let peak = rounds.iter().map(|b| b.peak_rss_bytes).max().unwrap_or(0);
    let load = rounds
        .iter()
        .filter_map(|b| b.load)
        .max_by(|a, b| a.others_cpu_share.total_cmp(&b.others_cpu_share));
    Ok(Speed {
        tg_tps: tg.median,
        tg_sd: sd,
        tg: Some(tg),
        pp_tps: pp.median,
        latency_ms: 1000.0 * n_prompt as f64 / pp.median,
        peak_rss_bytes: (peak > 0).then_some(peak),
        measured_on: on,
        load,
        baseline: None,
    })
}

impl Measurer for WireMeasurer {
    fn bench(&mut self, c: &Candidate<'_>) -> Result<Speed> {
        let path = c.path.context("a benchmark needs a written model")?;
        self.measure(path, true)
    }

    fn quality(&mut self, c: &Candidate<'_>) -> Result<Quality> {
        let path = c.path.context("quality needs a written model")?;
        self.score(path, self.quality.chunks)
    }

    fn quality_more(&mut self, path: &Path) -> Result<Option<Quality>> {
        self.score(path, MORE_WINDOWS * self.quality.chunks)
            .map(Some)
    }

    fn bench_draft(&mut self, c: &Candidate<'_>, draft: &Path) -> Result<super::DraftSpeed> {
        let path = c.path.context("a benchmark needs a written model")?;
        let on = self.speed_device();
        let mut end = self.quality.text.len().min(DRAFT_PROMPT_BYTES);
        while !self.quality.text.is_char_boundary(end) {
            end -= 1;
        }
        let prompt = self.quality.text[..end].to_string();
        let threads = self.bench.threads;
        let rt = self.device.as_mut().unwrap_or(&mut self.host);
        let what = format!("speculative decoding on {on}");
        let quiet = self.quiet;
        let pb = spinner(&what, quiet);
        let r = rt.load(path, REMOTE_CANDIDATE).and_then(|()| {
            let (draft_path, sha) = rt.call(|s| s.put_file(draft, REMOTE_DRAFT))?;
            let req = formats::wire::SpecBenchRequest {
                draft_path,
                draft_sha256: Some(sha),
                prompt,
                n_gen: DRAFT_N_GEN,
                repetitions: DRAFT_REPS,
                threads,
            };
            let mut on_progress = progress(&pb, &what);
            rt.call(|s| s.spec_bench(req, &mut on_progress))
        });
        pb.finish_and_clear();
        let r = r?;
        let median = |v: &[f64]| stats::Spread::of(v).map(|s| s.median);
        let (Some(plain), Some(spec)) = (median(&r.plain_tok_s), median(&r.spec_tok_s)) else {
            bail!("the speculative benchmark gave no samples");
        };
        Ok(super::DraftSpeed {
            plain_tps: plain,
            spec_tps: spec,
            ratio: spec / plain.max(1e-9),
            plain_samples: r.plain_tok_s,
            spec_samples: r.spec_tok_s,
            drafted: r.drafted,
            accepted: r.accepted,
            n_prompt: r.n_prompt,
            n_gen: r.n_gen,
        })
    }

    fn shutdown(&mut self) -> Option<String> {
        self.close();
        let mut line = format!(
            "runtime sessions (wire protocol handshakes): {} on this host",
            self.host.opened
        );
        if let Some(d) = &self.device {
            line += &format!(", {} on {}", d.opened, d.spec.name());
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::wire::{BenchRun, MachineLoad};

    fn round(pp: &[f64], tg: &[f64], busy: f64) -> BenchResult {
        BenchResult {
            isa: "avx2".into(),
            threads: 2,
            kv_type: "f16".into(),
            runs: vec![
                BenchRun {
                    n_prompt: 64,
                    n_gen: 0,
                    samples_tok_s: pp.to_vec(),
                },
                BenchRun {
                    n_prompt: 0,
                    n_gen: 32,
                    samples_tok_s: tg.to_vec(),
                },
            ],
            peak_rss_bytes: 120,
            load: Some(MachineLoad {
                load_avg_1m: 1.0,
                others_cpu_share: busy,
            }),
        }
    }

    #[test]
    fn speed_from_rounds_takes_medians_and_leaves_outliers_out() {
        let rounds = [
            round(&[320.0, 321.0, 322.0], &[40.0, 42.0, 41.0], 0.01),
            round(&[319.0, 320.5, 321.0], &[41.0, 12.0, 41.5], 0.30),
        ];
        let s = speed_from(&rounds, 64, "host".into()).unwrap();
        let tg = s.tg.unwrap();
        assert_eq!((tg.n, tg.outliers), (5, 1), "{tg:?}");
        assert_eq!(s.tg_tps, 41.0);
        assert_eq!(s.pp_tps, 320.75);
        assert!((s.latency_ms - 1000.0 * 64.0 / 320.75).abs() < 1e-9);
        assert_eq!(s.peak_rss_bytes, Some(120));
        assert_eq!(
            s.load.unwrap().others_cpu_share,
            0.30,
            "the busiest round's load"
        );
        let mut no_tg = rounds[0].clone();
        no_tg.runs.pop();
        assert!(
            format!("{:#}", speed_from(&[no_tg], 64, "h".into()).unwrap_err()).contains("(tg)")
        );
        let zero = round(&[1.0], &[0.0], 0.0);
        assert!(speed_from(&[zero], 64, "h".into()).is_err());
    }
}
