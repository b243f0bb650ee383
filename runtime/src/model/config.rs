//! Hyper-parameters of a model, read from GGUF metadata (never from constants) and checked
//! against each other and against the tensor table, with what sets its architecture apart
//! (issue #15) decided here, once: the table below is the whole difference in data; the
//! tensors an architecture adds (biases, Q/K norms, post-norms, fused matrices) are found by
//! `Weights`.
//!
//! | | llama | qwen2 | qwen3 | gemma3 | phi3 |
//! |---|---|---|---|---|---|
//! | RoPE pairs | adjacent | NEOX | NEOX | NEOX | NEOX |
//! | embeddings scaled | | | | sqrt(n_embd) | |
//! | queries scaled before attention | | | | 1/sqrt(key_length) | 1/sqrt(head_dim) |
//! | FFN | SiLU-gated | SiLU-gated | SiLU-gated | GELU-gated | SiLU-gated (fused) |
//! | per-head Q/K norm, post-norms | | | Q/K norm | both | |
//! | sliding-window layers | | | | pattern, own RoPE base | |
//! | RoPE frequency factors | `rope_freqs` (Llama 3) | | | | LongRoPE: long or short by context |

use super::ModelError;
use formats::gguf::{Gguf, Value};

/// Architectures this runtime runs. Mistral, TinyLlama, Llama 2/3 and SmolLM all ship as `llama`.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "qwen2", "qwen3", "gemma3", "phi3"];

/// The RoPE base of sliding-window layers where the file does not say (llama.cpp's default).
const DEFAULT_ROPE_BASE_SWA: f32 = 10_000.0;

