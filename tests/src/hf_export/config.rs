//! `config.json` from the GGUF's hyper-parameters: the keys `transformers` reads for each
//! architecture, with the converter's renamings undone, f32 values written with their shortest
//! decimal, and for phi3 the LongRoPE `rope_scaling` rebuilt from its factor tensors (which is
//! why this needs the whole file, not only the header).

use super::{Arch, Dtype, ExportError};
use formats::gguf::{Gguf, GgufError, GgufFile, Value};
use formats::quant;
use serde_json::{json, Map, Value as Json};

/// An f32 as JSON with its shortest decimal (1e-5, not 9.999999747378752e-6): reading it as
/// f64 and rounding to f32 gives the same bits back.
fn f32_json(v: f32) -> Json {
    let shortest: f64 = v.to_string().parse().expect("an f32 prints as a number");
    json!(shortest)
}

pub(super) fn opt_u64(h: &Gguf, key: &str) -> Option<u64> {
    h.get(key).and_then(Value::as_u64)
}

fn opt_f32(h: &Gguf, key: &str) -> Option<f32> {
    h.get(key).and_then(Value::as_f32)
}

/// `config.json` from the GGUF's hyper-parameters.
pub(super) fn config_json(file: &GgufFile, arch: Arch, dtype: Dtype) -> Result<Json, ExportError> {
    let h = &file.header;
    let a = h.architecture()?;
    let key = |k: &str| format!("{a}.{k}");
    let n_layer = h.get_u64(&key("block_count"))?;
    let n_embd = h.get_u64(&key("embedding_length"))?;
    let n_head = h.get_u64(&key("attention.head_count"))?;
    let n_head_kv = opt_u64(h, &key("attention.head_count_kv")).unwrap_or(n_head);
    let head_dim = opt_u64(h, &key("attention.key_length"));
    let ctx = h.get_u64(&key("context_length"))?;
    let n_vocab = h
        .tensor("token_embd.weight")
        .map(|t| t.dims[1])
        .ok_or_else(|| GgufError::MissingTensor("token_embd.weight".into()))?;
    let tied = h.tensor("output.weight").is_none();
    let (class, model_type) = super::hf_names(arch);
    let default_theta = if arch == Arch::Gemma3 { 1e6 } else { 1e4 };

    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("hidden_size".into(), json!(n_embd));
    c.insert(
        "intermediate_size".into(),
        json!(h.get_u64(&key("feed_forward_length"))?),
    );
    c.insert("num_hidden_layers".into(), json!(n_layer));
    c.insert("num_attention_heads".into(), json!(n_head));
    c.insert("num_key_value_heads".into(), json!(n_head_kv));
    if let Some(hd) = head_dim {
        c.insert("head_dim".into(), json!(hd));
    }
    c.insert(
        "rms_norm_eps".into(),
        f32_json(h.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
    );
    c.insert(
        "rope_theta".into(),
        f32_json(opt_f32(h, &key("rope.freq_base")).unwrap_or(default_theta)),
    );
    c.insert("max_position_embeddings".into(), json!(ctx));
    c.insert("vocab_size".into(), json!(n_vocab));
    c.insert("tie_word_embeddings".into(), json!(tied));
    c.insert("torch_dtype".into(), json!(dtype.torch_name()));
    c.insert("attention_bias".into(), json!(false));
    for (typ, field) in [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("padding", "pad_token_id"),
    ] {
        if let Some(id) = opt_u64(h, &format!("tokenizer.ggml.{typ}_token_id")) {
            c.insert(field.into(), json!(id));
        }
    }
    c.insert("initializer_range".into(), json!(0.02));
    c.insert("use_cache".into(), json!(true));
    c.insert("transformers_version".into(), json!("4.55.0"));
    match arch {
        Arch::Llama => {
            c.insert("hidden_act".into(), json!("silu"));
            c.insert("mlp_bias".into(), json!(false));
            c.insert("pretraining_tp".into(), json!(1));
            c.insert("rope_scaling".into(), Json::Null);
        }
        Arch::Qwen2 | Arch::Qwen3 => {
            c.insert("hidden_act".into(), json!("silu"));
            c.insert("use_sliding_window".into(), json!(false));
            c.insert("sliding_window".into(), Json::Null);
            c.insert("max_window_layers".into(), json!(n_layer));
            c.insert("rope_scaling".into(), Json::Null);
            if arch == Arch::Qwen2 {
                // Qwen2's q/k/v biases are part of the architecture, not a flag.
                c.remove("attention_bias");
            }
        }
        Arch::Gemma3 => {
            let hd = head_dim.unwrap_or(n_embd / n_head);
            c.insert("head_dim".into(), json!(hd));
            c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            // llama.cpp scales queries by 1/sqrt(head_dim) for every size but 27B.
            c.insert("query_pre_attn_scalar".into(), json!(hd));
            c.insert("final_logit_softcapping".into(), Json::Null);
            c.insert("attn_logit_softcapping".into(), Json::Null);
            c.insert(
                "rope_local_base_freq".into(),
                f32_json(opt_f32(h, &key("rope.freq_base_swa")).unwrap_or(1e4)),
            );
            let scaling = match opt_f32(h, &key("rope.scaling.factor")) {
                Some(f) if f != 1.0 => json!({"rope_type": "linear", "factor": f32_json(f)}),
                _ => Json::Null,
            };
            c.insert("rope_scaling".into(), scaling);
            match h.sliding_window_layers(a, n_layer as usize)? {
                Some((window, slides)) => {
                    c.insert("sliding_window".into(), json!(window));
                    let types: Vec<&str> = slides
                        .iter()
                        .map(|&s| {
                            if s {
                                "sliding_attention"
                            } else {
                                "full_attention"
                            }
                        })
                        .collect();
                    c.insert("layer_types".into(), json!(types));
                    // The period of the pattern, as the 270m's config also states it.
                    let period = slides.iter().position(|&s| !s).map(|i| i + 1);
                    if let Some(p) = period {
                        if slides
                            .iter()
                            .enumerate()
                            .all(|(i, &s)| s == (i % p < p - 1))
                        {
                            c.insert("sliding_window_pattern".into(), json!(p));
                            c.insert("_sliding_window_pattern".into(), json!(p));
                        }
                    }
                }
                None => {
                    c.insert("sliding_window".into(), Json::Null);
                }
            }
        }
        Arch::Phi3 => {
            c.insert("hidden_act".into(), json!("silu"));
            let hd = head_dim.unwrap_or(n_embd / n_head);
            let rope_dim = opt_u64(h, &key("rope.dimension_count")).unwrap_or(hd);
            if rope_dim != hd {
                c.insert(
                    "partial_rotary_factor".into(),
                    json!(rope_dim as f64 / hd as f64),
                );
            }
            let orig = opt_u64(h, &key("rope.scaling.original_context_length")).unwrap_or(ctx);
            c.insert("original_max_position_embeddings".into(), json!(orig));
            c.insert(
                "sliding_window".into(),
                opt_u64(h, &key("attention.sliding_window"))
                    .filter(|&w| w > 0)
                    .map_or(Json::Null, |w| json!(w)),
            );
            let scaling = phi3_rope_scaling(file)?.unwrap_or(Json::Null);
            c.insert("rope_scaling".into(), scaling);
        }
    }
    Ok(Json::Object(c))
}

/// phi3's `rope_scaling` from its factor tensors (reads tensor data, so it needs the file).
fn phi3_rope_scaling(file: &GgufFile) -> Result<Option<Json>, ExportError> {
    let h = &file.header;
    let read = |name: &str| -> Result<Option<Vec<Json>>, ExportError> {
        let Some(info) = h.tensor(name) else {
            return Ok(None);
        };
        let data = file.data(info);
        let v = quant::dequantize(info.ty, data).map_err(|e| ExportError::Quant(name.into(), e))?;
        Ok(Some(v.into_iter().map(f32_json).collect()))
    };
    let (Some(long), Some(short)) = (
        read("rope_factors_long.weight")?,
        read("rope_factors_short.weight")?,
    ) else {
        return Ok(None);
    };
    // No `attention_factor`: llama.cpp's converter derives it from the context lengths (as
    // transformers does by default), and transformers 4.x refuses the key for phi3.
    Ok(Some(
        json!({"type": "longrope", "long_factor": long, "short_factor": short}),
    ))
}
