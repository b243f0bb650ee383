//! What differs between the architectures `sintra convert` understands, decided from
//! `config.json` alone: the GGUF hyper-parameter keys, the tensors a checkpoint must hold (with
//! their GGUF names and shapes), and what happens to each tensor on the way (llama's Q/K row
//! permutation, gemma's norm offset, gemma's vocabulary cut). Everything here follows llama.cpp's
//! `convert_hf_to_gguf.py`, so that llama.cpp loads what we write and agrees with it.
//!
//! Because the plan needs no weights, `--dry-run --model-id owner/repo` uses it too: the sizes of
//! candidate recipes come from the tensors a checkpoint *will* have.

use super::{Arch, ConvertError};
use formats::gguf::Value;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The hyper-parameters read from `config.json`.
#[derive(Debug, Clone)]
pub struct Hparams {
    pub arch: Arch,
    pub n_layer: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    /// Width of one attention head (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: u64,
    pub n_vocab: u64,
    /// `max_position_embeddings`.
    pub n_ctx: Option<u64>,
    pub rms_eps: f64,
    /// Whether the output projection reuses the embedding table (no `lm_head.weight`).
    pub tied: bool,
    config: Json,
    path: PathBuf,
}

/// How a tensor's rows are changed on the way from the checkpoint to the GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Copied as they are.
    None,
    /// llama.cpp's `LlamaModel.permute`: within each of `heads` heads, the rotary pairs of the
    /// Hugging Face layout (first half, second half) become adjacent rows (llama's RoPE).
    PermuteRope { heads: u64 },
    /// Gemma's RMS norms store `w` where the model multiplies by `1 + w`: GGUF holds `1 + w`.
    AddOne,
}

/// One GGUF tensor and where it comes from.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// Name in the GGUF (`blk.3.attn_q.weight`).
    pub name: String,
    /// Name in the checkpoint (`model.layers.3.self_attn.q_proj.weight`); `None` for tensors
    /// computed from `config.json` (phi3's LongRoPE factors).
    pub source: Option<String>,
    /// GGUF dims: row length first (torch's shape reversed).
    pub dims: Vec<u64>,
    pub transform: Transform,
    /// Values of a computed tensor.
    pub values: Option<Vec<f32>>,
}

impl PlannedTensor {
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Norms, biases and other vectors stay F32 in every output type, as llama.cpp keeps them.
    pub fn is_matrix(&self) -> bool {
        self.dims.len() >= 2 && !self.name.ends_with("_norm.weight")
    }
}

