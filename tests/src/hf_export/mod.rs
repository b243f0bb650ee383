//! GGUF → Hugging Face checkpoint: the inverse of llama.cpp's `convert_hf_to_gguf.py`, for the
//! round-trip tests of issue #16 (download and `sintra convert` without a network).
//!
//! [`export`] dequantizes every tensor of a GGUF file to f32 and writes a checkpoint directory as
//! the Hub publishes one: `model.safetensors` (or shards and `model.safetensors.index.json`) with
//! the Hugging Face tensor names and layouts, `config.json`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json` and, for SentencePiece vocabularies, `tokenizer.model`.
//!
//! What the converter does per architecture, undone here:
//! - every architecture: GGUF dimensions are torch's reversed (`ne[0]`, the row length, is
//!   torch's last dimension), so the bytes keep their order and only the shape is reversed;
//!   a GGUF without `output.weight` has tied embeddings (no `lm_head.weight`);
//! - llama: `LlamaModel.permute` interleaved the two RoPE halves of every head of `q_proj`
//!   (with `n_head`) and `k_proj` (with `n_head_kv`); undone row by row;
//! - gemma3: `Gemma3RMSNorm` scales by `1 + w`, and the converter stored `w + 1` for every
//!   tensor whose name ends in `norm.weight` (all seven norms, `q_norm`/`k_norm` included);
//!   `w - 1` is written back;
//! - phi3: `qkv_proj` and `gate_up_proj` stay fused (the converter only renames them), and the
//!   `rope_factors_long/short.weight` tensors go back into `config.json`'s `rope_scaling`.
//!
//! Tensors are dequantized one at a time while the file is written (a lazy
//! [`safetensors::View`]), so memory stays near the largest tensor.

mod config;
pub mod sp;
mod tensors;
#[cfg(test)]
mod tests;
mod vocab;

pub use tensors::minus_one;

use crate::synthetic::Arch; // the architectures the converter of issue #16 reads
use config::config_json;
use formats::gguf::{GgufError, GgufFile};
use formats::quant::QuantError;
use serde_json::{json, Map, Value as Json};
use std::fmt;
use std::path::{Path, PathBuf};
use tensors::{plan, write_safetensors};
use vocab::Vocab;

/// Bumped whenever the export changes, so that a cached checkpoint is never reused.
pub const VERSION: u32 = 3;

/// The floating-point type of the exported tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    /// `torch_dtype` as `config.json` spells it.
    pub fn torch_name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::F16 => safetensors::Dtype::F16,
            Dtype::BF16 => safetensors::Dtype::BF16,
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// How to export: the tensors' type and, to exercise sharded downloads, the largest shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    pub dtype: Dtype,
    /// `None`: one `model.safetensors`. `Some(n)`: shards of at most `n` bytes of tensor data
    /// (a tensor larger than `n` gets a shard of its own), `model-00001-of-0000N.safetensors`,
    /// and `model.safetensors.index.json`.
    pub max_shard_bytes: Option<u64>,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// Every file written, relative to the directory.
    pub files: Vec<String>,
    /// Every tensor: Hugging Face name and torch shape, in GGUF order.
    pub tensors: Vec<(String, Vec<usize>)>,
}

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError {
    /// The GGUF could not be read, or lacks a key or tensor the export needs.
    Gguf(GgufError),
    /// A tensor's type has no dequantizer.
    Quant(String, QuantError),
    /// Writing the directory failed.
    Io(std::io::Error),
    /// safetensors refused a tensor.
    Safetensors(safetensors::SafeTensorError),
    /// An architecture, tensor or tokenizer this exporter does not know.
    Unsupported(String),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Gguf(e) => write!(f, "{e}"),
            ExportError::Quant(name, e) => write!(f, "tensor {name}: {e}"),
            ExportError::Io(e) => write!(f, "{e}"),
            ExportError::Safetensors(e) => write!(f, "safetensors: {e}"),
            ExportError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<GgufError> for ExportError {
    fn from(e: GgufError) -> Self {
        ExportError::Gguf(e)
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Io(e)
    }
}

impl From<safetensors::SafeTensorError> for ExportError {
    fn from(e: safetensors::SafeTensorError) -> Self {
        ExportError::Safetensors(e)
    }
}

/// `general.architecture` as an [`Arch`].
fn arch_from_name(name: &str) -> Result<Arch, ExportError> {
    Arch::ALL
        .into_iter()
        .find(|a| a.name() == name)
        .ok_or_else(|| ExportError::Unsupported(format!("architecture {name:?}")))
}

/// `architectures[0]` and `model_type` of `config.json`.
fn hf_names(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Arch::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
        Arch::Gemma3 => ("Gemma3ForCausalLM", "gemma3_text"),
        Arch::Phi3 => ("Phi3ForCausalLM", "phi3"),
    }
}

