//! The targets a run must meet: the profile's (or the command line's), and where neither gives
//! one, derived from a roofline cost model: generating a token reads every weight once, so a
//! device with `B` GB/s of memory bandwidth generates at most `B / bytes_per_token` tokens per
//! second; we ask for half of that ceiling for the model quantized to Q4_K, llama.cpp's usual
//! default.

use crate::model_info::ModelInfo;
use crate::profile::Profile;
use crate::recipe::{bytes_per_token, Recipe};
use formats::quant::GgmlType;
use serde::{Deserialize, Serialize};

/// Default top-1 agreement when neither the profile nor the command line gives one.
pub const DEFAULT_MIN_ACCURACY: f64 = 0.9;
/// Fraction of the roofline a derived speed target asks for.
pub const ROOFLINE_EFFICIENCY: f64 = 0.5;
/// Fraction of the device's memory a model may use (the rest is for the OS).
pub const MEMORY_HEADROOM: f64 = 0.8;

/// Resolved targets, each with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Targets {
    pub min_tps: f64,
    pub min_tps_source: String,
    pub min_accuracy: f64,
    pub min_accuracy_source: String,
    pub max_latency_ms: Option<f64>,
    /// Bytes the model may take in memory.
    pub max_memory_bytes: f64,
}

/// Command-line targets win over the profile's; missing ones are derived.
pub fn resolve(
    profile: &Profile,
    model: &ModelInfo,
    cli_tps: Option<f64>,
    cli_accuracy: Option<f64>,
) -> anyhow::Result<Targets> {
    let (min_tps, min_tps_source) = match (cli_tps, profile.targets.min_tokens_per_second) {
        (Some(t), _) => (t, "--target-tps".to_string()),
        (None, Some(t)) => (t, format!("profile {}", profile.name)),
        (None, None) => {
            let bw = profile.constraints.memory_bandwidth_gbps.ok_or_else(|| {
                anyhow::anyhow!(
                    "profile {} has no targets.min_tokens_per_second and no constraints.memory_bandwidth_gbps to derive it from",
                    profile.name
                )
            })?;
            let q4k = Recipe::uniform(GgmlType::Q4_K);
            let bpt = bytes_per_token(model, &q4k.plan(model)) as f64;
            let t = ROOFLINE_EFFICIENCY * bw * 1e9 / bpt.max(1.0);
            (
                (t * 10.0).round() / 10.0,
                format!(
                    "roofline: {ROOFLINE_EFFICIENCY} x {bw} GB/s / {:.1} MB per token at Q4_K",
                    bpt / 1e6
                ),
            )
        }
    };
    let (min_accuracy, min_accuracy_source) =
        match (cli_accuracy, profile.targets.min_accuracy_score) {
            (Some(a), _) => (a, "--target-accuracy".to_string()),
            (None, Some(a)) => (a, format!("profile {}", profile.name)),
            (None, None) => (DEFAULT_MIN_ACCURACY, "default".to_string()),
        };
    if !(min_tps.is_finite() && min_tps > 0.0) {
        anyhow::bail!("--target-tps must be a positive number, found {min_tps}");
    }
    if !(min_accuracy.is_finite() && min_accuracy > 0.0 && min_accuracy <= 1.0) {
        anyhow::bail!("--target-accuracy must be in (0, 1], found {min_accuracy}");
    }
    Ok(Targets {
        min_tps,
        min_tps_source,
        min_accuracy,
        min_accuracy_source,
        max_latency_ms: profile.targets.max_latency_ms,
        max_memory_bytes: profile.memory_bytes() * MEMORY_HEADROOM,
    })
}
