//! The targets a run must meet: the profile's (or the command line's), and where neither gives
//! one, derived from a measurement. A real run first benchmarks the original model on the
//! device and splits its time per token `t` in two: reading the weights at the device's memory
//! bandwidth `B` (`bytes_per_token / B`, a fraction `m` of `t`: how close to the roofline the
//! runtime gets) and the rest (arithmetic, which a smaller type does not make faster). The model
//! quantized to Q4_K (llama.cpp's usual default) is predicted at
//! `t_q4k = t * (m * bytes_q4k / bytes_original + (1 - m))`, and the target asks for
//! [`SPEED_MARGIN`] of `1 / t_q4k`: a speed the runtime reaches on this device, with room for
//! the noise of a shared machine. (A half-roofline guess asks a 2-core x86 laptop for several
//! times what any CPU runtime generates.) Without a measurement (`--dry-run`, `--mock`) the
//! estimate is [`ROOFLINE_EFFICIENCY`] of the roofline `B / bytes_per_token`, and says so.
//!
//! One [`Targets`] type serves the profile (its `targets:` section: bare numbers), the command
//! line (which overrides them) and the run (every target resolved, each with its source).

use crate::model_info::ModelInfo;
use crate::profile::Profile;
use crate::recipe::{bytes_per_token, Recipe};
use formats::quant::GgmlType;
use serde::{Deserialize, Deserializer, Serialize};

/// Default top-1 agreement when neither the profile nor the command line gives one.
pub const DEFAULT_MIN_ACCURACY: f64 = 0.9;
/// Fraction of the memory roofline assumed when nothing was measured (also `--mock`'s formula).
pub const ROOFLINE_EFFICIENCY: f64 = 0.5;
/// Fraction of the speed predicted from the measurement that a derived target asks for.
pub const SPEED_MARGIN: f64 = 0.9;
/// Share of the time per token assumed to be memory traffic when the profile gives no
/// bandwidth to compute it from.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.5;
/// Fraction of the device's memory a model may use (the rest is for the OS).
pub const MEMORY_HEADROOM: f64 = 0.8;

/// One target: its value and where it came from (`profile rpi5`, `--target-tps`, `measured:
/// ...`). In a profile's YAML a bare number (its source is the profile); in a checkpoint
/// `{value, source}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub value: f64,
    pub source: String,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a number")]
        enum Repr {
            Bare(f64),
            Full { value: f64, source: String },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Bare(value) => Target {
                value,
                source: String::new(),
            },
            Repr::Full { value, source } => Target { value, source },
        })
    }
}

impl Target {
    pub fn new(value: f64, source: impl Into<String>) -> Self {
        Target {
            value,
            source: source.into(),
        }
    }
}

/// What the compressed model must achieve. A profile gives any of them; [`resolve`] applies the
/// command line and derives the speed, accuracy and memory a profile leaves out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Generated tokens per second, at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens_per_second: Option<Target>,
    /// Top-1 agreement with the original model on held-out text, 0..1, at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy_score: Option<Target>,
    /// Time to the first token of a 64-token prompt, milliseconds, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<Target>,
    /// Memory the model may take, MiB, at most (derived: [`MEMORY_HEADROOM`] of the device's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mib: Option<Target>,
    /// Generation speed as a multiple of the original's, at least (`--target-speedup`). Judged
    /// on the ratio of the candidate's median to the original's in the same interleaved rounds,
    /// which a change in the machine's speed moves together; `min_tokens_per_second` then holds
    /// this multiple of the original's reference figure (for predictions and plots), and is
    /// judged only when no interleaved figure exists. Wins over `min_tokens_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_speedup: Option<Target>,
}

impl Targets {
    /// The speed to reach (0 while unresolved: no minimum).
    pub fn min_tps(&self) -> f64 {
        self.min_tokens_per_second.as_ref().map_or(0.0, |t| t.value)
    }

    /// The top-1 agreement to reach (0 while unresolved: no minimum).
    pub fn min_accuracy(&self) -> f64 {
        self.min_accuracy_score.as_ref().map_or(0.0, |t| t.value)
    }

    /// The multiple of the original's speed to reach, when the target is relative.
    pub fn min_speedup(&self) -> Option<f64> {
        self.min_speedup.as_ref().map(|t| t.value)
    }

    /// The speed target in words: `>= 106.15 tok/s` or `>= 1.10x the original (106.15 tok/s at
    /// its reference)`.
    pub fn speed_text(&self) -> String {
        match self.min_speedup() {
            Some(x) => format!(
                ">= {x:.2}x the original in the same rounds ({:.2} tok/s at its reference)",
                self.min_tps()
            ),
            None => format!(">= {:.2} tok/s", self.min_tps()),
        }
    }

    pub fn max_latency(&self) -> Option<f64> {
        self.max_latency_ms.as_ref().map(|t| t.value)
    }

    /// Bytes the model may take in memory (unbounded while unresolved).
    pub fn max_memory_bytes(&self) -> f64 {
        self.max_memory_mib
            .as_ref()
            .map_or(f64::INFINITY, |t| t.value * (1u64 << 20) as f64)
    }

