//! The sensitivity pass and the bit allocator (issue #7): spend bits where they buy the most
//! quality.
//!
//! **Measured sensitivity.** For every weight matrix (each tensor class in each layer, and the
//! embedding/classifier), one file is written with only that matrix lowered to a probe type
//! (Q4_0 for rows that take no K-quant, Q3_K for those that do, with the importance matrix),
//! and its KL divergence from the source is measured by the runtime on the *calibration* text
//! (never the held-out text). Results are cached by model SHA-256 and settings, one probe at a
//! time, so an interrupted pass resumes where it stopped.
//!
//! **Predicted cost of any type.** Quantization noise entering a matrix product costs, to first
//! order, KL divergence proportional to its importance-weighted energy
//! `E_t(type) = Σ_rows Σ_j imp_j (w_j - ŵ_j)²` (`imp`: the importance matrix, the mean squared
//! input activation of column `j`). So the cost of giving tensor `t` type `q` is predicted as
//! `KLD_t(probe) · E_t(q) / E_t(probe)`: the measurement fixes each tensor's scale, the cheap
//! offline error fixes the shape across types. Keeping the source's own type costs nothing.
//!
//! **Allocation.** Given a byte budget, [`allocate`] picks one type per matrix minimizing the
//! summed predicted cost: a Lagrangian sweep (each tensor takes `argmin cost + λ · bytes`,
//! bisection on λ for the largest total within budget), then a greedy pass that spends what is
//! left on the upgrades with the best cost reduction per byte.

use crate::calibration::Calibration;
use crate::device::{sha256_hex, DeviceSpec, Session, Transport};
use crate::executor;
use crate::model_info::{ModelInfo, TensorMeta};
use crate::recipe::{predicted_size, Override, Recipe};
use anyhow::{bail, Context, Result};
use formats::gguf::GgufFile;
use formats::quant::{self, GgmlType};
use formats::wire::{LogitsMode, PerplexityRequest};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Types the allocator chooses from (each tensor: those whose blocks fit its rows): the
/// heuristic architect's ladder of quantized types, best quality first.
pub const CANDIDATE_TYPES: &[GgmlType] = crate::architect::heuristic::QUANTIZED_LADDER;
/// One tensor's measured probe and its offline error per type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorSensitivity {
    pub tensor: String,
    /// The type the probe lowered it to.
    pub probe: String,
    /// KL divergence from the source with only this tensor lowered (calibration text).
    pub kld: f64,
    /// Top-1 agreement of that probe.
    pub top1: f64,
    /// Importance-weighted error energy per candidate type (`E_t(type)`), by type name.
    pub error: BTreeMap<String, f64>,
}

/// The whole pass, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sensitivity {
    pub model_sha256: String,
    pub imatrix: bool,
    pub n_ctx: u32,
    pub chunks: u32,
    pub tensors: Vec<TensorSensitivity>,
}

/// How the pass measures.
#[derive(Debug, Clone)]
pub struct SensitivitySpec {
    /// The calibration text.
    pub text_file: PathBuf,
    pub n_ctx: u32,
    pub chunks: u32,
    pub threads: u32,
    /// Importance-weighted quantization for the probes and errors.
    pub imatrix: bool,
}

/// The probe type for a tensor with rows of `row_len`.
fn probe_type(row_len: u64) -> GgmlType {
    if row_len % 256 == 0 {
        GgmlType::Q3_K
    } else {
        GgmlType::Q4_0
    }
}

/// The candidate types tensor `t` can take without falling back (its rows are whole blocks).
pub fn candidates_for(t: &TensorMeta, allowed: &[GgmlType]) -> Vec<GgmlType> {
    CANDIDATE_TYPES
        .iter()
        .copied()
        .filter(|ty| allowed.contains(ty) && t.row_len() % ty.block_size() as u64 == 0)
        .collect()
}

