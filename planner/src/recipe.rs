//! Compression recipes (the format of DESIGN.md): what the Architect proposes, the Executor
//! writes and an LLM architect must answer.
//!
//! ```json
//! {"default_type": "Q4_K",
//!  "overrides": [{"tensor": "blk\\.(0|1)\\.ffn_down\\.weight", "type": "Q6_K"}],
//!  "drop_layers": [20, 21], "ffn_prune": {"ratio": 0.1, "per_layer": null}, "imatrix": true}
//! ```
//! Parsing is strict: unknown keys, wrong types and impossible values are errors naming the
//! key. [`Recipe::validate`] then checks the recipe against a model: every override's regex
//! matches a tensor, layer indices exist. Override regexes match whole tensor names; the first
//! matching override wins. Vectors (norms, biases) always stay F32.

use crate::model_info::{layer_of, ModelInfo};
use crate::profile::RECIPE_TYPES;
use formats::quant::GgmlType;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// A parsed recipe. Types are checked; regexes compile.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub default_type: GgmlType,
    pub overrides: Vec<Override>,
    pub drop_layers: Vec<u32>,
    pub ffn_prune: Option<FfnPrune>,
    pub imatrix: bool,
    /// A draft model for speculative decoding (issue #17): a recipe of its own applied to the
    /// same source (typically fewer layers, fewer bits), written beside the model and kept
    /// only when it makes generation faster on the device. A draft has no draft.
    pub draft: Option<Box<Recipe>>,
}

/// `{"tensor": REGEX, "type": TYPE}`.
#[derive(Debug, Clone)]
pub struct Override {
    pub tensor: String,
    pub ty: GgmlType,
    regex: Regex,
}

impl PartialEq for Override {
    fn eq(&self, o: &Self) -> bool {
        self.tensor == o.tensor && self.ty == o.ty
    }
}

impl Override {
    pub fn new(tensor: &str, ty: GgmlType) -> Result<Override, RecipeError> {
        Ok(Override {
            tensor: tensor.to_string(),
            ty,
            regex: compile(tensor, "overrides[].tensor")?,
        })
    }
    /// Whether the regex matches the whole name.
    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

/// Structured FFN pruning (issue #7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FfnPrune {
    /// Fraction of FFN channels removed in every layer, `[0, 1)`.
    pub ratio: f64,
    /// Per-layer ratios overriding `ratio` (one per layer).
    #[serde(default)]
    pub per_layer: Option<Vec<f64>>,
}

