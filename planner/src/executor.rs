//! The Executor: writes the GGUF file a recipe describes ([`Recipe::plan`]).
//!
//! - **Types.** Each matrix is dequantized from the source and quantized to its recipe type
//!   with `formats` (llama.cpp's fallback for rows that are not whole super-blocks,
//!   `GgmlType::fallback_for_row`); with `"imatrix": true` every type that takes importance
//!   weights gets the calibration's importance matrix, as llama-quantize's `--imatrix` does.
//!   Vectors (norms) stay F32; tensors whose type and shape do not change are copied byte for
//!   byte.
//! - **Layer dropping.** The dropped blocks' tensors are left out, the others renumbered, and
//!   every per-layer metadata array (`feed_forward_length`, head counts, ...) loses the dropped
//!   entries; `block_count` follows.
//! - **FFN pruning.** Each pruned layer keeps the channels with the largest expected
//!   contribution `‖W_down[:, j]‖ · rms(h_j)` (the column norm of `ffn_down` times the channel's
//!   RMS activation on the calibration text): rows of gate and up and columns of down. A
//!   uniform ratio writes one `feed_forward_length` (llama.cpp loads it); per-layer ratios
//!   write the per-layer array sintra-rt reads.
//!
//! The file is written to a temporary beside the destination and renamed, so a crash never
//! leaves a half-written model; the source is only read.

use crate::calibration::Calibration;
use crate::model_info::ModelInfo;
use crate::recipe::{Prune, Recipe, TensorPlan};
use anyhow::{bail, Context, Result};
use formats::gguf::{Array, GgufFile, GgufWriter, Value};
use formats::quant::{self, GgmlType};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Metadata key holding the recipe a file was written with.
pub const KEY_RECIPE: &str = "sintra.recipe";

/// Where the draft of the model written to `model` goes: `model.gguf` -> `model.draft.gguf`.
pub fn draft_path(model: &Path) -> std::path::PathBuf {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    model.with_file_name(format!("{stem}.draft.gguf"))
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub bytes: u64,
    pub seconds: f64,
}

