//! A run from its start to its finish. [`start`] measures the original on the device by the
//! protocol and resolves the targets; [`execute`] opens the history, the measurer and the
//! model's statistics (calibration computed once, the sensitivity pass) and hands them to the
//! loop ([`crate::optimize::Loop`]); [`finish`] records why the run stopped, writes the report
//! and prints the table (with the evidence when a target cannot be met); [`resume`] picks a
//! checkpointed run up again.

use crate::architect::heuristic::Heuristic;
use crate::architect::Architect;
use crate::calibration::{Calibration, CalibrationSpec};
use crate::checkpoint::{new_run_id, Checkpoint, RunConfig, FORMAT_VERSION};
use crate::experiment::{self, Experiment};
use crate::fleet::measure::FleetMeasurer;
use crate::history::History;
use crate::measure::mock::MockMeasurer;
use crate::measure::wire::{QualitySpec, WireMeasurer};
use crate::measure::Measurer;
use crate::model_info::ModelInfo;
use crate::optimize::Loop;
use crate::profile::Profile;
use crate::report;
use crate::sensitivity::{Sensitivity, SensitivitySpec};
use crate::targets::MeasuredOriginal;
use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::time::Duration;

/// The targets the command line asks for (the profile's fill in what it leaves out).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// `--target-tps`.
    pub tps: Option<f64>,
    /// `--target-accuracy`.
    pub accuracy: Option<f64>,
    /// `--target-speedup`: this many times the original's measured speed.
    pub speedup: Option<f64>,
}

