//! Architects propose the next recipe to try. `heuristic` (the default, offline) predicts size
//! and speed with a cost model it fits to every measurement; `llm` asks a language model and
//! falls back to the heuristic when the answer is unusable.

pub mod heuristic;
pub mod llm;
pub mod speed;

use crate::experiment::Experiment;
use crate::model_info::ModelInfo;
use crate::profile::Profile;
use crate::recipe::Recipe;
use crate::targets::Targets;
use anyhow::Result;
use formats::quant::GgmlType;
use serde::{Deserialize, Serialize};

/// A measurement from an earlier run on the same device and model (from the history database).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PastMeasurement {
    pub plan_key: String,
    pub bytes_per_token: u64,
    pub tps: f64,
    pub top1: f64,
    pub mock: bool,
}

/// What an architect sees.
#[derive(Debug)]
pub struct Context<'a> {
    pub model: &'a ModelInfo,
    pub profile: &'a Profile,
    pub targets: &'a Targets,
    pub allowed: &'a [GgmlType],
    /// This run's experiments so far.
    pub experiments: &'a [Experiment],
    /// Earlier runs' measurements on this device and model.
    pub past: &'a [PastMeasurement],
    /// Whether measurements are mock (then only mock history counts, and vice versa).
    pub mock: bool,
    /// The sensitivity pass, when the run made one (`--sensitivity`): the heuristic then also
    /// proposes the allocator's mixes.
    pub sensitivity: Option<&'a crate::sensitivity::Sensitivity>,
    /// The original's generation speed on the device, measured at the start of the run.
    pub reference_tps: Option<f64>,
}

/// One LLM exchange, recorded in the history database's `prompts` table.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub provider: String,
    pub system: String,
    pub user: String,
    pub response: Option<String>,
    pub error: Option<String>,
    /// `accepted`, `rejected: <why>`, `failed`.
    pub outcome: String,
}

/// The next recipe to try.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub recipe: Recipe,
    pub predicted_tps: f64,
    pub predicted_size: u64,
    pub rationale: String,
    /// Who proposed it.
    pub by: String,
    pub exchanges: Vec<Exchange>,
}

pub trait Architect {
    fn name(&self) -> String;
    /// The next recipe, or `None` when there is nothing new worth trying.
    fn propose(&mut self, ctx: &Context<'_>) -> Result<Option<Proposal>>;
}

/// Identity of the file a recipe produces for `model`: each tensor's output type.
pub fn plan_key(recipe: &Recipe, model: &ModelInfo) -> String {
    use std::fmt::Write;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut s = String::new();
    for p in recipe.plan(model) {
        let _ = write!(s, "{}={};", p.name, p.to);
    }
    // Layer dropping, pruning and imatrix change the file without changing the types.
    let _ = write!(
        s,
        "drop={:?};prune={:?};imatrix={}",
        recipe.drop_layers, recipe.ffn_prune, recipe.imatrix
    );
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
