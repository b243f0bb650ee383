//! The Executor: writes the GGUF file a recipe describes. Each matrix is dequantized from the
//! source and quantized to its recipe type with `formats` (llama.cpp's fallback for rows that
//! are not whole super-blocks, `GgmlType::fallback_for_row`); vectors (norms) stay F32; tensors
//! whose type does not change are copied byte for byte. The file is written to a temporary
//! beside the destination and renamed, so a crash never leaves a half-written model.

use crate::model_info::ModelInfo;
use crate::recipe::Recipe;
use anyhow::{bail, Context, Result};
use formats::gguf::{GgufFile, GgufWriter, Value};
use formats::quant;
use rayon::prelude::*;
use std::path::Path;
use std::time::Instant;

/// Metadata key holding the recipe a file was written with.
pub const KEY_RECIPE: &str = "sintra.recipe";

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub bytes: u64,
    pub seconds: f64,
}

/// Write `model` compressed by `recipe` to `dst`. `progress` shows a bar on a terminal.
pub fn execute(recipe: &Recipe, model: &ModelInfo, dst: &Path, progress: bool) -> Result<Written> {
    if let Some(key) = recipe.needs_issue_7() {
        bail!("recipe key `{key}` is not supported yet (issue #7): layer dropping, FFN pruning and importance matrices land with it");
    }
    let start = Instant::now();
    let file =
        GgufFile::open(&model.path).with_context(|| format!("reading {}", model.path.display()))?;
    let plan = recipe.plan(model);
    let mut w = GgufWriter::from_header(&file.header);
    for p in &plan {
        if p.to != p.from {
            w.set_tensor_type(&p.name, p.to)
                .with_context(|| format!("planning tensor {}", p.name))?;
        }
    }
    w.set(KEY_RECIPE, Value::String(recipe.to_json()));
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
        .write_to_path(dst, |_, t, out| {
            pb.set_message(t.name.clone());
            let view = file
                .tensor(&t.name)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if view.info.ty == t.ty {
                out.write_all(view.data)?;
            } else {
                let bytes = requantize(view.info.ty, view.data, t.ty, t.row_len() as usize)
                    .map_err(|e| std::io::Error::other(format!("tensor {}: {e}", t.name)))?;
                out.write_all(&bytes)?;
            }
            pb.inc(t.n_bytes);
            Ok(())
        })
        .with_context(|| format!("writing {}", dst.display()))?;
    pb.finish_and_clear();
    Ok(Written {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Dequantize `data` (type `from`) and quantize it to `to`, rows in parallel.
fn requantize(
    from: quant::GgmlType,
    data: &[u8],
    to: quant::GgmlType,
    row_len: usize,
) -> Result<Vec<u8>, quant::QuantError> {
    let values = quant::dequantize(from, data)?;
    if row_len == 0 || values.len() % row_len != 0 {
        return quant::quantize(to, &values, row_len, None);
    }
    // Rows are quantized independently (no importance weights), so chunks of rows can be done
    // in parallel and concatenated: the bytes equal one call over the whole tensor.
    let rows_per_chunk = (65536 / row_len).max(1);
    let chunks: Vec<Result<Vec<u8>, quant::QuantError>> = values
        .par_chunks(rows_per_chunk * row_len)
        .map(|c| quant::quantize(to, c, row_len, None))
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
            assert_eq!(
                requantize(GgmlType::F32, &src, to, row).unwrap(),
                one,
                "{to}"
            );
        }
    }
}