/// Start a new run: measure the original on the device by the protocol (the reference each
/// candidate is scaled to, and where a derived speed target comes from), score it for the
/// quality baseline, resolve the targets and write the first checkpoint's state. Returns the
/// run and the measurer it opened (`None` under `--mock`).
pub fn start(
    profile: Profile,
    model: &ModelInfo,
    mut config: RunConfig,
    wanted: Wanted,
) -> Result<(Checkpoint, Prepared)> {
    if let Some(x) = wanted.speedup {
        if !(x.is_finite() && x > 0.0) {
            bail!("the speedup target must be a positive number, found {x}");
        }
        if config.mock {
            bail!("a speedup target (--target-speedup, or the profile's targets.min_speedup) needs the original model measured on the device; --mock measures nothing (give --target-tps)");
        }
    }
    let run_id = new_run_id();
    config.output_dir = config.output_dir.join(&run_id);
    let past = device_measurements(&profile, &run_id)?;
    let read = match past.is_empty() && !config.mock {
        true => crate::fit::probe_read_bandwidth(
            &profile,
            config.ssh_config.clone(),
            config.remote_dir.clone(),
            config.bench.threads,
        ),
        false => None,
    };
    let prior = crate::fit::Prior::new(&profile, &past, config.mock, read);
    // The model's statistics first (minutes the first time): the original's reference speed is
    // then measured right before the candidates, under the same conditions.
    let mut statistics = Statistics::default();
    let sensitivity = if config.sensitivity {
        Some(statistics.sensitivity(model, &config)?)
    } else {
        None
    };
    let mut measure: Option<Box<dyn Measurer>> = None;
    let mut measured = None;
    if let (Some(f), false) = (&config.fleet, config.mock) {
        let mut m = fleet_measurer(f, &config, model, wanted.speedup.is_some())?;
        let _phase = crate::phase::Phase::begin("measure");
        let originals = m.measure_originals()?;
        for d in &originals {
            match &d.speed {
                Some(s) => println!(
                    "original on {} ({}): {}{}",
                    d.host,
                    d.hardware.as_ref().map_or(String::new(), |h| h.summary()),
                    s.tg.map_or(format!("{:.2} tok/s", s.tg_tps), |t| t.describe("tok/s")),
                    load_note(s.load.as_ref())
                ),
                None => println!(
                    "original on {}: {} ({})",
                    d.host,
                    d.status,
                    d.error.as_deref().unwrap_or("")
                ),
            }
        }
        // Targets hold on every device: a speed target derives from the slowest.
        let (host, slowest) = originals
            .iter()
            .filter_map(|d| d.speed.as_ref().map(|s| (&d.host, s)))
            .min_by(|a, b| a.1.tg_tps.total_cmp(&b.1.tg_tps))
            .expect("measure_originals fails when no device measured");
        measured = Some(MeasuredOriginal {
            tg_tps: slowest.tg_tps,
            spread: slowest.tg,
            device: format!(
                "{host} (the slowest of the fleet's {} devices)",
                originals.iter().filter(|d| d.speed.is_some()).count()
            ),
        });
        m.host().ensure_base(config.eval_chunks)?;
        measure = Some(Box::new(m));
    } else if !config.mock {
        let mut m = wire_measurer(&profile, &config, model)?;
        // A target derived from the original's speed needs it; a given target does not (the
        // original may not even fit on the device): then candidates are measured without the
        // interleaved baseline.
        let needed =
            wanted.speedup.is_some() || crate::targets::speed_is_derived(&profile, wanted.tps);
        let _phase = crate::phase::Phase::begin("measure");
        match m.measure_original() {
            Ok(speed) => {
                println!(
                    "original on {}: {}{}",
                    m.speed_device(),
                    speed
                        .tg
                        .map_or(format!("{:.2} tok/s", speed.tg_tps), |t| t.describe("tok/s")),
                    load_note(speed.load.as_ref())
                );
                measured = Some(MeasuredOriginal {
                    tg_tps: speed.tg_tps,
                    spread: speed.tg,
                    device: m.speed_device(),
                });
                // The original is mapped now: score it for the quality baseline too.
                m.ensure_base(config.eval_chunks)?;
            }
            Err(e) if needed => {
                return Err(e.context(format!(
                    "benchmarking the original model {} on the device to derive the speed target (or give --target-tps)",
                    model.path.display()
                )))
            }
            Err(e) => println!(
                "warning: the original model could not be benchmarked on the device ({e:#}); candidates are measured without it beside them"
            ),
        }
        measure = Some(Box::new(m));
    }
    let mut targets = crate::targets::resolve(
        &profile,
        model,
        wanted.tps,
        wanted.accuracy,
        measured.as_ref(),
    )?;
    if let (Some(x), Some(m)) = (wanted.speedup, &measured) {
        targets.min_tokens_per_second = Some(crate::targets::Target::new(
            ((x * m.tg_tps) * 100.0).floor() / 100.0,
            format!(
                "--target-speedup {x}: {x} x the original's {} on {} in this session",
                m.describe(),
                m.device
            ),
        ));
        targets.min_speedup = Some(crate::targets::Target::new(
            x,
            format!(
                "--target-speedup {x}: judged against the original re-measured in each candidate's rounds on {}",
                m.device
            ),
        ));
    }
    let cp = Checkpoint {
        format_version: FORMAT_VERSION,
        run_id,
        updated_at: String::new(),
        config,
        profile,
        targets,
        reference_tps: measured.as_ref().map(|m| m.tg_tps),
        experiments: Vec::new(),
        compared: Vec::new(),
        prior: Some(prior),
        stop_reason: None,
    };
    println!(
        "run {}: {} on {}{}; targets: {}, top-1 >= {:.3}{}",
        cp.run_id,
        model.name,
        cp.profile.name,
        if cp.config.mock {
            " [MOCK: nothing is written or measured]"
        } else {
            ""
        },
        cp.targets.speed_text(),
        cp.targets.min_accuracy(),
        cp.targets
            .max_latency()
            .map_or(String::new(), |l| format!(", latency <= {l:.0} ms"))
    );
    println!(
        "speed target from {}",
        crate::targets::Targets::source(&cp.targets.min_tokens_per_second)
    );
    Ok((
        cp,
        Prepared {
            measure,
            statistics,
            sensitivity,
        },
    ))
}

/// What a new run opened before its loop: the measurer (`None` under `--mock`) and the model's
/// statistics.
pub struct Prepared {
    measure: Option<Box<dyn Measurer>>,
    statistics: Statistics,
    sensitivity: Option<Sensitivity>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("measure", &self.measure.is_some())
            .field("statistics", &self.statistics)
            .finish()
    }
}

