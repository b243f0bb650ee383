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

use super::{BenchSpec, Candidate, Measurer, Quality, Speed};
use crate::device::{text_for_windows, DeviceError, DeviceSpec, Session, Transport};
use anyhow::{bail, Context, Result};
use formats::wire::{BenchRequest, LogitsMode, PerplexityRequest, Progress};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name every candidate takes on a remote device (one file, replaced each time).
const REMOTE_CANDIDATE: &str = "candidate.gguf";

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

    /// Map `model` in the session unless it is mapped already.
    fn load(&mut self, model: &Path) -> Result<(), DeviceError> {
        if self.loaded.as_deref() == Some(model) {
            return Ok(());
        }
        let name = match &self.spec.transport {
            Transport::Ssh(_) => REMOTE_CANDIDATE.to_string(),
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
fn spinner(what: &str) -> indicatif::ProgressBar {
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
    /// The held-out text, already cut to what the windows need.
    pub text: String,
    /// Window size, tokens.
    pub n_ctx: u32,
    /// Windows scored.
    pub chunks: u32,
    pub threads: u32,
    /// Where the original's log-probabilities are kept (written once, atomically).
    pub base_logits: PathBuf,
}

impl QualitySpec {
    /// Read the held-out text and cut it to `chunks` windows of `n_ctx` tokens.
    pub fn new(
        original: &Path,
        text_file: &Path,
        n_ctx: u32,
        chunks: u32,
        threads: u32,
        base_logits: PathBuf,
    ) -> Result<QualitySpec> {
        let text = std::fs::read_to_string(text_file)
            .with_context(|| format!("reading the held-out text {}", text_file.display()))?;
        Ok(QualitySpec {
            original: original.to_path_buf(),
            text: text_for_windows(&text, n_ctx, chunks).to_string(),
            n_ctx,
            chunks,
            threads,
            base_logits,
        })
    }

    fn request(&self, logits: LogitsMode) -> PerplexityRequest {
        PerplexityRequest {
            text: self.text.clone(),
            n_ctx: self.n_ctx,
            max_chunks: Some(self.chunks),
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
        }
    }

    /// Where speed is measured, as `measured_on` says it.
    pub fn speed_device(&self) -> String {
        let rt = self.device.as_ref().unwrap_or(&self.host);
        match &rt.spec.transport {
            Transport::Local { .. } => "host".to_string(),
            _ => rt.spec.name(),
        }
    }

    /// Benchmark a model file on the profile's device (candidates, and the original before the
    /// loop to measure the device's efficiency).
    pub fn bench_file(&mut self, path: &Path) -> Result<Speed> {
        let s = self.bench;
        let req = BenchRequest {
            n_prompt: s.n_prompt,
            n_gen: s.n_gen,
            threads: s.threads,
            repetitions: s.reps.max(1),
            kv_f32: false,
        };
        let on = self.speed_device();
        let what = format!("benchmarking on {on}");
        let rt = self.device.as_mut().unwrap_or(&mut self.host);
        let pb = spinner(&what);
        let r = rt.load(path).and_then(|()| {
            let mut on_progress = progress(&pb, &what);
            rt.call(|sess| sess.bench(req, &mut on_progress))
        });
        pb.finish_and_clear();
        speed_from(&r?, s.n_prompt, on)
    }

    /// Save the original's log-probabilities unless they are cached (done by the first quality
    /// measurement otherwise; call it while the original is loaded to spare a reload).
    pub fn ensure_base(&mut self) -> Result<()> {
        let q = &self.quality;
        if q.base_logits.is_file() {
            return Ok(());
        }
        if let Some(d) = q.base_logits.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let tmp = q
            .base_logits
            .with_extension(format!("tmp-{}", std::process::id()));
        let req = q.request(LogitsMode::Save {
            path: tmp.display().to_string(),
        });
        let original = q.original.clone();
        let pb = spinner("scoring the original model");
        let r = self
            .host
            .load(&original)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let mut on = progress(&pb, "scoring the original model");
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
        if r.n_chunks < self.quality.chunks {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "the held-out text gave {} windows of {} tokens, fewer than the {} asked for (--eval-chunks)",
                r.n_chunks,
                self.quality.n_ctx,
                self.quality.chunks
            );
        }
        std::fs::rename(&tmp, &self.quality.base_logits)
            .with_context(|| format!("renaming into {}", self.quality.base_logits.display()))?;
        Ok(())
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

/// Speed from a bench result: the tg run, the pp run.
pub fn speed_from(b: &formats::wire::BenchResult, n_prompt: u32, on: String) -> Result<Speed> {
    let run = |gen: bool| {
        b.runs
            .iter()
            .find(|r| if gen { r.n_gen > 0 } else { r.n_prompt > 0 })
            .map(|r| r.mean_std())
    };
    let (tg_tps, tg_sd) = run(true).context("the runtime reported no generation (tg) run")?;
    let (pp_tps, _) = run(false).context("the runtime reported no prompt (pp) run")?;
    if !(tg_tps.is_finite() && tg_tps > 0.0 && pp_tps.is_finite() && pp_tps > 0.0) {
        bail!("the runtime reported a speed that is not positive (tg {tg_tps}, pp {pp_tps})");
    }
    Ok(Speed {
        tg_tps,
        tg_sd,
        pp_tps,
        latency_ms: 1000.0 * n_prompt as f64 / pp_tps,
        peak_rss_bytes: (b.peak_rss_bytes > 0).then_some(b.peak_rss_bytes),
        measured_on: on,
    })
}

impl Measurer for WireMeasurer {
    fn bench(&mut self, c: &Candidate<'_>) -> Result<Speed> {
        let path = c.path.context("a benchmark needs a written model")?;
        self.bench_file(path)
    }

    fn quality(&mut self, c: &Candidate<'_>) -> Result<Quality> {
        let path = c.path.context("quality needs a written model")?;
        self.ensure_base()?;
        let req = self.quality.request(LogitsMode::KlDivergence {
            base_path: self.quality.base_logits.display().to_string(),
        });
        let what = "evaluating quality on the host";
        let pb = spinner(what);
        let host = &mut self.host;
        let r = host.load(path).and_then(|()| {
            let mut on = progress(&pb, what);
            host.call(|s| s.perplexity(req, &mut on))
        });
        pb.finish_and_clear();
        let r = r?;
        let k = r
            .kld
            .context("the runtime answered a kl-divergence run without kl divergence")?;
        if r.n_chunks < self.quality.chunks {
            bail!(
                "the candidate scored {} windows, fewer than the {} of the original",
                r.n_chunks,
                self.quality.chunks
            );
        }
        Ok(Quality {
            kld: k.kld_mean,
            top1: k.same_top,
            ppl: r.ppl,
            ppl_base: k.ppl_base,
            delta_ppl: r.ppl - k.ppl_base,
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
    use formats::wire::{BenchResult, BenchRun};

    #[test]
    fn speed_from_a_bench_result() {
        let b = BenchResult {
            isa: "avx2".into(),
            threads: 2,
            kv_type: "f16".into(),
            runs: vec![
                BenchRun {
                    n_prompt: 64,
                    n_gen: 0,
                    samples_tok_s: vec![320.0, 321.0],
                },
                BenchRun {
                    n_prompt: 0,
                    n_gen: 32,
                    samples_tok_s: vec![40.0, 42.0],
                },
            ],
            peak_rss_bytes: 120,
        };
        let s = speed_from(&b, 64, "host".into()).unwrap();
        assert_eq!((s.tg_tps, s.pp_tps), (41.0, 320.5));
        assert!((s.tg_sd - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.peak_rss_bytes, Some(120));
        assert!((s.latency_ms - 1000.0 * 64.0 / 320.5).abs() < 1e-9);
        let mut no_tg = b.clone();
        no_tg.runs.pop();
        assert!(format!("{:#}", speed_from(&no_tg, 64, "h".into()).unwrap_err()).contains("(tg)"));
        let mut zero = b;
        zero.runs[1].samples_tok_s = vec![0.0];
        assert!(speed_from(&zero, 64, "h".into()).is_err());
    }
}
