//! Making the quantized variants of the test model with `formats`: every 2-D tensor dequantized
//! and requantized to one type, falling back as llama.cpp's `llama-quantize` does for rows that
//! are not whole super-blocks (SmolLM2's 576-wide rows): Q4_K -> Q5_0, Q5_K -> Q5_1,
//! Q6_K -> Q8_0, Q2_K/Q3_K -> IQ4_NL (`GgmlType::fallback_for_row`, shared with the planner).

use formats::gguf::{GgufFile, GgufWriter};
use formats::quant::{self, GgmlType};
use std::path::{Path, PathBuf};

/// Write `src` with every 2-D tensor requantized to `ty` (or its fallback) to `dst`.
pub fn requantize(src: &Path, dst: &Path, ty: GgmlType) {
    let file = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::from_header(&file.header);
    for t in &file.header.tensors {
        if t.dims.len() >= 2 {
            w.set_tensor_type(&t.name, ty.fallback_for_row(t.row_len()))
                .unwrap();
        }
    }
    w.write_to_path(dst, |_, t, out| {
        let view = file.tensor(&t.name).expect("tensor from the source");
        if view.info.ty == t.ty {
            return out.write_all(view.data);
        }
        let values = quant::dequantize(view.info.ty, view.data).expect("dequantize");
        out.write_all(
            &quant::quantize(t.ty, &values, t.row_len() as usize, None).expect("quantize"),
        )
    })
    .unwrap();
}

/// SmolLM2 requantized to `ty`, cached under `target/` between test runs (the source is
/// immutable, so the file depends only on `ty` and our quantizers, which the cache key names).
pub fn smollm2_as(ty: GgmlType) -> PathBuf {
    if ty == GgmlType::Q4_1 {
        return crate::smollm2_q4_1();
    }
    cached_as(&crate::smollm2_q4_1(), "SmolLM2-135M-Instruct", "Q4_1", ty)
}

/// Gemma 3 270M (the setup script's Q4_K_M file) requantized to `ty`, cached as
/// [`smollm2_as`] caches.
pub fn gemma3_as(ty: GgmlType) -> PathBuf {
    cached_as(&crate::gemma3_270m_q4_k_m(), "gemma-3-270m", "Q4_K_M", ty)
}

/// `src` requantized to `ty` as `target/test-models/<stem>.<ty>.from-<from>.gguf`, rebuilt when
/// the quantizer code is newer than the file.
fn cached_as(src: &Path, stem: &str, from: &str, ty: GgmlType) -> PathBuf {
    let dir = crate::repo_root().join("target/test-models");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{stem}.{ty}.from-{from}.gguf"));
    let stale = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_or(true, |t| {
            let lib = crate::repo_root().join("formats/src/quant");
            newest_mtime(&lib).is_some_and(|n| n > t)
        });
    if stale {
        requantize(src, &path, ty);
    }
    path
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let m = if e.path().is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().ok()?.modified().ok()
        };
        newest = newest.max(m);
    }
    newest
}
