//! `sintra convert`: a Hugging Face checkpoint (safetensors + config + tokenizer files) to GGUF,
//! written as llama.cpp's `convert_hf_to_gguf.py` writes it, so that llama.cpp and sintra-rt both
//! load the result.
//!
//! - [`Arch`]: which architectures are understood, decided from `config.json`.
//! - `arch`: per architecture, the hyper-parameter keys and the tensor plan (names, shapes, the
//!   Q/K permutation, gemma's norm offset), from `config.json` alone.
//! - `safetensors`: the weights, memory-mapped, read a block at a time.
//! - `vocab`: the tokenizer keys (`tokenizer.ggml.*`).
//! - [`convert`]: ties them together and writes the GGUF atomically, one tensor at a time, a
//!   block of rows at a time: peak memory stays near one block, whatever the model's size.

pub mod arch;
pub mod safetensors;
pub mod vocab;

use arch::{Hparams, PlannedTensor, Transform};
use formats::gguf::{GgufWriter, Value};
use formats::quant::{self, GgmlType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use safetensors::{SourceType, Weights};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Output values per block written (about 4 MiB of f32).
const BLOCK_ELEMENTS: u64 = 1 << 20;

/// GGUF's `general.file_type` for each output type (llama.cpp's `LLAMA_FTYPE_*`).
fn file_type(t: OutType) -> u32 {
    match t {
        OutType::F32 => 0,
        OutType::F16 => 1,
        OutType::Q8_0 => 7,
        OutType::Bf16 => 32,
        OutType::Auto => unreachable_auto(),
    }
}

fn unreachable_auto() -> u32 {
    // `OutType::resolve` replaces Auto before anything asks for a file type.
    1
}

/// `--outtype`: the type of the weight matrices in the GGUF (norms and biases stay F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutType {
    F32,
    F16,
    Bf16,
    #[value(name = "q8_0")]
    Q8_0,
    /// BF16 when the checkpoint holds BF16 weights, else F16 (as llama.cpp's `auto`).
    Auto,
}

impl OutType {
    fn resolve(self, weights: &Weights) -> OutType {
        match self {
            OutType::Auto => {
                if weights.tensors.values().any(|t| t.ty == SourceType::BF16) {
                    OutType::Bf16
                } else {
                    OutType::F16
                }
            }
            t => t,
        }
    }

    fn matrix_type(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 | OutType::Auto => GgmlType::F16,
            OutType::Bf16 => GgmlType::BF16,
            OutType::Q8_0 => GgmlType::Q8_0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutType::F32 => "f32",
            OutType::F16 => "f16",
            OutType::Bf16 => "bf16",
            OutType::Q8_0 => "q8_0",
            OutType::Auto => "auto",
        }
    }
}

/// What [`convert`] wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    pub path: PathBuf,
    pub arch: Arch,
    pub outtype: OutType,
    pub n_tensors: usize,
    pub n_bytes: u64,
}

/// Converts the checkpoint in `dir` to a GGUF at `out` (written atomically). `name` becomes
/// `general.name` (default: the directory's name).
pub fn convert(
    dir: &Path,
    out: &Path,
    outtype: OutType,
    name: Option<&str>,
) -> Result<Converted, ConvertError> {
    let hp = Hparams::load(dir)?;
    let weights = Weights::open(dir)?;
    let outtype = outtype.resolve(&weights);
    // The weights first (cheap, and what a broken checkpoint breaks), then the tokenizer, whose
    // size cuts gemma's embedding table.
    plan(&hp, &weights, None)?;
    let tokenizer = vocab::tokenizer_metadata(dir, hp.arch, hp.config())?;
    let n_tokens = tokenizer
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .and_then(|(_, v)| v.as_array().map(|a| a.len() as u64));
    let plan = plan(&hp, &weights, n_tokens)?;

    let a = hp.arch.gguf_name();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(a.into()));
    w.set("general.type", Value::String("model".into()));
    let default_name = dir
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    w.set(
        "general.name",
        Value::String(name.map_or(default_name, str::to_string)),
    );
    for (k, v) in arch::metadata(&hp)? {
        w.set(&k, v);
    }
    w.set("general.file_type", Value::U32(file_type(outtype)));
    w.set("general.quantization_version", Value::U32(2));
    for (k, v) in tokenizer {
        w.set(&k, v);
    }
    let types: Vec<GgmlType> = plan
        .iter()
        .map(|t| match t.is_matrix() {
            // llama.cpp's converter writes F16 for rows that hold no whole Q8_0 block.
            true if outtype == OutType::Q8_0 && t.row_len() % 32 != 0 => GgmlType::F16,
            true => outtype.matrix_type(),
            false => GgmlType::F32,
        })
        .collect();
    for (t, ty) in plan.iter().zip(&types) {
        w.add_tensor(&t.name, &t.dims, *ty)?;
    }
    let total: u64 = w.tensors().iter().map(|t| t.n_bytes).sum();
    let bar = progress(total, &out.display().to_string());
    let n_bytes = w.write_to_path(out, |i, info, sink| {
        write_tensor(&weights, &plan[i], info.ty, sink, &bar)
    })?;
    bar.finish_and_clear();
    Ok(Converted {
        path: out.to_path_buf(),
        arch: hp.arch,
        outtype,
        n_tensors: plan.len(),
        n_bytes,
    })
}