impl Hparams {
    /// Reads `config.json` in `dir`.
    pub fn load(dir: &Path) -> Result<Hparams, ConvertError> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConvertError::Missing {
                path: path.clone(),
                why: "a Hugging Face checkpoint has a config.json".into(),
            },
            _ => ConvertError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let config: Json = serde_json::from_slice(&bytes).map_err(|e| ConvertError::Invalid {
            path: path.clone(),
            message: format!("not JSON: {e}"),
        })?;
        Hparams::from_json(config, path)
    }

    /// From a parsed `config.json` (`path` names it in errors).
    pub fn from_json(config: Json, path: PathBuf) -> Result<Hparams, ConvertError> {
        if !config.is_object() {
            return Err(ConvertError::Invalid {
                path,
                message: "not a JSON object".into(),
            });
        }
        let name = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Json::as_str)
            .ok_or_else(|| ConvertError::Invalid {
                path: path.clone(),
                message: "no \"architectures\": [\"...ForCausalLM\"] entry".into(),
            })?;
        let arch = Arch::HF_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| ConvertError::Unsupported {
                path: path.clone(),
                what: "architecture (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM)",
                found: name.to_string(),
            })?;
        let mut h = Hparams {
            arch,
            n_layer: 0,
            n_embd: 0,
            n_ff: 0,
            n_head: 0,
            n_head_kv: 0,
            head_dim: 0,
            n_vocab: 0,
            n_ctx: None,
            rms_eps: 0.0,
            tied: false,
            config,
            path,
        };
        h.n_layer = h.count("num_hidden_layers", None)?;
        h.n_embd = h.count("hidden_size", None)?;
        h.n_ff = h.count("intermediate_size", None)?;
        let gemma = arch == Arch::Gemma3;
        h.n_head = h.count("num_attention_heads", gemma.then_some(8))?;
        h.n_head_kv = h.count(
            "num_key_value_heads",
            Some(if gemma { 4 } else { h.n_head }),
        )?;
        h.n_vocab = h.count("vocab_size", None)?;
        h.n_ctx = match h.config.get("max_position_embeddings") {
            None | Some(Json::Null) if gemma => Some(131_072),
            None | Some(Json::Null) => None,
            Some(_) => Some(h.count("max_position_embeddings", None)?),
        };
        let default_head = if gemma {
            256
        } else {
            if h.n_embd % h.n_head != 0 {
                return Err(h.bad(
                    "hidden_size",
                    &format!(
                        "{} is not a multiple of num_attention_heads {}",
                        h.n_embd, h.n_head
                    ),
                ));
            }
            h.n_embd / h.n_head
        };
        h.head_dim = h.count("head_dim", Some(default_head))?;
        if h.n_head % h.n_head_kv != 0 {
            return Err(h.bad(
                "num_key_value_heads",
                &format!(
                    "{} does not divide num_attention_heads {}",
                    h.n_head_kv, h.n_head
                ),
            ));
        }
        h.rms_eps = h.float("rms_norm_eps", Some(1e-6))?;
        h.tied = match h.config.get("tie_word_embeddings") {
            Some(Json::Bool(b)) => *b,
            None | Some(Json::Null) => gemma,
            Some(v) => return Err(h.bad("tie_word_embeddings", &format!("{v} is not a boolean"))),
        };
        Ok(h)
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &Json {
        &self.config
    }

    fn bad(&self, key: &str, why: &str) -> ConvertError {
        ConvertError::Invalid {
            path: self.path.clone(),
            message: format!("\"{key}\": {why}"),
        }
    }

    /// A positive integer at `key` (or `default` when absent or null).
    fn count(&self, key: &str, default: Option<u64>) -> Result<u64, ConvertError> {
        match (self.config.get(key), default) {
            (None | Some(Json::Null), Some(d)) => Ok(d),
            (None | Some(Json::Null), None) => Err(self.bad(key, "missing")),
            (Some(v), _) => match v.as_u64() {
                Some(n) if n > 0 && n < (1 << 31) => Ok(n),
                _ => Err(self.bad(key, &format!("{v} is not a positive integer below 2^31"))),
            },
        }
    }

    /// A finite number at `key` (or `default`).
    fn float(&self, key: &str, default: Option<f64>) -> Result<f64, ConvertError> {
        match (self.config.get(key), default) {
            (None | Some(Json::Null), Some(d)) => Ok(d),
            (None | Some(Json::Null), None) => Err(self.bad(key, "missing")),
            (Some(v), _) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(x),
                _ => Err(self.bad(key, &format!("{v} is not a finite number"))),
            },
        }
    }

    fn rope_theta(&self) -> Result<Option<f64>, ConvertError> {
        match self.config.get("rope_theta") {
            None | Some(Json::Null) if self.arch == Arch::Gemma3 => Ok(Some(1e6)),
            None | Some(Json::Null) => Ok(None),
            Some(_) => Ok(Some(self.float("rope_theta", None)?)),
        }
    }

    /// `rope_scaling` as an object, if set (null and absent are the same).
    fn rope_scaling(&self) -> Result<Option<&serde_json::Map<String, Json>>, ConvertError> {
        match self.config.get("rope_scaling") {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.bad("rope_scaling", &format!("{v} is not an object"))),
        }
    }

    fn rope_type(&self) -> Result<Option<String>, ConvertError> {
        let Some(m) = self.rope_scaling()? else {
            return Ok(None);
        };
        let t = m
            .get("rope_type")
            .or_else(|| m.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        Ok(Some(t))
    }

    /// Which layers use sliding-window attention (gemma3): `layer_types` when given, else
    /// `sliding_window_pattern` (every n-th layer global), else gemma3's default of 6.
    pub fn sliding_layers(&self) -> Result<Vec<bool>, ConvertError> {
        if let Some(types) = self.config.get("layer_types").and_then(Json::as_array) {
            if types.len() as u64 != self.n_layer {
                return Err(self.bad(
                    "layer_types",
                    &format!("{} entries for {} layers", types.len(), self.n_layer),
                ));
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(self.bad("layer_types", &format!("unknown layer type {t}"))),
                })
                .collect();
        }
        let n = match self
            .config
            .get("sliding_window_pattern")
            .or_else(|| self.config.get("_sliding_window_pattern"))
        {
            None | Some(Json::Null) => 6,
            Some(_) => self
                .count("sliding_window_pattern", None)
                .or_else(|_| self.count("_sliding_window_pattern", None))?,
        };
        Ok((0..self.n_layer).map(|i| (i + 1) % n != 0).collect())
    }
}

