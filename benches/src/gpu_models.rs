//! Models for `scripts/gpu-check.sh` on a GPU machine that nothing can be copied to but a few
//! tens of MiB (issue #21): SmolLM2's file (98 MiB) does not travel, its tokenizer does.
//!
//!   gpu-models vocab SMOLLM2.gguf OUT.gguf          its metadata alone (no tensors): ~2 MiB
//!   gpu-models shaped VOCAB.gguf TYPE OUT.gguf      a llama model of SmolLM2-135M's shapes
//!                                                   (30 layers of 576, 9 heads sharing 3, FFN
//!                                                   1536, tied 49152-row classifier) with random
//!                                                   weights of a realistic scale, in TYPE: the
//!                                                   same bytes moved and work done per token as
//!                                                   the real file, for speed only
//!   gpu-models synthetic VOCAB.gguf ARCH TYPE OUT   the test suite's synthetic ARCH model
//!   gpu-models requant MODEL.gguf TYPE OUT          MODEL with every matrix requantized to TYPE
//!                                                   (SmolLM2 Q4_1 -> Q4_0, Q8_0 there)
//!
//! Shaped and synthetic weights are random, so those models' text is noise: speed and agreement
//! between two paths over the same file are what they measure, never quality.

use anyhow::{bail, Context};
use formats::gguf::{Array, GgufFile, GgufWriter, Value};
use formats::quant::{self, GgmlType};
use sintra_tests::rows::Rng;
use sintra_tests::synthetic::{write_with_tokenizer_of, Arch};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["vocab", src, out] => vocab(Path::new(src), Path::new(out)),
        ["shaped", vocab, ty, out] => shaped(Path::new(vocab), parse_type(ty)?, Path::new(out)),
        ["synthetic", vocab, arch, ty, out] => {
            let arch = match *arch {
                "llama" => Arch::Llama,
                "qwen2" => Arch::Qwen2,
                "qwen3" => Arch::Qwen3,
                "gemma3" => Arch::Gemma3,
                "phi3" => Arch::Phi3,
                other => bail!("unknown architecture {other} (llama, qwen2, qwen3, gemma3, phi3)"),
            };
            write_with_tokenizer_of(arch, parse_type(ty)?, Path::new(out), Path::new(vocab));
            Ok(())
        }
        ["requant", src, ty, out] => {
            sintra_tests::requant::requantize(Path::new(src), Path::new(out), parse_type(ty)?);
            Ok(())
        }
        _ => bail!("usage: gpu-models vocab SRC OUT | shaped VOCAB TYPE OUT | synthetic VOCAB ARCH TYPE OUT | requant MODEL TYPE OUT"),
    }
}

fn parse_type(s: &str) -> anyhow::Result<GgmlType> {
    GgmlType::ALL
        .iter()
        .copied()
        .find(|t| t.to_string().eq_ignore_ascii_case(s))
        .with_context(|| format!("unknown weight type {s}"))
}

/// `src`'s metadata, no tensors.
fn vocab(src: &Path, out: &Path) -> anyhow::Result<()> {
    let f = GgufFile::open(src).with_context(|| src.display().to_string())?;
    let mut w = GgufWriter::new();
    for (k, v) in &f.header.metadata {
        w.set(k, v.clone());
    }
    w.write_to_path(out, |_, _, _| Ok(()))?;
    Ok(())
}

/// A llama model of the shapes in `vocab`'s `llama.*` metadata, random weights in `ty`.
fn shaped(vocab: &Path, ty: GgmlType, out: &Path) -> anyhow::Result<()> {
    let f = GgufFile::open(vocab).with_context(|| vocab.display().to_string())?;
    let get = |k: &str| -> anyhow::Result<usize> {
        match f.header.get(&format!("llama.{k}")) {
            Some(Value::U32(v)) => Ok(*v as usize),
            other => bail!("llama.{k}: {other:?}"),
        }
    };
    let (e, layers, ff) = (
        get("embedding_length")?,
        get("block_count")?,
        get("feed_forward_length")?,
    );
    let (heads, kv_heads) = (
        get("attention.head_count")?,
        get("attention.head_count_kv")?,
    );
    let kv = e / heads * kv_heads;
    let n_vocab = match f.header.get("tokenizer.ggml.tokens") {
        Some(Value::Array(Array::String(t))) => t.len(),
        _ => bail!("{}: no tokenizer.ggml.tokens", vocab.display()),
    };
    let mut w = GgufWriter::new();
    for (k, v) in &f.header.metadata {
        w.set(k, v.clone());
    }
    w.set("general.file_type", Value::U32(0));
    w.set(
        "general.name",
        Value::String(format!("random weights, shaped as {}", vocab.display())),
    );
    let mut tensors: Vec<(String, Vec<u64>)> =
        vec![("token_embd.weight".into(), vec![e as u64, n_vocab as u64])];
    for l in 0..layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        tensors.push((n("attn_norm"), vec![e as u64]));
        tensors.push((n("attn_q"), vec![e as u64, e as u64]));
        tensors.push((n("attn_k"), vec![e as u64, kv as u64]));
        tensors.push((n("attn_v"), vec![e as u64, kv as u64]));
        tensors.push((n("attn_output"), vec![e as u64, e as u64]));
        tensors.push((n("ffn_norm"), vec![e as u64]));
        tensors.push((n("ffn_gate"), vec![e as u64, ff as u64]));
        tensors.push((n("ffn_up"), vec![e as u64, ff as u64]));
        tensors.push((n("ffn_down"), vec![ff as u64, e as u64]));
    }
    tensors.push(("output_norm.weight".into(), vec![e as u64]));
    for (name, dims) in &tensors {
        let t = if dims.len() == 2 {
            ty.fallback_for_row(dims[0])
        } else {
            GgmlType::F32
        };
        w.add_tensor(name, dims, t)?;
    }
    let mut rng = Rng::new(0x5eed);
    // Uniform in [-1, 1).
    let mut next = move || (2.0 * rng.uniform() - 1.0) as f32;
    w.write_to_path(out, |i, info, sink| {
        let dims = &tensors[i].1;
        let n: usize = dims.iter().map(|&d| d as usize).product();
        let values: Vec<f32> = if dims.len() == 1 {
            (0..n).map(|_| 1.0 + 0.1 * next()).collect()
        } else {
            // Uniform with unit-variance outputs for unit-variance inputs.
            let s = (3.0 / dims[0] as f32).sqrt();
            (0..n).map(|_| s * next()).collect()
        };
        let bytes = quant::quantize(info.ty, &values, dims[0] as usize, None)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", tensors[i].0)))?;
        sink.write_all(&bytes)
    })?;
    Ok(())
}
