//! Model families the runtime runs: llama, qwen2, qwen3, gemma3 and phi3 (see
//! [`config::SUPPORTED_ARCHS`]), one forward pass whose architecture differences are data
//! decided at load (`config.rs`) and small steps of one layer body (`llama/layer.rs`).

pub mod config;
pub mod llama;

pub use config::Config;
pub use llama::{KvType, Llama, Place, LOGITS_BYTES, MAX_BATCH};

use formats::gguf::GgufError;
use formats::quant::GgmlType;

/// Why a model cannot be loaded or run. Each variant names the offending key, tensor or value.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Gguf(GgufError),
    #[error("unsupported architecture '{0}' (supported: {supported})", supported = config::SUPPORTED_ARCHS.join(", "))]
    UnsupportedArch(String),
    #[error("hyper-parameter {key}: {problem}")]
    BadHparam { key: String, problem: String },
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    #[error("tensor '{tensor}' has shape {found}, expected {expected}")]
    BadShape {
        tensor: String,
        expected: String,
        found: String,
    },
    #[error("tensor '{tensor}' has type {ty}, which this runtime cannot compute with")]
    UnsupportedType { tensor: String, ty: GgmlType },
    #[error("tensor data: {0}")]
    Tensor(String),
    #[error("the context is full ({n_ctx} tokens); raise --ctx")]
    ContextFull { n_ctx: usize },
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    BadToken { token: u32, n_vocab: usize },
    /// The device `SINTRA_DEVICE` asks for cannot run the model (issue #21).
    #[error("{0}")]
    Device(String),
}
