//! The offline architect. A cost model predicts each candidate recipe's size (exactly, from the
//! tensor plan), generation speed and accuracy, fits itself to every measurement, and proposes
//! the untried candidate most likely to meet the targets with the best accuracy.
//!
//! - Speed: generating a token streams every weight once, at a cost per byte read that depends
//!   on the weight type: half the memory roofline before any measurement, then fitted to the
//!   original's speed, this run's candidates (drift-corrected) and earlier runs' on the same
//!   device and model ([`super::speed::SpeedFit`]).
//! - Accuracy: a prior error per requantized tensor, `share_of_params * 2 * 2^(-2 (bpw - 2))`,
//!   summed to `e`; `top1 = exp(-a sqrt(e))` with `a` starting at 0.5 and fitted to the measured
//!   top-1 agreements.
//! - Candidates: every allowed type alone, and mixes in the style of llama.cpp's `_M` presets
//!   (attention V and FFN down at a higher type; embeddings and classifier at Q8_0 or Q6_K).
//!   With the sensitivity pass (the default), first the bit allocator's cheapest mixes predicted
//!   to reach the accuracy target (and a margin above it), then its mix at each preset's size;
//!   their top-1 comes from the predicted KL divergence through a relation refitted to every
//!   measurement ([`QualityFit`]).
//!   Recipes that produce a file already measured (same tensor types) are never proposed, nor
//!   recipes whose file would not be smaller than the source.

use super::speed::{bytes_by_type, SpeedFit};
use super::{plan_key, Architect, Context, Proposal};
use crate::model_info::ModelInfo;
use crate::recipe::{bytes_per_token, predicted_size, Override, Recipe};
use anyhow::Result;
use formats::quant::GgmlType;
use std::collections::BTreeSet;

/// Default types tried, best quality first: F16, then the quantized types the allocator
/// chooses from.
const LADDER: &[GgmlType] = &[
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q5_1,
    GgmlType::Q5_0,
    GgmlType::Q4_K,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::IQ4_NL,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
];

/// [`LADDER`] without F16: the types the allocator chooses from
/// ([`crate::sensitivity::CANDIDATE_TYPES`]).
pub(crate) const QUANTIZED_LADDER: &[GgmlType] = match LADDER {
    [GgmlType::F16, rest @ ..] => rest,
    _ => panic!("LADDER starts with F16"),
};
/// Bandwidth assumed when the profile gives none (the fitted efficiency absorbs the error).
const FALLBACK_BANDWIDTH_GBPS: f64 = 10.0;

/// A candidate with its predictions.
#[derive(Debug, Clone)]
pub struct Scored {
    pub recipe: Recipe,
    pub key: String,
    pub size: u64,
    pub bytes_per_token: u64,
    pub tps: f64,
    pub top1: f64,
}

#[derive(Debug, Default)]
pub struct Heuristic;

impl Heuristic {
    /// Every candidate recipe for this model and device, with predictions, best first.
    pub fn ranked(&self, ctx: &Context<'_>) -> Vec<Scored> {
        let model = ctx.model;
        let bw = ctx
            .profile
            .constraints
            .memory_bandwidth_gbps
            .unwrap_or(FALLBACK_BANDWIDTH_GBPS);
        let fit = Fit::from(ctx, bw);
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut pool = candidates(model, ctx.allowed);
        // With a sensitivity pass: at every size a preset-style candidate has, the allocator's
        // mix of the same size (importance-weighted), which spends the bits where the measured
        // sensitivities say they buy the most.
        // And the cheapest mixes predicted to reach the accuracy target (and a little more, for
        // the noise of a measurement over a few windows), aimed at it directly.
        let qfit = ctx.sensitivity.map(|s| QualityFit::from(ctx, s));
        let mixes: Vec<Recipe> = match (ctx.sensitivity, qfit) {
            (Some(s), Some(q)) => {
                let aimed = [0.0, ACCURACY_MARGIN].into_iter().filter_map(|m| {
                    crate::sensitivity::allocate_for_accuracy(
                        model,
                        s,
                        ctx.allowed,
                        (ctx.targets.min_accuracy() + m).min(1.0),
                        |kld| q.top1(kld),
                    )
                });
                aimed
                    .chain(
                        pool.iter()
                            .map(|r| predicted_size(model, &r.plan(model)))
                            .filter_map(|budget| {
                                crate::sensitivity::allocate(model, s, ctx.allowed, budget)
                            }),
                    )
                    .collect()
            }
            _ => Vec::new(),
        };
        let n_mixes = mixes.len();
        pool.splice(0..0, mixes);
        for (i, recipe) in pool.into_iter().enumerate() {
            let key = plan_key(&recipe, model);
            if !seen.insert(key.clone()) {
                continue;
            }
            let plan = recipe.plan(model);
            let bpt = bytes_per_token(model, &plan);
            let size = predicted_size(model, &plan);
            if size >= model.file_len {
                // Not a compression: quality is measured against the source, so a larger file
                // (an upcast) cannot score better than the source itself.
                continue;
            }
            let top1 = match (ctx.sensitivity, qfit) {
                // The allocator's mixes: top-1 from the predicted KL divergence, with the
                // relation fitted to this run's measurements (the probes' before any).
                (Some(s), Some(q)) if i < n_mixes => q.top1(s.predicted_kld(model, &recipe)),
                _ => (-fit.a * prior_error(model, &recipe).sqrt()).exp(),
            };
            out.push(Scored {
                tps: fit.speed.tps(&bytes_by_type(model, &plan)),
                top1,
                recipe,
                key,
                size,
                bytes_per_token: bpt,
            });
        }
        let t = ctx.targets;
        let score = |s: &Scored| -> f64 {
            let mem_ok = s.size as f64 * 1.1 <= t.max_memory_bytes();
            if s.tps >= t.min_tps() && s.top1 >= t.min_accuracy() && mem_ok {
                // Feasible: the most accurate wins, speed breaks ties.
                2.0 + s.top1 + 1e-6 * s.tps.min(1e5)
            } else {
                // Infeasible: the smallest relative shortfall wins.
                let short = (t.min_tps() - s.tps).max(0.0) / t.min_tps()
                    + (t.min_accuracy() - s.top1).max(0.0) / t.min_accuracy()
                    + if mem_ok { 0.0 } else { 1.0 };
                1.0 - short
            }
        };
        out.sort_by(|a, b| score(b).total_cmp(&score(a)));
        out
    }
}