    /// Where a target came from (`""` when it is not set).
    pub fn source(t: &Option<Target>) -> &str {
        t.as_ref().map_or("", |t| t.source.as_str())
    }
}

/// The original model's generation speed on the profile's device, measured before the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredOriginal {
    /// Median of the protocol's repetitions.
    pub tg_tps: f64,
    /// Its spread (absent when only one figure is known).
    pub spread: Option<crate::measure::stats::Spread>,
    /// Where (for the target's source).
    pub device: String,
}

impl MeasuredOriginal {
    /// `41.30 tok/s (median of 9, 95% CI ..., range ...)`.
    pub fn describe(&self) -> String {
        self.spread
            .map_or(format!("{:.2} tok/s", self.tg_tps), |s| s.describe("tok/s"))
    }
}

/// Whether no target speed is given, so that [`resolve`] will derive one (and a real run should
/// measure the original first).
pub fn speed_is_derived(profile: &Profile, cli_tps: Option<f64>) -> bool {
    cli_tps.is_none() && profile.targets.min_tokens_per_second.is_none()
}

/// Bytes read per generated token by the model as it is.
pub fn original_bytes_per_token(model: &ModelInfo) -> u64 {
    model
        .tensors
        .iter()
        .map(|t| {
            if t.name == "token_embd.weight" && !model.tied_embeddings {
                t.n_bytes / t.dims.get(1).copied().unwrap_or(1).max(1)
            } else {
                t.n_bytes
            }
        })
        .sum()
}

