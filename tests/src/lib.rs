//! Helpers shared by the integration tests: locating test models and data, deterministic test
//! rows, and `ggml`, the oracle: llama.cpp's own quantizers through llama-cpp-sys-2.

pub mod ggml;
pub mod llama;
pub mod requant;
pub mod rows;

use std::path::{Path, PathBuf};

/// Repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A test model from the setup cache (`SINTRA_MODELS` or `.cache/models`). Panics with the fix
/// when it is missing: tests that need a model get it, they never skip.
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("SINTRA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/models"));
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}

/// SmolLM2-135M-Instruct in Q4_1, the default test model.
pub fn smollm2_q4_1() -> PathBuf {
    model_path("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A file of `../shared/data` (calibration.txt, eval.txt).
pub fn shared_data(file: &str) -> PathBuf {
    let path = repo_root().join("../shared/data").join(file);
    assert!(
        path.is_file(),
        "shared data file {} is missing",
        path.display()
    );
    path
}

/// Gemma 3 270M in Q4_K_M: its SentencePiece-style ("llama") vocabulary tests the tokenizer.
pub fn gemma3_270m_q4_k_m() -> PathBuf {
    model_path("gemma-3-270m-q4_k_m.gguf")
}