/// The GGUF metadata for the architecture's hyper-parameters (not the tokenizer, not
/// `general.*`), in the order llama.cpp's converter writes them.
pub fn metadata(h: &Hparams) -> Result<Vec<(String, Value)>, ConvertError> {
    let a = h.arch.gguf_name();
    let mut m: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, v: Value| m.push((format!("{a}.{k}"), v));
    let u = |n: u64| Value::U32(n as u32);
    put("block_count", u(h.n_layer));
    if let Some(c) = h.n_ctx {
        put("context_length", u(c));
    }
    put("embedding_length", u(h.n_embd));
    put("feed_forward_length", u(h.n_ff));
    put("attention.head_count", u(h.n_head));
    put("attention.head_count_kv", u(h.n_head_kv));
    if let Some(theta) = h.rope_theta()? {
        put("rope.freq_base", Value::F32(theta as f32));
    }
    put(
        "attention.layer_norm_rms_epsilon",
        Value::F32(h.rms_eps as f32),
    );
    if h.config.get("head_dim").is_some_and(|v| !v.is_null()) || h.arch == Arch::Gemma3 {
        put("attention.key_length", u(h.head_dim));
        put("attention.value_length", u(h.head_dim));
    }
    match h.arch {
        Arch::Llama => {
            put("vocab_size", u(h.n_vocab));
            put("rope.dimension_count", u(h.head_dim));
        }
        Arch::Gemma3 => {
            if let Some(cap) = h
                .config
                .get("final_logit_softcapping")
                .and_then(Json::as_f64)
            {
                if cap != 0.0 {
                    put("final_logit_softcapping", Value::F32(cap as f32));
                }
            }
            let sliding = h.sliding_layers()?;
            if sliding.iter().any(|&s| s) {
                put(
                    "attention.sliding_window",
                    u(h.count("sliding_window", None)?),
                );
                // llama.cpp's converter leaves the pattern to the loader's default (every 6th
                // layer global); a checkpoint that says otherwise gets it written, one flag per
                // layer, which llama.cpp's loader and ours both read.
                let default: Vec<bool> = (0..h.n_layer).map(|i| (i + 1) % 6 != 0).collect();
                if sliding != default {
                    put(
                        "attention.sliding_window_pattern",
                        Value::Array(formats::gguf::Array::Bool(sliding)),
                    );
                }
                let local = h.float("rope_local_base_freq", Some(10_000.0))?;
                put("rope.freq_base_swa", Value::F32(local as f32));
            }
        }
        Arch::Phi3 => {
            let orig = h.count("original_max_position_embeddings", h.n_ctx)?;
            put("rope.scaling.original_context_length", u(orig));
            let rot = h.float("partial_rotary_factor", Some(1.0))?;
            let dims = ((rot * h.n_embd as f64) as u64) / h.n_head;
            put("rope.dimension_count", u(dims));
            let window = match h.config.get("sliding_window") {
                None | Some(Json::Null) => 0,
                Some(_) => h.count("sliding_window", None)?,
            };
            put("attention.sliding_window", u(window));
            if let Some(attn) = phi3_attn_factor(h)? {
                put("rope.scaling.attn_factor", Value::F32(attn as f32));
            }
        }
        Arch::Qwen2 | Arch::Qwen3 => {}
    }
    match h.rope_type()?.as_deref() {
        None | Some("default") | Some("") => {}
        Some("linear") => {
            let f = h
                .rope_scaling()?
                .and_then(|m| m.get("factor"))
                .and_then(Json::as_f64)
                .ok_or_else(|| h.bad("rope_scaling.factor", "missing for linear scaling"))?;
            put("rope.scaling.type", Value::String("linear".into()));
            put("rope.scaling.factor", Value::F32(f as f32));
        }
        Some("longrope" | "su") if h.arch == Arch::Phi3 => {}
        Some("llama3") if h.arch == Arch::Llama => {}
        Some(t) => {
            return Err(ConvertError::Unsupported {
                path: h.path.clone(),
                what: "rope_scaling type",
                found: t.to_string(),
            })
        }
    }
    Ok(m)
}

/// Phi-3's LongRoPE attention factor, as llama.cpp computes it: `sqrt(1 + ln(s) / ln(n_orig))`
/// for a context `s` times the original; `None` without LongRoPE scaling.
fn phi3_attn_factor(h: &Hparams) -> Result<Option<f64>, ConvertError> {
    if !matches!(h.rope_type()?.as_deref(), Some("longrope" | "su")) {
        return Ok(None);
    }
    let n_ctx = h.n_ctx.unwrap_or(4096) as f64;
    let orig = h.count("original_max_position_embeddings", h.n_ctx)? as f64;
    let scale = n_ctx / orig;
    Ok(Some(if scale <= 1.0 {
        1.0
    } else {
        (1.0 + scale.ln() / orig.ln()).sqrt()
    }))
}