/// Per-layer shape: pruned models give each layer its own FFN width and head counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    /// A sliding-window layer: its queries see the last `window` positions (their own
    /// included) and its RoPE takes [`Config::rope_base_swa`].
    pub window: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: String,
    /// Width of the residual stream.
    pub n_embd: usize,
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// Dimension of one attention head (queries and keys).
    pub head_dim: usize,
    pub layers: Vec<LayerShape>,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// Leading dimensions of each head that are rotated (`rope.dimension_count`).
    pub rope_dim: usize,
    /// Linear RoPE scaling (`rope.scaling.factor`), applied as llama.cpp's `freq_scale = 1/factor`.
    pub rope_freq_scale: f32,
    /// RoPE base of sliding-window layers (`rope.freq_base_swa`).
    pub rope_base_swa: f32,
    /// Every RoPE cosine and sine multiplied by this (`rope.scaling.attn_factor`, phi3's
    /// LongRoPE: `sqrt(1 + ln(scale) / ln(original context))`; 1 elsewhere).
    pub rope_attn_factor: f32,
    /// The context the model was pre-trained with before its RoPE was extended
    /// (`rope.scaling.original_context_length`, else `context_length`): a context longer than
    /// this takes LongRoPE's long factors, others its short ones.
    pub n_ctx_orig: usize,
    /// RoPE rotates the pairs (i, i + rope_dim / 2) of a head (NEOX) rather than adjacent ones.
    pub rope_neox: bool,
    /// Embeddings multiplied by this as they enter (gemma3: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    /// Queries multiplied by this before attention, which then scales its scores by 1 (gemma3,
    /// phi3, as llama.cpp runs them); `None`: scores scaled by 1/sqrt(head_dim).
    pub q_scale: Option<f32>,
    /// The FFN's gate goes through GELU (gemma3) rather than SiLU.
    pub gelu: bool,
    /// Per-head RMS norms of queries and keys before RoPE (qwen3, gemma3).
    pub qk_norm: bool,
    /// RMS norms of the attention's and the FFN's outputs before their residual adds (gemma3).
    pub post_norms: bool,
    /// `final_logit_softcapping`: logits become `cap * tanh(logit / cap)`.
    pub logit_softcap: Option<f32>,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ModelError> {
        let arch = g.architecture().map_err(ModelError::Gguf)?.to_string();
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(ModelError::UnsupportedArch(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd = g
            .get_u64(&key("embedding_length"))
            .map_err(ModelError::Gguf)? as usize;
        let n_layer = g.get_u64(&key("block_count")).map_err(ModelError::Gguf)? as usize;
        let n_ctx_train = g
            .get_u64(&key("context_length"))
            .map_err(ModelError::Gguf)? as usize;
        let n_head = per_layer(g, &key("attention.head_count"), n_layer, None)?;
        let n_head_kv = per_layer(g, &key("attention.head_count_kv"), n_layer, Some(&n_head))?;
        let n_ff = per_layer(g, &key("feed_forward_length"), n_layer, None)?;
        let n_head0 = n_head.iter().copied().find(|&h| h > 0).unwrap_or(1);
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(&key("attention.key_length"), "an integer", v))?
                as usize,
            None => n_embd / n_head0,
        };
        let rms_eps = g
            .get_f32(&key("attention.layer_norm_rms_epsilon"))
            .map_err(ModelError::Gguf)?;
        let rope_base = match g.get(&key("rope.freq_base")) {
            Some(v) => v
                .as_f32()
                .ok_or_else(|| bad(&key("rope.freq_base"), "a float", v))?,
            None => 10_000.0,
        };
        let rope_dim = match g.get(&key("rope.dimension_count")) {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(&key("rope.dimension_count"), "an integer", v))?
                as usize,
            None => head_dim,
        };
        // llama.cpp's reading: no type means linear; linear and LongRoPE scale by the factor
        // where one is given (LongRoPE's own work is its frequency factors, `Weights`).
        let rope_freq_scale = match g.get(&key("rope.scaling.type")).and_then(Value::as_str) {
            Some("none") => 1.0,
            None | Some("linear") | Some("longrope") => match g.get(&key("rope.scaling.factor")) {
                None => 1.0,
                Some(v) => {
                    let f = v
                        .as_f32()
                        .ok_or_else(|| bad(&key("rope.scaling.factor"), "a float", v))?;
                    if f == 0.0 {
                        1.0
                    } else if f.is_nan() || f < 0.0 {
                        return Err(ModelError::BadHparam {
                            key: key("rope.scaling.factor"),
                            problem: format!("{f} is not positive"),
                        });
                    } else {
                        1.0 / f
                    }
                }
            },
            Some(other) => {
                return Err(ModelError::BadHparam {
                    key: key("rope.scaling.type"),
                    problem: format!(
                        "rope scaling '{other}' is not supported (supported: none, linear, \
                         longrope)"
                    ),
                })
            }
        };
        let n_vocab = match g.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            Some(t) => {
                return Err(ModelError::BadShape {
                    tensor: t.name.clone(),
                    expected: format!("[{n_embd}, n_vocab]"),
                    found: t.shape(),
                })
            }
            None => return Err(ModelError::MissingTensor("token_embd.weight".into())),
        };
        let gemma3 = arch == "gemma3";
        // llama.cpp runs the windows of gemma3 only (phi3's are disabled there).
        let windows = match gemma3 {
            true => g
                .sliding_window_layers(&arch, n_layer)
                .map_err(ModelError::Gguf)?,
            false => None,
        };
        let windows: Vec<Option<usize>> = match windows {
            Some((w, slides)) => slides.into_iter().map(|s| s.then_some(w)).collect(),
            None => vec![None; n_layer],
        };
        let layers = (0..n_layer)
            .map(|i| LayerShape {
                n_head: n_head[i],
                n_head_kv: n_head_kv[i],
                n_ff: n_ff[i],
                window: windows[i],
            })
            .collect();
        let rope_base_swa = match g.get(&key("rope.freq_base_swa")) {
            Some(v) => v
                .as_f32()
                .ok_or_else(|| bad(&key("rope.freq_base_swa"), "a float", v))?,
            None => DEFAULT_ROPE_BASE_SWA,
        };
        let rope_attn_factor = match g.get(&key("rope.scaling.attn_factor")) {
            Some(v) => v
                .as_f32()
                .ok_or_else(|| bad(&key("rope.scaling.attn_factor"), "a float", v))?,
            None => 1.0,
        };
        let n_ctx_orig = match g.get(&key("rope.scaling.original_context_length")) {
            Some(v) => v.as_u64().ok_or_else(|| {
                bad(
                    &key("rope.scaling.original_context_length"),
                    "an integer",
                    v,
                )
            })? as usize,
            None => n_ctx_train,
        };
        let logit_softcap = match g.get(&key("final_logit_softcapping")) {
            Some(v) => {
                let cap = v
                    .as_f32()
                    .ok_or_else(|| bad(&key("final_logit_softcapping"), "a float", v))?;
                (cap != 0.0).then_some(cap)
            }
            None => None,
        };
        let rope_neox = arch != "llama";
        let qk_norm = matches!(arch.as_str(), "qwen3" | "gemma3");
        // llama.cpp's gemma3 takes n_embd / n_head for its 27B model (62 layers), the key
        // length otherwise.
        let q_scale = match arch.as_str() {
            "gemma3" if n_layer == 62 => Some(1.0 / ((n_embd / n_head0) as f32).sqrt()),
            "gemma3" | "phi3" => Some(1.0 / (head_dim as f32).sqrt()),
            _ => None,
        };
        let c = Config {
            arch,
            n_embd,
            n_vocab,
            n_ctx_train,
            head_dim,
            layers,
            rms_eps,
            rope_base,
            rope_dim,
            rope_freq_scale,
            rope_base_swa,
            rope_attn_factor,
            n_ctx_orig,
            rope_neox,
            embd_scale: gemma3.then(|| (n_embd as f32).sqrt()),
            q_scale,
            gelu: gemma3,
            qk_norm,
            post_norms: gemma3,
            logit_softcap,
        };
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let err = |key: &str, problem: String| {
            Err(ModelError::BadHparam {
                key: format!("{}.{key}", self.arch),
                problem,
            })
        };
        if self.n_embd == 0 || self.n_embd > 1 << 16 {
            return err(
                "embedding_length",
                format!("{} is out of range", self.n_embd),
            );
        }
        if self.layers.is_empty() || self.layers.len() > 1024 {
            return err(
                "block_count",
                format!("{} is out of range", self.layers.len()),
            );
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 || self.head_dim > 1024 {
            return err(
                "attention.key_length",
                format!(
                    "head dimension {} must be even and at most 1024",
                    self.head_dim
                ),
            );
        }
        if self.rope_dim > self.head_dim || self.rope_dim % 2 != 0 {
            return err(
                "rope.dimension_count",
                format!(
                    "{} must be even and at most the head dimension {}",
                    self.rope_dim, self.head_dim
                ),
            );
        }
        if !(0.0..1.0).contains(&self.rms_eps) {
            return err(
                "attention.layer_norm_rms_epsilon",
                format!("{} is out of range", self.rms_eps),
            );
        }
        if self.rope_base.is_nan() || self.rope_base <= 0.0 || self.rope_base.is_infinite() {
            return err(
                "rope.freq_base",
                format!("{} is not a positive number", self.rope_base),
            );
        }
        if !(self.rope_attn_factor.is_finite() && self.rope_attn_factor > 0.0) {
            return err(
                "rope.scaling.attn_factor",
                format!("{} is not a positive number", self.rope_attn_factor),
            );
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.n_head_kv == 0 && l.n_head > 0 || l.n_head_kv > 0 && l.n_head % l.n_head_kv != 0 {
                return err(
                    "attention.head_count_kv",
                    format!(
                        "layer {i}: {} query heads cannot be grouped over {} key/value heads",
                        l.n_head, l.n_head_kv
                    ),
                );
            }
            if l.n_head > 1024 || l.n_ff > 1 << 20 {
                return err(
                    "feed_forward_length",
                    format!("layer {i}: {l:?} is out of range"),
                );
            }
        }
        if self.n_vocab == 0 || self.n_vocab > 1 << 22 {
            return Err(ModelError::BadHparam {
                key: "token_embd.weight".into(),
                problem: format!("vocabulary of {} tokens is out of range", self.n_vocab),
            });
        }
        Ok(())
    }

    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// Whether some layer has a sliding window (and so its own RoPE base).
    pub fn has_windows(&self) -> bool {
        self.layers.iter().any(|l| l.window.is_some())
    }

    /// Widest key/value row over the layers (sizes the KV cache).
    pub fn max_kv_dim(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.n_head_kv * self.head_dim)
            .max()
            .unwrap_or(0)
    }

    pub fn max_q_dim(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.n_head * self.head_dim)
            .max()
            .unwrap_or(0)
    }

    pub fn max_ff(&self) -> usize {
        self.layers.iter().map(|l| l.n_ff).max().unwrap_or(0)
    }
}

fn bad(key: &str, expected: &str, v: &Value) -> ModelError {
    ModelError::BadHparam {
        key: key.into(),
        problem: format!("expected {expected}, found {v}"),
    }
}

/// A hyper-parameter that is either one integer for every layer or an array with one per layer.
fn per_layer(
    g: &Gguf,
    key: &str,
    n_layer: usize,
    default: Option<&[usize]>,
) -> Result<Vec<usize>, ModelError> {
    let v = match (g.get(key), default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d.to_vec()),
        (None, None) => {
            return Err(ModelError::Gguf(formats::gguf::GgufError::MissingKey(
                key.into(),
            )))
        }
    };
    if let Some(n) = v.as_u64() {
        return Ok(vec![n as usize; n_layer]);
    }
    let arr = v
        .as_array()
        .and_then(|a| a.to_u64_vec())
        .ok_or_else(|| bad(key, "an integer or an array of integers", v))?;
    if arr.len() != n_layer {
        return Err(ModelError::BadHparam {
            key: key.into(),
            problem: format!("array has {} entries for {n_layer} layers", arr.len()),
        });
    }
    Ok(arr.into_iter().map(|x| x as usize).collect())
}
