//! Where models live: the setup script's cache and the user's model cache.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// The default model's file name (fetched by `scripts/setup.sh`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Directories searched for cached models, in order: `$SINTRA_MODELS`, `./.cache/models` (the
/// setup script's cache when run from a checkout), the cache of the checkout this binary was
/// built from (so `sintra` finds it from any directory, and so do the unit tests),
/// `$SINTRA_HOME/models`, `~/.cache/sintra/models`.
pub fn model_dirs() -> Vec<PathBuf> {
    cache_dirs("SINTRA_MODELS", "models")
}

/// The setup script's cache directories for `sub` (`models`, `data`), in the order they are
/// searched: `$env`, `./.cache/<sub>`, the cache of the checkout this binary was built from,
/// `$SINTRA_HOME/<sub>`, `~/.cache/sintra/<sub>`.
pub(crate) fn cache_dirs(env: &str, sub: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(env) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from(".cache").join(sub));
    dirs.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache")).join(sub));
    if let Some(d) = std::env::var_os("SINTRA_HOME") {
        dirs.push(PathBuf::from(d).join(sub));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/sintra").join(sub));
    }
    dirs
}

/// The default model from the cache, or an error that says how to get it.
pub fn default_model() -> Result<PathBuf> {
    let dirs = model_dirs();
    for d in &dirs {
        let p = d.join(DEFAULT_MODEL_FILE);
        if p.is_file() {
            return Ok(p);
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "default model {DEFAULT_MODEL_FILE} not found (looked in {}); run `bash scripts/setup.sh` or pass a model path",
        looked.join(", ")
    )
}
