//! The root command: start, resume or dry-run an optimization, or list checkpoints.

use super::RootArgs;
use crate::architect::heuristic::Heuristic;
use crate::architect::{Architect, Context};
use crate::checkpoint::{new_run_id, Checkpoint, RunConfig, FORMAT_VERSION};
use crate::history::History;
use crate::measure::mock::MockMeasurer;
use crate::measure::wire::{QualitySpec, WireMeasurer};
use crate::measure::{BenchSpec, Measurer};
use crate::model_info::ModelInfo;
use crate::optimize::Loop;
use crate::profile::Profile;
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Enough for the cost model to fit the device and find a recipe on a small model, in a few
/// minutes on a 2-core machine (each iteration writes, benchmarks and scores a model).
const DEFAULT_MAX_ITERS: u32 = 5;

pub fn run(a: RootArgs) -> Result<()> {
    if a.list_checkpoints {
        return list_checkpoints();
    }
    if let Some(id) = &a.resume {
        return resume(id, &a);
    }
    let profile = if a.auto_detect {
        if a.profile.is_some() {
            bail!("give a profile or --auto-detect, not both");
        }
        crate::detect::detect_host()?
    } else {
        match &a.profile {
            Some(p) => Profile::load(p)?,
            None => bail!(
                "no profile: name one (rpi4, rpi5, jetson-nano, jetson-orin-nano, x86-laptop, qemu-aarch64), give a YAML file, or pass --auto-detect"
            ),
        }
    };
    let model_path = resolve_model(a.model_id.as_deref(), a.model_file.as_deref())?;
    let model = ModelInfo::load(&model_path)?;
    if a.target_speedup.is_some() && (a.dry_run || a.mock) {
        bail!("--target-speedup needs the original model measured on the device; --dry-run and --mock measure nothing (give --target-tps)");
    }
    if a.dry_run {
        let targets =
            crate::targets::resolve(&profile, &model, a.target_tps, a.target_accuracy, None)?;
        return dry_run(&profile, &model, &targets, &a);
    }
    let run_id = new_run_id();
    let threads = a.threads.unwrap_or_else(|| default_threads(&profile));
    let config = RunConfig {
        model_path: std::fs::canonicalize(&model_path).unwrap_or(model_path),
        model_fingerprint: model.fingerprint.clone(),
        provider: a.provider.clone(),
        llm_model: a.model.clone(),
        max_iters: a.max_iters.unwrap_or(DEFAULT_MAX_ITERS),
        patience: a.patience,
        mock: a.mock,
        output_dir: a.output_dir.join(&run_id),
        eval_text: if a.mock {
            None
        } else {
            Some(crate::texts::eval_text(a.eval_text.as_deref())?)
        },
        eval_chunks: a.eval_chunks.max(1),
        calib_text: if a.mock {
            None
        } else {
            crate::texts::calib_text(a.calib_text.as_deref()).ok()
        },
        sensitivity: !a.no_sensitivity && !a.mock,
        bench: BenchSpec {
            n_prompt: 64,
            n_gen: 32,
            reps: 3,
            threads,
        },
        ssh_config: a.ssh_config.clone(),
        remote_dir: a.remote_dir.clone(),
    };
    // A real run measures; without a target speed it first benchmarks the original on the
    // device, so that the derived target follows what the device really reaches.
    let mut measure = None;
    let mut measured = None;
    if !config.mock {
        let mut m = wire_measurer(&profile, &config, &model)?;
        // The original is measured by the protocol in every real run: it is the reference that
        // each candidate's interleaved rounds are scaled to, and a derived target comes from it.
        let speed = m.measure_original().with_context(|| {
            format!(
                "benchmarking the original model {} on the device",
                model.path.display()
            )
        })?;
        println!(
            "original on {}: {}{}",
            m.speed_device(),
            speed.tg.map_or(format!("{:.2} tok/s", speed.tg_tps), |t| t
                .describe("tok/s")),
            load_note(speed.load.as_ref())
        );
        measured = Some(crate::targets::MeasuredOriginal {
            tg_tps: speed.tg_tps,
            spread: speed.tg,
            device: m.speed_device(),
        });
        // The original is mapped now: score it for the quality baseline too.
        m.ensure_base(config.eval_chunks)?;
        measure = Some(m);
    }
    let mut targets = crate::targets::resolve(
        &profile,
        &model,
        a.target_tps,
        a.target_accuracy,
        measured.as_ref(),
    )?;
    if let (Some(x), Some(m)) = (a.target_speedup, &measured) {
        targets.min_tps = ((x * m.tg_tps) * 100.0).floor() / 100.0;
        targets.min_tps_source = format!(
            "--target-speedup {x}: {x} x the original's {} on {} in this session",
            m.describe(),
            m.device
        );
    }
    targets.reference_tps = measured.as_ref().map(|m| m.tg_tps);
    let mut cp = Checkpoint {
        format_version: FORMAT_VERSION,
        run_id,
        updated_at: String::new(),
        config,
        profile,
        targets,
        experiments: Vec::new(),
        stop_reason: None,
    };
    println!(
        "run {}: {} on {}{}; targets: >= {:.2} tok/s, top-1 >= {:.3}{}",
        cp.run_id,
        model.name,
        cp.profile.name,
        if cp.config.mock {
            " [MOCK: nothing is written or measured]"
        } else {
            ""
        },
        cp.targets.min_tps,
        cp.targets.min_accuracy,
        cp.targets
            .max_latency_ms
            .map_or(String::new(), |l| format!(", latency <= {l:.0} ms"))
    );
    println!("speed target from {}", cp.targets.min_tps_source);
    execute(&mut cp, &model, measure)
}