/// The tensors a checkpoint of this configuration holds, with their GGUF names and shapes, in
/// the order they are written (embedding, layers, final norm, output).
pub fn tensors(h: &Hparams) -> Result<Vec<PlannedTensor>, ConvertError> {
    let (e, ff, hd) = (h.n_embd, h.n_ff, h.head_dim);
    let (q_dim, kv_dim) = (h.n_head * hd, h.n_head_kv * hd);
    let mut out = Vec::new();
    let gemma = h.arch == Arch::Gemma3;
    let norm_transform = if gemma {
        Transform::AddOne
    } else {
        Transform::None
    };
    let mut push = |name: &str, source: &str, dims: Vec<u64>, transform: Transform| {
        out.push(PlannedTensor {
            name: name.to_string(),
            source: Some(source.to_string()),
            dims,
            transform,
            values: None,
        })
    };
    push(
        "token_embd.weight",
        "model.embed_tokens.weight",
        vec![e, h.n_vocab],
        Transform::None,
    );
    let bias = |key: &str| h.config.get(key).and_then(Json::as_bool).unwrap_or(false);
    let (attn_bias, mlp_bias) = (bias("attention_bias"), bias("mlp_bias"));
    for l in 0..h.n_layer {
        let g = |t: &str| format!("blk.{l}.{t}");
        let s = |t: &str| format!("model.layers.{l}.{t}");
        push(
            &g("attn_norm.weight"),
            &s("input_layernorm.weight"),
            vec![e],
            norm_transform,
        );
        if h.arch == Arch::Phi3 {
            push(
                &g("attn_qkv.weight"),
                &s("self_attn.qkv_proj.weight"),
                vec![e, q_dim + 2 * kv_dim],
                Transform::None,
            );
        } else {
            let (tq, tk) = if h.arch == Arch::Llama {
                (
                    Transform::PermuteRope { heads: h.n_head },
                    Transform::PermuteRope { heads: h.n_head_kv },
                )
            } else {
                (Transform::None, Transform::None)
            };
            push(
                &g("attn_q.weight"),
                &s("self_attn.q_proj.weight"),
                vec![e, q_dim],
                tq,
            );
            push(
                &g("attn_k.weight"),
                &s("self_attn.k_proj.weight"),
                vec![e, kv_dim],
                tk,
            );
            push(
                &g("attn_v.weight"),
                &s("self_attn.v_proj.weight"),
                vec![e, kv_dim],
                Transform::None,
            );
            if h.arch == Arch::Qwen2 || (h.arch == Arch::Llama && attn_bias) {
                push(
                    &g("attn_q.bias"),
                    &s("self_attn.q_proj.bias"),
                    vec![q_dim],
                    tq,
                );
                push(
                    &g("attn_k.bias"),
                    &s("self_attn.k_proj.bias"),
                    vec![kv_dim],
                    tk,
                );
                push(
                    &g("attn_v.bias"),
                    &s("self_attn.v_proj.bias"),
                    vec![kv_dim],
                    Transform::None,
                );
            }
        }
        if matches!(h.arch, Arch::Qwen3 | Arch::Gemma3) {
            push(
                &g("attn_q_norm.weight"),
                &s("self_attn.q_norm.weight"),
                vec![hd],
                norm_transform,
            );
            push(
                &g("attn_k_norm.weight"),
                &s("self_attn.k_norm.weight"),
                vec![hd],
                norm_transform,
            );
        }
        push(
            &g("attn_output.weight"),
            &s("self_attn.o_proj.weight"),
            vec![q_dim, e],
            Transform::None,
        );
        if h.arch == Arch::Llama && attn_bias {
            push(
                &g("attn_output.bias"),
                &s("self_attn.o_proj.bias"),
                vec![e],
                Transform::None,
            );
        }
        if gemma {
            push(
                &g("post_attention_norm.weight"),
                &s("post_attention_layernorm.weight"),
                vec![e],
                norm_transform,
            );
            push(
                &g("ffn_norm.weight"),
                &s("pre_feedforward_layernorm.weight"),
                vec![e],
                norm_transform,
            );
        } else {
            push(
                &g("ffn_norm.weight"),
                &s("post_attention_layernorm.weight"),
                vec![e],
                norm_transform,
            );
        }
        if h.arch == Arch::Phi3 {
            push(
                &g("ffn_up.weight"),
                &s("mlp.gate_up_proj.weight"),
                vec![e, 2 * ff],
                Transform::None,
            );
        } else {
            push(
                &g("ffn_gate.weight"),
                &s("mlp.gate_proj.weight"),
                vec![e, ff],
                Transform::None,
            );
            push(
                &g("ffn_up.weight"),
                &s("mlp.up_proj.weight"),
                vec![e, ff],
                Transform::None,
            );
        }
        push(
            &g("ffn_down.weight"),
            &s("mlp.down_proj.weight"),
            vec![ff, e],
            Transform::None,
        );
        if h.arch == Arch::Llama && mlp_bias {
            push(
                &g("ffn_gate.bias"),
                &s("mlp.gate_proj.bias"),
                vec![ff],
                Transform::None,
            );
            push(
                &g("ffn_up.bias"),
                &s("mlp.up_proj.bias"),
                vec![ff],
                Transform::None,
            );
            push(
                &g("ffn_down.bias"),
                &s("mlp.down_proj.bias"),
                vec![e],
                Transform::None,
            );
        }
        if gemma {
            push(
                &g("post_ffw_norm.weight"),
                &s("post_feedforward_layernorm.weight"),
                vec![e],
                norm_transform,
            );
        }
    }
    push(
        "output_norm.weight",
        "model.norm.weight",
        vec![e],
        norm_transform,
    );
    if !h.tied && !gemma {
        push(
            "output.weight",
            "lm_head.weight",
            vec![e, h.n_vocab],
            Transform::None,
        );
    }
    out.extend(computed_tensors(h)?);
    Ok(out)
}