/// Continue run `id` (`latest`: the newest checkpoint), with `max_iters` if given.
pub fn resume(id: &str, max_iters: Option<u32>) -> Result<()> {
    let mut cp = if id == "latest" {
        Checkpoint::latest()?
    } else {
        Checkpoint::load(id)?
    };
    if let Some(n) = max_iters {
        cp.config.max_iters = n;
    }
    let model = ModelInfo::load(&cp.config.model_path)?;
    if model.fingerprint != cp.config.model_fingerprint {
        bail!(
            "run {}: model {} changed since the run started (fingerprint {} was {})",
            cp.run_id,
            cp.config.model_path.display(),
            model.fingerprint,
            cp.config.model_fingerprint
        );
    }
    println!(
        "resuming run {} at iteration {} (max {})",
        cp.run_id,
        cp.experiments.len() + 1,
        cp.config.max_iters
    );
    execute(&mut cp, &model, None)
}

/// Run the loop, with what [`start`] opened (a resumed run opens it here).
pub fn execute(cp: &mut Checkpoint, model: &ModelInfo, prepared: Option<Prepared>) -> Result<()> {
    let (measure, statistics, sensitivity) = match prepared {
        Some(p) => (p.measure, p.statistics, p.sensitivity),
        None => {
            let mut statistics = Statistics::default();
            let sensitivity = if cp.config.sensitivity {
                Some(statistics.sensitivity(model, &cp.config)?)
            } else {
                None
            };
            (None, statistics, sensitivity)
        }
    };
    let home = crate::home::sintra_home()?;
    let history = History::open(&home.join("history.db"))?;
    let mut architect = build_architect(&cp.config)?;
    let mut measure: Box<dyn Measurer> = match measure {
        Some(m) => m,
        None if cp.config.fleet.is_some() && !cp.config.mock => {
            let f = cp.config.fleet.clone().expect("checked");
            let by_ratio = cp.targets.min_speedup.is_some();
            Box::new(fleet_measurer(&f, &cp.config, model, by_ratio)?)
        }
        None if cp.config.mock => {
            let bw = cp.profile.constraints.memory_bandwidth_gbps.unwrap_or(10.0);
            Box::new(MockMeasurer {
                bandwidth_gbps: bw,
                spec: cp.config.bench,
            })
        }
        None => {
            let mut m = wire_measurer(&cp.profile, &cp.config, model)?;
            if let Some(r) = cp.reference_tps {
                m.set_reference(r);
            }
            Box::new(m)
        }
    };
    // The checkpoint first: a run killed in between is resumed (and recorded then), never
    // left in the history without a checkpoint to resume it from.
    cp.save()?;
    history.start_run(
        &cp.run_id,
        model,
        &cp.profile,
        &architect.name(),
        &serde_json::to_string(&cp.targets)?,
        cp.config.mock,
        &cp.config.output_dir.display().to_string(),
    )?;
    Loop {
        cp,
        model,
        history: &history,
        architect: architect.as_mut(),
        measure: measure.as_mut(),
        statistics,
        sensitivity,
    }
    .run()
}

/// The model's statistics, each computed at most once per run (and cached per model across
/// runs): the calibration (importance matrix, block influence, channel norms) that the
/// sensitivity pass and importance-weighted recipes need, and the sensitivity pass.
#[derive(Debug, Default)]
pub struct Statistics {
    calibration: Option<Calibration>,
}

impl Statistics {
    /// The calibration statistics, computed (or read from the cache) on first use.
    pub fn calibration(&mut self, model: &ModelInfo, config: &RunConfig) -> Result<&Calibration> {
        if self.calibration.is_none() {
            let _phase = crate::phase::Phase::begin("sensitivity");
            let text = config.calib_text.clone().context(
                "calibration statistics are needed and no calibration text was found (--calib-text, or run scripts/setup.sh)",
            )?;
            let spec = CalibrationSpec::new(&text, config.bench.threads);
            self.calibration = Some(crate::calibration::ensure(
                model,
                &spec,
                &crate::home::cache_subdir("calibration")?,
            )?);
        }
        Ok(self.calibration.as_ref().expect("set above"))
    }

