//! Calibration statistics (issue #7): computed once per model by the runtime
//! (`sintra-rt calibrate`, reached through the wire protocol like every other measurement) on
//! the calibration text, cached under `$SINTRA_HOME/calibration/` by the model's SHA-256, and
//! read back here for the executor and the architect.
//!
//! The file is llama.cpp's imatrix GGUF layout (`<weight>.in_sum2`, `<weight>.counts`) plus
//! `sintra.calibration.block_influence`. The importance of column `j` of a weight is the mean
//! squared activation entering it, `in_sum2[j] / counts`, as llama-quantize computes it.

use crate::device::{sha256_hex, DeviceSpec, Session, Transport};
use crate::model_info::ModelInfo;
use anyhow::{bail, Context, Result};
use formats::gguf::{Array, GgufFile};
use formats::wire::CalibrateRequest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Metadata key of the per-layer block influence (written by the runtime).
pub const KEY_BLOCK_INFLUENCE: &str = "sintra.calibration.block_influence";

/// The statistics of one model.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Per weight matrix (source tensor names): mean squared input activation per column.
    pub importance: HashMap<String, Vec<f32>>,
    /// Per layer: mean `1 - cos(x_in, x_out)` of the block.
    pub block_influence: Vec<f32>,
    /// Tokens the statistics were collected on.
    pub n_tokens: u64,
    pub path: PathBuf,
}

impl Calibration {
    /// Read an imatrix GGUF file (ours or llama-imatrix's), checking every entry.
    pub fn load(path: &Path) -> Result<Calibration> {
        let file = GgufFile::open(path)
            .with_context(|| format!("reading calibration file {}", path.display()))?;
        let bad = |what: String| anyhow::anyhow!("calibration file {}: {what}", path.display());
        let mut importance = HashMap::new();
        let mut n_tokens = 0u64;
        for t in file.tensors() {
            let Some(base) = t.info.name.strip_suffix(".in_sum2") else {
                continue;
            };
            let counts_name = format!("{base}.counts");
            let counts = file
                .tensor(&counts_name)
                .map_err(|_| bad(format!("{} has no {counts_name}", t.info.name)))?;
            let f32s = |v: &formats::gguf::TensorView<'_>| -> Result<Vec<f32>> {
                if v.info.ty != formats::quant::GgmlType::F32 {
                    return Err(bad(format!(
                        "{} is {}, expected F32",
                        v.info.name, v.info.ty
                    )));
                }
                Ok(v.data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            };
            let sum2 = f32s(&t)?;
            let count = f32s(&counts)?;
            let n_mat = count.len();
            if n_mat != 1 {
                return Err(bad(format!(
                    "{base} has {n_mat} matrices (expert models are not supported)"
                )));
            }
            let c = count[0];
            if !(c.is_finite() && c > 0.0) {
                return Err(bad(format!(
                    "{counts_name} is {c}, expected a positive count"
                )));
            }
            if let Some(v) = sum2.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(bad(format!(
                    "{} holds {v}, expected non-negative sums of squares",
                    t.info.name
                )));
            }
            n_tokens = n_tokens.max(c as u64);
            importance.insert(base.to_string(), sum2.iter().map(|s| s / c).collect());
        }
        if importance.is_empty() {
            return Err(bad("no `.in_sum2` tensors: not an importance matrix".into()));
        }
        let block_influence = match file.header.get(KEY_BLOCK_INFLUENCE) {
            None => Vec::new(),
            Some(v) => match v.as_array() {
                Some(Array::F32(x)) => x.clone(),
                _ => return Err(bad(format!("{KEY_BLOCK_INFLUENCE} is not an f32 array"))),
            },
        };
        Ok(Calibration {
            importance,
            block_influence,
            n_tokens,
            path: path.to_path_buf(),
        })
    }

    /// The importance of `tensor`'s columns (`n` of them), if it was calibrated.
    pub fn for_tensor(&self, tensor: &str, n: usize) -> Result<Option<&[f32]>> {
        match self.importance.get(tensor) {
            None => Ok(None),
            Some(v) if v.len() == n => Ok(Some(v)),
            Some(v) => bail!(
                "calibration file {}: {tensor} has {} columns, the model's tensor has {n} (was it made for another model?)",
                self.path.display(),
                v.len()
            ),
        }
    }

    /// Check the statistics fit `model`: one influence per layer, every matrix present.
    pub fn check(&self, model: &ModelInfo) -> Result<()> {
        if self.block_influence.len() != model.n_layers as usize {
            bail!(
                "calibration file {} has block influence for {} layers, {} has {}",
                self.path.display(),
                self.block_influence.len(),
                model.name,
                model.n_layers
            );
        }
        for t in model.tensors.iter().filter(|t| t.is_matrix()) {
            if t.name == "token_embd.weight" && !model.tied_embeddings {
                continue; // a lookup table, no input activation
            }
            self.for_tensor(&t.name, t.row_len() as usize)?
                .with_context(|| {
                    format!(
                        "calibration file {} has no entry for {}",
                        self.path.display(),
                        t.name
                    )
                })?;
        }
        Ok(())
    }

    /// Layers ordered from least to most influential.
    pub fn least_influential(&self) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.block_influence.len() as u32).collect();
        idx.sort_by(|&a, &b| {
            self.block_influence[a as usize].total_cmp(&self.block_influence[b as usize])
        });
        idx
    }
}