fn resume(id: &str, a: &RootArgs) -> Result<()> {
    let mut cp = if id == "latest" {
        Checkpoint::latest()?
    } else {
        Checkpoint::load(id)?
    };
    if let Some(n) = a.max_iters {
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

/// Run the loop; `measure`: the measurer already opened (else one is made for `cp`).
fn execute(cp: &mut Checkpoint, model: &ModelInfo, measure: Option<WireMeasurer>) -> Result<()> {
    let home = crate::home::sintra_home()?;
    let history = History::open(&home.join("history.db"))?;
    let mut architect = build_architect(&cp.config)?;
    let mut measure: Box<dyn Measurer> = match measure {
        Some(m) => Box::new(m),
        None if cp.config.mock => {
            let bw = cp.profile.constraints.memory_bandwidth_gbps.unwrap_or(10.0);
            Box::new(MockMeasurer {
                bandwidth_gbps: bw,
                spec: cp.config.bench,
            })
        }
        None => {
            let mut m = wire_measurer(&cp.profile, &cp.config, model)?;
            if let Some(r) = cp.targets.reference_tps {
                m.set_reference(r);
            }
            Box::new(m)
        }
    };
    history.start_run(
        &cp.run_id,
        model,
        &cp.profile,
        &architect.name(),
        &serde_json::to_string(&cp.targets)?,
        cp.config.mock,
        &cp.config.output_dir.display().to_string(),
    )?;
    cp.save()?;
    let (calibration, sensitivity) = if cp.config.sensitivity {
        let text = cp
            .config
            .calib_text
            .clone()
            .context("--sensitivity needs a calibration text (--calib-text)")?;
        let threads = cp.config.bench.threads;
        let c = crate::calibration::ensure(
            model,
            &crate::calibration::CalibrationSpec::new(&text, threads),
            &crate::home::cache_subdir("calibration")?,
        )?;
        let s = crate::sensitivity::ensure(
            model,
            &c,
            &crate::sensitivity::SensitivitySpec {
                text_file: text,
                n_ctx: 256,
                chunks: 1,
                threads,
                imatrix: true,
            },
            &crate::home::cache_subdir("sensitivity")?,
        )?;
        (Some(c), Some(s))
    } else {
        (None, None)
    };
    Loop {
        cp,
        model,
        history: &history,
        architect: architect.as_mut(),
        measure: measure.as_mut(),
        calibration,
        sensitivity,
    }
    .run()
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
            let spec = super::device::spec_for_profile(
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
    let text = config
        .eval_text
        .clone()
        .context("checkpoint has no eval text for a real run")?;
    let base = crate::home::cache_subdir("cache")?.join(format!(
        "logits-{}-{}-c{EVAL_CTX}",
        model.fingerprint,
        file_hash(&text)?,
    ));
    // Quality runs here: the device's thread count means nothing on this host (0: all cores).
    let quality_threads = if device.is_some() {
        0
    } else {
        config.bench.threads
    };
    let quality = QualitySpec::new(
        &model.path,
        &text,
        EVAL_CTX,
        config.eval_chunks,
        quality_threads,
        base,
    )?;
    Ok(WireMeasurer::new(
        device,
        config.bench,
        quality,
        RUNTIME_TIMEOUT,
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
fn default_threads(p: &Profile) -> u32 {
    if p.connection.is_some() {
        return p.constraints.cores.unwrap_or(0);
    }
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    p.constraints.cores.unwrap_or(host).min(host).max(1)
}

/// `--model-id`: a local GGUF file, a file in the model cache, a Hugging Face repository (with
/// `--model-file`, downloaded into the cache), or the default model from the setup cache.
pub fn resolve_model(id: Option<&str>, file: Option<&str>) -> Result<PathBuf> {
    let Some(id) = id else {
        return crate::models::default_model();
    };
    let p = Path::new(id);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    for d in crate::models::model_dirs() {
        let c = d.join(id);
        if c.is_file() {
            return Ok(c);
        }
    }
    if id.contains('/') && !id.ends_with(".gguf") {
        let Some(file) = file else {
            bail!("model '{id}' is not a local file; for a Hugging Face repository name the file too: --model-file NAME.gguf");
        };
        let spec = crate::download::ModelSpec::new(id, file, None)?;
        let got = crate::download::fetch(&spec, &crate::download::DownloadOptions::from_env()?)?;
        tracing::info!(path = %got.path.display(), sha256 = %got.sha256, verified = got.verified, "model");
        return Ok(got.path);
    }
    bail!("model '{id}' not found (not a file, nor in the model cache)")
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

fn list_checkpoints() -> Result<()> {
    let all = Checkpoint::list()?;
    if all.is_empty() {
        println!("no checkpoints");
    }
    for c in all {
        match c {
            Ok(c) => println!(
                "{}  {}  {} on {}  {} of {} iterations{}  {}",
                c.run_id,
                c.updated_at,
                c.config
                    .model_path
                    .file_name()
                    .map_or("?".into(), |n| n.to_string_lossy()),
                c.profile.name,
                c.experiments.len(),
                c.config.max_iters,
                if c.config.mock { " [mock]" } else { "" },
                c.stop_reason.as_deref().unwrap_or("interrupted: resumable")
            ),
            Err(e) => println!("(unreadable) {e}"),
        }
    }
    Ok(())
}

fn dry_run(
    profile: &Profile,
    model: &ModelInfo,
    targets: &crate::targets::Targets,
    a: &RootArgs,
) -> Result<()> {
    println!("DRY RUN: nothing is written, measured or recorded.\n");
    println!("profile:\n{}", indent(&serde_yaml_ng::to_string(profile)?));
    println!(
        "targets:\n  tokens/s >= {:.2} ({})\n  top-1 agreement >= {:.3} ({})\n  latency <= {}\n  memory <= {:.0} MiB\n",
        targets.min_tps,
        targets.min_tps_source,
        targets.min_accuracy,
        targets.min_accuracy_source,
        targets.max_latency_ms.map_or("not set".into(), |l| format!("{l:.0} ms")),
        targets.max_memory_bytes / (1 << 20) as f64
    );
    println!(
        "model: {} ({}, {} layers, {:.1} M parameters, {:.2} bits per weight, {:.1} MiB)\n  {}\n",
        model.name,
        model.arch,
        model.n_layers,
        model.n_params as f64 / 1e6,
        model.bpw(),
        model.file_len as f64 / (1 << 20) as f64,
        model.path.display()
    );
    println!(
        "architect: {} (max {} iterations{})",
        a.provider,
        a.max_iters.unwrap_or(DEFAULT_MAX_ITERS),
        if a.mock { ", mock" } else { "" }
    );
    let allowed = profile.allowed_types();
    let ctx = Context {
        model,
        profile,
        targets,
        allowed: &allowed,
        experiments: &[],
        past: &[],
        mock: a.mock,
        sensitivity: None,
    };
    println!("first candidates (cost model before any measurement):");
    println!(
        "  {:<4} {:>9} {:>10} {:>8}  recipe",
        "#", "size MiB", "pred tok/s", "pred top1"
    );
    for (i, s) in Heuristic.ranked(&ctx).iter().take(5).enumerate() {
        println!(
            "  {:<4} {:>9.1} {:>10.1} {:>8.3}  {}",
            i + 1,
            s.size as f64 / (1 << 20) as f64,
            s.tps,
            s.top1,
            s.recipe.to_json()
        );
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