/// A recipe that reproduces the source's types: the most common matrix type as default, exact
/// overrides for the rest.
pub fn identity_recipe(model: &ModelInfo) -> Recipe {
    let mut count: BTreeMap<GgmlType, u64> = BTreeMap::new();
    for t in model.tensors.iter().filter(|t| t.is_matrix()) {
        *count.entry(t.ty).or_default() += t.n_elements;
    }
    let default = count
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(GgmlType::Q8_0, |(t, _)| *t);
    let mut r = Recipe::uniform(default);
    for t in model
        .tensors
        .iter()
        .filter(|t| t.is_matrix() && t.ty != default)
    {
        if let Ok(o) = Override::new(&regex_escape(&t.name), t.ty) {
            r.overrides.push(o);
        }
    }
    r
}

fn regex_escape(name: &str) -> String {
    name.replace('.', "\\.")
}

/// `E_t(ty)`: the squared error of quantizing `values` (rows of `row_len`) to `ty`, each column
/// weighed by `weight` (the importance: the output error it causes). `quant_imp` is what the
/// quantizer is given (the importance matrix, or nothing).
fn weighted_error(
    values: &[f32],
    row_len: usize,
    ty: GgmlType,
    quant_imp: Option<&[f32]>,
    weight: Option<&[f32]>,
) -> f64 {
    let Ok(q) = quant::quantize(ty, values, row_len, quant_imp) else {
        return f64::INFINITY;
    };
    let Ok(d) = quant::dequantize(ty, &q) else {
        return f64::INFINITY;
    };
    values
        .chunks_exact(row_len)
        .zip(d.chunks_exact(row_len))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(j, (&x, &y))| weight.map_or(1.0, |v| v[j] as f64) * ((x - y) as f64).powi(2))
                .sum::<f64>()
        })
        .sum()
}

/// Offline errors of every matrix for every candidate type (parallel over tensors).
fn errors(
    model: &ModelInfo,
    file: &GgufFile,
    calib: &Calibration,
    imatrix: bool,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let mats: Vec<&TensorMeta> = model.tensors.iter().filter(|t| t.is_matrix()).collect();
    let out: Vec<Result<(String, BTreeMap<String, f64>)>> = mats
        .par_iter()
        .map(|t| {
            let view = file.tensor(&t.name)?;
            let values = quant::dequantize(t.ty, view.data)
                .map_err(|e| anyhow::anyhow!("{}: {e}", t.name))?;
            let row = t.row_len() as usize;
            let imp = calib.for_tensor(&t.name, row)?;
            let mut m = BTreeMap::new();
            for ty in candidates_for(t, CANDIDATE_TYPES) {
                let e = if ty == t.ty {
                    0.0
                } else {
                    weighted_error(&values, row, ty, if imatrix { imp } else { None }, imp)
                };
                m.insert(ty.to_string(), e);
            }
            Ok((t.name.clone(), m))
        })
        .collect();
    out.into_iter().collect()
}

