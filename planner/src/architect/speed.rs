//! The heuristic's speed model: seconds per byte read, per weight type.
//!
//! Generating a token streams every weight once, so a first guess is `tps = efficiency *
//! bandwidth / bytes_per_token` ([`DEFAULT_EFFICIENCY`] of the roofline before anything is
//! measured). On a CPU the kernels do not cost the same per byte: one thread decoding Q8_0 is
//! cheaper per byte than Q5_K's unpacking, so a smaller file is not always a faster one. The model
//! therefore keeps a cost per byte for each weight type it has measured and a default for the
//! rest:
//!
//! - every measurement is a point (bytes read per token by type, seconds per token): the
//!   original's reference figure, this run's candidates (scaled by the original's drift in their
//!   own rounds, so a machine that slowed down does not make a type look slow), and earlier runs'
//!   (their totals only);
//! - the default is the median of `seconds / bytes` over all points;
//! - a type's cost is the median, over the points where it holds at least half of the bytes, of
//!   what is left of the time once the other types are charged at the default.

use super::Context;
use crate::model_info::ModelInfo;
use crate::recipe::{Recipe, TensorPlan};
use formats::quant::GgmlType;

/// Fraction of the memory roofline assumed before anything is measured.
const DEFAULT_EFFICIENCY: f64 = 0.5;

/// Bytes read per generated token, by weight type (an untied embedding table is read one row
/// per token).
pub type BytesByType = Vec<(GgmlType, u64)>;

fn add(v: &mut BytesByType, ty: GgmlType, bytes: u64) {
    match v.iter_mut().find(|(t, _)| *t == ty) {
        Some((_, b)) => *b += bytes,
        None => v.push((ty, bytes)),
    }
}

fn per_token(model: &ModelInfo, name: &str, n_bytes: u64, dims: &[u64]) -> u64 {
    if name == "token_embd.weight" && !model.tied_embeddings {
        n_bytes / dims.get(1).copied().unwrap_or(1).max(1)
    } else {
        n_bytes
    }
}

/// [`BytesByType`] of a planned file.
pub fn bytes_by_type(model: &ModelInfo, plan: &[TensorPlan]) -> BytesByType {
    let mut v = Vec::new();
    for p in plan {
        add(&mut v, p.to, per_token(model, &p.name, p.n_bytes, &p.dims));
    }
    v
}

/// [`BytesByType`] of the model as it is.
pub fn original_bytes_by_type(model: &ModelInfo) -> BytesByType {
    let mut v = Vec::new();
    for t in &model.tensors {
        add(&mut v, t.ty, per_token(model, &t.name, t.n_bytes, &t.dims));
    }
    v
}

fn total(b: &BytesByType) -> f64 {
    b.iter().map(|(_, n)| *n as f64).sum()
}

/// Seconds per byte, by type, fitted to the measurements.
#[derive(Debug, Clone)]
pub struct SpeedFit {
    default: f64,
    per_type: Vec<(GgmlType, f64)>,
}

impl SpeedFit {
    pub fn from(ctx: &Context<'_>, bandwidth_gbps: f64) -> SpeedFit {
        let model = ctx.model;
        let mut points: Vec<(BytesByType, f64)> = Vec::new();
        if let Some(r) = ctx.reference_tps.filter(|r| *r > 0.0) {
            points.push((original_bytes_by_type(model), 1.0 / r));
        }
        for e in ctx.experiments {
            let (Some(s), Ok(r)) = (&e.speed, Recipe::from_json(&e.recipe)) else {
                continue;
            };
            // The candidate at the machine's speed of the reference measurement.
            let tps = match s.baseline {
                Some(b) if b.reference_tps > 0.0 && b.ratio > 0.0 => b.ratio * b.reference_tps,
                _ => s.tg_tps,
            };
            if tps > 0.0 {
                points.push((bytes_by_type(model, &r.plan(model)), 1.0 / tps));
            }
        }
        let mut k: Vec<f64> = points.iter().map(|(b, t)| t / total(b)).collect();
        k.extend(
            ctx.past
                .iter()
                .filter(|p| p.mock == ctx.mock && p.tps > 0.0)
                .map(|p| 1.0 / (p.tps * p.bytes_per_token.max(1) as f64)),
        );
        let default = super::heuristic::median(&mut k)
            .unwrap_or(1.0 / (DEFAULT_EFFICIENCY * bandwidth_gbps * 1e9));
        let per_type = per_type_costs(&points, default);
        SpeedFit { default, per_type }
    }

