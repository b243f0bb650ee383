//! Measuring a candidate ([`Measurer`]): speed on the device and quality against the original
//! on the host. [`wire`] does it through `formats::wire` sessions with `sintra-rt serve` (the
//! only way the planner reaches the runtime); [`mock`] stands in under `--mock`, with a
//! documented formula.

pub mod mock;
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

/// Speed of one candidate on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    /// Generation, tokens per second (mean over repetitions).
    pub tg_tps: f64,
    pub tg_sd: f64,
    /// Prompt processing, tokens per second.
    pub pp_tps: f64,
    /// Time to the first token of the prompt: `n_prompt / pp_tps`, milliseconds.
    pub latency_ms: f64,
    /// Peak resident memory of the runtime, bytes (when the device reports it).
    pub peak_rss_bytes: Option<u64>,
    /// Where it was measured (`host`, `mock`, a device name).
    pub measured_on: String,
}

/// Quality of one candidate against the original model on held-out text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    /// Mean KL divergence of the candidate's next-token distribution from the original's.
    pub kld: f64,
    /// Fraction of positions where both models' most likely token agree (the accuracy score).
    pub top1: f64,
    pub ppl: f64,
    pub ppl_base: f64,
    /// `ppl - ppl_base`.
    pub delta_ppl: f64,
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
    /// End the runtime sessions; a line saying how many were opened, if any were.
    fn shutdown(&mut self) -> Option<String> {
        None
    }
}
