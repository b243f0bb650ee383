//! Tests of the export on synthetic GGUF files: the llama un-permutation is bit for bit, names,
//! `config.json` and tokenizers are what `transformers` expects for each architecture, gemma3's
//! norms come back as `w`, shards and their index cover every tensor, and [`minus_one`] undoes
//! the converter's `+ 1`.

use super::vocab::{BYTE, UNKNOWN};
use super::*;
use crate::synthetic::{synthetic, Arch as Synth};
use formats::quant::{self, GgmlType};
use prost::Message;

/// Every tensor of the checkpoint in `dir`: name → (shape, f32 values).
fn load(dir: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut files = vec![dir.join("model.safetensors")];
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let v: Json = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
        let mut shards: Vec<String> = v["weight_map"]
            .as_object()
            .unwrap()
            .values()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        shards.sort();
        shards.dedup();
        files = shards.iter().map(|s| dir.join(s)).collect();
    }
    let mut out = std::collections::BTreeMap::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                d => panic!("{name}: dtype {d:?}"),
            };
            out.insert(name, (view.shape().to_vec(), values));
        }
    }
    out
}

fn json_file(dir: &Path, name: &str) -> Json {
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

fn gguf_values(file: &GgufFile, name: &str) -> Vec<f32> {
    let t = file.tensor(name).unwrap();
    quant::dequantize(t.info.ty, t.data).unwrap()
}

fn opts(dtype: Dtype) -> ExportOptions {
    ExportOptions {
        dtype,
        max_shard_bytes: None,
    }
}

#[test]
fn llama_q_and_k_are_unpermuted_bit_for_bit() {
    let gguf = synthetic(Synth::Llama, GgmlType::Q8_0);
    let dir = cached(&gguf, opts(Dtype::F32)).unwrap();
    let hf = load(&dir);
    let file = GgufFile::open(&gguf).unwrap();
    // Permuting the exported rows as llama.cpp's converter does gives the GGUF's back.
    let permute = |w: &[f32], n_head: usize, row: usize| {
        let n_rows = w.len() / row;
        let (hd, half) = (n_rows / n_head, n_rows / n_head / 2);
        let mut out = vec![0f32; w.len()];
        for h in 0..n_head {
            for i in 0..2 {
                for j in 0..half {
                    let (dst, src) = (h * hd + 2 * j + i, h * hd + i * half + j);
                    out[dst * row..(dst + 1) * row].copy_from_slice(&w[src * row..(src + 1) * row]);
                }
            }
        }
        out
    };
    let n = crate::synthetic::N_EMBD;
    let (shape, q) = &hf["model.layers.1.self_attn.q_proj.weight"];
    assert_eq!(shape, &[crate::synthetic::N_HEAD * 64, n]);
    assert_ne!(q, &gguf_values(&file, "blk.1.attn_q.weight"));
    assert_eq!(
        permute(q, crate::synthetic::N_HEAD, n),
        gguf_values(&file, "blk.1.attn_q.weight")
    );
    let (_, k) = &hf["model.layers.1.self_attn.k_proj.weight"];
    assert_eq!(
        permute(k, crate::synthetic::N_HEAD_KV, n),
        gguf_values(&file, "blk.1.attn_k.weight")
    );
    let (_, v) = &hf["model.layers.1.self_attn.v_proj.weight"];
    assert_eq!(v, &gguf_values(&file, "blk.1.attn_v.weight"));
    assert!(!hf.contains_key("lm_head.weight"), "tied embeddings");
    let config = json_file(&dir, "config.json");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["tie_word_embeddings"], true);
    assert_eq!(config["rms_norm_eps"], 1e-6);
}