/// How a calibration run is made.
#[derive(Debug, Clone)]
pub struct CalibrationSpec {
    /// The calibration text (never the evaluation text).
    pub text_file: PathBuf,
    pub n_ctx: u32,
    pub chunks: u32,
    pub threads: u32,
    /// The longest silence allowed from the runtime.
    pub timeout: Duration,
}

impl CalibrationSpec {
    pub fn new(text_file: &Path, threads: u32) -> CalibrationSpec {
        CalibrationSpec {
            text_file: text_file.to_path_buf(),
            n_ctx: 512,
            chunks: 16,
            threads,
            timeout: Duration::from_secs(600),
        }
    }
}

/// The calibration file of `model` under `dir`, computed by a local runtime if it is not
/// cached. The cache key is the model's SHA-256 and the run's settings.
pub fn ensure(model: &ModelInfo, spec: &CalibrationSpec, dir: &Path) -> Result<Calibration> {
    let sha =
        sha256_hex(&model.path).with_context(|| format!("hashing {}", model.path.display()))?;
    let text_name = spec
        .text_file
        .file_name()
        .map_or("text".into(), |n| n.to_string_lossy().into_owned());
    let path = dir.join(format!(
        "{}-{}-c{}x{}.imatrix.gguf",
        &sha[..16],
        text_name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_"),
        spec.n_ctx,
        spec.chunks
    ));
    if !path.is_file() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // A temporary left by a killed run's writer goes.
        crate::home::sweep_stale_temporaries(dir);
        let text = std::fs::read_to_string(&spec.text_file).with_context(|| {
            format!("reading the calibration text {}", spec.text_file.display())
        })?;
        let host = DeviceSpec {
            transport: Transport::Local { exec_prefix: None },
            runtime_target: None,
            runtime: None,
            timeout: spec.timeout,
        };
        let pb = indicatif::ProgressBar::new(spec.chunks as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "calibrating {bar:30} {pos}/{len} windows [{elapsed}<{eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let run = || -> Result<()> {
            let mut s = Session::open(&host, None)?;
            s.load_file(&model.path, "")?;
            let r = s.calibrate(
                CalibrateRequest {
                    text: crate::device::text_for_windows(&text, spec.n_ctx, spec.chunks)
                        .to_string(),
                    dataset: text_name.clone(),
                    n_ctx: spec.n_ctx,
                    max_chunks: Some(spec.chunks),
                    threads: spec.threads,
                    output_path: std::path::absolute(&path)
                        .unwrap_or_else(|_| path.clone())
                        .display()
                        .to_string(),
                },
                |p| pb.set_position(p.done as u64),
            )?;
            let _ = s.shutdown();
            tracing::info!(path = %r.path, tokens = r.n_tokens, seconds = r.seconds, "calibrated");
            Ok(())
        };
        let r = run();
        pb.finish_and_clear();
        r.with_context(|| format!("calibrating {} on {}", model.name, spec.text_file.display()))?;
    }
    let c = Calibration::load(&path)?;
    c.check(model)?;
    Ok(c)
}
