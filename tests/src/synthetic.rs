//! Tiny synthetic models of the architectures people run on small devices (issue #15), written
//! with `formats` so that llama.cpp and sintra-rt can be compared on each without a network:
//! `llama`, `qwen2` (Q/K/V biases), `qwen3` (per-head Q/K norms), `gemma3` (Q/K norms,
//! post-attention and post-FFN norms, interleaved sliding-window and global layers with their
//! own RoPE bases) and `phi3` (fused QKV and gate/up tensors, LongRoPE's long and short
//! frequency factors with an attention factor; its original context is [`PHI3_ORIG_CTX`]).
//!
//! Every model has [`N_LAYER`] layers of SmolLM2's vocabulary and tokenizer metadata (borrowed
//! from the published file, so text tokenizes as a real model's would), random weights of a
//! realistic scale (each projection's rows with unit-variance outputs for unit-variance inputs,
//! norms near 1, small biases) and dimensions that exercise the kernels' row handling: rows of
//! 256 (one K-quant super-block) and 768 values (three), 4 query heads of 64 sharing 2 key/value
//! heads. Tensor names, shapes and metadata keys are the ones llama.cpp's loader reads
//! (`src/models/<arch>.cpp`, `src/llama-arch.cpp` of the vendored sources).
//!
//! Files are cached under `target/test-models` keyed by architecture, weight type and
//! [`VERSION`]; they are deterministic (a fixed seed per architecture).

use crate::rows::Rng;
use formats::gguf::{GgufFile, GgufWriter, Value};
use formats::quant::{self, GgmlType};
use std::path::PathBuf;

/// Bumped whenever the construction changes, so that a cached file is never reused.
pub const VERSION: u32 = 7;
/// Layers of every synthetic model (gemma3: two sliding-window and two global).
pub const N_LAYER: usize = 4;
/// The residual stream's width.
pub const N_EMBD: usize = 256;
/// Query heads, key/value heads and head size.
pub const N_HEAD: usize = 4;
pub const N_HEAD_KV: usize = 2;
pub const HEAD_DIM: usize = 64;
/// The FFN's hidden width.
pub const N_FF: usize = 768;
/// gemma3's sliding window (positions a sliding layer sees, its own included): small, so that
/// a few hundred tokens of text exercise it.
pub const SLIDING_WINDOW: usize = 32;

/// gemma3's post-attention and post-FFN norm weights (mean, spread): its inputs are scaled up by
/// sqrt(n_embd) and its tied classifier would echo the input token (the row's dot product with
/// itself) unless the normed layer outputs outweigh them in the residual stream: with weights
/// near 8 the echo is under two standard deviations of the other logits.
const GEMMA_POST_NORM: (f64, f64) = (8.0, 0.8);

/// phi3's `rope.scaling.original_context_length`: a context longer than this runs on its long
/// RoPE factors (llama.cpp pads contexts to multiples of 256, so 256 keeps both sides apart).
pub const PHI3_ORIG_CTX: usize = 256;
/// phi3's `rope.scaling.attn_factor`, as llama.cpp's converter computes it from the context
/// and the original context (2048 and 256 here): sqrt(1 + ln 8 / ln 256), so that a Hugging
/// Face checkpoint exported from this model converts back to the same GGUF.
const PHI3_ATTN_FACTOR: f32 = 1.172_603_9;

/// The architectures of the synthetic models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
}

impl Arch {
    pub const ALL: [Arch; 5] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Gemma3,
        Arch::Phi3,
    ];

    /// `general.architecture` as llama.cpp spells it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }
}

/// The synthetic model of `arch` with its matrices in `ty` (norms, biases and other vectors in
/// F32, as llama.cpp's converter writes them), made once and cached.
pub fn synthetic(arch: Arch, ty: GgmlType) -> PathBuf {
    let dir = crate::repo_root().join("target/test-models");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("synthetic-{}-v{VERSION}.{ty}.gguf", arch.name()));
    if !path.is_file() {
        write_to(arch, ty, &path);
    }
    path
}

/// One tensor of the model: its name, GGUF dimensions (row length first) and values.
struct Tensor {
    name: String,
    dims: Vec<u64>,
    values: Vec<f32>,
}

/// Write the synthetic model of `arch` in `ty` to `path` (atomically), uncached.
pub fn write_to(arch: Arch, ty: GgmlType, path: &std::path::Path) {
    write_with_tokenizer_of(arch, ty, path, &crate::smollm2_q4_1());
}