#[test]
fn smollm2_exports_with_hf_names_config_and_tokenizer() {
    let dir = cached(&crate::smollm2_q4_1(), opts(Dtype::BF16)).unwrap();
    let hf = load(&dir);
    assert_eq!(hf.len(), 2 + 30 * 9);
    assert_eq!(hf["model.embed_tokens.weight"].0, [49152, 576]);
    assert_eq!(hf["model.layers.29.self_attn.k_proj.weight"].0, [192, 576]);
    assert_eq!(hf["model.layers.0.mlp.down_proj.weight"].0, [576, 1536]);
    assert_eq!(
        hf["model.layers.0.post_attention_layernorm.weight"].0,
        [576]
    );
    assert!(!hf.contains_key("lm_head.weight"));
    let c = json_file(&dir, "config.json");
    assert_eq!(
        (&c["num_attention_heads"], &c["num_key_value_heads"]),
        (&json!(9), &json!(3))
    );
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["torch_dtype"], "bfloat16");
    assert!(c.get("head_dim").is_none(), "the GGUF has no key_length");
    let t = json_file(&dir, "tokenizer.json");
    assert_eq!(t["model"]["vocab"].as_object().unwrap().len(), 49152);
    assert_eq!(t["model"]["merges"].as_array().unwrap().len(), 48900);
    assert_eq!(t["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
    assert_eq!(t["added_tokens"][2]["content"], "<|im_end|>");
    let tc = json_file(&dir, "tokenizer_config.json");
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["add_bos_token"], false);
    assert!(tc["chat_template"].as_str().unwrap().contains("im_start"));
    assert!(!dir.join("tokenizer.model").exists());
}