/// Run (or resume, or read back) the sensitivity pass of `model` on the host's runtime.
pub fn ensure(
    model: &ModelInfo,
    calib: &Calibration,
    spec: &SensitivitySpec,
    dir: &Path,
) -> Result<Sensitivity> {
    let sha = sha256_hex(&model.path)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The probes' temporaries left by a killed run go.
    crate::home::sweep_stale_temporaries(dir);
    let key = format!(
        "{}-c{}x{}{}",
        &sha[..16],
        spec.n_ctx,
        spec.chunks,
        if spec.imatrix { "-imatrix" } else { "" }
    );
    let cache = dir.join(format!("{key}.sensitivity.json"));
    let mut done: Sensitivity = match std::fs::read_to_string(&cache) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("reading the sensitivity cache {}", cache.display()))?,
        Err(_) => Sensitivity {
            model_sha256: sha.clone(),
            imatrix: spec.imatrix,
            n_ctx: spec.n_ctx,
            chunks: spec.chunks,
            tensors: Vec::new(),
        },
    };
    if done.model_sha256 != sha {
        bail!("{} was made for another model", cache.display());
    }
    let mats: Vec<&TensorMeta> = model.tensors.iter().filter(|t| t.is_matrix()).collect();
    if mats
        .iter()
        .all(|t| done.tensors.iter().any(|s| s.tensor == t.name))
    {
        return Ok(done);
    }
    let file = GgufFile::open(&model.path)?;
    tracing::info!("sensitivity: offline errors of {} matrices", mats.len());
    let errs = errors(model, &file, calib, spec.imatrix)?;

    // The source's log-probabilities on the calibration text.
    let text = std::fs::read_to_string(&spec.text_file)
        .with_context(|| format!("reading {}", spec.text_file.display()))?;
    let text = crate::device::text_for_windows(&text, spec.n_ctx, spec.chunks).to_string();
    let host = DeviceSpec {
        transport: Transport::Local { exec_prefix: None },
        runtime_target: None,
        runtime: None,
        timeout: Duration::from_secs(600),
    };
    let mut session = Session::open(&host, None)?;
    let base = dir.join(format!("{key}.base-logits"));
    let req = |logits| PerplexityRequest {
        text: text.clone(),
        n_ctx: spec.n_ctx,
        max_chunks: Some(spec.chunks),
        threads: spec.threads,
        logits,
    };
    if !base.is_file() {
        let tmp = base.with_extension("tmp");
        session.load_file(&model.path, "")?;
        session.perplexity(
            req(LogitsMode::Save {
                path: tmp.display().to_string(),
            }),
            |_| {},
        )?;
        std::fs::rename(&tmp, &base)?;
    }
    let pb = indicatif::ProgressBar::new(mats.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "sensitivity {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let probe_file = dir.join(format!("{key}.probe.gguf"));
    let identity = identity_recipe(model);
    for t in &mats {
        pb.inc(1);
        if done.tensors.iter().any(|s| s.tensor == t.name) {
            continue;
        }
        pb.set_message(t.name.clone());
        let probe = probe_type(t.row_len());
        let mut r = identity.clone();
        r.imatrix = spec.imatrix;
        r.overrides
            .insert(0, Override::new(&regex_escape(&t.name), probe)?);
        executor::execute(&r, model, &probe_file, false, Some(calib))?;
        session.load_file(&probe_file, "")?;
        let p = session.perplexity(
            req(LogitsMode::KlDivergence {
                base_path: base.display().to_string(),
            }),
            |_| {},
        )?;
        let k = p.kld.context("the runtime returned no KL divergence")?;
        done.tensors.push(TensorSensitivity {
            tensor: t.name.clone(),
            probe: probe.to_string(),
            kld: k.kld_mean.max(0.0),
            top1: k.same_top,
            error: errs.get(&t.name).cloned().unwrap_or_default(),
        });
        crate::home::write_atomic(&cache, serde_json::to_string_pretty(&done)?.as_bytes())?;
    }
    pb.finish_and_clear();
    let _ = session.shutdown();
    let _ = std::fs::remove_file(&probe_file);
    Ok(done)
}

impl Sensitivity {
    /// Predicted KL-divergence cost of giving `t` type `ty` (0 for its own type).
    pub fn cost(&self, t: &TensorMeta, ty: GgmlType) -> Option<f64> {
        if ty == t.ty {
            return Some(0.0);
        }
        let s = self.tensors.iter().find(|s| s.tensor == t.name)?;
        let e = *s.error.get(&ty.to_string())?;
        let e_probe = *s.error.get(&s.probe)?;
        if e_probe.is_nan() || e_probe <= 0.0 {
            return Some(0.0);
        }
        Some(s.kld * e / e_probe)
    }

    /// Sum of predicted costs of a recipe (matrices only).
    pub fn predicted_kld(&self, model: &ModelInfo, recipe: &Recipe) -> f64 {
        model
            .tensors
            .iter()
            .filter(|t| t.is_matrix())
            .map(|t| {
                self.cost(t, recipe.type_for(&t.name, t.row_len()))
                    .unwrap_or(f64::INFINITY)
            })
            .sum()
    }
}