    /// The sensitivity pass (on the calibration text), computed or read from the cache.
    pub fn sensitivity(&mut self, model: &ModelInfo, config: &RunConfig) -> Result<Sensitivity> {
        let text = config.calib_text.clone().context(
            "the sensitivity pass needs a calibration text (--calib-text, or run scripts/setup.sh; --no-sensitivity skips it)",
        )?;
        let threads = config.bench.threads;
        let c = self.calibration(model, config)?;
        let _phase = crate::phase::Phase::begin("sensitivity");
        crate::sensitivity::ensure(
            model,
            c,
            &SensitivitySpec {
                text_file: text,
                n_ctx: 256,
                chunks: 1,
                threads,
                imatrix: true,
            },
            &crate::home::cache_subdir("sensitivity")?,
        )
    }
}

/// End the run: record why it stopped, write the report, print the table and, when no
/// experiment meets every target, the evidence of what can be met.
pub(crate) fn finish(l: &mut Loop<'_>, why: &str) -> Result<()> {
    l.cp.stop_reason = Some(why.to_string());
    l.cp.save()?;
    let out_dir = l.cp.config.output_dir.clone();
    report::write_with(&out_dir, l.cp, &l.model.name, Some(l.model))?;
    let best = experiment::best(&l.cp.experiments);
    l.history.finish_run(
        &l.cp.run_id,
        if best.is_some_and(Experiment::passes) {
            "met"
        } else {
            "not met"
        },
        best.map(|b| b.iteration),
    )?;
    l.history.trace(&l.cp.run_id, "stopped", why)?;
    if let Some(line) = l.measure.shutdown() {
        println!("{line}");
    }
    println!("\n{}", report::table(l.cp));
    println!("stopped: {why}");
    if let Some(evidence) = experiment::infeasibility(&l.cp.experiments, &l.cp.targets) {
        l.history
            .trace(&l.cp.run_id, "targets not met", &evidence)?;
        println!("targets not met:");
        for l in evidence.lines() {
            println!("  - {l}");
        }
    }
    if l.cp.config.fleet.is_some() {
        println!("best per device class (judged on the class's slowest device):");
        for (class, best) in crate::optimize::per_class_best(&l.cp.experiments, &l.cp.targets) {
            println!(
                "  {class}: {}",
                crate::optimize::class_best_text(best.as_ref())
            );
        }
    }
    match best {
        Some(b) => println!(
            "best: #{} {} ({}) -> {}",
            b.iteration,
            b.label,
            if b.passes() {
                "meets every target"
            } else {
                "misses a target"
            },
            out_dir.display()
        ),
        None => println!("no experiment succeeded -> {}", out_dir.display()),
    }
    let mut outputs: Vec<String> = ["model.gguf", "recipe.json", "report.md", "pareto.svg"]
        .iter()
        .map(|f| out_dir.join(f))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if outputs.is_empty() {
        outputs.push(out_dir.display().to_string());
    }
    println!("outputs: {}", outputs.join(", "));
    Ok(())
}

/// `, while other processes used 12% of the CPU (load average 0.40)`, or nothing.
pub fn load_note(load: Option<&formats::wire::MachineLoad>) -> String {
    load.map_or(String::new(), |l| {
        format!(
            ", while other processes used {:.0}% of the CPU (load average {:.2})",
            100.0 * l.others_cpu_share,
            l.load_avg_1m
        )
    })
}

/// Window of the quality measurement, tokens (llama.cpp's perplexity default).
const EVAL_CTX: u32 = 512;
/// The longest silence allowed from a runtime (progress reports count as signs of life).
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(300);