/// The architecture's plan checked against the checkpoint's tensors: every tensor the plan
/// needs is there with the right shape, and every tensor there is used (or one llama.cpp drops).
fn plan(
    hp: &Hparams,
    weights: &Weights,
    n_tokens: Option<u64>,
) -> Result<Vec<PlannedTensor>, ConvertError> {
    let mut plan = arch::tensors(hp)?;
    // A checkpoint that ties its embeddings may still carry lm_head: llama.cpp writes it.
    if hp.tied && hp.arch != Arch::Gemma3 && weights.tensors.contains_key("lm_head.weight") {
        plan.push(PlannedTensor {
            name: "output.weight".into(),
            source: Some("lm_head.weight".into()),
            dims: vec![hp.n_embd, hp.n_vocab],
            transform: Transform::None,
            values: None,
        });
    }
    for t in &mut plan {
        let Some(src) = &t.source else { continue };
        let Some(s) = weights.tensors.get(src) else {
            return Err(ConvertError::Missing {
                path: weights_dir(weights),
                why: format!(
                    "tensor {src} (for {}) is not in {}",
                    t.name,
                    weights.file_names()
                ),
            });
        };
        let mut want: Vec<u64> = t.dims.iter().rev().copied().collect();
        // Gemma 3 keeps only the rows of tokens the tokenizer has (llama.cpp's converter
        // drops the rest of embed_tokens).
        if t.name == "token_embd.weight" && hp.arch == Arch::Gemma3 {
            if let Some(n) = n_tokens {
                if s.shape.first().is_some_and(|&r| r >= n) {
                    want[0] = s.shape[0];
                    t.dims[1] = n;
                }
            }
        }
        if s.shape != want {
            return Err(ConvertError::Invalid {
                path: weights.path_of(s).to_path_buf(),
                message: format!(
                    "tensor {src} has shape {:?}, config.json says {:?}",
                    s.shape, want
                ),
            });
        }
    }
    for (name, s) in &weights.tensors {
        let used = plan.iter().any(|t| t.source.as_deref() == Some(name));
        if !used && !arch::ignored(hp.arch, name) {
            return Err(ConvertError::Unsupported {
                path: weights.path_of(s).to_path_buf(),
                what: "tensor (not part of this architecture as config.json describes it)",
                found: name.clone(),
            });
        }
    }
    Ok(plan)
}