/// The recipe of at most `budget` file bytes with the least predicted KL divergence, choosing
/// among `allowed` types (and each tensor's own type). `None` if even the smallest choice does
/// not fit.
pub fn allocate(
    model: &ModelInfo,
    sens: &Sensitivity,
    allowed: &[GgmlType],
    budget: u64,
) -> Option<Recipe> {
    struct Opt {
        ty: GgmlType,
        bytes: u64,
        cost: f64,
    }
    let mats: Vec<&TensorMeta> = model.tensors.iter().filter(|t| t.is_matrix()).collect();
    let options: Vec<Vec<Opt>> = mats
        .iter()
        .map(|t| {
            let mut tys = candidates_for(t, allowed);
            if !tys.contains(&t.ty) {
                tys.push(t.ty);
            }
            tys.into_iter()
                .filter_map(|ty| {
                    let cost = sens.cost(t, ty)?;
                    let bytes = if ty == t.ty {
                        t.n_bytes
                    } else {
                        t.n_elements / ty.block_size() as u64 * ty.type_size() as u64
                    };
                    Some(Opt { ty, bytes, cost })
                })
                .collect()
        })
        .collect();
    let fixed: u64 = model.header_bytes
        + model
            .tensors
            .iter()
            .filter(|t| !t.is_matrix())
            .map(|t| t.n_bytes.div_ceil(32) * 32)
            .sum::<u64>()
        + 64 * 1024; // the recipe's metadata and alignment slack
    let size = |pick: &[usize]| -> u64 {
        fixed
            + pick
                .iter()
                .zip(&options)
                .map(|(&i, o)| o[i].bytes.div_ceil(32) * 32)
                .sum::<u64>()
    };
    let choose = |lambda: f64| -> Vec<usize> {
        options
            .iter()
            .map(|o| {
                (0..o.len())
                    .min_by(|&a, &b| {
                        (o[a].cost + lambda * o[a].bytes as f64)
                            .total_cmp(&(o[b].cost + lambda * o[b].bytes as f64))
                    })
                    .unwrap_or(0)
            })
            .collect()
    };
    if options.iter().any(|o| o.is_empty()) {
        return None;
    }
    // Bisection on λ (log scale): λ large -> smallest; λ small -> best quality.
    let (mut lo, mut hi) = (1e-15f64, 1e3f64);
    if size(&choose(hi)) > budget {
        return None;
    }
    for _ in 0..100 {
        let mid = (lo * hi).sqrt();
        if size(&choose(mid)) <= budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let mut pick = choose(hi);
    // Greedy: spend what is left on the best cost reduction per byte.
    loop {
        let left = budget.saturating_sub(size(&pick));
        let best = pick
            .iter()
            .enumerate()
            .flat_map(|(t, &i)| {
                let o = &options[t];
                (0..o.len()).filter_map(move |j| {
                    let db = o[j].bytes.div_ceil(32) * 32;
                    let cb = o[i].bytes.div_ceil(32) * 32;
                    let gain = o[i].cost - o[j].cost;
                    (db > cb && db - cb <= left && gain > 0.0)
                        .then(|| (t, j, gain / (db - cb) as f64))
                })
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        match best {
            Some((t, j, _)) => pick[t] = j,
            None => break,
        }
    }
    let chosen: Vec<(&TensorMeta, GgmlType)> = mats
        .iter()
        .zip(&pick)
        .zip(&options)
        .map(|((t, &i), o)| (*t, o[i].ty))
        .collect();
    let r = recipe_from(&chosen, sens.imatrix);
    (predicted_size(model, &r.plan(model)) <= budget).then_some(r)
}

/// The cheapest allocation whose predicted top-1 agreement (`top1_of` the predicted KL
/// divergence) reaches `min_top1`: bisection on the byte budget between the smallest allocation
/// and the source's size. `None` when even the best allocation below the source's size is
/// predicted short of it.
pub fn allocate_for_accuracy(
    model: &ModelInfo,
    sens: &Sensitivity,
    allowed: &[GgmlType],
    min_top1: f64,
    top1_of: impl Fn(f64) -> f64,
) -> Option<Recipe> {
    let meets = |budget: u64| {
        allocate(model, sens, allowed, budget)
            .filter(|r| top1_of(sens.predicted_kld(model, r)) >= min_top1)
    };
    let mut hi = model.file_len.saturating_sub(1);
    let mut best = meets(hi)?;
    let mut lo = model.file_len / 8;
    while hi - lo > model.file_len / 1000 {
        let mid = lo + (hi - lo) / 2;
        match meets(mid) {
            Some(r) => {
                best = r;
                hi = mid;
            }
            None => lo = mid,
        }
    }
    Some(best)
}

/// A readable recipe for per-tensor choices: the most common type as default, then one
/// override per (tensor class, type) listing its layers.
fn recipe_from(chosen: &[(&TensorMeta, GgmlType)], imatrix: bool) -> Recipe {
    let mut count: BTreeMap<GgmlType, u64> = BTreeMap::new();
    for (t, ty) in chosen {
        *count.entry(*ty).or_default() += t.n_elements;
    }
    let default = count
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(GgmlType::Q8_0, |(t, _)| *t);
    let mut groups: BTreeMap<(String, GgmlType), Vec<u32>> = BTreeMap::new();
    let mut singles = Vec::new();
    for (t, ty) in chosen {
        if *ty == default {
            continue;
        }
        match crate::model_info::layer_of(&t.name) {
            Some(l) => {
                let class = t.name[format!("blk.{l}.").len()..].to_string();
                groups.entry((class, *ty)).or_default().push(l);
            }
            None => singles.push((t.name.clone(), *ty)),
        }
    }
    let mut r = Recipe::uniform(default);
    r.imatrix = imatrix;
    for (name, ty) in singles {
        if let Ok(o) = Override::new(&regex_escape(&name), ty) {
            r.overrides.push(o);
        }
    }
    for ((class, ty), layers) in groups {
        let list: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
        let re = format!("blk\\.({})\\.{}", list.join("|"), regex_escape(&class));
        if let Ok(o) = Override::new(&re, ty) {
            r.overrides.push(o);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic pass over the real model: every matrix equally sensitive, except one that is
    /// a hundred times more; errors shaped like real ones (each bit quarters the error).
    fn synthetic(model: &ModelInfo, hot: &str) -> Sensitivity {
        let tensors = model
            .tensors
            .iter()
            .filter(|t| t.is_matrix())
            .map(|t| {
                let error = candidates_for(t, CANDIDATE_TYPES)
                    .into_iter()
                    .map(|ty| {
                        let e = (t.n_elements as f64) * 4f64.powf(-ty.bits_per_weight());
                        (ty.to_string(), if ty == t.ty { 0.0 } else { e })
                    })
                    .collect();
                TensorSensitivity {
                    tensor: t.name.clone(),
                    probe: probe_type(t.row_len()).to_string(),
                    kld: if t.name == hot { 1.0 } else { 0.01 },
                    top1: 0.9,
                    error,
                }
            })
            .collect();
        Sensitivity {
            model_sha256: String::new(),
            imatrix: true,
            n_ctx: 256,
            chunks: 1,
            tensors,
        }
    }

    #[test]
    fn allocation_fits_the_budget_and_protects_the_sensitive_tensor() {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let hot = "blk.7.ffn_down.weight";
        let s = synthetic(&model, hot);
        let allowed = crate::profile::RECIPE_TYPES;
        let mut last = f64::INFINITY;
        for frac in [0.75, 0.85, 0.95] {
            let budget = (model.file_len as f64 * frac) as u64;
            let r = allocate(&model, &s, allowed, budget).expect("a recipe fits");
            let size = predicted_size(&model, &r.plan(&model));
            assert!(size <= budget, "{size} > {budget}");
            let hot_ty = r.type_for(hot, 1536);
            let peer_ty = r.type_for("blk.8.ffn_down.weight", 1536);
            assert!(
                hot_ty.bits_per_weight() >= peer_ty.bits_per_weight(),
                "{hot} got {hot_ty}, its peer {peer_ty}"
            );
            // Predicted cost falls as the budget grows.
            let kld = s.predicted_kld(&model, &r);
            assert!(kld <= last, "{kld} > {last} with a larger budget");
            last = kld;
        }
        assert!(
            allocate(&model, &s, allowed, 1 << 20).is_none(),
            "1 MiB cannot fit"
        );
    }
}