    /// Predicted tokens per second of a file reading `bytes` per token.
    pub fn tps(&self, bytes: &BytesByType) -> f64 {
        let secs: f64 = bytes
            .iter()
            .map(|(ty, n)| {
                let k = self
                    .per_type
                    .iter()
                    .find(|(t, _)| t == ty)
                    .map_or(self.default, |(_, k)| *k);
                *n as f64 * k
            })
            .sum();
        if secs > 0.0 {
            1.0 / secs
        } else {
            0.0
        }
    }

    /// The default cost as a fraction of the roofline at `bandwidth_gbps`.
    pub fn efficiency(&self, bandwidth_gbps: f64) -> f64 {
        1.0 / (self.default * bandwidth_gbps * 1e9)
    }
}

/// Each type's cost per byte: the median, over the points where it holds at least half of the
/// bytes, of what is left of the time once the other types are charged at `default`.
pub(crate) fn per_type_costs(points: &[(BytesByType, f64)], default: f64) -> Vec<(GgmlType, f64)> {
    let mut per_type: Vec<(GgmlType, f64)> = Vec::new();
    let types: Vec<GgmlType> = points
        .iter()
        .flat_map(|(b, _)| b.iter().map(|(t, _)| *t))
        .collect();
    for ty in types {
        if per_type.iter().any(|(t, _)| *t == ty) {
            continue;
        }
        let mut ks: Vec<f64> = points
            .iter()
            .filter_map(|(b, secs)| {
                let mine = b.iter().find(|(t, _)| *t == ty)?.1 as f64;
                let all = total(b);
                (mine >= 0.5 * all).then(|| (secs - (all - mine) * default) / mine)
            })
            .collect();
        if let Some(m) = super::heuristic::median(&mut ks) {
            per_type.push((ty, m));
        }
    }
    per_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::exp;
    use crate::measure::{stats::Spread, Baseline};
    use crate::profile::Profile;

    /// A type measured slower than its bytes predict stays slow in every recipe it dominates,
    /// its figure corrected for the machine's drift in its rounds; unmeasured types keep the
    /// per-byte cost of the measurements.
    #[test]
    fn a_measured_type_keeps_its_own_cost_and_drift_is_taken_out() {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let profile = Profile::load("x86-laptop").unwrap();
        let targets = crate::targets::resolve(&profile, &model, Some(1.0), None, None).unwrap();
        let allowed = profile.allowed_types();
        let uniform = |t| Recipe::uniform(t);
        let original = original_bytes_by_type(&model);
        let q5k = bytes_by_type(&model, &uniform(GgmlType::Q5_K).plan(&model));
        let q4_0 = bytes_by_type(&model, &uniform(GgmlType::Q4_0).plan(&model));
        assert!(
            total(&q5k) < total(&original) * 1.3,
            "Q5_K is near Q4_1's size"
        );
        // Measured at 60 tok/s while the original ran at 75% of its reference 100 in the same
        // rounds: 80 tok/s at the reference's machine speed.
        let mut e = exp(1, 60.0, 0.95, false);
        e.recipe = uniform(GgmlType::Q5_K).to_json();
        e.speed.as_mut().unwrap().baseline = Some(Baseline {
            tg: Spread::of(&[75.0; 6]).unwrap(),
            reference_tps: 100.0,
            ratio: 0.8,
        });
        let exps = [e];
        let ctx = Context {
            model: &model,
            profile: &profile,
            targets: &targets,
            allowed: &allowed,
            experiments: &exps,
            past: &[],
            mock: false,
            sensitivity: None,
            reference_tps: Some(100.0),
        };
        let fit = SpeedFit::from(&ctx, 10.0);
        let p = |b: &BytesByType| fit.tps(b);
        assert!((p(&original) - 100.0).abs() < 1.0, "{}", p(&original));
        assert!((p(&q5k) - 80.0).abs() < 1.0, "{}", p(&q5k));
        // Q4_0 is costed per byte like the measured points (the default is their median).
        let like_original = 100.0 * total(&original) / total(&q4_0);
        let like_q5k = 80.0 * total(&q5k) / total(&q4_0);
        assert!(
            p(&q4_0) >= like_q5k - 0.01 && p(&q4_0) <= like_original + 0.01,
            "{} not in {like_q5k}..{like_original}",
            p(&q4_0)
        );
        // Before any measurement: half the roofline.
        let ctx = Context {
            experiments: &[],
            reference_tps: None,
            ..ctx
        };
        let fit = SpeedFit::from(&ctx, 10.0);
        assert!((fit.efficiency(10.0) - DEFAULT_EFFICIENCY).abs() < 1e-12);
    }
}