/// Tensors llama.cpp's converter computes from `config.json`: phi3's LongRoPE factors and
/// llama 3's `rope_freqs`.
fn computed_tensors(h: &Hparams) -> Result<Vec<PlannedTensor>, ConvertError> {
    let mut out = Vec::new();
    let Some(m) = h.rope_scaling()? else {
        return Ok(out);
    };
    let computed = |name: &str, values: Vec<f32>| PlannedTensor {
        name: name.to_string(),
        source: None,
        dims: vec![values.len() as u64],
        transform: Transform::None,
        values: Some(values),
    };
    match (h.arch, h.rope_type()?.as_deref()) {
        (Arch::Phi3, Some("longrope" | "su")) => {
            let rot = h.float("partial_rotary_factor", Some(1.0))?;
            let want = ((rot * h.n_embd as f64) as u64 / h.n_head / 2) as usize;
            for (key, name) in [
                ("long_factor", "rope_factors_long.weight"),
                ("short_factor", "rope_factors_short.weight"),
            ] {
                let values: Option<Vec<f32>> = m
                    .get(key)
                    .and_then(Json::as_array)
                    .and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect());
                match values {
                    Some(v) if v.len() == want && v.iter().all(|x| x.is_finite()) => {
                        out.push(computed(name, v))
                    }
                    _ => {
                        return Err(h.bad(
                            &format!("rope_scaling.{key}"),
                            &format!("not a list of {want} finite numbers (rotary dims / 2)"),
                        ))
                    }
                }
            }
        }
        (Arch::Llama, Some("llama3")) => {
            let get = |k: &str, d: f64| m.get(k).and_then(Json::as_f64).unwrap_or(d);
            let base = h.rope_theta()?.unwrap_or(10_000.0);
            let dim = h.head_dim as f64;
            let factor = get("factor", 8.0);
            let (lo, hi) = (get("low_freq_factor", 1.0), get("high_freq_factor", 4.0));
            let old_ctx = get("original_max_position_embeddings", 8192.0);
            let (lo_wave, hi_wave) = (old_ctx / lo, old_ctx / hi);
            let values = (0..h.head_dim / 2)
                .map(|i| {
                    let freq = 1.0 / base.powf((2 * i) as f64 / dim);
                    let wave = 2.0 * std::f64::consts::PI / freq;
                    (if wave < hi_wave {
                        1.0
                    } else if wave > lo_wave {
                        factor
                    } else {
                        let smooth = (old_ctx / wave - lo) / (hi - lo);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }) as f32
                })
                .collect();
            out.push(computed("rope_freqs.weight", values));
        }
        _ => {}
    }
    Ok(out)
}

/// Checkpoint tensors llama.cpp's converter drops without a word.
pub fn ignored(arch: Arch, name: &str) -> bool {
    name.ends_with(".rotary_emb.inv_freq") || (arch == Arch::Gemma3 && name == "lm_head.weight")
}

#[cfg(test)]
mod tests;