/// [`write_to`], the tokenizer taken from `source`: SmolLM2's file, or a GGUF holding only its
/// metadata (`gpu-models vocab`, for machines the model cannot be copied to).
pub fn write_with_tokenizer_of(
    arch: Arch,
    ty: GgmlType,
    path: &std::path::Path,
    source: &std::path::Path,
) {
    let source = GgufFile::open(source).unwrap();
    let n_vocab = match source.header.get("tokenizer.ggml.tokens") {
        Some(Value::Array(formats::gguf::Array::String(tokens))) => tokens.len(),
        other => panic!("no tokenizer.ggml.tokens array in the tokenizer's source: {other:?}"),
    };
    let a = arch.name();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(a.into()));
    // Not the architecture's name: llama.cpp keys vocabulary quirks on `general.name` ("phi3"
    // makes it look for Phi-3's special tokens, which SmolLM2's vocabulary lacks).
    w.set(
        "general.name",
        Value::String(format!("sintra synthetic v{VERSION}")),
    );
    for (k, v) in &source.header.metadata {
        if k.starts_with("tokenizer.") {
            w.set(k, v.clone());
        }
    }
    let u32v = |v: usize| Value::U32(v as u32);
    w.set(&format!("{a}.context_length"), u32v(2048));
    w.set(&format!("{a}.embedding_length"), u32v(N_EMBD));
    w.set(&format!("{a}.block_count"), u32v(N_LAYER));
    w.set(&format!("{a}.feed_forward_length"), u32v(N_FF));
    w.set(&format!("{a}.attention.head_count"), u32v(N_HEAD));
    w.set(&format!("{a}.attention.head_count_kv"), u32v(N_HEAD_KV));
    w.set(&format!("{a}.attention.key_length"), u32v(HEAD_DIM));
    w.set(&format!("{a}.attention.value_length"), u32v(HEAD_DIM));
    w.set(&format!("{a}.rope.dimension_count"), u32v(HEAD_DIM));
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-6),
    );
    w.set(
        &format!("{a}.rope.freq_base"),
        Value::F32(if arch == Arch::Gemma3 { 1e6 } else { 1e4 }),
    );
    if arch == Arch::Gemma3 {
        w.set(
            &format!("{a}.attention.sliding_window"),
            u32v(SLIDING_WINDOW),
        );
        // Every second layer global (layers 1 and 3), the others sliding.
        w.set(&format!("{a}.attention.sliding_window_pattern"), u32v(2));
        w.set(&format!("{a}.rope.freq_base_swa"), Value::F32(1e4));
    }
    if arch == Arch::Phi3 {
        w.set(
            &format!("{a}.rope.scaling.original_context_length"),
            u32v(PHI3_ORIG_CTX),
        );
        w.set(
            &format!("{a}.rope.scaling.attn_factor"),
            Value::F32(PHI3_ATTN_FACTOR),
        );
    }

    let tensors = tensors(arch, n_vocab);
    for t in &tensors {
        let t_ty = if t.dims.len() >= 2 {
            ty.fallback_for_row(t.dims[0])
        } else {
            GgmlType::F32
        };
        w.add_tensor(&t.name, &t.dims, t_ty).unwrap();
    }
    w.write_to_path(path, |i, info, out| {
        let t = &tensors[i];
        let bytes = quant::quantize(info.ty, &t.values, info.dims[0] as usize, None)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", t.name)))?;
        out.write_all(&bytes)
    })
    .unwrap();
}

