//! Results into the tools people already use (issue #19): [`ollama`].

pub mod ollama;

use anyhow::{bail, Result};
use std::path::PathBuf;

/// The best model of run `run` (`latest`, a run id), or `run` itself when it is a GGUF file.
pub fn run_model(run: &str) -> Result<(PathBuf, String)> {
    let p = std::path::Path::new(run);
    if run.ends_with(".gguf") && p.is_file() {
        return Ok((p.to_path_buf(), format!("Written by sintra from {run}")));
    }
    let cp = if run == "latest" {
        crate::checkpoint::Checkpoint::latest()?
    } else {
        crate::checkpoint::Checkpoint::load(run)?
    };
    let model = cp.config.output_dir.join("model.gguf");
    if !model.is_file() {
        bail!(
            "run {} has no best model at {} (no experiment succeeded, or the directory moved: give the GGUF file instead)",
            cp.run_id,
            model.display()
        );
    }
    let best = crate::experiment::best(&cp.experiments)
        .map_or(String::new(), |b| format!(", #{} {}", b.iteration, b.label));
    let source = cp
        .config
        .model_path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    Ok((
        model,
        format!(
            "Written by sintra: run {} of {source} on {}{best}",
            cp.run_id, cp.profile.name
        ),
    ))
}