/// Export `gguf` to a checkpoint directory `dir` (created if missing) with one
/// `model.safetensors` of `dtype`.
pub fn export(gguf: &Path, dir: &Path, dtype: Dtype) -> Result<Exported, ExportError> {
    export_with(
        gguf,
        dir,
        ExportOptions {
            dtype,
            max_shard_bytes: None,
        },
    )
}

/// The export of `gguf` with `opts`, made once under `target/test-hf` (keyed by the file's
/// name, the options and [`VERSION`]) and reused: the directory of the checkpoint.
pub fn cached(gguf: &Path, opts: ExportOptions) -> Result<PathBuf, ExportError> {
    let stem = gguf
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shards = opts
        .max_shard_bytes
        .map_or(String::new(), |n| format!("-shards{n}"));
    let name = format!("{stem}-{}{shards}-v{VERSION}", opts.dtype.torch_name());
    let root = crate::repo_root().join("target/test-hf");
    let dir = root.join(&name);
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    // Written beside, then renamed: a killed run leaves no half checkpoint under the name.
    let tmp = root.join(format!("{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    export_with(gguf, &tmp, opts)?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another test made it meanwhile.
        Err(_) if dir.join("config.json").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`export`] with every option.
pub fn export_with(gguf: &Path, dir: &Path, opts: ExportOptions) -> Result<Exported, ExportError> {
    let file = GgufFile::open(gguf)?;
    let h = &file.header;
    let arch = arch_from_name(h.architecture()?)?;
    let plan = plan(h, arch)?;
    std::fs::create_dir_all(dir)?;
    let mut files = write_safetensors(&file, &plan, dir, opts)?;

    let config = config_json(&file, arch, opts.dtype)?;
    write_json(dir, "config.json", &config, &mut files)?;
    let mut generation = Map::new();
    generation.insert("_from_model_config".into(), json!(true));
    for k in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(v) = config.get(k) {
            generation.insert(k.into(), v.clone());
        }
    }
    write_json(
        dir,
        "generation_config.json",
        &Json::Object(generation),
        &mut files,
    )?;

    let vocab = Vocab::read(h)?;
    match vocab.model.as_str() {
        "gpt2" => {
            write_json(
                dir,
                "tokenizer.json",
                &vocab.bpe_tokenizer_json()?,
                &mut files,
            )?;
        }
        "llama" => {
            std::fs::write(dir.join("tokenizer.model"), vocab.sentencepiece_model(h))?;
            files.push("tokenizer.model".into());
            write_json(
                dir,
                "tokenizer.json",
                &vocab.spm_tokenizer_json(),
                &mut files,
            )?;
        }
        other => {
            return Err(ExportError::Unsupported(format!(
                "tokenizer.ggml.model {other:?}"
            )))
        }
    }
    let ctx = h.get_u64(&format!("{}.context_length", h.architecture()?))?;
    write_json(
        dir,
        "tokenizer_config.json",
        &vocab.tokenizer_config(h, arch, ctx),
        &mut files,
    )?;
    Ok(Exported {
        files,
        tensors: plan.into_iter().map(|p| (p.hf_name, p.shape)).collect(),
    })
}

fn write_json(
    dir: &Path,
    name: &str,
    value: &Json,
    files: &mut Vec<String>,
) -> Result<(), ExportError> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(dir.join(name), text)?;
    files.push(name.into());
    Ok(())
}