impl Architect for Heuristic {
    fn name(&self) -> String {
        "heuristic".into()
    }

    fn propose(&mut self, ctx: &Context<'_>) -> Result<Option<Proposal>> {
        let tried: BTreeSet<&str> = ctx
            .experiments
            .iter()
            .map(|e| e.plan_key.as_str())
            .collect();
        let Some(s) = self
            .ranked(ctx)
            .into_iter()
            .find(|s| !tried.contains(s.key.as_str()))
        else {
            return Ok(None);
        };
        Ok(Some(Proposal {
            rationale: format!(
                "cost model: {:.1} MB per token, predicted {:.1} tok/s, top-1 {:.3}, {:.1} MiB",
                s.bytes_per_token as f64 / 1e6,
                s.tps,
                s.top1,
                s.size as f64 / (1 << 20) as f64
            ),
            predicted_tps: s.tps,
            predicted_size: s.size,
            recipe: s.recipe,
            by: self.name(),
            exchanges: Vec::new(),
        }))
    }
}

/// The cost model's fitted parts.
#[derive(Debug, Clone)]
struct Fit {
    speed: SpeedFit,
    a: f64,
}

impl Fit {
    fn from(ctx: &Context<'_>, bw: f64) -> Fit {
        let mut accs = Vec::new();
        for e in ctx.experiments {
            if let (Some(_), Some(top1)) = (e.tps(), e.top1()) {
                if let Ok(r) = Recipe::from_json(&e.recipe) {
                    accs.push((prior_error(ctx.model, &r), top1));
                }
            }
        }
        // top1 = exp(-a sqrt(e))  =>  a = -ln(top1) / sqrt(e), averaged over informative points.
        let mut a_s: Vec<f64> = accs
            .iter()
            .filter(|(e, t)| *e > 1e-9 && *t > 0.0 && *t < 1.0)
            .map(|(e, t)| -t.ln() / e.sqrt())
            .collect();
        let a = median(&mut a_s).unwrap_or(0.5);
        Fit {
            speed: SpeedFit::from(ctx, bw),
            a,
        }
    }
}

/// Top-1 agreement aimed above the target by the allocator's second mix: about two standard
/// errors of a top-1 measured over 2 windows (510 positions) at 0.9.
const ACCURACY_MARGIN: f64 = 0.025;

/// How the sensitivity pass's predicted KL divergence turns into top-1 agreement:
/// `top1 = exp(-b sqrt(scale * kld))`. `b` is the median over this run's measured candidates
/// (over the probes before any), and `scale` the median of measured / predicted KL divergence
/// over the measured mixes (1 before any): each measurement corrects the next prediction.
#[derive(Debug, Clone, Copy)]
struct QualityFit {
    b: f64,
    scale: f64,
}

impl QualityFit {
    fn from(ctx: &Context<'_>, s: &crate::sensitivity::Sensitivity) -> QualityFit {
        let coeff = |kld: f64, top1: f64| {
            (kld > 1e-9 && top1 > 0.0 && top1 < 1.0).then(|| -top1.ln() / kld.sqrt())
        };
        let mut measured_b = Vec::new();
        let mut ratios = Vec::new();
        for e in ctx.experiments {
            let Some(q) = &e.quality else { continue };
            measured_b.extend(coeff(q.kld, q.top1));
            if let Ok(r) = Recipe::from_json(&e.recipe) {
                let predicted = s.predicted_kld(ctx.model, &r);
                if predicted.is_finite() && predicted > 1e-9 && q.kld > 1e-9 {
                    ratios.push(q.kld / predicted);
                }
            }
        }
        let b = median(&mut measured_b).unwrap_or_else(|| {
            let mut probes: Vec<f64> = s
                .tensors
                .iter()
                .filter_map(|t| coeff(t.kld, t.top1))
                .collect();
            median(&mut probes).unwrap_or(1.0)
        });
        QualityFit {
            b,
            scale: median(&mut ratios).unwrap_or(1.0),
        }
    }

