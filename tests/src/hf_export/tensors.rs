//! The checkpoint's tensors: which GGUF tensor becomes which Hugging Face tensor (name, torch
//! shape, and the fix that undoes what the converter did to it), and the safetensors files that
//! hold them. Each tensor is dequantized, fixed and encoded only when safetensors writes it
//! ([`LazyTensor`]), so memory stays near the largest tensor; with a shard limit the tensors are
//! split over `model-0000i-of-0000N.safetensors` and listed in `model.safetensors.index.json`.

use super::{write_json, Arch, Dtype, ExportError, ExportOptions};
use formats::gguf::{Gguf, GgufFile};
use formats::quant::{self, QuantError};
use serde_json::json;
use std::borrow::Cow;
use std::path::Path;

/// What a tensor needs besides renaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    None,
    /// Undo `LlamaModel.permute(w, n_head)`: rows `h*hd + 2j + i` go back to `h*hd + i*hd/2 + j`.
    Unpermute {
        n_head: usize,
    },
    /// gemma3's norms: the file holds `w + 1`.
    MinusOne,
}

/// One tensor of the checkpoint and where it comes from.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) hf_name: String,
    pub(super) shape: Vec<usize>,
    source: String,
    fix: Fix,
}

/// Every tensor's Hugging Face name, torch shape and fix, in GGUF order.
pub(super) fn plan(h: &Gguf, arch: Arch) -> Result<Vec<Planned>, ExportError> {
    let a = h.architecture()?;
    let n_head = h.get_u64(&format!("{a}.attention.head_count"))? as usize;
    let n_head_kv = h
        .get_u64(&format!("{a}.attention.head_count_kv"))
        .map_or(n_head, |n| n as usize);
    let mut out = Vec::new();
    for t in &h.tensors {
        if !t.ty.can_dequantize() {
            return Err(ExportError::Quant(
                t.name.clone(),
                QuantError::Unsupported(t.ty),
            ));
        }
        let hf_name = match t.name.as_str() {
            "token_embd.weight" => "model.embed_tokens.weight".to_string(),
            "output_norm.weight" => "model.norm.weight".to_string(),
            "output.weight" => "lm_head.weight".to_string(),
            // phi3's LongRoPE factors live in config.json.
            "rope_factors_long.weight" | "rope_factors_short.weight" if arch == Arch::Phi3 => {
                continue
            }
            name => layer_tensor(name, arch)
                .ok_or_else(|| ExportError::Unsupported(format!("{a} tensor {name}")))?,
        };
        let fix = if arch == Arch::Llama && t.name.contains(".attn_q.") {
            Fix::Unpermute { n_head }
        } else if arch == Arch::Llama && t.name.contains(".attn_k.") {
            Fix::Unpermute { n_head: n_head_kv }
        } else if arch == Arch::Gemma3 && hf_name.ends_with("norm.weight") {
            Fix::MinusOne
        } else {
            Fix::None
        };
        out.push(Planned {
            hf_name,
            shape: t.dims.iter().rev().map(|&d| d as usize).collect(),
            source: t.name.clone(),
            fix,
        });
    }
    Ok(out)
}

