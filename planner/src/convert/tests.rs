//! The converter on small checkpoints written here: the tensor plan checked against the file,
//! llama's permutation, gemma's offset, and the errors hostile checkpoints get.

use super::*;
use serde_json::json;
use std::collections::HashMap;

/// A two-layer llama checkpoint with 4 heads of 8 (2 KV heads), F32, and its tokenizer from a
/// tiny byte-level BPE; `edit` may change the tensors before they are written.
fn write_llama(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, ::safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let (e, ff, layers) = (32usize, 64usize, 2usize);
    let vocab = tiny_tokenizer(dir);
    let config = json!({"architectures": ["LlamaForCausalLM"], "hidden_size": e,
        "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": true});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let f32s = |n: usize, seed: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (((i * 7 + seed * 13) % 29) as f32 - 14.0).to_le_bytes())
            .collect()
    };
    let mut t: Vec<(String, ::safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        let seed = t.len();
        t.push((name, ::safetensors::Dtype::F32, shape, f32s(n, seed)));
    };
    add("model.embed_tokens.weight".into(), vec![vocab, e]);
    add("model.norm.weight".into(), vec![e]);
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        add(p("input_layernorm.weight"), vec![e]);
        add(p("post_attention_layernorm.weight"), vec![e]);
        add(p("self_attn.q_proj.weight"), vec![e, e]);
        add(p("self_attn.k_proj.weight"), vec![16, e]);
        add(p("self_attn.v_proj.weight"), vec![16, e]);
        add(p("self_attn.o_proj.weight"), vec![e, e]);
        add(p("mlp.gate_proj.weight"), vec![ff, e]);
        add(p("mlp.up_proj.weight"), vec![ff, e]);
        add(p("mlp.down_proj.weight"), vec![e, ff]);
    }
    edit(&mut t);
    let views: Vec<(String, ::safetensors::tensor::TensorView<'_>)> = t
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                ::safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    ::safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// A byte-fallback BPE tokenizer.json (a `"llama"` vocabulary, as Mistral's) over 256 symbols
/// and one merge; returns its size.
fn tiny_tokenizer(dir: &Path) -> usize {
    let symbols = byte_symbols();
    let mut vocab: HashMap<String, usize> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i))
        .collect();
    vocab.insert("th".into(), 256);
    let tok = json!({"version": "1.0", "added_tokens": [
            {"id": 257, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null, "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": ["t h"]}});
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}).to_string(),
    )
    .unwrap();
    258
}

/// GPT-2's byte-to-unicode table, in byte order.
fn byte_symbols() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap().to_string()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap().to_string()
            }
        })
        .collect()
}

fn convert_err(dir: &Path) -> String {
    let out = dir.join("out.gguf");
    let e = convert(dir, &out, OutType::F32, None)
        .unwrap_err()
        .to_string();
    assert!(!out.exists(), "a failed conversion left {}", out.display());
    e
}

#[test]
fn q_and_k_rows_are_permuted_as_llama_cpp_does_and_the_rest_copied() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), |_| {});
    let out = dir.path().join("out.gguf");
    let done = convert(dir.path(), &out, OutType::F32, Some("tiny")).unwrap();
    assert_eq!(done.n_tensors, 2 + 2 * 9);
    let f = formats::gguf::GgufFile::open(&out).unwrap();
    let w = Weights::open(dir.path()).unwrap();
    let src = |name: &str| {
        let t = &w.tensors[name];
        let mut v = Vec::new();
        w.read(t, 0..t.n_elements(), &mut v);
        v
    };
    let got = |name: &str| -> Vec<f32> { bytemuck_f32(f.data(f.header.tensor(name).unwrap())) };
    let q = src("model.layers.1.self_attn.q_proj.weight");
    let gq = got("blk.1.attn_q.weight");
    // Head 0 (rows 0..8): rows 0, 4, 1, 5, 2, 6, 3, 7 of the checkpoint.
    for (out_row, in_row) in [0, 4, 1, 5, 2, 6, 3, 7].into_iter().enumerate() {
        assert_eq!(
            gq[out_row * 32..(out_row + 1) * 32],
            q[in_row * 32..(in_row + 1) * 32]
        );
    }
    assert_eq!(
        got("blk.0.ffn_down.weight"),
        src("model.layers.0.mlp.down_proj.weight")
    );
}

fn bytemuck_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn hostile_checkpoints_are_errors_naming_the_file_and_the_value() {
    type Edit = Box<dyn FnOnce(&mut Vec<(String, ::safetensors::Dtype, Vec<usize>, Vec<u8>)>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "I32 in model.norm.weight",
            Box::new(|t| {
                let n = t.iter_mut().find(|x| x.0 == "model.norm.weight").unwrap();
                n.1 = ::safetensors::Dtype::I32;
            }),
        ),
        (
            "model.layers.1.mlp.up_proj.weight has shape [64, 31]",
            Box::new(|t| {
                let n = t
                    .iter_mut()
                    .find(|x| x.0 == "model.layers.1.mlp.up_proj.weight")
                    .unwrap();
                n.2 = vec![64, 31];
                n.3.truncate(64 * 31 * 4);
            }),
        ),
        (
            "model.layers.0.self_attn.v_proj.weight",
            Box::new(|t| t.retain(|x| x.0 != "model.layers.0.self_attn.v_proj.weight")),
        ),
        (
            "model.layers.0.mlp.extra.weight",
            Box::new(|t| {
                t.push((
                    "model.layers.0.mlp.extra.weight".into(),
                    ::safetensors::Dtype::F32,
                    vec![2],
                    vec![0; 8],
                ))
            }),
        ),
    ];
    for (want, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_llama(dir.path(), edit);
        let e = convert_err(dir.path());
        assert!(
            e.contains(want) && e.contains("model.safetensors"),
            "{e} lacks {want}"
        );
    }

    // Not a safetensors file; an index naming a shard outside the directory; no weights.
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), |_| {});
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk",
    )
    .unwrap();
    let e = convert_err(dir.path());
    assert!(
        e.contains("not a safetensors file") && e.contains("model.safetensors"),
        "{e}"
    );
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        json!({"weight_map": {"a": "../../etc/passwd"}}).to_string(),
    )
    .unwrap();
    let e = convert_err(dir.path());
    assert!(
        e.contains("../../etc/passwd") && e.contains("index.json"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("model.safetensors.index.json")).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = convert_err(dir.path());
    assert!(e.contains("no model.safetensors"), "{e}");
    std::fs::write(dir.path().join("config.json"), "{\"architectures\": [").unwrap();
    let e = convert_err(dir.path());
    assert!(e.contains("config.json") && e.contains("not JSON"), "{e}");
}