/// Command-line targets win over the profile's; missing ones are derived (from `measured`
/// when given, else from the roofline).
pub fn resolve(
    profile: &Profile,
    model: &ModelInfo,
    cli_tps: Option<f64>,
    cli_accuracy: Option<f64>,
    measured: Option<&MeasuredOriginal>,
) -> anyhow::Result<Targets> {
    let q4k = Recipe::uniform(GgmlType::Q4_K);
    let bpt_q4k = (bytes_per_token(model, &q4k.plan(model)) as f64).max(1.0);
    let from_profile = |t: &Option<Target>| {
        t.as_ref().map(|t| {
            let source = if t.source.is_empty() {
                format!("profile {}", profile.name)
            } else {
                t.source.clone()
            };
            Target::new(t.value, source)
        })
    };
    let (min_tps, min_tps_source) = match (
        cli_tps,
        from_profile(&profile.targets.min_tokens_per_second),
    ) {
        (Some(t), _) => (t, "--target-tps".to_string()),
        (None, Some(t)) => (t.value, t.source),
        (None, None) if measured.is_some() => {
            let m = measured.expect("checked");
            let bpt = original_bytes_per_token(model) as f64;
            let streamed = m.tg_tps * bpt / 1e9; // GB/s the runtime reads the weights at
            let (share, why) = match profile.constraints.memory_bandwidth_gbps {
                Some(bw) if bw > 0.0 => (
                    (streamed / bw).clamp(0.0, 1.0),
                    format!("{:.0}% of its {bw} GB/s roofline", 100.0 * streamed / bw),
                ),
                _ => (
                    DEFAULT_MEMORY_SHARE,
                    format!(
                        "no bandwidth in the profile: {DEFAULT_MEMORY_SHARE} assumed memory-bound"
                    ),
                ),
            };
            let at_q4k = m.tg_tps / (share * bpt_q4k / bpt.max(1.0) + (1.0 - share));
            let t = ((SPEED_MARGIN * at_q4k) * 100.0).floor() / 100.0;
            (
                t,
                format!(
                    "measured: the original ran at {} on {} (weights read at {streamed:.2} GB/s, {why}); Q4_K predicted at {at_q4k:.2} tok/s; target {SPEED_MARGIN} x that",
                    m.describe(), m.device
                ),
            )
        }
        (None, None) => {
            let bw = profile.constraints.memory_bandwidth_gbps.ok_or_else(|| {
                anyhow::anyhow!(
                    "profile {} has no targets.min_tokens_per_second and no constraints.memory_bandwidth_gbps to derive it from",
                    profile.name
                )
            })?;
            let t = ROOFLINE_EFFICIENCY * bw * 1e9 / bpt_q4k;
            (
                (t * 10.0).round() / 10.0,
                format!(
                    "estimate, nothing measured: {ROOFLINE_EFFICIENCY} x {bw} GB/s / {:.1} MB per token at Q4_K (a real run measures the device first)",
                    bpt_q4k / 1e6
                ),
            )
        }
    };
    let (min_accuracy, min_accuracy_source) = match (
        cli_accuracy,
        from_profile(&profile.targets.min_accuracy_score),
    ) {
        (Some(a), _) => (a, "--target-accuracy".to_string()),
        (None, Some(a)) => (a.value, a.source),
        (None, None) => (DEFAULT_MIN_ACCURACY, "default".to_string()),
    };
    if !(min_tps.is_finite() && min_tps > 0.0) {
        anyhow::bail!("--target-tps must be a positive number, found {min_tps}");
    }
    if !(min_accuracy.is_finite() && min_accuracy > 0.0 && min_accuracy <= 1.0) {
        anyhow::bail!("--target-accuracy must be in (0, 1], found {min_accuracy}");
    }
    let memory = from_profile(&profile.targets.max_memory_mib).unwrap_or_else(|| {
        Target::new(
            (profile.memory_bytes() * MEMORY_HEADROOM / (1u64 << 20) as f64).floor(),
            format!(
                "{MEMORY_HEADROOM} x the {:.1} GB of profile {}",
                profile.memory_bytes() / 1e9,
                profile.name
            ),
        )
    });
    Ok(Targets {
        min_tokens_per_second: Some(Target::new(min_tps, min_tps_source)),
        min_accuracy_score: Some(Target::new(min_accuracy, min_accuracy_source)),
        max_latency_ms: from_profile(&profile.targets.max_latency_ms),
        max_memory_mib: Some(memory),
        min_speedup: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_speed_follows_the_measured_efficiency() {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let mut profile = Profile::load("rpi5").unwrap();
        assert!(!speed_is_derived(&profile, None), "rpi5 gives a target");
        profile.targets.min_tokens_per_second = None;
        assert!(speed_is_derived(&profile, None));
        assert!(!speed_is_derived(&profile, Some(3.0)));
        let est = resolve(&profile, &model, None, None, None).unwrap();
        assert!(
            Targets::source(&est.min_tokens_per_second).starts_with("estimate"),
            "{est:?}"
        );
        let m = MeasuredOriginal {
            tg_tps: 20.0,
            spread: None,
            device: "host".into(),
        };
        let t = resolve(&profile, &model, None, None, Some(&m)).unwrap();
        assert!(
            Targets::source(&t.min_tokens_per_second).starts_with("measured"),
            "{t:?}"
        );
        // The memory share of the time per token shrinks with the bytes; the rest does not.
        let q4k = Recipe::uniform(GgmlType::Q4_K);
        let bpt = original_bytes_per_token(&model) as f64;
        let share = 20.0 * bpt / 1e9 / profile.constraints.memory_bandwidth_gbps.unwrap();
        let ratio = bytes_per_token(&model, &q4k.plan(&model)) as f64 / bpt;
        let want = SPEED_MARGIN * 20.0 / (share * ratio + 1.0 - share);
        assert!(
            (t.min_tps() - want).abs() < 0.011,
            "{} vs {want}",
            t.min_tps()
        );
        // Bounded by the pure roofline scaling (all memory) and the original's speed (none).
        assert!(t.min_tps() <= SPEED_MARGIN * 20.0 / ratio + 0.01, "{t:?}");
        assert!(t.min_tps() >= SPEED_MARGIN * 20.0 - 0.01, "{t:?}");
        // Without a bandwidth, half the time is assumed to be memory traffic.
        let mut nobw = profile.clone();
        nobw.constraints.memory_bandwidth_gbps = None;
        let t = resolve(&nobw, &model, None, None, Some(&m)).unwrap();
        let want = SPEED_MARGIN * 20.0 / (0.5 * ratio + 0.5);
        assert!(
            (t.min_tps() - want).abs() < 0.011,
            "{} vs {want}",
            t.min_tps()
        );
        // A given target wins over the measurement.
        let t = resolve(&profile, &model, Some(3.0), None, Some(&m)).unwrap();
        assert_eq!(
            (t.min_tps(), Targets::source(&t.min_tokens_per_second)),
            (3.0, "--target-tps")
        );
    }

    #[test]
    fn one_type_from_a_profile_to_a_checkpoint() {
        let profile = Profile::from_yaml(
            "name: board\nconstraints: {cpu_arch: arm64, ram_gb: 4}\n\
             targets: {min_tokens_per_second: 5, max_memory_mib: 300, max_latency_ms: 900}\n",
            "board.yaml",
        )
        .unwrap();
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let t = resolve(&profile, &model, None, Some(0.8), None).unwrap();
        assert_eq!(
            t.min_tokens_per_second,
            Some(Target::new(5.0, "profile board"))
        );
        assert_eq!(
            t.min_accuracy_score,
            Some(Target::new(0.8, "--target-accuracy"))
        );
        assert_eq!(t.max_latency(), Some(900.0));
        assert_eq!(t.max_memory_bytes(), 300.0 * (1u64 << 20) as f64);
        // Without a memory target: the device's memory less the headroom, and says so.
        let mut open = profile.clone();
        open.targets.max_memory_mib = None;
        let t2 = resolve(&open, &model, None, None, None).unwrap();
        assert_eq!(t2.max_memory_mib.as_ref().unwrap().value, 3051.0);
        assert!(Targets::source(&t2.max_memory_mib).contains("profile board"));
        assert_eq!(Targets::source(&t2.min_accuracy_score), "default");
        // A checkpoint keeps every source.
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Targets>(&json).unwrap(), t);
        // A profile's target that is not a number is an error naming the field.
        let bad = Profile::from_yaml(
            "name: b\nconstraints: {cpu_arch: arm64, ram_gb: 4}\ntargets: {max_memory_mib: lots}\n",
            "b.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("max_memory_mib") && bad.contains("a number"),
            "{bad}"
        );
    }
}