/// `blk.{l}.{what}` → `model.layers.{l}.{hf}` (tensor_mapping.py, read backwards).
fn layer_tensor(name: &str, arch: Arch) -> Option<String> {
    let rest = name.strip_prefix("blk.")?;
    let (layer, what) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let gemma = arch == Arch::Gemma3;
    let phi3 = arch == Arch::Phi3;
    let hf = match what {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_qkv.weight" if phi3 => "self_attn.qkv_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "post_attention_norm.weight" if gemma => "post_attention_layernorm.weight",
        "ffn_norm.weight" if gemma => "pre_feedforward_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "post_ffw_norm.weight" if gemma => "post_feedforward_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" if phi3 => "mlp.gate_up_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// A tensor dequantized, fixed and converted when safetensors asks for its bytes.
struct LazyTensor<'a> {
    file: &'a GgufFile,
    planned: &'a Planned,
    dtype: Dtype,
}

impl safetensors::View for LazyTensor<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.planned.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        // `plan` checked that every type dequantizes and the header parser checked every size,
        // so this cannot fail on a file that was planned.
        let values = hf_values(self.file, self.planned).expect("a planned tensor dequantizes");
        Cow::Owned(encode(&values, self.dtype))
    }

    fn data_len(&self) -> usize {
        self.planned.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// The tensor's values in Hugging Face layout, as f32.
fn hf_values(file: &GgufFile, p: &Planned) -> Result<Vec<f32>, ExportError> {
    let view = file.tensor(&p.source)?;
    let values = quant::dequantize(view.info.ty, view.data)
        .map_err(|e| ExportError::Quant(p.source.clone(), e))?;
    Ok(apply_fix(values, view.info.row_len() as usize, p.fix))
}

fn apply_fix(mut values: Vec<f32>, row_len: usize, fix: Fix) -> Vec<f32> {
    match fix {
        Fix::None => values,
        Fix::MinusOne => {
            for v in &mut values {
                *v = minus_one(*v);
            }
            values
        }
        Fix::Unpermute { n_head } => {
            // A bias is one value per row.
            let row_len = if values.len() == row_len { 1 } else { row_len };
            let n_rows = values.len() / row_len;
            let hd = n_rows / n_head;
            let half = hd / 2;
            let mut out = vec![0f32; values.len()];
            for r in 0..n_rows {
                let (h, rem) = (r / hd, r % hd);
                let (i, j) = (rem / half, rem % half);
                let src = h * hd + 2 * j + i;
                out[r * row_len..(r + 1) * row_len]
                    .copy_from_slice(&values[src * row_len..(src + 1) * row_len]);
            }
            out
        }
    }
}

/// gemma's `w` from the file's `w + 1`: of the f32 values near `v - 1`, the one that a
/// converter adding 1 in f32 turns back into `v`, when there is one (there is unless `v` is
/// below 0.5 with bits finer than 2^-24 can hold next to 1).
pub fn minus_one(v: f32) -> f32 {
    let w = v - 1.0;
    if w + 1.0 == v {
        return w;
    }
    // The f32 neighbours of `w` (finite, not zero, so the bits step by one).
    let step = |d: i32| f32::from_bits((w.to_bits() as i32 + d) as u32);
    for n in [step(-1), step(1)] {
        if n + 1.0 == v {
            return n;
        }
    }
    w
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

/// Write the shards (or the single file) and the index; the names of the files written.
pub(super) fn write_safetensors(
    file: &GgufFile,
    plan: &[Planned],
    dir: &Path,
    opts: ExportOptions,
) -> Result<Vec<String>, ExportError> {
    let bytes = |p: &Planned| p.shape.iter().product::<usize>() as u64 * opts.dtype.size() as u64;
    let mut shards: Vec<Vec<&Planned>> = vec![Vec::new()];
    let mut in_shard = 0u64;
    for p in plan {
        let n = bytes(p);
        if let Some(max) = opts.max_shard_bytes {
            if in_shard > 0 && in_shard + n > max {
                shards.push(Vec::new());
                in_shard = 0;
            }
        }
        shards.last_mut().expect("one shard at least").push(p);
        in_shard += n;
    }
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    let n = shards.len();
    let mut files = Vec::new();
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let name = match opts.max_shard_bytes {
            None => "model.safetensors".to_string(),
            Some(_) => format!("model-{:05}-of-{n:05}.safetensors", i + 1),
        };
        let views = shard.iter().map(|p| {
            (
                p.hf_name.clone(),
                LazyTensor {
                    file,
                    planned: p,
                    dtype: opts.dtype,
                },
            )
        });
        safetensors::serialize_to_file(views, metadata.clone(), &dir.join(&name))?;
        for p in shard {
            weight_map.insert(p.hf_name.clone(), json!(name));
        }
        files.push(name);
    }
    if opts.max_shard_bytes.is_some() {
        let total: u64 = plan.iter().map(bytes).sum();
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_json(dir, "model.safetensors.index.json", &index, &mut files)?;
    }
    Ok(files)
}
