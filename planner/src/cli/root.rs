//! The root command: start, resume or dry-run an optimization, or list checkpoints. Wiring
//! only: the command line becomes a profile, a model and the run's settings for [`crate::run`].

use super::RootArgs;
use crate::architect::heuristic::Heuristic;
use crate::architect::Context;
use crate::checkpoint::{Checkpoint, RunConfig};
use crate::measure::BenchSpec;
use crate::model_info::ModelInfo;
use crate::profile::Profile;
use crate::run::Wanted;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Enough for the cost model to fit the device and find a recipe on a small model, in a few
/// minutes on a 2-core machine (each iteration writes, benchmarks and scores a model).
const DEFAULT_MAX_ITERS: u32 = 5;

pub fn run(a: RootArgs) -> Result<()> {
    if a.list_checkpoints {
        return list_checkpoints();
    }
    if let Some(id) = &a.resume {
        return crate::run::resume(id, a.max_iters);
    }
    if a.export_ollama.is_some() && (a.mock || a.dry_run) {
        bail!("--export-ollama exports the run's best model; --mock and --dry-run write none");
    }
    if a.auto_detect && a.profile.is_some() {
        bail!("give a profile or --auto-detect, not both");
    }
    if a.fleet.fleet.is_some() {
        if a.dry_run || a.mock {
            bail!("--fleet measures every device of the inventory; it does not go with --dry-run or --mock (sintra device check --fleet shows the fleet)");
        }
        if a.draft == super::DraftMode::Auto {
            bail!("--draft auto is not measured across a fleet; run the fleet without it");
        }
    }
    let profile = if let Some(inv) = &a.fleet.fleet {
        fleet_profile(inv, &a)?
    } else if a.auto_detect {
        crate::detect::detect_host()?
    } else {
        match &a.profile {
            Some(p) => Profile::load(p)?,
            None => bail!(
                "no profile: name one (rpi4, rpi5, jetson-nano, jetson-orin-nano, x86-laptop, qemu-aarch64), give a YAML file, or pass --auto-detect"
            ),
        }
    };
    if a.dry_run {
        if let Some(repo) = hf_repo(a.model_id.as_deref(), a.model_file.as_deref()) {
            // Fit before download: config.json and the file listing only.
            let (model, remote) = crate::hf_model::predicted(repo, a.revision.as_deref())?;
            let targets =
                crate::targets::resolve(&profile, &model, a.target_tps, a.target_accuracy, None)?;
            println!(
                "{}@{} (commit {}): config.json read, {:.1} MiB of safetensors weights not downloaded",
                remote.repo,
                remote.revision,
                remote.commit,
                remote.weight_bytes as f64 / (1 << 20) as f64
            );
            return dry_run(&profile, &model, &targets, &a);
        }
    }
    let model_path = resolve_model(
        a.model_id.as_deref(),
        a.model_file.as_deref(),
        a.revision.as_deref(),
    )?;
    let model = ModelInfo::load(&model_path)?;
    // The profile's relative speed target applies unless the command line gives a speed.
    let speedup = a.target_speedup.or(match a.target_tps {
        Some(_) => None,
        None => profile.targets.min_speedup(),
    });
    let wanted = Wanted {
        tps: a.target_tps,
        accuracy: a.target_accuracy,
        speedup,
    };
    if a.dry_run {
        if speedup.is_some() {
            bail!("a speedup target (--target-speedup, or the profile's targets.min_speedup) needs the original model measured on the device; --dry-run measures nothing (give --target-tps)");
        }
        let targets =
            crate::targets::resolve(&profile, &model, a.target_tps, a.target_accuracy, None)?;
        return dry_run(&profile, &model, &targets, &a);
    }
    let config = settings(&a, &profile, &model)?;
    let (mut cp, prepared) = crate::run::start(profile, &model, config, wanted)?;
    crate::run::execute(&mut cp, &model, Some(prepared))?;
    if let Some(name) = &a.export_ollama {
        let (best, note) = crate::export::run_model(&cp.run_id)?;
        println!("{}", crate::export::ollama::export(&best, name, &note)?);
    }
    Ok(())
}

