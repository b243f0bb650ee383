//! `sintra convert`: a Hugging Face checkpoint (safetensors + config + tokenizer files) to GGUF,
//! written as llama.cpp's `convert_hf_to_gguf.py` writes it, so that llama.cpp and sintra-rt both
//! load the result.
//!
//! - [`Arch`]: which architectures are understood, decided from `config.json`.
//! - `vocab`: the tokenizer keys (`tokenizer.ggml.*`).

pub mod vocab;

use std::path::PathBuf;

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
