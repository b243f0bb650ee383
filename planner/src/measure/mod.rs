//! Measuring a candidate ([`Measurer`]): speed on the device and quality against the original
//! on the host. [`wire`] does it through `formats::wire` sessions with `sintra-rt serve` (the
//! only way the planner reaches the runtime); [`mock`] stands in under `--mock`, with a
//! documented formula.

pub mod mock;
pub mod stats;
pub mod wire;

use crate::model_info::ModelInfo;
use crate::recipe::TensorPlan;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a benchmark run does: llama-bench's `-p`, `-n`, `-r`, `-t`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct BenchSpec {
    pub n_prompt: u32,
    pub n_gen: u32,
    pub reps: u32,
    pub threads: u32,
}

/// Speed of one candidate on the device, measured by the protocol of [`wire`]: a discarded
/// warm-up, rounds of repetitions until the median is known to within
/// [`stats::SETTLED_REL`], outliers left out and re-run, the original interleaved with the
/// candidate, and the machine's load recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    /// Generation, tokens per second: the figure the targets are judged on, the median of the
    /// candidate's repetitions.
    pub tg_tps: f64,
    /// Sample standard deviation of the generation repetitions.
    pub tg_sd: f64,
    /// The candidate's generation samples, summarized.
    #[serde(default)]
    pub tg: Option<stats::Spread>,
    /// Prompt processing, tokens per second (median).
    pub pp_tps: f64,
    /// Time to the first token of the prompt: `n_prompt / pp_tps`, milliseconds.
    pub latency_ms: f64,
    /// Peak resident memory of the runtime, bytes (when the device reports it).
    pub peak_rss_bytes: Option<u64>,
    /// Where it was measured (`host`, `mock`, a device name).
    pub measured_on: String,
    /// The device's load during the measurement (the busiest round), when it reports it.
    #[serde(default)]
    pub load: Option<formats::wire::MachineLoad>,
    /// The original, re-measured in rounds interleaved with this candidate's.
    #[serde(default)]
    pub baseline: Option<Baseline>,
}

/// The original model re-measured beside a candidate, in rounds interleaved with its.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// The original's generation samples in the candidate's rounds.
    pub tg: stats::Spread,
    /// The run's reference figure for the original (measured before the loop).
    pub reference_tps: f64,
    /// Candidate median / original median, same rounds.
    pub ratio: f64,
}

impl Baseline {
    /// How far the original's median in these rounds is from its reference (0.1: 10% faster).
    pub fn drift(&self) -> f64 {
        self.tg.median / self.reference_tps - 1.0
    }
}

/// Drift of the original beyond which a candidate's line says the machine changed speed.
pub const DRIFT_NOTE: f64 = 0.1;

/// Quality of one candidate against the original model on held-out text. Every figure has its
/// standard error (llama.cpp's `±`), from the scored positions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    /// Mean KL divergence of the candidate's next-token distribution from the original's.
    pub kld: f64,
    #[serde(default)]
    pub kld_se: f64,
    /// Fraction of positions where both models' most likely token agree (the accuracy score).
    pub top1: f64,
    #[serde(default)]
    pub top1_se: f64,
    pub ppl: f64,
    pub ppl_base: f64,
    /// `ppl - ppl_base`.
    pub delta_ppl: f64,
    /// Windows of held-out text scored.
    #[serde(default)]
    pub windows: u32,
}

impl Quality {
    /// `0.8412 ± 0.0162`.
    pub fn top1_text(&self) -> String {
        format!("{:.4} ± {:.4}", self.top1, self.top1_se)
    }
    /// `0.04512 ± 0.00210`.
    pub fn kld_text(&self) -> String {
        format!("{:.5} ± {:.5}", self.kld, self.kld_se)
    }
}

/// A candidate's generation with and without its draft (speculative decoding, issue #17):
/// greedy generation after a prompt of held-out text, the two interleaved on the device, the
/// outputs checked equal by the runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DraftSpeed {
    /// Median tokens/s without the draft, and with it, in the same rounds.
    pub plain_tps: f64,
    pub spec_tps: f64,
    /// `spec_tps / plain_tps`.
    pub ratio: f64,
    pub plain_samples: Vec<f64>,
    pub spec_samples: Vec<f64>,
    /// Drafted tokens and those kept.
    pub drafted: u64,
    pub accepted: u64,
    pub n_prompt: u32,
    pub n_gen: u32,
}

impl DraftSpeed {
    /// The share of drafted tokens the model kept.
    pub fn acceptance(&self) -> f64 {
        self.accepted as f64 / self.drafted.max(1) as f64
    }
}

/// One device's part in a fleet's measurement of a candidate (or of the original): its
/// figures, or why it has none (`unreachable`, `lost`, `timed out`, `failed`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceSpeed {
    /// The inventory's name for the device, and its class.
    pub host: String,
    pub class: String,
    /// `ok`, or how it dropped out.
    pub status: String,
    pub speed: Option<Speed>,
    pub error: Option<String>,
    /// What the device is, from its handshake (none when it never answered).
    #[serde(default)]
    pub hardware: Option<crate::fleet::hardware::Hardware>,
}

/// A written (or, under `--mock`, only planned) candidate model.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The GGUF file (absent under `--mock`: nothing is written).
    pub path: Option<&'a Path>,
    pub plan: &'a [TensorPlan],
    pub model: &'a ModelInfo,
    pub bytes_per_token: u64,
    pub size_bytes: u64,
}

/// Measures candidates. One object does both so that a run keeps one runtime session where
/// the device is this host (one handshake, one process).
pub trait Measurer {
    /// The candidate's speed on the profile's device.
    fn bench(&mut self, c: &Candidate<'_>) -> Result<Speed>;
    /// The candidate's quality against the original model, on the host.
    fn quality(&mut self, c: &Candidate<'_>) -> Result<Quality>;
    /// The quality of a written candidate over more windows of held-out text, when its figures
    /// and another's are within each other's noise. The default scores nothing more.
    fn quality_more(&mut self, _path: &Path) -> Result<Option<Quality>> {
        Ok(None)
    }
    /// The candidate's greedy generation with and without the draft at `draft` on the device.
    fn bench_draft(&mut self, _c: &Candidate<'_>, _draft: &Path) -> Result<DraftSpeed> {
        anyhow::bail!("this measurer cannot measure speculative decoding")
    }
    /// A fleet's per-device figures of the last [`Measurer::bench`] (none off a fleet).
    fn fleet_results(&mut self) -> Vec<DeviceSpeed> {
        Vec::new()
    }
    /// A fleet's per-device figures of the original, once (none off a fleet).
    fn fleet_originals(&mut self) -> Vec<DeviceSpeed> {
        Vec::new()
    }
    /// A fleet: measure the written candidate on the devices (or classes) `have` lacks a
    /// figure for; the candidate's binding speed and every device's figures, or `None` when
    /// nothing was missing. Off a fleet, nothing is.
    fn bench_missing(
        &mut self,
        _c: &Candidate<'_>,
        _have: &[DeviceSpeed],
    ) -> Result<Option<(Speed, Vec<DeviceSpeed>)>> {
        Ok(None)
    }
    /// End the runtime sessions; a line saying how many were opened, if any were.
    fn shutdown(&mut self) -> Option<String> {
        None
    }
}