fn weights_dir(weights: &Weights) -> PathBuf {
    weights
        .tensors
        .values()
        .next()
        .and_then(|t| weights.path_of(t).parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Writes one tensor, a block of rows at a time: read (as f32), permute, shift, encode.
fn write_tensor(
    weights: &Weights,
    t: &PlannedTensor,
    ty: GgmlType,
    sink: &mut dyn Write,
    bar: &ProgressBar,
) -> std::io::Result<()> {
    let row_len = t.row_len();
    let encode = |values: &[f32], sink: &mut dyn Write| -> std::io::Result<()> {
        let bytes = quant::quantize(ty, values, row_len as usize, None)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", t.name)))?;
        bar.inc(bytes.len() as u64);
        sink.write_all(&bytes)
    };
    let Some(src) = &t.source else {
        let values = t.values.as_deref().unwrap_or_default();
        return encode(values, sink);
    };
    let s = &weights.tensors[src];
    // The permutation works on torch's first dimension: rows of a matrix, elements of a bias.
    let (n_rows, row_elems) = match t.dims.len() {
        1 => (t.dims[0], 1),
        _ => (t.n_rows(), row_len),
    };
    let group = match t.transform {
        Transform::PermuteRope { heads } => {
            if heads == 0 || n_rows % (2 * heads) != 0 {
                return Err(std::io::Error::other(format!(
                    "{src}: {n_rows} rows do not split into {heads} heads of rotary pairs"
                )));
            }
            n_rows / heads
        }
        _ => 1,
    };
    // Whole heads per block for the permutation; whole GGUF rows always.
    let rows_per_block = (BLOCK_ELEMENTS / row_elems.max(1)).max(1).div_ceil(group) * group;
    let rows_per_block = match t.dims.len() {
        1 => n_rows,
        _ => rows_per_block,
    };
    let mut src_vals = Vec::new();
    let mut out = Vec::new();
    let mut r0 = 0;
    while r0 < n_rows {
        let r1 = (r0 + rows_per_block).min(n_rows);
        let elems = r0 * row_elems..r1 * row_elems;
        src_vals.clear();
        weights.read(s, elems.clone(), &mut src_vals);
        let block: &[f32] = match t.transform {
            Transform::PermuteRope { .. } => {
                permute_rope(&src_vals, group, row_elems as usize, &mut out);
                &out
            }
            Transform::AddOne => {
                for x in &mut src_vals {
                    *x = add_one(*x, s.ty);
                }
                &src_vals
            }
            Transform::None => &src_vals,
        };
        encode(block, sink)?;
        weights.release(s, elems);
        r0 = r1;
    }
    Ok(())
}

/// llama.cpp's `LlamaModel.permute` on whole heads of `head_rows` rows: within each head, row
/// `2i + j` of the result is row `j * head_rows / 2 + i` of the checkpoint.
fn permute_rope(src: &[f32], head_rows: u64, row: usize, out: &mut Vec<f32>) {
    let head_rows = head_rows as usize;
    let half = head_rows / 2;
    out.clear();
    out.reserve(src.len());
    for head in src.chunks_exact(head_rows * row) {
        for i in 0..half {
            for j in 0..2 {
                let r = j * half + i;
                out.extend_from_slice(&head[r * row..(r + 1) * row]);
            }
        }
    }
}

/// Gemma's `1 + w`, computed as llama.cpp's converter does: in f16 for an F16 checkpoint (torch
/// adds in the tensor's type), in f32 otherwise (BF16 is widened first).
fn add_one(x: f32, ty: SourceType) -> f32 {
    match ty {
        SourceType::F16 => half::f16::from_f32(x + 1.0).to_f32(),
        SourceType::F32 | SourceType::BF16 => x + 1.0,
    }
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(format!("converting to {what}"));
    bar
}

/// Why a conversion failed. Every message names the file and the value involved.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A checkpoint file holds something that cannot be converted (a missing key, a bad value,
    /// malformed JSON or protobuf, a tensor of the wrong shape).
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// The checkpoint is valid but uses what we do not convert (an architecture, a dtype, a
    /// tokenizer kind): `what` says which, `found` what was there.
    #[error("{path}: unsupported {what} '{found}'")]
    Unsupported {
        path: PathBuf,
        what: &'static str,
        found: String,
    },
    /// A file the conversion needs is not in the checkpoint.
    #[error("{path}: missing ({why})")]
    Missing { path: PathBuf, why: String },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing the GGUF failed.
    #[error(transparent)]
    Write(#[from] formats::gguf::WriteError),
}

/// The architectures `sintra convert` understands (`config.json`'s `architectures[0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM` (SmolLM2, TinyLlama, Llama 2/3).
    Llama,
    /// `Qwen2ForCausalLM`.
    Qwen2,
    /// `Qwen3ForCausalLM`.
    Qwen3,
    /// `Gemma3ForCausalLM`.
    Gemma3,
    /// `Phi3ForCausalLM`.
    Phi3,
}

impl Arch {
    /// The Hugging Face class names, in the order of [`Arch`]'s variants.
    pub const HF_NAMES: [(&'static str, Arch); 5] = [
        ("LlamaForCausalLM", Arch::Llama),
        ("Qwen2ForCausalLM", Arch::Qwen2),
        ("Qwen3ForCausalLM", Arch::Qwen3),
        ("Gemma3ForCausalLM", Arch::Gemma3),
        ("Phi3ForCausalLM", Arch::Phi3),
    ];

    /// GGUF's `general.architecture`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }
}

#[cfg(test)]
mod tests;