/// The profile a fleet run's architect plans for: the one given (`--profile`,
/// `--auto-detect`), else the first host's `sintra_profile`, else this host's; named after the
/// inventory (its history is the fleet's, not the profile's device), with only the
/// quantizations every host's profile allows and the least RAM among them.
fn fleet_profile(inventory: &Path, a: &RootArgs) -> Result<Profile> {
    let opts =
        super::device::ConnectionOpts::for_run(a.ssh_config.clone(), a.remote_dir.clone(), 300);
    let hosts = super::fleet::fleet_hosts(inventory, a.fleet.limit.as_deref(), &opts)?;
    if hosts.is_empty() {
        bail!(
            "no host of {} matches{}",
            inventory.display(),
            a.fleet
                .limit
                .as_ref()
                .map_or(String::new(), |l| format!(" --limit {l}"))
        );
    }
    let mut own: Vec<Profile> = Vec::new();
    for h in &hosts {
        if let Some(name) = &h.profile {
            if !own.iter().any(|p| &p.name == name) {
                let p = Profile::load(name).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: host {}: sintra_profile '{name}': {e:#}",
                        inventory.display(),
                        h.name
                    )
                })?;
                own.push(p);
            }
        }
    }
    let mut profile = match (&a.profile, a.auto_detect, own.first()) {
        (Some(p), ..) => Profile::load(p)?,
        (None, true, _) | (None, false, None) => crate::detect::detect_host()?,
        (None, false, Some(p)) => p.clone(),
    };
    let allowed: Vec<formats::quant::GgmlType> =
        own.iter().fold(profile.allowed_types(), |acc, p| {
            let theirs = p.allowed_types();
            acc.into_iter().filter(|t| theirs.contains(t)).collect()
        });
    if allowed.is_empty() {
        bail!(
            "the hosts' profiles ({}) allow no quantization in common",
            own.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    profile.supported_quantizations = allowed.iter().map(|t| t.to_string()).collect();
    if let Some(least) = own
        .iter()
        .filter_map(|p| p.constraints.ram_gb)
        .min_by(f64::total_cmp)
    {
        profile.constraints.ram_gb =
            Some(profile.constraints.ram_gb.map_or(least, |r| r.min(least)));
    }
    let stem = inventory
        .file_stem()
        .map_or("inventory".into(), |s| s.to_string_lossy().into_owned());
    profile.description = Some(format!(
        "fleet {} ({} devices{}), planned as {}",
        inventory.display(),
        hosts.len(),
        a.fleet
            .limit
            .as_ref()
            .map_or(String::new(), |l| format!(", --limit {l}")),
        profile.name
    ));
    profile.name = format!("fleet:{stem}");
    profile.connection = None;
    Ok(profile)
}

/// The run's settings from the command line (defaults filled in, texts found).
fn settings(a: &RootArgs, profile: &Profile, model: &ModelInfo) -> Result<RunConfig> {
    let model_path = model.path.clone();
    if a.mock && !a.compare.is_empty() {
        anyhow::bail!("--compare measures files on the device; --mock measures nothing");
    }
    let compare = a
        .compare
        .iter()
        .map(|p| crate::compare::check(p, model).map(|(abs, _)| abs))
        .collect::<Result<Vec<_>>>()?;
    Ok(RunConfig {
        model_path: std::fs::canonicalize(&model_path).unwrap_or(model_path),
        model_fingerprint: model.fingerprint.clone(),
        provider: a.provider.clone(),
        llm_model: a.model.clone(),
        max_iters: a.max_iters.unwrap_or(DEFAULT_MAX_ITERS),
        patience: a.patience,
        mock: a.mock,
        // The run's own directory is made when it starts (`run::start`).
        output_dir: a.output_dir.clone(),
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
        drafts: a.draft == super::DraftMode::Auto && !a.mock,
        bench: BenchSpec {
            n_prompt: 64,
            n_gen: 32,
            reps: 3,
            // A fleet's devices each use all their cores unless told otherwise.
            threads: a.threads.unwrap_or_else(|| match a.fleet.fleet {
                Some(_) => 0,
                None => crate::run::default_threads(profile),
            }),
        },
        ssh_config: a.ssh_config.clone(),
        remote_dir: a.remote_dir.clone(),
        fleet: a
            .fleet
            .fleet
            .as_ref()
            .map(|inv| crate::checkpoint::FleetConfig {
                inventory: std::fs::canonicalize(inv).unwrap_or_else(|_| inv.clone()),
                limit: a.fleet.limit.clone(),
                jobs: a.fleet.jobs,
                per_class: a.per_class,
            }),
        compare,
    })
}

/// `--model-id` names a Hugging Face repository whose checkpoint is to be converted: `owner/name`
/// that is not a local file or a file in the model cache, without `--model-file`.
fn hf_repo<'a>(id: Option<&'a str>, file: Option<&str>) -> Option<&'a str> {
    let id = id?;
    let local = Path::new(id).exists()
        || crate::models::model_dirs()
            .iter()
            .any(|d| d.join(id).is_file());
    (!local && file.is_none() && id.contains('/') && !id.ends_with(".gguf")).then_some(id)
}