/// Every tensor of `arch`'s model, in llama.cpp's names and GGUF shapes.
fn tensors(arch: Arch, n_vocab: usize) -> Vec<Tensor> {
    let mut rng = Rng::new(0x5eed_0000 + arch as u64);
    let mut out = Vec::new();
    let (q_dim, kv_dim) = (N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM);
    // A matrix of `rows` rows of `cols` values with unit-variance outputs for unit inputs.
    let matrix = |name: String, cols: usize, rows: usize, rng: &mut Rng| Tensor {
        name,
        dims: vec![cols as u64, rows as u64],
        values: (0..cols * rows)
            .map(|_| (rng.normal() / (cols as f64).sqrt()) as f32)
            .collect(),
    };
    // A norm's weights near 1 (gemma's converter stores them already offset by 1).
    let vector = |name: String, n: usize, mean: f64, spread: f64, rng: &mut Rng| Tensor {
        name,
        dims: vec![n as u64],
        values: (0..n)
            .map(|_| (mean + spread * rng.normal()) as f32)
            .collect(),
    };
    // Embeddings: small beside the layers' outputs, so that the tied classifier does not just
    // echo the input token (a row's dot product with itself would dominate); the logits' spread
    // is then about sqrt(n_embd) * EMBD_SD = 2.4, a real model's. (gemma3 multiplies its inputs
    // by sqrt(n_embd) itself.)
    const EMBD_SD: f64 = 0.15;
    let embd_scale = EMBD_SD;
    out.push(Tensor {
        name: "token_embd.weight".into(),
        dims: vec![N_EMBD as u64, n_vocab as u64],
        values: (0..N_EMBD * n_vocab)
            .map(|_| (embd_scale * rng.normal()) as f32)
            .collect(),
    });
    out.push(vector(
        "output_norm.weight".into(),
        N_EMBD,
        1.0,
        0.1,
        &mut rng,
    ));
    if arch == Arch::Phi3 {
        // LongRoPE: the slow frequencies stretched most, as Phi-3's factors are (short: up
        // to 1.2, long: up to 21).
        let n = HEAD_DIM / 2;
        let ramp = |i: usize| i as f64 / (n - 1) as f64;
        for (name, f) in [
            ("rope_factors_long.weight", 20.0f64),
            ("rope_factors_short.weight", 0.2),
        ] {
            out.push(Tensor {
                name: name.into(),
                dims: vec![n as u64],
                values: (0..n).map(|i| (1.0 + f * ramp(i).powi(2)) as f32).collect(),
            });
        }
    }
    for l in 0..N_LAYER {
        let b = |t: &str| format!("blk.{l}.{t}");
        out.push(vector(b("attn_norm.weight"), N_EMBD, 1.0, 0.1, &mut rng));
        if arch == Arch::Phi3 {
            out.push(matrix(
                b("attn_qkv.weight"),
                N_EMBD,
                q_dim + 2 * kv_dim,
                &mut rng,
            ));
        } else {
            out.push(matrix(b("attn_q.weight"), N_EMBD, q_dim, &mut rng));
            out.push(matrix(b("attn_k.weight"), N_EMBD, kv_dim, &mut rng));
            out.push(matrix(b("attn_v.weight"), N_EMBD, kv_dim, &mut rng));
        }
        if arch == Arch::Qwen2 {
            out.push(vector(b("attn_q.bias"), q_dim, 0.0, 0.1, &mut rng));
            out.push(vector(b("attn_k.bias"), kv_dim, 0.0, 0.1, &mut rng));
            out.push(vector(b("attn_v.bias"), kv_dim, 0.0, 0.1, &mut rng));
        }
        if matches!(arch, Arch::Qwen3 | Arch::Gemma3) {
            out.push(vector(
                b("attn_q_norm.weight"),
                HEAD_DIM,
                1.0,
                0.1,
                &mut rng,
            ));
            out.push(vector(
                b("attn_k_norm.weight"),
                HEAD_DIM,
                1.0,
                0.1,
                &mut rng,
            ));
        }
        out.push(matrix(b("attn_output.weight"), q_dim, N_EMBD, &mut rng));
        if arch == Arch::Gemma3 {
            let (mean, spread) = GEMMA_POST_NORM;
            out.push(vector(
                b("post_attention_norm.weight"),
                N_EMBD,
                mean,
                spread,
                &mut rng,
            ));
        }
        out.push(vector(b("ffn_norm.weight"), N_EMBD, 1.0, 0.1, &mut rng));
        if arch == Arch::Phi3 {
            // Gate and up in one matrix: the gate's rows first.
            out.push(matrix(b("ffn_up.weight"), N_EMBD, 2 * N_FF, &mut rng));
        } else {
            out.push(matrix(b("ffn_gate.weight"), N_EMBD, N_FF, &mut rng));
            out.push(matrix(b("ffn_up.weight"), N_EMBD, N_FF, &mut rng));
        }
        out.push(matrix(b("ffn_down.weight"), N_FF, N_EMBD, &mut rng));
        if arch == Arch::Gemma3 {
            let (mean, spread) = GEMMA_POST_NORM;
            out.push(vector(
                b("post_ffw_norm.weight"),
                N_EMBD,
                mean,
                spread,
                &mut rng,
            ));
        }
    }
    out
}
