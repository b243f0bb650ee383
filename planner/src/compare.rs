//! Files measured beside the candidates (`sintra --compare FILE`, issue #19): llama.cpp's own
//! presets (`llama-quantize … Q4_K_M`), or any other quantization of the same model, measured
//! exactly as a candidate is (speed on the device, quality against the original on the held-out
//! text) so that the report can put our recipes beside them: size against KL divergence and
//! speed against accuracy. They are references, never the run's result.
//!
//! Use: [`check`] each file when the run starts (same architecture and tensors as the
//! original); the loop measures those not measured yet before its first iteration (a resumed
//! run does not measure them again) and keeps them in the checkpoint and the history.

use crate::measure::{Quality, Speed};
use crate::model_info::ModelInfo;
use anyhow::{bail, Context, Result};
use formats::gguf::GgufFile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A file measured beside the candidates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compared {
    /// The file, as checked when the run started.
    pub path: PathBuf,
    /// Its llama.cpp file type (`Q4_K_M`, from `general.file_type`) when it names one, else
    /// its file name.
    pub label: String,
    pub size_bytes: u64,
    pub speed: Option<Speed>,
    pub quality: Option<Quality>,
    /// Why it could not be measured.
    pub error: Option<String>,
}

impl Compared {
    /// The file's name, without its directory.
    pub fn file_name(&self) -> String {
        file_name(&self.path)
    }
    pub fn tps(&self) -> Option<f64> {
        self.speed.as_ref().map(|s| s.tg_tps)
    }
    pub fn top1(&self) -> Option<f64> {
        self.quality.as_ref().map(|q| q.top1)
    }
    pub fn kld(&self) -> Option<f64> {
        self.quality.as_ref().map(|q| q.kld)
    }
    /// `Q4_K_M: 84.1 MiB, 301.20 tok/s, top-1 0.9312 ± 0.0100, KLD 0.01021 ± 0.00040`.
    pub fn one_line(&self) -> String {
        let size = format!("{:.1} MiB", self.size_bytes as f64 / (1 << 20) as f64);
        match (&self.error, &self.speed, &self.quality) {
            (Some(e), ..) => format!("{}: {size}, not measured: {e}", self.label),
            (None, Some(s), Some(q)) => format!(
                "{}: {size}, {}, top-1 {}, KLD {}",
                self.label,
                s.tg.map_or(format!("{:.2} tok/s", s.tg_tps), |t| t.describe("tok/s")),
                q.top1_text(),
                q.kld_text()
            ),
            _ => format!("{}: {size}", self.label),
        }
    }
}

/// llama.cpp's name for a `general.file_type` (`enum llama_ftype`), for the types it names.
pub fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

/// Check that `path` is a GGUF of the same model as `original` (its architecture, and every
/// tensor by name and shape, types aside) and return it, absolute, with its label. Errors
/// name the file and the first difference.
pub fn check(path: &Path, original: &ModelInfo) -> Result<(PathBuf, String)> {
    let file = GgufFile::open(path).with_context(|| {
        format!(
            "--compare {}: not a GGUF file this sintra can read",
            path.display()
        )
    })?;
    let arch = file.header.architecture().unwrap_or("?");
    if arch != original.arch {
        bail!(
            "--compare {}: a {arch} model, the original {} is {}",
            path.display(),
            original.path.display(),
            original.arch
        );
    }
    for t in &original.tensors {
        match file.header.tensor(&t.name) {
            None => bail!(
                "--compare {}: no tensor {} (the original {} has it): not a quantization of the same model",
                path.display(),
                t.name,
                original.path.display()
            ),
            Some(c) if c.dims != t.dims => bail!(
                "--compare {}: tensor {} is {:?}, the original's is {:?}",
                path.display(),
                t.name,
                c.dims,
                t.dims
            ),
            Some(_) => {}
        }
    }
    if file.header.tensors.len() != original.tensors.len() {
        bail!(
            "--compare {}: {} tensors, the original {} has {}",
            path.display(),
            file.header.tensors.len(),
            original.path.display(),
            original.tensors.len()
        );
    }
    let label = file
        .header
        .get_u64("general.file_type")
        .ok()
        .and_then(file_type_name)
        .map_or_else(|| file_name(path), str::to_string);
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("--compare {}", path.display()))?;
    Ok((abs, label))
}

/// `path`'s last component (the whole path when it has none).
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