/// Write `model` compressed by `recipe` to `dst`. `calib` is required when the recipe uses an
/// importance matrix or prunes ([`Recipe::needs_calibration`]). `progress` shows a bar.
pub fn execute(
    recipe: &Recipe,
    model: &ModelInfo,
    dst: &Path,
    progress: bool,
    calib: Option<&Calibration>,
) -> Result<Written> {
    let start = Instant::now();
    if recipe.needs_calibration() && calib.is_none() {
        bail!("the recipe uses calibration statistics (`imatrix` or `ffn_prune`) and none were given: calibrate the model first");
    }
    if let Some(c) = calib {
        c.check(model)?;
    }
    let file =
        GgufFile::open(&model.path).with_context(|| format!("reading {}", model.path.display()))?;
    let plan = recipe.plan(model);
    let keep = channels_to_keep(&file, &plan, calib)?;
    let w = writer_for(&file, recipe, model, &plan)?;
    let total: u64 = plan.iter().map(|p| p.n_bytes).sum();
    let pb = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "compressing {bar:30} {bytes}/{total_bytes} {msg} [{elapsed}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let bytes = w
        .write_to_path(dst, |i, t, out| {
            let p = &plan[i];
            pb.set_message(t.name.clone());
            let view = file
                .tensor(&p.name)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if view.info.ty == p.to && p.prune.is_none() {
                out.write_all(view.data)?;
            } else {
                let bytes = convert(p, view.data, &keep, recipe, calib)
                    .map_err(|e| std::io::Error::other(format!("tensor {}: {e:#}", p.name)))?;
                out.write_all(&bytes)?;
            }
            pb.inc(p.n_bytes);
            Ok(())
        })
        .with_context(|| format!("writing {}", dst.display()))?;
    pb.finish_and_clear();
    Ok(Written {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The output file's header: the source's metadata with the layer count, per-layer arrays and
/// FFN width fixed, and the plan's tensor table.
fn writer_for(
    file: &GgufFile,
    recipe: &Recipe,
    model: &ModelInfo,
    plan: &[TensorPlan],
) -> Result<GgufWriter> {
    let h = &file.header;
    let mut w = GgufWriter::new();
    let n_layers = model.n_layers as usize;
    let kept: Vec<u32> = (0..model.n_layers)
        .filter(|l| !recipe.drop_layers.contains(l))
        .collect();
    let arch = &model.arch;
    let ff_key = format!("{arch}.feed_forward_length");
    let n_ff_out: Vec<u64> = kept
        .iter()
        .map(|&l| recipe.ffn_keep(l, model.n_ff(l)))
        .collect();
    for (k, v) in &h.metadata {
        let v = if *k == format!("{arch}.block_count") {
            match v {
                Value::U32(_) => Value::U32(kept.len() as u32),
                Value::I32(_) => Value::I32(kept.len() as i32),
                _ => Value::U64(kept.len() as u64),
            }
        } else if *k == ff_key && (recipe.ffn_prune.is_some() || !recipe.drop_layers.is_empty()) {
            let uniform = n_ff_out.windows(2).all(|x| x[0] == x[1]);
            match (uniform, n_ff_out.first()) {
                (true, Some(&n)) => match v {
                    Value::U64(_) => Value::U64(n),
                    _ => Value::U32(n as u32),
                },
                _ => Value::Array(Array::U32(n_ff_out.iter().map(|&n| n as u32).collect())),
            }
        } else if k.starts_with(&format!("{arch}.")) && !recipe.drop_layers.is_empty() {
            match v.as_array() {
                Some(a) if a.len() == n_layers => Value::Array(select(a, &kept)),
                _ => v.clone(),
            }
        } else {
            v.clone()
        };
        w.set(k, v);
    }
    if !recipe.drop_layers.is_empty() {
        let windows = h
            .sliding_window_layers(arch, n_layers)
            .with_context(|| format!("dropping layers of this {arch} model"))?;
        if let Some((_, pattern)) = windows {
            // Which layers slide follows their index where the file leaves it to a default or
            // an integer pattern: dropping layers would shift it (llama.cpp's own
            // `--prune-layers` writes files that run the wrong layers windowed). The kept
            // layers' own flags, as the per-layer array llama.cpp also reads.
            let kept_flags = kept.iter().map(|&l| pattern[l as usize]).collect();
            w.set(
                &format!("{arch}.attention.sliding_window_pattern"),
                Value::Array(Array::Bool(kept_flags)),
            );
        }
    }
    w.set(KEY_RECIPE, Value::String(recipe.to_json()));
    for p in plan {
        w.add_tensor(&p.out_name, &p.dims, p.to)
            .with_context(|| format!("planning tensor {}", p.name))?;
    }
    Ok(w)
}

/// The entries of a per-layer array at the kept layers.
fn select(a: &Array, kept: &[u32]) -> Array {
    fn pick<T: Clone>(v: &[T], kept: &[u32]) -> Vec<T> {
        kept.iter().map(|&l| v[l as usize].clone()).collect()
    }
    match a {
        Array::U8(v) => Array::U8(pick(v, kept)),
        Array::I8(v) => Array::I8(pick(v, kept)),
        Array::U16(v) => Array::U16(pick(v, kept)),
        Array::I16(v) => Array::I16(pick(v, kept)),
        Array::U32(v) => Array::U32(pick(v, kept)),
        Array::I32(v) => Array::I32(pick(v, kept)),
        Array::F32(v) => Array::F32(pick(v, kept)),
        Array::Bool(v) => Array::Bool(pick(v, kept)),
        Array::String(v) => Array::String(pick(v, kept)),
        Array::Array(v) => Array::Array(pick(v, kept)),
        Array::U64(v) => Array::U64(pick(v, kept)),
        Array::I64(v) => Array::I64(pick(v, kept)),
        Array::F64(v) => Array::F64(pick(v, kept)),
    }
}

/// For every pruned layer, the FFN channels it keeps (ascending): the largest
/// `‖W_down[:, j]‖ · rms(h_j)`.
fn channels_to_keep(
    file: &GgufFile,
    plan: &[TensorPlan],
    calib: Option<&Calibration>,
) -> Result<HashMap<u32, Vec<usize>>> {
    let mut out = HashMap::new();
    for p in plan {
        let (Some(layer), Some(Prune::Columns(keep))) = (p.layer, p.prune) else {
            continue;
        };
        let calib = calib.context("pruning needs calibration statistics")?;
        let view = file.tensor(&p.name)?;
        let n_ff = view.info.row_len() as usize;
        let act = calib
            .for_tensor(&p.name, n_ff)?
            .with_context(|| format!("no activation statistics for {}", p.name))?;
        let w = quant::dequantize(view.info.ty, view.data)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.name))?;
        let mut norm2 = vec![0f64; n_ff];
        for row in w.chunks_exact(n_ff) {
            for (n, &x) in norm2.iter_mut().zip(row) {
                *n += (x as f64) * (x as f64);
            }
        }
        let score: Vec<f64> = norm2
            .iter()
            .zip(act)
            .map(|(&n, &a)| (n * a.max(0.0) as f64).sqrt())
            .collect();
        let mut idx: Vec<usize> = (0..n_ff).collect();
        idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        idx.truncate(keep as usize);
        idx.sort_unstable();
        out.insert(layer, idx);
    }
    Ok(out)
}

/// The bytes of tensor `p`: dequantized, pruned, quantized with its importance weights.
fn convert(
    p: &TensorPlan,
    data: &[u8],
    keep: &HashMap<u32, Vec<usize>>,
    recipe: &Recipe,
    calib: Option<&Calibration>,
) -> Result<Vec<u8>> {
    let mut values = quant::dequantize(p.from, data).map_err(|e| anyhow::anyhow!("{e}"))?;
    let src_row = if p.dims.len() >= 2 {
        match p.prune {
            Some(Prune::Columns(_)) => values.len() / p.dims[1] as usize,
            _ => p.dims[0] as usize,
        }
    } else {
        values.len()
    };
    let mut importance: Option<Vec<f32>> = match (recipe.imatrix, calib) {
        (true, Some(c)) if p.dims.len() >= 2 => {
            c.for_tensor(&p.name, src_row)?.map(<[f32]>::to_vec)
        }
        _ => None,
    };
    if let (Some(prune), Some(layer)) = (p.prune, p.layer) {
        let chans = keep
            .get(&layer)
            .with_context(|| format!("no channel selection for layer {layer}"))?;
        match prune {
            Prune::Rows(_) => {
                let row = p.dims[0] as usize;
                values = chans
                    .iter()
                    .flat_map(|&j| values[j * row..(j + 1) * row].iter().copied())
                    .collect();
            }
            Prune::Columns(_) => {
                values = values
                    .chunks_exact(src_row)
                    .flat_map(|r| chans.iter().map(move |&j| r[j]))
                    .collect();
                importance = importance.map(|imp| chans.iter().map(|&j| imp[j]).collect());
            }
        }
    }
    let row_len = if p.dims.len() >= 2 {
        p.dims[0] as usize
    } else {
        values.len()
    };
    requantize(&values, p.to, row_len, importance.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Quantize `values` (rows of `row_len`) to `to`, chunks of rows in parallel: rows are
/// independent (importance weights are per column), so the bytes equal one call.
fn requantize(
    values: &[f32],
    to: GgmlType,
    row_len: usize,
    importance: Option<&[f32]>,
) -> Result<Vec<u8>, quant::QuantError> {
    if row_len == 0 || values.len() % row_len != 0 {
        return quant::quantize(to, values, row_len, importance);
    }
    let rows_per_chunk = (65536 / row_len).max(1);
    let chunks: Vec<Result<Vec<u8>, quant::QuantError>> = values
        .par_chunks(rows_per_chunk * row_len)
        .map(|c| quant::quantize(to, c, row_len, importance))
        .collect();
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::quant::GgmlType;

    #[test]
    fn parallel_requantize_matches_one_call() {
        let row = 576;
        let values: Vec<f32> = (0..row * 300)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let src = quant::quantize(GgmlType::F32, &values, row, None).unwrap();
        for to in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::IQ4_NL] {
            let one = quant::quantize(to, &values, row, None).unwrap();
            let values = quant::dequantize(GgmlType::F32, &src).unwrap();
            assert_eq!(requantize(&values, to, row, None).unwrap(), one, "{to}");
        }
    }
}