#[test]
fn gemma3_exports_norms_minus_one_and_a_sentencepiece_model() {
    let gguf = crate::model_path("gemma-3-270m-q4_k_m.gguf");
    let dir = cached(&gguf, opts(Dtype::F32)).unwrap();
    let hf = load(&dir);
    let file = GgufFile::open(&gguf).unwrap();
    assert_eq!(hf["model.embed_tokens.weight"].0, [262144, 640]);
    assert_eq!(hf["model.layers.0.self_attn.q_proj.weight"].0, [1024, 640]);
    for (hf_name, gguf_name) in [
        ("model.norm.weight", "output_norm.weight"),
        (
            "model.layers.3.self_attn.q_norm.weight",
            "blk.3.attn_q_norm.weight",
        ),
        (
            "model.layers.3.self_attn.k_norm.weight",
            "blk.3.attn_k_norm.weight",
        ),
        (
            "model.layers.3.input_layernorm.weight",
            "blk.3.attn_norm.weight",
        ),
        (
            "model.layers.3.post_attention_layernorm.weight",
            "blk.3.post_attention_norm.weight",
        ),
        (
            "model.layers.3.pre_feedforward_layernorm.weight",
            "blk.3.ffn_norm.weight",
        ),
        (
            "model.layers.3.post_feedforward_layernorm.weight",
            "blk.3.post_ffw_norm.weight",
        ),
    ] {
        let w = &hf[hf_name].1;
        let g = gguf_values(&file, gguf_name);
        // What a converter adding 1 in f32 reads back.
        let back: Vec<f32> = w.iter().map(|v| v + 1.0).collect();
        let exact = back.iter().zip(&g).filter(|(a, b)| a == b).count();
        assert!(
            exact * 100 >= g.len() * 99,
            "{hf_name}: {exact} of {}",
            g.len()
        );
        for (a, b) in back.iter().zip(&g) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{hf_name}");
        }
    }
    // Projections are not permuted for gemma3.
    assert_eq!(
        hf["model.layers.0.self_attn.q_proj.weight"].1,
        gguf_values(&file, "blk.0.attn_q.weight")
    );
    let c = json_file(&dir, "config.json");
    assert_eq!(c["model_type"], "gemma3_text");
    assert_eq!(c["sliding_window"], 512);
    assert_eq!(c["head_dim"], 256);
    assert_eq!(c["layer_types"][5], "full_attention");
    assert_eq!(c["layer_types"][4], "sliding_attention");
    assert_eq!(c["sliding_window_pattern"], 6);
    assert_eq!(c["tie_word_embeddings"], true);
    let sp = sp::ModelProto::decode(&*std::fs::read(dir.join("tokenizer.model")).unwrap()).unwrap();
    assert_eq!(sp.pieces.len(), 262144);
    assert_eq!(sp.pieces[2].piece.as_deref(), Some("<bos>"));
    assert_eq!(sp.pieces[3].r#type, Some(UNKNOWN));
    assert_eq!(sp.pieces[238].piece.as_deref(), Some("<0x00>"));
    assert_eq!(sp.pieces[238].r#type, Some(BYTE));
    assert_eq!(sp.trainer_spec.unwrap().byte_fallback, Some(true));
    assert_eq!(sp.normalizer_spec.unwrap().add_dummy_prefix, Some(false));
    let tc = json_file(&dir, "tokenizer_config.json");
    assert_eq!(
        tc["added_tokens_decoder"]["106"]["content"],
        "<end_of_turn>"
    );
    assert_eq!(tc["added_tokens_decoder"]["107"]["special"], false);
    assert_eq!(tc["add_bos_token"], true);
    assert_eq!(tc["bos_token"], "<bos>");
}

#[test]
fn qwen3_and_phi3_export_with_their_names() {
    let dir = cached(&synthetic(Synth::Qwen3, GgmlType::Q8_0), opts(Dtype::F16)).unwrap();
    let hf = load(&dir);
    assert_eq!(hf["model.layers.0.self_attn.q_norm.weight"].0, [64]);
    assert_eq!(hf["model.layers.0.self_attn.k_proj.weight"].0, [128, 256]);
    let c = json_file(&dir, "config.json");
    assert_eq!(c["architectures"][0], "Qwen3ForCausalLM");
    assert_eq!(c["head_dim"], 64);

    let gguf = synthetic(Synth::Phi3, GgmlType::Q8_0);
    let dir = cached(&gguf, opts(Dtype::F32)).unwrap();
    let hf = load(&dir);
    assert_eq!(hf["model.layers.0.self_attn.qkv_proj.weight"].0, [512, 256]);
    assert_eq!(hf["model.layers.0.mlp.gate_up_proj.weight"].0, [1536, 256]);
    assert!(!hf.keys().any(|k| k.contains("rope")));
    let file = GgufFile::open(&gguf).unwrap();
    assert_eq!(
        hf["model.layers.2.mlp.gate_up_proj.weight"].1,
        gguf_values(&file, "blk.2.ffn_up.weight")
    );
    let c = json_file(&dir, "config.json");
    assert_eq!(c["rope_scaling"]["type"], "longrope");
    let long: Vec<f32> = c["rope_scaling"]["long_factor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(long, gguf_values(&file, "rope_factors_long.weight"));
    assert_eq!(c["original_max_position_embeddings"], 256);
    let tc = json_file(&dir, "tokenizer_config.json");
    assert_eq!(tc["tokenizer_class"], "GPT2Tokenizer");
}

#[test]
fn shards_and_their_index_cover_every_tensor() {
    let gguf = synthetic(Synth::Qwen2, GgmlType::Q8_0);
    let one = load(&cached(&gguf, opts(Dtype::BF16)).unwrap());
    let sharded = ExportOptions {
        dtype: Dtype::BF16,
        max_shard_bytes: Some(2 << 20),
    };
    let dir = cached(&gguf, sharded).unwrap();
    let index = json_file(&dir, "model.safetensors.index.json");
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), one.len());
    let mut shards: Vec<&str> = map.values().map(|f| f.as_str().unwrap()).collect();
    shards.sort();
    shards.dedup();
    let n = shards.len();
    assert!(n >= 3, "{shards:?}");
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(*s, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
        assert!(dir.join(s).is_file());
    }
    assert!(!dir.join("model.safetensors").exists());
    let total: u64 = one.values().map(|(_, v)| v.len() as u64 * 2).sum();
    assert_eq!(index["metadata"]["total_size"], total);
    assert_eq!(load(&dir), one);
    assert_eq!(one["model.layers.0.self_attn.q_proj.bias"].0, [256]);
}

#[test]
fn minus_one_round_trips_through_plus_one() {
    for v in [1.0f32, 1.5, 0.75, 2.3, 8.1, 0.5, -0.25, 31.0] {
        assert_eq!(minus_one(v) + 1.0, v, "{v}");
    }
}
