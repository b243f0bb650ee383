//! The architecture plans against hand-written configs: what each architecture writes, and
//! the errors bad configs get.

use super::*;
use serde_json::json;

fn hp(config: Json) -> Result<Hparams, ConvertError> {
    Hparams::from_json(config, PathBuf::from("config.json"))
}

fn smollm2() -> Json {
    json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 576, "intermediate_size": 1536,
           "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
           "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
           "rope_theta": 100000, "tie_word_embeddings": true})
}

#[test]
fn llama_plan_has_every_tensor_with_permuted_q_and_k() {
    let h = hp(smollm2()).unwrap();
    let t = tensors(&h).unwrap();
    assert_eq!(t.len(), 2 + 30 * 9);
    let q = t.iter().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, vec![576, 576]);
    assert_eq!(q.transform, Transform::PermuteRope { heads: 9 });
    let k = t.iter().find(|t| t.name == "blk.7.attn_k.weight").unwrap();
    assert_eq!(
        (k.dims.clone(), k.transform),
        (vec![576, 192], Transform::PermuteRope { heads: 3 })
    );
    assert!(t.iter().all(|t| t.name != "output.weight"), "tied");
    let m = metadata(&h).unwrap();
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("llama.rope.dimension_count"), Some(Value::U32(64)));
    assert_eq!(get("llama.vocab_size"), Some(Value::U32(49152)));
    assert_eq!(get("llama.attention.key_length"), None);
}

#[test]
fn gemma3_norms_shift_and_the_window_pattern_is_written_when_not_the_default() {
    let mut c = json!({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 640,
        "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 1000, "sliding_window": 512,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]});
    let h = hp(c.clone()).unwrap();
    let t = tensors(&h).unwrap();
    assert!(t
        .iter()
        .filter(|t| t.name.ends_with("norm.weight"))
        .all(|t| t.transform == Transform::AddOne));
    assert!(t.iter().all(|t| t.name != "output.weight"));
    let m = metadata(&h).unwrap();
    let pat = m
        .iter()
        .find(|(k, _)| k == "gemma3.attention.sliding_window_pattern");
    assert!(pat.is_some());
    c["layer_types"] = Json::Null;
    c["num_hidden_layers"] = json!(12);
    let m = metadata(&hp(c).unwrap()).unwrap();
    assert!(m
        .iter()
        .all(|(k, _)| k != "gemma3.attention.sliding_window_pattern"));
}

#[test]
fn phi3_longrope_factors_come_from_the_config() {
    let c = json!({"architectures": ["Phi3ForCausalLM"], "hidden_size": 256,
        "intermediate_size": 768, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_scaling": {"type": "longrope", "long_factor": vec![2.0; 32], "short_factor": vec![1.0; 32]}});
    let h = hp(c).unwrap();
    let m = metadata(&h).unwrap();
    let attn = m
        .iter()
        .find(|(k, _)| k == "phi3.rope.scaling.attn_factor")
        .unwrap();
    let Value::F32(a) = attn.1 else { panic!() };
    assert!((a - 1.190_239).abs() < 1e-6, "{a}");
    let t = tensors(&h).unwrap();
    let long = t
        .iter()
        .find(|t| t.name == "rope_factors_long.weight")
        .unwrap();
    assert_eq!(long.values.as_deref(), Some(&[2.0f32; 32][..]));
    assert!(t
        .iter()
        .any(|t| t.name == "blk.1.attn_qkv.weight" && t.dims == vec![256, 512]));
}

#[test]
fn bad_configs_name_the_key() {
    let cases = [
        (json!([1, 2]), "not a JSON object"),
        (
            json!({"architectures": ["MambaForCausalLM"]}),
            "MambaForCausalLM",
        ),
        (json!({"architectures": []}), "architectures"),
        (
            {
                let mut c = smollm2();
                c["hidden_size"] = json!(-3);
                c
            },
            "\"hidden_size\": -3",
        ),
        (
            {
                let mut c = smollm2();
                c["num_key_value_heads"] = json!(4);
                c
            },
            "num_key_value_heads",
        ),
        (
            {
                let mut c = smollm2();
                c["rms_norm_eps"] = json!("x");
                c
            },
            "rms_norm_eps",
        ),
        (
            {
                let mut c = smollm2();
                c.as_object_mut().unwrap().remove("vocab_size");
                c
            },
            "\"vocab_size\": missing",
        ),
    ];
    for (c, want) in cases {
        let e = hp(c)
            .and_then(|h| metadata(&h).map(|_| h))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("config.json"),
            "{e} lacks {want}"
        );
    }
    let mut c = smollm2();
    c["rope_scaling"] = json!({"rope_type": "dynamic", "factor": 2.0});
    let e = metadata(&hp(c).unwrap()).unwrap_err().to_string();
    assert!(e.contains("dynamic"), "{e}");
}