/// A recipe that does not parse or does not fit the model; every variant names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecipeError {
    /// Not JSON, a wrong JSON type, an unknown or a missing key (serde names the key).
    #[error("recipe: {0}")]
    Syntax(String),
    /// A value that is the right JSON type but impossible.
    #[error("recipe: `{key}`: {problem}")]
    BadValue { key: String, problem: String },
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> RecipeError {
    RecipeError::BadValue {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    default_type: String,
    #[serde(default)]
    overrides: Vec<RawOverride>,
    #[serde(default)]
    drop_layers: Vec<u32>,
    #[serde(default)]
    ffn_prune: Option<FfnPrune>,
    #[serde(default)]
    imatrix: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    draft: Option<Box<RawRecipe>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    tensor: String,
    #[serde(rename = "type")]
    ty: String,
}

fn parse_type(s: &str, key: &str) -> Result<GgmlType, RecipeError> {
    let ty = GgmlType::from_name(s)
        .ok_or_else(|| bad(key, format!("unknown type '{s}' (known: {})", type_list())))?;
    if !RECIPE_TYPES.contains(&ty) {
        return Err(bad(
            key,
            format!(
                "type {ty} cannot be written or run by sintra (use one of: {})",
                type_list()
            ),
        ));
    }
    Ok(ty)
}

fn type_list() -> String {
    RECIPE_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn compile(re: &str, key: &str) -> Result<Regex, RecipeError> {
    if re.is_empty() {
        return Err(bad(key, "empty regex"));
    }
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| bad(key, format!("invalid regex '{re}': {e}")))
}

impl Recipe {
    /// A recipe with one type everywhere.
    pub fn uniform(ty: GgmlType) -> Recipe {
        Recipe {
            default_type: ty,
            overrides: Vec::new(),
            drop_layers: Vec::new(),
            ffn_prune: None,
            imatrix: false,
            draft: None,
        }
    }

    /// Parse a recipe strictly.
    pub fn from_json(text: &str) -> Result<Recipe, RecipeError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawRecipe = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                RecipeError::Syntax(inner.to_string())
            } else {
                RecipeError::Syntax(format!("`{path}`: {inner}"))
            }
        })?;
        Recipe::from_raw(raw, "")
    }

    /// A parsed recipe's checks; `at` prefixes the keys errors name (`draft.` inside a draft).
    fn from_raw(raw: RawRecipe, at: &str) -> Result<Recipe, RecipeError> {
        let default_type = parse_type(&raw.default_type, &format!("{at}default_type"))?;
        let mut overrides = Vec::with_capacity(raw.overrides.len());
        for (i, o) in raw.overrides.iter().enumerate() {
            overrides.push(Override {
                tensor: o.tensor.clone(),
                ty: parse_type(&o.ty, &format!("{at}overrides[{i}].type"))?,
                regex: compile(&o.tensor, &format!("{at}overrides[{i}].tensor"))?,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, l) in raw.drop_layers.iter().enumerate() {
            if !seen.insert(*l) {
                return Err(bad(
                    format!("{at}drop_layers[{i}]"),
                    format!("layer {l} is listed twice"),
                ));
            }
        }
        if let Some(p) = &raw.ffn_prune {
            check_ratio(p.ratio, &format!("{at}ffn_prune.ratio"))?;
            if let Some(v) = &p.per_layer {
                for (i, r) in v.iter().enumerate() {
                    check_ratio(*r, &format!("{at}ffn_prune.per_layer[{i}]"))?;
                }
            }
        }
        let draft = match raw.draft {
            None => None,
            Some(_) if !at.is_empty() => {
                return Err(bad(format!("{at}draft"), "a draft has no draft of its own"))
            }
            Some(d) => Some(Box::new(Recipe::from_raw(*d, "draft.")?)),
        };
        Ok(Recipe {
            default_type,
            overrides,
            drop_layers: raw.drop_layers,
            ffn_prune: raw.ffn_prune,
            imatrix: raw.imatrix,
            draft,
        })
    }

    /// The recipe as JSON (the canonical form: also the key that says two recipes are the same).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.raw()).expect("a recipe serializes")
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.raw()).expect("a recipe serializes")
    }

    fn raw(&self) -> RawRecipe {
        RawRecipe {
            default_type: self.default_type.to_string(),
            overrides: self
                .overrides
                .iter()
                .map(|o| RawOverride {
                    tensor: o.tensor.clone(),
                    ty: o.ty.to_string(),
                })
                .collect(),
            drop_layers: self.drop_layers.clone(),
            ffn_prune: self.ffn_prune.clone(),
            imatrix: self.imatrix,
            draft: self.draft.as_ref().map(|d| Box::new(d.raw())),
        }
    }

    /// The JSON Schema of a recipe for `model` on a device allowing `allowed` types, as an LLM
    /// architect is asked to follow it (issue #17): types from the allowed list, overrides of
    /// whole tensor classes (`blk\.\d+\.ffn_down\.weight`, `token_embd\.weight`, ...),
    /// layers that exist, lists bounded (a small model otherwise rambles inside a list until
    /// its context is full), no other keys. Every property is required (OpenAI's strict mode
    /// wants that); `ffn_prune` may be null. Whatever a model answers is still parsed and
    /// validated: the schema helps, it is not trusted.
    pub fn json_schema(model: &ModelInfo, allowed: &[GgmlType]) -> serde_json::Value {
        use serde_json::json;
        let types: Vec<String> = allowed.iter().map(|t| t.to_string()).collect();
        let mut classes: Vec<String> = Vec::new();
        for t in model.tensors.iter().filter(|t| t.is_matrix()) {
            let class = match layer_of(&t.name) {
                Some(l) => {
                    let rest = &t.name[format!("blk.{l}.").len()..];
                    format!("blk\\.\\d+\\.{}", regex::escape(rest))
                }
                None => regex::escape(&t.name),
            };
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        let last_layer = model.n_layers.saturating_sub(1);
        json!({
            "type": "object",
            "properties": {
                "default_type": {"type": "string", "enum": types},
                "overrides": {
                    "type": "array",
                    "maxItems": classes.len(),
                    "items": {
                        "type": "object",
                        "properties": {
                            "tensor": {"type": "string", "enum": classes},
                            "type": {"type": "string", "enum": types},
                        },
                        "required": ["tensor", "type"],
                        "additionalProperties": false,
                    },
                },
                "drop_layers": {
                    "type": "array",
                    "maxItems": model.n_layers / 2,
                    "items": {"type": "integer", "minimum": 0, "maximum": last_layer},
                },
                "ffn_prune": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "properties": {"ratio": {"type": "number", "minimum": 0, "maximum": 0.75}},
                            "required": ["ratio"],
                            "additionalProperties": false,
                        },
                    ],
                },
                "imatrix": {"type": "boolean"},
            },
            "required": ["default_type", "overrides", "drop_layers", "ffn_prune", "imatrix"],
            "additionalProperties": false,
        })
    }

    /// A short human label: `Q4_K +2 overrides`.
    pub fn label(&self) -> String {
        let mut s = self.default_type.to_string();
        for o in &self.overrides {
            s.push_str(&format!(" {}={}", short_regex(&o.tensor), o.ty));
        }
        if !self.drop_layers.is_empty() {
            s.push_str(&format!(" drop{:?}", self.drop_layers));
        }
        if let Some(p) = &self.ffn_prune {
            s.push_str(&format!(" prune{}", p.ratio));
        }
        if self.imatrix {
            s.push_str(" imatrix");
        }
        if let Some(d) = &self.draft {
            s.push_str(&format!(" +draft({})", d.label()));
        }
        s
    }

    /// Check the recipe against a model: overrides match matrices, layers exist, the prune
    /// list has one ratio per layer, types are allowed by the device.
    pub fn validate(&self, model: &ModelInfo, allowed: &[GgmlType]) -> Result<(), RecipeError> {
        let allowed_list = || {
            allowed
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !allowed.contains(&self.default_type) {
            return Err(bad(
                "default_type",
                format!(
                    "type {} is not supported by the device (allowed: {})",
                    self.default_type,
                    allowed_list()
                ),
            ));
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if !allowed.contains(&o.ty) {
                return Err(bad(
                    format!("overrides[{i}].type"),
                    format!(
                        "type {} is not supported by the device (allowed: {})",
                        o.ty,
                        allowed_list()
                    ),
                ));
            }
            if !model
                .tensors
                .iter()
                .any(|t| t.is_matrix() && o.matches(&t.name))
            {
                return Err(bad(
                    format!("overrides[{i}].tensor"),
                    format!(
                        "regex '{}' matches no weight matrix of {} (e.g. blk.0.ffn_down.weight, token_embd.weight)",
                        o.tensor, model.name
                    ),
                ));
            }
        }
        for (i, l) in self.drop_layers.iter().enumerate() {
            if *l >= model.n_layers {
                return Err(bad(
                    format!("drop_layers[{i}]"),
                    format!(
                        "layer {l} does not exist (the model has {} layers)",
                        model.n_layers
                    ),
                ));
            }
        }
        if !self.drop_layers.is_empty() && self.drop_layers.len() as u32 >= model.n_layers {
            return Err(bad("drop_layers", "would drop every layer"));
        }
        if let Some(FfnPrune {
            per_layer: Some(v), ..
        }) = &self.ffn_prune
        {
            if v.len() != model.n_layers as usize {
                return Err(bad(
                    "ffn_prune.per_layer",
                    format!(
                        "has {} ratios, the model has {} layers",
                        v.len(),
                        model.n_layers
                    ),
                ));
            }
        }
        for t in &model.tensors {
            if t.is_matrix()
                && self.type_for(&t.name, t.row_len()) != t.ty
                && !t.ty.can_dequantize()
            {
                return Err(bad(
                    "default_type",
                    format!("tensor {} is {} which cannot be requantized", t.name, t.ty),
                ));
            }
        }
        if let Some(d) = &self.draft {
            d.validate(model, allowed).map_err(|e| match e {
                RecipeError::BadValue { key, problem } => RecipeError::BadValue {
                    key: format!("draft.{key}"),
                    problem,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// The type tensor `name` (a matrix with rows of `row_len`) is written in: the first
    /// matching override, else the default, then llama.cpp's fallback for rows that are not
    /// whole blocks.
    pub fn type_for(&self, name: &str, row_len: u64) -> GgmlType {
        self.requested_type(name).fallback_for_row(row_len)
    }

    /// The type the recipe asks for `name`, before any fallback.
    pub fn requested_type(&self, name: &str) -> GgmlType {
        self.overrides
            .iter()
            .find(|o| o.matches(name))
            .map_or(self.default_type, |o| o.ty)
    }

    /// The pruning ratio of layer `layer` (0 when the recipe does not prune).
    pub fn prune_ratio(&self, layer: u32) -> f64 {
        match &self.ffn_prune {
            None => 0.0,
            Some(p) => p
                .per_layer
                .as_ref()
                .and_then(|v| v.get(layer as usize).copied())
                .unwrap_or(p.ratio),
        }
    }

    /// FFN channels kept in source layer `layer` of `n_ff`: `(1 - ratio) * n_ff` rounded to
    /// whole blocks of the type `ffn_down` is asked for (its rows are the channels), so a
    /// K-quant `ffn_down` keeps its type instead of falling back; at least one block.
    pub fn ffn_keep(&self, layer: u32, n_ff: u64) -> u64 {
        let r = self.prune_ratio(layer);
        if r <= 0.0 || n_ff == 0 {
            return n_ff;
        }
        let g = self
            .requested_type(&format!("blk.{layer}.ffn_down.weight"))
            .block_size() as u64;
        let blocks = (((1.0 - r) * n_ff as f64) / g as f64).round().max(1.0) as u64;
        (blocks * g).min(n_ff)
    }

    /// What the executor writes, tensor by tensor in source order: dropped layers' tensors are
    /// gone and the others renumbered, pruned FFN matrices shrink, matrices take their recipe
    /// type, vectors (norms) stay F32. Override regexes and `ffn_prune.per_layer` refer to the
    /// source model's layer numbers.
    pub fn plan(&self, model: &ModelInfo) -> Vec<TensorPlan> {
        let dropped = |l: u32| self.drop_layers.contains(&l);
        let renumber = |l: u32| l - self.drop_layers.iter().filter(|&&d| d < l).count() as u32;
        let mut out = Vec::with_capacity(model.tensors.len());
        for t in &model.tensors {
            let layer = layer_of(&t.name);
            if layer.is_some_and(dropped) {
                continue;
            }
            let out_name = match layer {
                Some(l) => format!(
                    "blk.{}.{}",
                    renumber(l),
                    &t.name[format!("blk.{l}.").len()..]
                ),
                None => t.name.clone(),
            };
            let mut dims = t.dims.clone();
            let mut prune = None;
            if let Some(l) = layer {
                let role = ffn_role(&t.name);
                if role.is_some() {
                    let n_ff = model.n_ff(l);
                    let keep = self.ffn_keep(l, n_ff);
                    if keep < n_ff {
                        match role {
                            Some(FfnRole::GateUp) if dims.len() == 2 => {
                                dims[1] = keep;
                                prune = Some(Prune::Rows(keep));
                            }
                            Some(FfnRole::Down) if dims.len() == 2 => {
                                dims[0] = keep;
                                prune = Some(Prune::Columns(keep));
                            }
                            _ => {}
                        }
                    }
                }
            }
            let n_elements: u64 = dims.iter().product();
            let to = if t.is_matrix() {
                self.type_for(&t.name, dims[0])
            } else if t.ty == GgmlType::F32 || !t.ty.can_dequantize() {
                t.ty
            } else {
                GgmlType::F32
            };
            let n_bytes = if to == t.ty && prune.is_none() {
                t.n_bytes
            } else {
                n_elements / to.block_size() as u64 * to.type_size() as u64
            };
            out.push(TensorPlan {
                name: t.name.clone(),
                out_name,
                from: t.ty,
                to,
                dims,
                n_elements,
                n_bytes,
                layer,
                prune,
            });
        }
        out
    }

    /// Whether the executor needs calibration statistics for this recipe (the importance matrix,
    /// or the FFN activation norms that rank neurons for pruning).
    pub fn needs_calibration(&self) -> bool {
        self.imatrix
            || self.ffn_prune.as_ref().is_some_and(|p| {
                p.ratio > 0.0
                    || p.per_layer
                        .as_ref()
                        .is_some_and(|v| v.iter().any(|&r| r > 0.0))
            })
    }
}

/// `blk.N.ffn_gate|ffn_up.weight` or `blk.N.ffn_down.weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnRole {
    GateUp,
    Down,
}

pub fn ffn_role(name: &str) -> Option<FfnRole> {
    if name.ends_with(".ffn_gate.weight") || name.ends_with(".ffn_up.weight") {
        Some(FfnRole::GateUp)
    } else if name.ends_with(".ffn_down.weight") {
        Some(FfnRole::Down)
    } else {
        None
    }
}

/// How a pruned FFN matrix shrinks: gate and up keep `n` rows (channels), down keeps `n`
/// columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    Rows(u64),
    Columns(u64),
}

fn check_ratio(r: f64, key: &str) -> Result<(), RecipeError> {
    if r.is_finite() && (0.0..1.0).contains(&r) {
        Ok(())
    } else {
        Err(bad(key, format!("must be in [0, 1), found {r}")))
    }
}

fn short_regex(re: &str) -> String {
    re.replace("\\.", ".").replace(".weight", "")
}

/// What the Executor does with one tensor of the source.
#[derive(Debug, Clone)]
pub struct TensorPlan {
    /// The source tensor.
    pub name: String,
    /// Its name in the written file (layers renumbered after dropping).
    pub out_name: String,
    pub from: GgmlType,
    pub to: GgmlType,
    /// Output shape (pruned FFN matrices shrink).
    pub dims: Vec<u64>,
    pub n_elements: u64,
    pub n_bytes: u64,
    /// Source layer, for `blk.N.` tensors.
    pub layer: Option<u32>,
    pub prune: Option<Prune>,
}

/// Predicted file size of a plan: the source header plus aligned tensor data.
pub fn predicted_size(model: &ModelInfo, plan: &[TensorPlan]) -> u64 {
    model.header_bytes
        + plan
            .iter()
            .map(|p| p.n_bytes.div_ceil(32) * 32)
            .sum::<u64>()
}

/// Bytes of weights read per generated token: every matrix, except that the embedding table
/// contributes one row (unless the classifier reuses it, then all of it).
pub fn bytes_per_token(model: &ModelInfo, plan: &[TensorPlan]) -> u64 {
    plan.iter()
        .map(|p| {
            if p.name == "token_embd.weight" && !model.tied_embeddings {
                p.n_bytes / p.dims.get(1).copied().unwrap_or(1).max(1)
            } else {
                p.n_bytes
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Recipe::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn round_trip() {
        let text = r#"{"default_type":"Q4_K","overrides":[{"tensor":"blk\\.(0|1)\\.ffn_down\\.weight","type":"Q6_K"}],"drop_layers":[3],"ffn_prune":{"ratio":0.1,"per_layer":null},"imatrix":true}"#;
        let r = Recipe::from_json(text).unwrap();
        assert_eq!(r.default_type, GgmlType::Q4_K);
        assert_eq!(r.overrides[0].ty, GgmlType::Q6_K);
        assert!(r.overrides[0].matches("blk.1.ffn_down.weight"));
        assert!(!r.overrides[0].matches("blk.11.ffn_down.weight"));
        assert_eq!(Recipe::from_json(&r.to_json()).unwrap(), r);
        let min = Recipe::from_json(r#"{"default_type":"q8_0"}"#).unwrap();
        assert_eq!(min, Recipe::uniform(GgmlType::Q8_0));
    }

    /// A recipe may carry a draft (issue #17): it round-trips, is checked like any recipe with
    /// its keys named under `draft.`, and has no draft of its own. A recipe without one writes
    /// the same JSON as before drafts existed.
    #[test]
    fn a_draft_is_a_recipe_of_its_own() {
        let text = r#"{"default_type":"Q4_1","draft":{"default_type":"Q4_0","drop_layers":[3,7]}}"#;
        let r = Recipe::from_json(text).unwrap();
        let d = r.draft.as_deref().unwrap();
        assert_eq!(
            (d.default_type, d.drop_layers.clone()),
            (GgmlType::Q4_0, vec![3, 7])
        );
        assert_eq!(Recipe::from_json(&r.to_json()).unwrap(), r);
        assert!(
            r.label().ends_with("+draft(Q4_0 drop[3, 7])"),
            "{}",
            r.label()
        );
        assert!(!Recipe::uniform(GgmlType::Q4_0).to_json().contains("draft"));
        assert!(err(r#"{"default_type":"Q4_1","draft":{"default_type":"Q4_0","draft":{"default_type":"Q4_0"}}}"#).contains("`draft.draft`"));
        assert!(
            err(r#"{"default_type":"Q4_1","draft":{"default_type":"Q9"}}"#)
                .contains("`draft.default_type`")
        );
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let e = Recipe::from_json(
            r#"{"default_type":"Q4_1","draft":{"default_type":"Q4_0","drop_layers":[40]}}"#,
        )
        .unwrap()
        .validate(&model, RECIPE_TYPES)
        .unwrap_err();
        assert!(e.to_string().contains("draft.drop_layers[0]"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"default_type":"Q4_K","colour":1}"#, "colour"),
            (r#"{"overrides":[]}"#, "default_type"),
            (r#"{"default_type":"Q9_K"}"#, "default_type"),
            (r#"{"default_type":"Q8_K"}"#, "default_type"),
            (r#"{"default_type":4}"#, "`default_type`"),
            (
                r#"{"default_type":"Q4_K","overrides":[{"tensor":"x","type":"Q1"}]}"#,
                "overrides[0].type",
            ),
            (
                r#"{"default_type":"Q4_K","overrides":[{"tensor":"(","type":"Q8_0"}]}"#,
                "overrides[0].tensor",
            ),
            (
                r#"{"default_type":"Q4_K","overrides":[{"tensor":"x","type":"Q8_0","why":1}]}"#,
                "why",
            ),
            (
                r#"{"default_type":"Q4_K","overrides":[{"type":"Q8_0"}]}"#,
                "tensor",
            ),
            (
                r#"{"default_type":"Q4_K","drop_layers":[1,1]}"#,
                "drop_layers[1]",
            ),
            (
                r#"{"default_type":"Q4_K","drop_layers":[-1]}"#,
                "drop_layers[0]",
            ),
            (
                r#"{"default_type":"Q4_K","ffn_prune":{"ratio":1.0}}"#,
                "ffn_prune.ratio",
            ),
            (
                r#"{"default_type":"Q4_K","ffn_prune":{"ratio":0.1,"per_layer":[0.5,2]}}"#,
                "ffn_prune.per_layer[1]",
            ),
            (
                r#"{"default_type":"Q4_K","ffn_prune":{"rate":0.1}}"#,
                "rate",
            ),
            (r#"{"default_type":"Q4_K","imatrix":"yes"}"#, "`imatrix`"),
            ("not json", "expected"),
        ];
        for (json, key) in cases {
            let e = err(json);
            assert!(e.contains(key), "error for {json} should name {key}: {e}");
        }
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;

    #[test]
    fn validation_against_smollm2() {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let ok = |j: &str| Recipe::from_json(j).unwrap().validate(&model, RECIPE_TYPES);
        assert!(ok(r#"{"default_type":"Q4_K","overrides":[{"tensor":"blk\\.\\d+\\.ffn_down\\.weight","type":"Q6_K"}]}"#).is_ok());
        let e = ok(r#"{"default_type":"Q4_K","overrides":[{"tensor":"blk\\.0\\.attn_norm\\.weight","type":"Q8_0"}]}"#).unwrap_err();
        assert!(e.to_string().contains("overrides[0].tensor"), "{e}");
        let e = ok(r#"{"default_type":"Q4_K","drop_layers":[30]}"#).unwrap_err();
        assert!(
            e.to_string().contains("drop_layers[0]") && e.to_string().contains("30 layers"),
            "{e}"
        );
        let e = ok(r#"{"default_type":"Q4_K","ffn_prune":{"ratio":0.1,"per_layer":[0.1]}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("ffn_prune.per_layer"), "{e}");
        let e = Recipe::uniform(GgmlType::Q4_K)
            .validate(&model, &[GgmlType::Q8_0])
            .unwrap_err();
        assert!(e.to_string().contains("default_type"), "{e}");
        // Plans: norms stay F32, 576-wide rows fall back from Q4_K to Q5_0 as llama.cpp does.
        let plan = Recipe::uniform(GgmlType::Q4_K).plan(&model);
        let find = |n: &str| plan.iter().find(|p| p.name == n).unwrap().to;
        assert_eq!(find("blk.0.attn_norm.weight"), GgmlType::F32);
        assert_eq!(find("blk.0.attn_q.weight"), GgmlType::Q5_0);
        assert_eq!(find("blk.0.ffn_down.weight"), GgmlType::Q4_K);
    }
}
