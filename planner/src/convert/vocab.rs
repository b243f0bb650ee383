//! The tokenizer of a checkpoint as GGUF `tokenizer.ggml.*` keys (being written).

use super::{Arch, ConvertError};
use formats::gguf::Value;
use std::path::Path;

/// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) for the checkpoint in `dir`.
pub fn tokenizer_metadata(
    dir: &Path,
    arch: Arch,
    config: &serde_json::Value,
) -> Result<Vec<(String, Value)>, ConvertError> {
    let _ = (arch, config);
    Err(ConvertError::Missing {
        path: dir.to_path_buf(),
        why: "tokenizer conversion is being written".into(),
    })
}
