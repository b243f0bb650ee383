//! `sintra inspect`: what is in a GGUF file, for people (tables) and machines (`--json`).

use anyhow::{Context, Result};
use formats::gguf::{Array, Gguf, GgufFile, Value};
use formats::quant::GgmlType;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// Hyper-parameters shown for every architecture (`{arch}.` prefixed keys), where the file has
/// them: the shared ones, then what sets an architecture apart (gemma3's sliding windows and
/// their RoPE base, soft-capped logits; phi3's and Llama 3's RoPE scaling).
const HPARAMS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "rope.freq_base",
    "rope.dimension_count",
    "rope.freq_base_swa",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.attn_factor",
    "rope.scaling.original_context_length",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "final_logit_softcapping",
    "vocab_size",
];

pub fn run(path: &Path, json_out: bool, all_metadata: bool) -> Result<()> {
    let file = GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
    let h = &file.header;
    let summary = Summary::of(h, file.file_len());
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary.to_json(h, all_metadata))?
        );
        return Ok(());
    }
    println!(
        "{}  (GGUF v{}, {} tensors, alignment {})",
        path.display(),
        h.version,
        h.tensors.len(),
        h.alignment
    );
    println!();
    println!("  architecture   {}", summary.arch);
    if let Some(name) = h.get("general.name").and_then(Value::as_str) {
        println!("  name           {name}");
    }
    for (k, v) in &summary.hparams {
        println!("  {:<40} {v}", k);
    }
    println!(
        "  tokenizer      {} (pre: {}), {} tokens",
        summary.tokenizer, summary.pre, summary.vocab
    );
    println!(
        "  parameters     {} ({:.1} M)",
        summary.params,
        summary.params as f64 / 1e6
    );
    println!(
        "  tensor data    {} bytes, {:.3} bits per weight",
        summary.tensor_bytes, summary.bpw
    );
    println!(
        "  file size      {} bytes ({:.1} MiB)",
        summary.file_len,
        summary.file_len as f64 / (1 << 20) as f64
    );
    let types: Vec<String> = summary
        .types
        .iter()
        .map(|(t, n)| format!("{t}: {n}"))
        .collect();
    println!("  types          {}", types.join(", "));
    if all_metadata {
        println!();
        for (k, v) in &h.metadata {
            println!("  {k:<48} {v}");
        }
    }
    println!();
    println!(
        "  {:<36} {:<7} {:<16} {:>12}",
        "tensor", "type", "shape", "bytes"
    );
    for t in &h.tensors {
        println!(
            "  {:<36} {:<7} {:<16} {:>12}",
            t.name,
            t.ty.to_string(),
            t.shape(),
            t.n_bytes
        );
    }
    Ok(())
}

struct Summary {
    arch: String,
    hparams: Vec<(String, String)>,
    tokenizer: String,
    pre: String,
    vocab: usize,
    params: u64,
    tensor_bytes: u64,
    bpw: f64,
    file_len: u64,
    types: BTreeMap<GgmlType, usize>,
}

impl Summary {
    fn of(h: &Gguf, file_len: u64) -> Self {
        let arch = h.architecture().unwrap_or("(none)").to_string();
        let hparams = HPARAMS
            .iter()
            .filter_map(|k| {
                let key = format!("{arch}.{k}");
                h.get(&key).map(|v| (key, short(v)))
            })
            .collect();
        let s = |k: &str| {
            h.get(k)
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_string()
        };
        let vocab = h
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .map_or(0, Array::len);
        let params = h.n_parameters();
        let tensor_bytes = h.n_tensor_bytes();
        let mut types = BTreeMap::new();
        for t in &h.tensors {
            *types.entry(t.ty).or_insert(0) += 1;
        }
        Summary {
            arch,
            hparams,
            tokenizer: s("tokenizer.ggml.model"),
            pre: s("tokenizer.ggml.pre"),
            vocab,
            params,
            tensor_bytes,
            bpw: if params == 0 {
                0.0
            } else {
                tensor_bytes as f64 * 8.0 / params as f64
            },
            file_len,
            types,
        }
    }

    fn to_json(&self, h: &Gguf, all_metadata: bool) -> serde_json::Value {
        let tensors: Vec<_> = h
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "type": t.ty.to_string(), "shape": t.dims, "bytes": t.n_bytes}))
            .collect();
        let mut v = json!({
            "version": h.version,
            "alignment": h.alignment,
            "architecture": self.arch,
            "hparams": self.hparams.iter().cloned().collect::<BTreeMap<_, _>>(),
            "tokenizer": {"model": self.tokenizer, "pre": self.pre, "vocab_size": self.vocab},
            "parameters": self.params,
            "tensor_bytes": self.tensor_bytes,
            "bits_per_weight": self.bpw,
            "file_size": self.file_len,
            "types": self.types.iter().map(|(t, n)| (t.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "tensors": tensors,
        });
        if all_metadata {
            v["metadata"] = h
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), json!(short(v))))
                .collect();
        }
        v
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Array(a) if a.len() <= 8 => format!("{:?}", a).chars().take(200).collect(),
        v => v.to_string(),
    }
}
