//! An unquantized original to compare compression against (issue #13).
//!
//! The only real model here is published in Q4_1, so every recipe that keeps its Q4_1 blocks is
//! lossless against it while llama.cpp's presets requantize them: an unfair comparison. This
//! module builds a stand-in for the checkpoint the Q4_1 file was made from: every quantized
//! tensor dequantized and each weight moved by a deterministic uniform offset within half a
//! quantization step of its own block, written as F16 (what checkpoints are published in).
//!
//! Why that construction is fair: a round-to-nearest quantizer's error is close to uniform over
//! half a step, so the published Q4_1 file is a plausible quantization of this original, and no
//! quantization grid lines up with it: Q4_1 recipes of ours pay the rounding as llama.cpp's
//! presets do. Both tools start from the same file (ours through the planner, llama.cpp through
//! `llama_model_quantize`), and both are scored against it.

use formats::gguf::{GgufFile, GgufWriter};
use formats::quant::{self, GgmlType};
use std::path::{Path, PathBuf};

/// Bumped when the construction changes, so a cached file is never reused across versions.
const VERSION: u32 = 1;

/// SmolLM2-135M as an unquantized F16 original (see the module's documentation); cached under
/// `target/test-models`.
pub fn smollm2_original() -> PathBuf {
    let dir = crate::repo_root().join("target/test-models");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "SmolLM2-135M-Instruct.F16.original-v{VERSION}.gguf"
    ));
    if !path.is_file() {
        write_original(&crate::smollm2_q4_1(), &path).unwrap();
    }
    path
}

/// Write the original of `src` (a quantized GGUF) to `dst`, atomically.
pub fn write_original(src: &Path, dst: &Path) -> Result<(), String> {
    let file = GgufFile::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut w = GgufWriter::from_header(&file.header);
    for t in &file.header.tensors {
        if t.dims.len() >= 2 && t.ty.block_size() > 1 {
            w.set_tensor_type(&t.name, GgmlType::F16)
                .map_err(|e| e.to_string())?;
        }
    }
    // llama.cpp's LLAMA_FTYPE_MOSTLY_F16.
    w.set("general.file_type", formats::gguf::Value::U32(1));
    w.write_to_path(dst, |_, t, out| {
        let view = file.tensor(&t.name).expect("tensor from the source");
        if view.info.ty == t.ty {
            return out.write_all(view.data);
        }
        let mut values = quant::dequantize(view.info.ty, view.data)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", t.name)))?;
        perturb(&t.name, view.info.ty, &mut values);
        out.write_all(
            &quant::quantize(t.ty, &values, t.row_len() as usize, None)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", t.name)))?,
        )
    })
    .map_err(|e| format!("{}: {e}", dst.display()))?;
    Ok(())
}

/// Move every value by a uniform offset in ±half the quantization step of its block of 32.
fn perturb(name: &str, ty: GgmlType, values: &mut [f32]) {
    let mut rng = SplitMix(fnv1a(name.as_bytes()));
    for block in values.chunks_mut(32) {
        let half = step(ty, block) * 0.5;
        for v in block.iter_mut() {
            *v += half * (2.0 * rng.unit() - 1.0);
        }
    }
}

/// The quantization step of one block of 32 dequantized values: exact for the types whose
/// quantizer puts the block's extremes on the grid's ends (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0), else the
/// smallest gap between two distinct values (the step, or a small multiple of it).
fn step(ty: GgmlType, block: &[f32]) -> f32 {
    let (lo, hi, amax) = block
        .iter()
        .fold((f32::MAX, f32::MIN, 0f32), |(l, h, a), &v| {
            (l.min(v), h.max(v), a.max(v.abs()))
        });
    match ty {
        GgmlType::Q4_1 => (hi - lo) / 15.0,
        GgmlType::Q5_1 => (hi - lo) / 31.0,
        GgmlType::Q8_0 => amax / 127.0,
        GgmlType::Q4_0 => amax / 8.0,
        GgmlType::Q5_0 => amax / 16.0,
        _ => {
            let mut s: Vec<f32> = block.to_vec();
            s.sort_by(f32::total_cmp);
            s.windows(2)
                .map(|w| w[1] - w[0])
                .filter(|&d| d > 0.0)
                .fold(f32::INFINITY, f32::min)
                .min(amax)
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64: a small deterministic generator (the construction must be reproducible).
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_within_half_a_step_and_break_the_grid() {
        // One Q4_1 block: the grid min + d·q, q in 0..=15 (both ends present, as ggml's
        // quantizer leaves them).
        let (min, d) = (-0.3f32, 0.04f32);
        let grid: Vec<f32> = (0..32).map(|i| min + d * (i % 16) as f32).collect();
        let mut v = grid.clone();
        perturb("blk.0.ffn_up.weight", GgmlType::Q4_1, &mut v);
        assert!((step(GgmlType::Q4_1, &grid) - d).abs() < 1e-6);
        let mut off_grid = 0;
        for (a, b) in v.iter().zip(&grid) {
            assert!((a - b).abs() <= d * 0.5 + 1e-6, "{a} vs {b}");
            off_grid += ((a - b).abs() > d * 0.01) as usize;
        }
        assert!(
            off_grid >= 28,
            "only {off_grid} of 32 values moved off the grid"
        );
        // Deterministic: the same name gives the same offsets, another name others.
        let mut again = grid.clone();
        perturb("blk.0.ffn_up.weight", GgmlType::Q4_1, &mut again);
        assert_eq!(v, again);
        let mut other = grid.clone();
        perturb("blk.1.ffn_up.weight", GgmlType::Q4_1, &mut other);
        assert_ne!(v, other);
    }

    #[test]
    fn q8_0_step_is_the_scale() {
        let block: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.01).collect();
        assert!((step(GgmlType::Q8_0, &block) - 0.16 / 127.0).abs() < 1e-7);
    }
}
