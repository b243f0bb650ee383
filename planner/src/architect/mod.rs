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
    let plan = recipe.plan(model);
    for p in &plan {
        let _ = write!(s, "{}={};", p.name, p.to);
    }
    // Layer dropping, pruning and imatrix change the file without changing the types. Pruning
    // counts as the channels it keeps: two ratios that keep the same channels (0.0157 and
    // 0.01569999, as a language model may write them) make the same file.
    let prune = match &recipe.ffn_prune {
        None => "None".to_string(),
        Some(_) => plan
            .iter()
            .filter(|p| p.prune.is_some())
            .map(|p| format!("{}:{:?}", p.name, p.prune))
            .collect::<Vec<_>>()
            .join(","),
    };
    let _ = write!(
        s,
        "drop={:?};prune={prune};imatrix={}",
        recipe.drop_layers, recipe.imatrix
    );
    // A draft is not part of the key: `--draft auto` gives every candidate one, and the
    // candidate file is what the key identifies.
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pruning ratios that keep the same channels make the same file, so the same key (a
    /// language model wrote 0.015696569666666667 and then 0.01569656966666667); ratios that
    /// keep different channels do not.
    #[test]
    fn pruning_ratios_that_keep_the_same_channels_share_a_key() {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let key = |json: &str| plan_key(&Recipe::from_json(json).unwrap(), &model);
        let a = key(r#"{"default_type":"Q4_1","ffn_prune":{"ratio":0.015696569666666667}}"#);
        let b = key(r#"{"default_type":"Q4_1","ffn_prune":{"ratio":0.01569656966666667}}"#);
        let c = key(r#"{"default_type":"Q4_1","ffn_prune":{"ratio":0.25}}"#);
        let d = key(r#"{"default_type":"Q4_1"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