/// Quality on a local `sintra-rt serve`, speed on the profile's device: this host when the
/// profile has no `connection`, else the device it names (ssh: the runtime for its target
/// triple and each candidate are deployed there).
fn wire_measurer(profile: &Profile, config: &RunConfig, model: &ModelInfo) -> Result<WireMeasurer> {
    let device = match &profile.connection {
        None => None,
        Some(c) => {
            let spec = crate::cli::device::spec_for_profile(
                c,
                config.ssh_config.clone(),
                config.remote_dir.clone(),
                RUNTIME_TIMEOUT.as_secs(),
            )?;
            println!(
                "speed is measured on {} ({}), quality on this host",
                spec.name(),
                spec.transport_name()
            );
            Some(spec)
        }
    };
    let quality = quality_spec(config, model, device.is_some())?;
    Ok(WireMeasurer::new(
        device,
        config.bench,
        quality,
        RUNTIME_TIMEOUT,
    ))
}

/// What quality is scored on, on this host. `remote`: speed is measured elsewhere, so the
/// benchmark's thread count means nothing here (0: all cores).
fn quality_spec(config: &RunConfig, model: &ModelInfo, remote: bool) -> Result<QualitySpec> {
    let text = config
        .eval_text
        .clone()
        .context("checkpoint has no eval text for a real run")?;
    let base = crate::home::cache_subdir("cache")?.join(format!(
        "logits-{}-{}-c{EVAL_CTX}",
        model.fingerprint,
        file_hash(&text)?,
    ));
    let quality_threads = if remote { 0 } else { config.bench.threads };
    QualitySpec::new(
        &model.path,
        &text,
        EVAL_CTX,
        config.eval_chunks,
        quality_threads,
        base,
    )
}

/// Speed on every device of the run's fleet (the inventory read again: a resumed run sees
/// the fleet as it is now), quality on this host. `by_ratio`: the target is a speed-up.
fn fleet_measurer(
    f: &crate::checkpoint::FleetConfig,
    config: &RunConfig,
    model: &ModelInfo,
    by_ratio: bool,
) -> Result<FleetMeasurer> {
    let hosts = crate::cli::fleet::fleet_hosts(
        &f.inventory,
        f.limit.as_deref(),
        &crate::cli::device::ConnectionOpts::for_run(
            config.ssh_config.clone(),
            config.remote_dir.clone(),
            RUNTIME_TIMEOUT.as_secs(),
        ),
    )?;
    if hosts.is_empty() {
        bail!(
            "the inventory {} has no hosts{}",
            f.inventory.display(),
            f.limit
                .as_ref()
                .map_or(String::new(), |l| format!(" matching --limit {l}"))
        );
    }
    println!(
        "speed is measured on {} devices of {}{} ({} at once), quality on this host",
        hosts.len(),
        f.inventory.display(),
        if f.per_class { ", one per class" } else { "" },
        f.jobs
    );
    Ok(FleetMeasurer::new(
        hosts,
        config.bench,
        quality_spec(config, model, true)?,
        RUNTIME_TIMEOUT,
        f.jobs as usize,
        f.per_class,
        by_ratio,
    ))
}

fn build_architect(c: &RunConfig) -> Result<Box<dyn Architect>> {
    match c.provider.as_str() {
        "heuristic" => Ok(Box::new(Heuristic)),
        kind => {
            let provider = crate::llm::provider(kind, c.llm_model.as_deref())
                .map_err(|e| anyhow::anyhow!("--provider {kind}: {e}"))?;
            Ok(Box::new(crate::architect::llm::LlmArchitect {
                provider,
                fallback: Heuristic,
            }))
        }
    }
}

/// Benchmark threads: the profile's cores; on this host at most its cores; on a remote device
/// without `cores` in its profile, 0 (all of the device's).
pub fn default_threads(p: &Profile) -> u32 {
    if p.connection.is_some() {
        return p.constraints.cores.unwrap_or(0);
    }
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    p.constraints.cores.unwrap_or(host).min(host).max(1)
}

fn file_hash(p: &Path) -> Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// Every earlier measurement on the profile's device (any model), for the "fit before download"
/// prior.
pub fn device_measurements(
    profile: &Profile,
    except_run: &str,
) -> Result<Vec<crate::history::DeviceMeasurement>> {
    let db = crate::home::sintra_home()?.join("history.db");
    // Read only: a dry run writes nothing, not even an empty database.
    if !db.is_file() {
        return Ok(Vec::new());
    }
    History::open(&db)?.device_measurements(profile, except_run)
}