/// `--model-id`: a local GGUF file, a file in the model cache, a Hugging Face repository
/// (its checkpoint converted, or with `--model-file` one of its GGUF files, downloaded into the
/// cache), or the default model from the setup cache.
pub fn resolve_model(
    id: Option<&str>,
    file: Option<&str>,
    revision: Option<&str>,
) -> Result<PathBuf> {
    let Some(id) = id else {
        return crate::models::default_model();
    };
    if let Some(repo) = hf_repo(Some(id), file) {
        return crate::hf_model::converted(repo, revision, crate::convert::OutType::Auto);
    }
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
        if let Some(file) = file {
            let spec = crate::download::ModelSpec::new(id, file, revision)?;
            let got =
                crate::download::fetch(&spec, &crate::download::DownloadOptions::from_env()?)?;
            tracing::info!(path = %got.path.display(), sha256 = %got.sha256, verified = got.verified, "model");
            return Ok(got.path);
        }
    }
    bail!("model '{id}' not found (not a file, nor in the model cache, nor a Hugging Face repository owner/name)")
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
        "targets:\n  tokens/s >= {:.2} ({})\n  top-1 agreement >= {:.3} ({})\n  latency <= {}\n  memory <= {:.0} MiB ({})\n",
        targets.min_tps(),
        crate::targets::Targets::source(&targets.min_tokens_per_second),
        targets.min_accuracy(),
        crate::targets::Targets::source(&targets.min_accuracy_score),
        targets.max_latency().map_or("not set".into(), |l| format!("{l:.0} ms")),
        targets.max_memory_bytes() / (1 << 20) as f64,
        crate::targets::Targets::source(&targets.max_memory_mib)
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
    // What earlier runs measured on this device (any model) calibrates the cost per byte.
    let past = crate::run::device_measurements(profile, "").unwrap_or_default();
    let read = match past.is_empty() && !a.mock {
        true => crate::fit::probe_read_bandwidth(
            profile,
            a.ssh_config.clone(),
            a.remote_dir.clone(),
            a.threads
                .unwrap_or_else(|| crate::run::default_threads(profile)),
        ),
        false => None,
    };
    let prior = crate::fit::Prior::new(profile, &past, a.mock, read);
    let ctx = Context {
        model,
        profile,
        targets,
        allowed: &allowed,
        experiments: &[],
        past: &[],
        mock: a.mock,
        sensitivity: None,
        reference_tps: None,
    };
    println!(
        "first candidates (cost model before any measurement; cost per byte: {}):",
        prior.basis
    );
    println!(
        "  {:<4} {:>9} {:>9} {:>5} {:>10} {:>8}  recipe",
        "#", "size MiB", "peak MiB", "fits", "pred tok/s", "pred top1"
    );
    let n_ctx = 64 + 32;
    let limit = targets.max_memory_bytes();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let original_peak = crate::fit::peak_bytes(model, model.tensor_bytes, n_ctx);
    println!(
        "  {:<4} {:>9.1} {:>9.1} {:>5} {:>10.1} {:>8}  (the original, {:.2} bits per weight)",
        "orig",
        mib(model.tensor_bytes),
        mib(original_peak),
        if original_peak as f64 <= limit {
            "yes"
        } else {
            "no"
        },
        prior.tps(&crate::fit::named(
            &crate::architect::speed::original_bytes_by_type(model)
        )),
        "1.000",
        model.bpw()
    );
    for (i, s) in Heuristic.ranked(&ctx).iter().take(5).enumerate() {
        let peak = crate::fit::peak_bytes(model, s.size, n_ctx);
        println!(
            "  {:<4} {:>9.1} {:>9.1} {:>5} {:>10.1} {:>8.3}  {}",
            i + 1,
            mib(s.size),
            mib(peak),
            if peak as f64 <= limit { "yes" } else { "no" },
            prior.tps(&crate::fit::named(&crate::architect::speed::bytes_by_type(
                model,
                &s.recipe.plan(model)
            ))),
            s.top1,
            s.recipe.to_json()
        );
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