    fn top1(&self, predicted_kld: f64) -> f64 {
        (-self.b * (self.scale * predicted_kld).sqrt()).exp()
    }
}

pub(crate) fn median(v: &mut Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite() && *x > 0.0);
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The prior error of a recipe: each requantized matrix adds `share * 2 * 2^(-2 (bpw - 2))`.
pub fn prior_error(model: &ModelInfo, recipe: &Recipe) -> f64 {
    let total = model.n_params.max(1) as f64;
    recipe
        .plan(model)
        .iter()
        .filter(|p| p.to != p.from)
        .map(|p| {
            p.n_elements as f64 / total * 2.0 * (2f64).powf(-2.0 * (p.to.bits_per_weight() - 2.0))
        })
        .sum()
}

/// Uniform recipes and `_M`-style mixes over the allowed types.
fn candidates(model: &ModelInfo, allowed: &[GgmlType]) -> Vec<Recipe> {
    let ok = |t: GgmlType| allowed.contains(&t);
    let has = |re: &str| {
        Override::new(re, GgmlType::F32)
            .map(|o| {
                model
                    .tensors
                    .iter()
                    .any(|t| t.is_matrix() && o.matches(&t.name))
            })
            .unwrap_or(false)
    };
    let mut out = Vec::new();
    for &d in LADDER.iter().filter(|&&d| ok(d)) {
        out.push(Recipe::uniform(d));
    }
    let sensitive = r"blk\.\d+\.(attn_v|ffn_down)\.weight";
    let embd = r"token_embd\.weight|output\.weight";
    for &d in &[
        GgmlType::Q5_K,
        GgmlType::Q4_K,
        GgmlType::Q4_0,
        GgmlType::IQ4_NL,
        GgmlType::Q3_K,
        GgmlType::Q2_K,
    ] {
        if !ok(d) {
            continue;
        }
        for (hi_sens, hi_embd) in [
            (Some(GgmlType::Q6_K), None),
            (None, Some(GgmlType::Q8_0)),
            (Some(GgmlType::Q6_K), Some(GgmlType::Q8_0)),
            (Some(GgmlType::Q5_K), Some(GgmlType::Q6_K)),
            (None, Some(GgmlType::Q6_K)),
        ] {
            let mut r = Recipe::uniform(d);
            if let Some(t) = hi_embd.filter(|&t| ok(t) && has(embd)) {
                r.overrides.extend(Override::new(embd, t));
            }
            if let Some(t) = hi_sens.filter(|&t| ok(t) && has(sensitive)) {
                r.overrides.extend(Override::new(sensitive, t));
            }
            if !r.overrides.is_empty() {
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::exp;
    use crate::profile::Profile;

    #[test]
    fn never_repeats_and_learns_from_measurements() {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let profile = Profile::load("rpi5").unwrap();
        let targets = crate::targets::resolve(&profile, &model, None, None, None).unwrap();
        let allowed = profile.allowed_types();
        let mut h = Heuristic;
        let mut exps = Vec::new();
        let mut keys = BTreeSet::new();
        for i in 1..=8u32 {
            let ctx = Context {
                model: &model,
                profile: &profile,
                targets: &targets,
                allowed: &allowed,
                experiments: &exps,
                past: &[],
                mock: true,
                sensitivity: None,
                reference_tps: None,
            };
            let Some(p) = h.propose(&ctx).unwrap() else {
                break;
            };
            assert!(p.predicted_size < model.file_len, "an upcast was proposed");
            let key = plan_key(&p.recipe, &model);
            assert!(
                keys.insert(key.clone()),
                "iteration {i} repeated {}",
                p.recipe.to_json()
            );
            // Pretend the device reaches 1/8 of its roofline (the prior assumes 1/2).
            let bpt = bytes_per_token(&model, &p.recipe.plan(&model));
            let bw = profile.constraints.memory_bandwidth_gbps.unwrap();
            let mut e = exp(i, 0.125 * bw * 1e9 / bpt as f64, 0.95, true);
            e.plan_key = key;
            e.recipe = p.recipe.to_json();
            e.bytes_per_token = bpt;
            exps.push(e);
        }
        assert!(exps.len() >= 5);
        let ctx = Context {
            model: &model,
            profile: &profile,
            targets: &targets,
            allowed: &allowed,
            experiments: &exps,
            past: &[],
            mock: true,
            sensitivity: None,
            reference_tps: None,
        };
        let bw = profile.constraints.memory_bandwidth_gbps.unwrap();
        let eff = Fit::from(&ctx, bw).speed.efficiency(bw);
        assert!((eff - 0.125).abs() < 1e-6, "efficiency {eff}");
    }
}
