//! GGUF → Hugging Face checkpoint: the inverse of llama.cpp's `convert_hf_to_gguf.py`, for the
//! round-trip tests of issue #16 (download and `sintra convert` without a network).
//!
//! [`export`] dequantizes every tensor of a GGUF file to f32 and writes a checkpoint directory as
//! the Hub publishes one: `model.safetensors` (or shards and `model.safetensors.index.json`) with
//! the Hugging Face tensor names and layouts, `config.json`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json` and, for SentencePiece vocabularies, `tokenizer.model`.
//!
//! What the converter does per architecture, undone here:
//! - every architecture: GGUF dimensions are torch's reversed (`ne[0]`, the row length, is
//!   torch's last dimension), so the bytes keep their order and only the shape is reversed;
//!   a GGUF without `output.weight` has tied embeddings (no `lm_head.weight`);
//! - llama: `LlamaModel.permute` interleaved the two RoPE halves of every head of `q_proj`
//!   (with `n_head`) and `k_proj` (with `n_head_kv`); undone row by row;
//! - gemma3: `Gemma3RMSNorm` scales by `1 + w`, and the converter stored `w + 1` for every
//!   tensor whose name ends in `norm.weight` (all seven norms, `q_norm`/`k_norm` included);
//!   `w - 1` is written back;
//! - phi3: `qkv_proj` and `gate_up_proj` stay fused (the converter only renames them), and the
//!   `rope_factors_long/short.weight` tensors go back into `config.json`'s `rope_scaling`.
//!
//! Tensors are dequantized one at a time while the file is written (a lazy
//! [`safetensors::View`]), so memory stays near the largest tensor.

use formats::gguf::{Array, Gguf, GgufError, GgufFile, Value};
use formats::quant::{self, QuantError};
use prost::Message;
use serde_json::{json, Map, Value as Json};
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// Bumped whenever the export changes, so that a cached checkpoint is never reused.
pub const VERSION: u32 = 2;

/// The floating-point type of the exported tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    /// `torch_dtype` as `config.json` spells it.
    pub fn torch_name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::F16 => safetensors::Dtype::F16,
            Dtype::BF16 => safetensors::Dtype::BF16,
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// How to export: the tensors' type and, to exercise sharded downloads, the largest shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    pub dtype: Dtype,
    /// `None`: one `model.safetensors`. `Some(n)`: shards of at most `n` bytes of tensor data
    /// (a tensor larger than `n` gets a shard of its own), `model-00001-of-0000N.safetensors`,
    /// and `model.safetensors.index.json`.
    pub max_shard_bytes: Option<u64>,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// Every file written, relative to the directory.
    pub files: Vec<String>,
    /// Every tensor: Hugging Face name and torch shape, in GGUF order.
    pub tensors: Vec<(String, Vec<usize>)>,
}

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError {
    /// The GGUF could not be read, or lacks a key or tensor the export needs.
    Gguf(GgufError),
    /// A tensor's type has no dequantizer.
    Quant(String, QuantError),
    /// Writing the directory failed.
    Io(std::io::Error),
    /// safetensors refused a tensor.
    Safetensors(safetensors::SafeTensorError),
    /// An architecture, tensor or tokenizer this exporter does not know.
    Unsupported(String),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Gguf(e) => write!(f, "{e}"),
            ExportError::Quant(name, e) => write!(f, "tensor {name}: {e}"),
            ExportError::Io(e) => write!(f, "{e}"),
            ExportError::Safetensors(e) => write!(f, "safetensors: {e}"),
            ExportError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<GgufError> for ExportError {
    fn from(e: GgufError) -> Self {
        ExportError::Gguf(e)
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Io(e)
    }
}

impl From<safetensors::SafeTensorError> for ExportError {
    fn from(e: safetensors::SafeTensorError) -> Self {
        ExportError::Safetensors(e)
    }
}

/// The architectures the converter of issue #16 reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
}

impl Arch {
    fn from_name(name: &str) -> Result<Arch, ExportError> {
        Ok(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            _ => return Err(ExportError::Unsupported(format!("architecture {name:?}"))),
        })
    }

    /// `architectures[0]` and `model_type` of `config.json`.
    fn hf_names(self) -> (&'static str, &'static str) {
        match self {
            Arch::Llama => ("LlamaForCausalLM", "llama"),
            Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
            Arch::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
            Arch::Gemma3 => ("Gemma3ForCausalLM", "gemma3_text"),
            Arch::Phi3 => ("Phi3ForCausalLM", "phi3"),
        }
    }
}

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
struct Planned {
    hf_name: String,
    shape: Vec<usize>,
    source: String,
    fix: Fix,
}

/// Export `gguf` to a checkpoint directory `dir` (created if missing) with one
/// `model.safetensors` of `dtype`.
pub fn export(gguf: &Path, dir: &Path, dtype: Dtype) -> Result<Exported, ExportError> {
    export_with(
        gguf,
        dir,
        ExportOptions {
            dtype,
            max_shard_bytes: None,
        },
    )
}

/// The export of `gguf` with `opts`, made once under `target/test-hf` (keyed by the file's
/// name, the options and [`VERSION`]) and reused: the directory of the checkpoint.
pub fn cached(gguf: &Path, opts: ExportOptions) -> Result<PathBuf, ExportError> {
    let stem = gguf
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shards = opts
        .max_shard_bytes
        .map_or(String::new(), |n| format!("-shards{n}"));
    let name = format!("{stem}-{}{shards}-v{VERSION}", opts.dtype.torch_name());
    let root = crate::repo_root().join("target/test-hf");
    let dir = root.join(&name);
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    // Written beside, then renamed: a killed run leaves no half checkpoint under the name.
    let tmp = root.join(format!("{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    export_with(gguf, &tmp, opts)?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another test made it meanwhile.
        Err(_) if dir.join("config.json").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`export`] with every option.
pub fn export_with(gguf: &Path, dir: &Path, opts: ExportOptions) -> Result<Exported, ExportError> {
    let file = GgufFile::open(gguf)?;
    let h = &file.header;
    let arch = Arch::from_name(h.architecture()?)?;
    let plan = plan(h, arch)?;
    std::fs::create_dir_all(dir)?;
    let mut files = write_safetensors(&file, &plan, dir, opts)?;

    let config = config_json(&file, arch, opts.dtype)?;
    write_json(dir, "config.json", &config, &mut files)?;
    let mut generation = Map::new();
    generation.insert("_from_model_config".into(), json!(true));
    for k in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(v) = config.get(k) {
            generation.insert(k.into(), v.clone());
        }
    }
    write_json(
        dir,
        "generation_config.json",
        &Json::Object(generation),
        &mut files,
    )?;

    let vocab = Vocab::read(h)?;
    match vocab.model.as_str() {
        "gpt2" => {
            write_json(
                dir,
                "tokenizer.json",
                &vocab.bpe_tokenizer_json()?,
                &mut files,
            )?;
        }
        "llama" => {
            std::fs::write(dir.join("tokenizer.model"), vocab.sentencepiece_model(h))?;
            files.push("tokenizer.model".into());
            write_json(
                dir,
                "tokenizer.json",
                &vocab.spm_tokenizer_json(),
                &mut files,
            )?;
        }
        other => {
            return Err(ExportError::Unsupported(format!(
                "tokenizer.ggml.model {other:?}"
            )))
        }
    }
    let ctx = h.get_u64(&format!("{}.context_length", h.architecture()?))?;
    write_json(
        dir,
        "tokenizer_config.json",
        &vocab.tokenizer_config(h, arch, ctx),
        &mut files,
    )?;
    Ok(Exported {
        files,
        tensors: plan.into_iter().map(|p| (p.hf_name, p.shape)).collect(),
    })
}

fn write_json(
    dir: &Path,
    name: &str,
    value: &Json,
    files: &mut Vec<String>,
) -> Result<(), ExportError> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(dir.join(name), text)?;
    files.push(name.into());
    Ok(())
}

/// Every tensor's Hugging Face name, torch shape and fix, in GGUF order.
fn plan(h: &Gguf, arch: Arch) -> Result<Vec<Planned>, ExportError> {
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
fn write_safetensors(
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

/// An f32 as JSON with its shortest decimal (1e-5, not 9.999999747378752e-6): reading it as
/// f64 and rounding to f32 gives the same bits back.
fn f32_json(v: f32) -> Json {
    let shortest: f64 = v.to_string().parse().expect("an f32 prints as a number");
    json!(shortest)
}

fn opt_u64(h: &Gguf, key: &str) -> Option<u64> {
    h.get(key).and_then(Value::as_u64)
}

fn opt_f32(h: &Gguf, key: &str) -> Option<f32> {
    h.get(key).and_then(Value::as_f32)
}

/// `config.json` from the GGUF's hyper-parameters.
fn config_json(file: &GgufFile, arch: Arch, dtype: Dtype) -> Result<Json, ExportError> {
    let h = &file.header;
    let a = h.architecture()?;
    let key = |k: &str| format!("{a}.{k}");
    let n_layer = h.get_u64(&key("block_count"))?;
    let n_embd = h.get_u64(&key("embedding_length"))?;
    let n_head = h.get_u64(&key("attention.head_count"))?;
    let n_head_kv = opt_u64(h, &key("attention.head_count_kv")).unwrap_or(n_head);
    let head_dim = opt_u64(h, &key("attention.key_length"));
    let ctx = h.get_u64(&key("context_length"))?;
    let n_vocab = h
        .tensor("token_embd.weight")
        .map(|t| t.dims[1])
        .ok_or_else(|| GgufError::MissingTensor("token_embd.weight".into()))?;
    let tied = h.tensor("output.weight").is_none();
    let (class, model_type) = arch.hf_names();
    let default_theta = if arch == Arch::Gemma3 { 1e6 } else { 1e4 };

    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("hidden_size".into(), json!(n_embd));
    c.insert(
        "intermediate_size".into(),
        json!(h.get_u64(&key("feed_forward_length"))?),
    );
    c.insert("num_hidden_layers".into(), json!(n_layer));
    c.insert("num_attention_heads".into(), json!(n_head));
    c.insert("num_key_value_heads".into(), json!(n_head_kv));
    if let Some(hd) = head_dim {
        c.insert("head_dim".into(), json!(hd));
    }
    c.insert(
        "rms_norm_eps".into(),
        f32_json(h.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
    );
    c.insert(
        "rope_theta".into(),
        f32_json(opt_f32(h, &key("rope.freq_base")).unwrap_or(default_theta)),
    );
    c.insert("max_position_embeddings".into(), json!(ctx));
    c.insert("vocab_size".into(), json!(n_vocab));
    c.insert("tie_word_embeddings".into(), json!(tied));
    c.insert("torch_dtype".into(), json!(dtype.torch_name()));
    c.insert("attention_bias".into(), json!(false));
    for (typ, field) in [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("padding", "pad_token_id"),
    ] {
        if let Some(id) = opt_u64(h, &format!("tokenizer.ggml.{typ}_token_id")) {
            c.insert(field.into(), json!(id));
        }
    }
    c.insert("initializer_range".into(), json!(0.02));
    c.insert("use_cache".into(), json!(true));
    c.insert("transformers_version".into(), json!("4.55.0"));
    match arch {
        Arch::Llama => {
            c.insert("hidden_act".into(), json!("silu"));
            c.insert("mlp_bias".into(), json!(false));
            c.insert("pretraining_tp".into(), json!(1));
            c.insert("rope_scaling".into(), Json::Null);
        }
        Arch::Qwen2 | Arch::Qwen3 => {
            c.insert("hidden_act".into(), json!("silu"));
            c.insert("use_sliding_window".into(), json!(false));
            c.insert("sliding_window".into(), Json::Null);
            c.insert("max_window_layers".into(), json!(n_layer));
            c.insert("rope_scaling".into(), Json::Null);
            if arch == Arch::Qwen2 {
                // Qwen2's q/k/v biases are part of the architecture, not a flag.
                c.remove("attention_bias");
            }
        }
        Arch::Gemma3 => {
            let hd = head_dim.unwrap_or(n_embd / n_head);
            c.insert("head_dim".into(), json!(hd));
            c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            // llama.cpp scales queries by 1/sqrt(head_dim) for every size but 27B.
            c.insert("query_pre_attn_scalar".into(), json!(hd));
            c.insert("final_logit_softcapping".into(), Json::Null);
            c.insert("attn_logit_softcapping".into(), Json::Null);
            c.insert(
                "rope_local_base_freq".into(),
                f32_json(opt_f32(h, &key("rope.freq_base_swa")).unwrap_or(1e4)),
            );
            let scaling = match opt_f32(h, &key("rope.scaling.factor")) {
                Some(f) if f != 1.0 => json!({"rope_type": "linear", "factor": f32_json(f)}),
                _ => Json::Null,
            };
            c.insert("rope_scaling".into(), scaling);
            match h.sliding_window_layers(a, n_layer as usize)? {
                Some((window, slides)) => {
                    c.insert("sliding_window".into(), json!(window));
                    let types: Vec<&str> = slides
                        .iter()
                        .map(|&s| {
                            if s {
                                "sliding_attention"
                            } else {
                                "full_attention"
                            }
                        })
                        .collect();
                    c.insert("layer_types".into(), json!(types));
                    // The period of the pattern, as the 270m's config also states it.
                    let period = slides.iter().position(|&s| !s).map(|i| i + 1);
                    if let Some(p) = period {
                        if slides
                            .iter()
                            .enumerate()
                            .all(|(i, &s)| s == (i % p < p - 1))
                        {
                            c.insert("sliding_window_pattern".into(), json!(p));
                            c.insert("_sliding_window_pattern".into(), json!(p));
                        }
                    }
                }
                None => {
                    c.insert("sliding_window".into(), Json::Null);
                }
            }
        }
        Arch::Phi3 => {
            c.insert("hidden_act".into(), json!("silu"));
            let hd = head_dim.unwrap_or(n_embd / n_head);
            let rope_dim = opt_u64(h, &key("rope.dimension_count")).unwrap_or(hd);
            if rope_dim != hd {
                c.insert(
                    "partial_rotary_factor".into(),
                    json!(rope_dim as f64 / hd as f64),
                );
            }
            let orig = opt_u64(h, &key("rope.scaling.original_context_length")).unwrap_or(ctx);
            c.insert("original_max_position_embeddings".into(), json!(orig));
            c.insert(
                "sliding_window".into(),
                opt_u64(h, &key("attention.sliding_window"))
                    .filter(|&w| w > 0)
                    .map_or(Json::Null, |w| json!(w)),
            );
            let scaling = phi3_rope_scaling(file)?.unwrap_or(Json::Null);
            c.insert("rope_scaling".into(), scaling);
        }
    }
    Ok(Json::Object(c))
}

/// phi3's `rope_scaling` from its factor tensors (reads tensor data, so it needs the file).
fn phi3_rope_scaling(file: &GgufFile) -> Result<Option<Json>, ExportError> {
    let h = &file.header;
    let read = |name: &str| -> Result<Option<Vec<Json>>, ExportError> {
        let Some(info) = h.tensor(name) else {
            return Ok(None);
        };
        let data = file.data(info);
        let v = quant::dequantize(info.ty, data).map_err(|e| ExportError::Quant(name.into(), e))?;
        Ok(Some(v.into_iter().map(f32_json).collect()))
    };
    let (Some(long), Some(short)) = (
        read("rope_factors_long.weight")?,
        read("rope_factors_short.weight")?,
    ) else {
        return Ok(None);
    };
    let mut s = json!({"type": "longrope", "long_factor": long, "short_factor": short});
    // Not read by llama.cpp's converter (it derives the factor from the context lengths), but
    // transformers honours it: the file's own value, for a reader that wants it.
    if let Some(f) = opt_f32(h, "phi3.rope.scaling.attn_factor") {
        s["attention_factor"] = f32_json(f);
    }
    Ok(Some(s))
}

/// llama.cpp's token types (`llama_token_type`), also SentencePiece's piece types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// The GGUF's vocabulary.
#[derive(Debug)]
struct Vocab {
    model: String,
    pre: Option<String>,
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    merges: Vec<String>,
    bos: Option<u64>,
    eos: Option<u64>,
    unk: Option<u64>,
    pad: Option<u64>,
}

impl Vocab {
    fn read(h: &Gguf) -> Result<Vocab, ExportError> {
        let array = |key: &str| match h.get(key) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        };
        let tokens = match array("tokenizer.ggml.tokens") {
            Some(Array::String(t)) => t.clone(),
            _ => return Err(GgufError::MissingKey("tokenizer.ggml.tokens".into()).into()),
        };
        let types = match array("tokenizer.ggml.token_type") {
            Some(Array::I32(t)) => t.clone(),
            _ => vec![NORMAL; tokens.len()],
        };
        let scores = match array("tokenizer.ggml.scores") {
            Some(Array::F32(s)) => s.clone(),
            _ => vec![0.0; tokens.len()],
        };
        let merges = match array("tokenizer.ggml.merges") {
            Some(Array::String(m)) => m.clone(),
            _ => Vec::new(),
        };
        let id = |typ: &str| opt_u64(h, &format!("tokenizer.ggml.{typ}_token_id"));
        Ok(Vocab {
            model: h.get_str("tokenizer.ggml.model")?.to_string(),
            pre: h
                .get("tokenizer.ggml.pre")
                .and_then(Value::as_str)
                .map(str::to_string),
            tokens,
            types,
            scores,
            merges,
            bos: id("bos"),
            eos: id("eos"),
            unk: id("unknown"),
            pad: id("padding"),
        })
    }

    /// Tokens the converter must see as added tokens: control (special) and user-defined.
    fn added(&self) -> impl Iterator<Item = (usize, &str, bool)> {
        self.tokens.iter().enumerate().filter_map(|(i, t)| {
            let ty = self.types.get(i).copied().unwrap_or(NORMAL);
            (ty == CONTROL || ty == USER_DEFINED).then_some((i, t.as_str(), ty == CONTROL))
        })
    }

    fn added_tokens_json(&self) -> Vec<Json> {
        self.added()
            .map(|(id, content, special)| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": special})
            })
            .collect()
    }

    /// `tokenizer.json` of a byte-level BPE vocabulary (`tokenizer.ggml.model == "gpt2"`).
    fn bpe_tokenizer_json(&self) -> Result<Json, ExportError> {
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match self.pre.as_deref() {
            // SmolLM's: single digits, then GPT-2's byte-level split.
            Some("smollm") => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            Some("gpt-2") | None => byte_level,
            Some(other) => {
                return Err(ExportError::Unsupported(format!(
                    "tokenizer.ggml.pre {other:?}"
                )))
            }
        };
        let vocab: Map<String, Json> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens_json(),
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
                               "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true,
                        "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": self.merges},
        }))
    }

    /// `tokenizer.json` of a SentencePiece BPE vocabulary (gemma's layout): the merges are
    /// recovered from the vocabulary as transformers' `SentencePieceExtractor` does (every split
    /// of a piece into two pieces, ordered by the piece's score).
    fn spm_tokenizer_json(&self) -> Json {
        let ids: std::collections::HashMap<&str, usize> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
        for (id, piece) in self.tokens.iter().enumerate() {
            if self.types.get(id) != Some(&NORMAL) {
                continue;
            }
            for (cut, _) in piece.char_indices().skip(1) {
                let (l, r) = piece.split_at(cut);
                if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                    merges.push((self.scores[id], id, li, ri));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.2, a.3).cmp(&(b.2, b.3))));
        let merges: Vec<Json> = merges
            .iter()
            .map(|&(_, _, l, r)| json!([self.tokens[l], self.tokens[r]]))
            .collect();
        let vocab: Map<String, Json> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let unk = self.unk.map(|i| self.tokens[i as usize].clone());
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens_json(),
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
            "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                              "behavior": "MergedWithPrevious", "invert": false},
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        })
    }

    /// `tokenizer.model`: the vocabulary as a SentencePiece BPE model with byte fallback.
    fn sentencepiece_model(&self, h: &Gguf) -> Vec<u8> {
        let add_space_prefix = h
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let pieces = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut ty = self.types.get(i).copied().unwrap_or(NORMAL);
                // The converter turns `<unk>` into a control token through
                // added_tokens_decoder; SentencePiece itself needs exactly one unknown piece.
                if Some(i as u64) == self.unk {
                    ty = UNKNOWN;
                }
                sp::Piece {
                    piece: Some(t.clone()),
                    score: Some(self.scores.get(i).copied().unwrap_or(0.0)),
                    r#type: Some(ty),
                }
            })
            .collect();
        let id = |v: Option<u64>| Some(v.map_or(-1, |v| v as i32));
        // SentencePiece finds its special ids by these names.
        let piece = |v: Option<u64>| v.and_then(|i| self.tokens.get(i as usize)).cloned();
        let model = sp::ModelProto {
            pieces,
            trainer_spec: Some(sp::TrainerSpec {
                model_type: Some(2), // BPE
                vocab_size: Some(self.tokens.len() as i32),
                byte_fallback: Some(self.types.contains(&BYTE)),
                split_digits: Some(true),
                allow_whitespace_only_pieces: Some(true),
                unk_id: id(self.unk),
                bos_id: id(self.bos),
                eos_id: id(self.eos),
                pad_id: id(self.pad),
                unk_piece: piece(self.unk),
                bos_piece: piece(self.bos),
                eos_piece: piece(self.eos),
                pad_piece: piece(self.pad),
            }),
            normalizer_spec: Some(sp::NormalizerSpec {
                name: Some("identity".into()),
                add_dummy_prefix: Some(add_space_prefix),
                remove_extra_whitespaces: Some(false),
                escape_whitespaces: Some(true),
            }),
        };
        model.encode_to_vec()
    }

    /// `tokenizer_config.json`: special token strings, add_bos/add_eos, the chat template and
    /// `added_tokens_decoder`.
    fn tokenizer_config(&self, h: &Gguf, arch: Arch, ctx: u64) -> Json {
        let mut c = Map::new();
        for key in ["add_bos_token", "add_eos_token", "add_sep_token"] {
            if let Some(b) = h
                .get(&format!("tokenizer.ggml.{key}"))
                .and_then(Value::as_bool)
            {
                c.insert(key.into(), json!(b));
            }
        }
        let decoder: Map<String, Json> = self
            .added()
            .map(|(id, content, special)| {
                (
                    id.to_string(),
                    json!({"content": content, "lstrip": false, "normalized": false,
                           "rstrip": false, "single_word": false, "special": special}),
                )
            })
            .collect();
        c.insert("added_tokens_decoder".into(), Json::Object(decoder));
        for (name, id) in [
            ("bos_token", self.bos),
            ("eos_token", self.eos),
            ("unk_token", self.unk),
            ("pad_token", self.pad),
        ] {
            if let Some(t) = id.and_then(|i| self.tokens.get(i as usize)) {
                c.insert(name.into(), json!(t));
            }
        }
        if let Some(t) = h.get("tokenizer.chat_template").and_then(Value::as_str) {
            c.insert("chat_template".into(), json!(t));
        }
        c.insert("clean_up_tokenization_spaces".into(), json!(false));
        c.insert("model_max_length".into(), json!(ctx));
        let class = match (self.model.as_str(), arch) {
            ("gpt2", _) => "GPT2Tokenizer",
            (_, Arch::Gemma3) => "GemmaTokenizer",
            _ => "LlamaTokenizer",
        };
        if self.model == "gpt2" {
            c.insert("add_prefix_space".into(), json!(false));
        } else {
            c.insert("sp_model_kwargs".into(), json!({}));
            c.insert("spaces_between_special_tokens".into(), json!(false));
        }
        c.insert("tokenizer_class".into(), json!(class));
        Json::Object(c)
    }
}

/// The part of SentencePiece's `sentencepiece_model.proto` that a vocabulary needs (field
/// numbers from google/sentencepiece `src/sentencepiece_model.proto`).
pub mod sp {
    /// `ModelProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(message, repeated, tag = "1")]
        pub pieces: Vec<Piece>,
        #[prost(message, optional, tag = "2")]
        pub trainer_spec: Option<TrainerSpec>,
        #[prost(message, optional, tag = "3")]
        pub normalizer_spec: Option<NormalizerSpec>,
    }

    /// `ModelProto.SentencePiece`; `type`: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
    /// UNUSED 5, BYTE 6.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Piece {
        #[prost(string, optional, tag = "1")]
        pub piece: Option<String>,
        #[prost(float, optional, tag = "2")]
        pub score: Option<f32>,
        #[prost(int32, optional, tag = "3")]
        pub r#type: Option<i32>,
    }

    /// `TrainerSpec`: the fields a tokenizer reads back (model_type: UNIGRAM 1, BPE 2).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrainerSpec {
        #[prost(int32, optional, tag = "3")]
        pub model_type: Option<i32>,
        #[prost(int32, optional, tag = "4")]
        pub vocab_size: Option<i32>,
        #[prost(bool, optional, tag = "25")]
        pub split_digits: Option<bool>,
        #[prost(bool, optional, tag = "26")]
        pub allow_whitespace_only_pieces: Option<bool>,
        #[prost(bool, optional, tag = "35")]
        pub byte_fallback: Option<bool>,
        #[prost(int32, optional, tag = "40")]
        pub unk_id: Option<i32>,
        #[prost(int32, optional, tag = "41")]
        pub bos_id: Option<i32>,
        #[prost(int32, optional, tag = "42")]
        pub eos_id: Option<i32>,
        #[prost(int32, optional, tag = "43")]
        pub pad_id: Option<i32>,
        #[prost(string, optional, tag = "45")]
        pub unk_piece: Option<String>,
        #[prost(string, optional, tag = "46")]
        pub bos_piece: Option<String>,
        #[prost(string, optional, tag = "47")]
        pub eos_piece: Option<String>,
        #[prost(string, optional, tag = "48")]
        pub pad_piece: Option<String>,
    }

    /// `NormalizerSpec` (proto2 defaults: add_dummy_prefix, remove_extra_whitespaces and
    /// escape_whitespaces true, so they are always written).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NormalizerSpec {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(bool, optional, tag = "3")]
        pub add_dummy_prefix: Option<bool>,
        #[prost(bool, optional, tag = "4")]
        pub remove_extra_whitespaces: Option<bool>,
        #[prost(bool, optional, tag = "5")]
        pub escape_whitespaces: Option<bool>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{synthetic, Arch as Synth};
    use formats::quant::GgmlType;

    /// Every tensor of the checkpoint in `dir`: name → (shape, f32 values).
    fn load(dir: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let mut files = vec![dir.join("model.safetensors")];
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            let v: Json = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .unwrap()
                .values()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            shards.sort();
            shards.dedup();
            files = shards.iter().map(|s| dir.join(s)).collect();
        }
        let mut out = std::collections::BTreeMap::new();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (name, view) in st.tensors() {
                let values: Vec<f32> = match view.dtype() {
                    safetensors::Dtype::F32 => view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    safetensors::Dtype::BF16 => view
                        .data()
                        .chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                    safetensors::Dtype::F16 => view
                        .data()
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                    d => panic!("{name}: dtype {d:?}"),
                };
                out.insert(name, (view.shape().to_vec(), values));
            }
        }
        out
    }

    fn json_file(dir: &Path, name: &str) -> Json {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    }

    fn gguf_values(file: &GgufFile, name: &str) -> Vec<f32> {
        let t = file.tensor(name).unwrap();
        quant::dequantize(t.info.ty, t.data).unwrap()
    }

    fn opts(dtype: Dtype) -> ExportOptions {
        ExportOptions {
            dtype,
            max_shard_bytes: None,
        }
    }

    #[test]
    fn llama_q_and_k_are_unpermuted_bit_for_bit() {
        let gguf = synthetic(Synth::Llama, GgmlType::Q8_0);
        let dir = cached(&gguf, opts(Dtype::F32)).unwrap();
        let hf = load(&dir);
        let file = GgufFile::open(&gguf).unwrap();
        // Permuting the exported rows as llama.cpp's converter does gives the GGUF's back.
        let permute = |w: &[f32], n_head: usize, row: usize| {
            let n_rows = w.len() / row;
            let (hd, half) = (n_rows / n_head, n_rows / n_head / 2);
            let mut out = vec![0f32; w.len()];
            for h in 0..n_head {
                for i in 0..2 {
                    for j in 0..half {
                        let (dst, src) = (h * hd + 2 * j + i, h * hd + i * half + j);
                        out[dst * row..(dst + 1) * row]
                            .copy_from_slice(&w[src * row..(src + 1) * row]);
                    }
                }
            }
            out
        };
        let n = crate::synthetic::N_EMBD;
        let (shape, q) = &hf["model.layers.1.self_attn.q_proj.weight"];
        assert_eq!(shape, &[crate::synthetic::N_HEAD * 64, n]);
        assert_ne!(q, &gguf_values(&file, "blk.1.attn_q.weight"));
        assert_eq!(
            permute(q, crate::synthetic::N_HEAD, n),
            gguf_values(&file, "blk.1.attn_q.weight")
        );
        let (_, k) = &hf["model.layers.1.self_attn.k_proj.weight"];
        assert_eq!(
            permute(k, crate::synthetic::N_HEAD_KV, n),
            gguf_values(&file, "blk.1.attn_k.weight")
        );
        let (_, v) = &hf["model.layers.1.self_attn.v_proj.weight"];
        assert_eq!(v, &gguf_values(&file, "blk.1.attn_v.weight"));
        assert!(!hf.contains_key("lm_head.weight"), "tied embeddings");
        let config = json_file(&dir, "config.json");
        assert_eq!(config["architectures"][0], "LlamaForCausalLM");
        assert_eq!(config["tie_word_embeddings"], true);
        assert_eq!(config["rms_norm_eps"], 1e-6);
    }

    #[test]
    fn smollm2_exports_with_hf_names_config_and_tokenizer() {
        let dir = cached(&crate::smollm2_q4_1(), opts(Dtype::BF16)).unwrap();
        let hf = load(&dir);
        assert_eq!(hf.len(), 2 + 30 * 9);
        assert_eq!(hf["model.embed_tokens.weight"].0, [49152, 576]);
        assert_eq!(hf["model.layers.29.self_attn.k_proj.weight"].0, [192, 576]);
        assert_eq!(hf["model.layers.0.mlp.down_proj.weight"].0, [576, 1536]);
        assert_eq!(
            hf["model.layers.0.post_attention_layernorm.weight"].0,
            [576]
        );
        assert!(!hf.contains_key("lm_head.weight"));
        let c = json_file(&dir, "config.json");
        assert_eq!(
            (&c["num_attention_heads"], &c["num_key_value_heads"]),
            (&json!(9), &json!(3))
        );
        assert_eq!(c["rope_theta"], 100000.0);
        assert_eq!(c["rms_norm_eps"], 1e-5);
        assert_eq!(c["torch_dtype"], "bfloat16");
        assert!(c.get("head_dim").is_none(), "the GGUF has no key_length");
        let t = json_file(&dir, "tokenizer.json");
        assert_eq!(t["model"]["vocab"].as_object().unwrap().len(), 49152);
        assert_eq!(t["model"]["merges"].as_array().unwrap().len(), 48900);
        assert_eq!(t["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
        assert_eq!(t["added_tokens"][2]["content"], "<|im_end|>");
        let tc = json_file(&dir, "tokenizer_config.json");
        assert_eq!(tc["eos_token"], "<|im_end|>");
        assert_eq!(tc["add_bos_token"], false);
        assert!(tc["chat_template"].as_str().unwrap().contains("im_start"));
        assert!(!dir.join("tokenizer.model").exists());
    }

    #[test]
    fn gemma3_exports_norms_minus_one_and_a_sentencepiece_model() {
        let gguf = crate::model_path("gemma-3-270m-q4_k_m.gguf");
        let dir = cached(&gguf, opts(Dtype::F32)).unwrap();
        let hf = load(&dir);
        let file = GgufFile::open(&gguf).unwrap();
        assert_eq!(hf["model.embed_tokens.weight"].0, [262144, 640]);
        assert_eq!(hf["model.layers.0.self_attn.q_proj.weight"].0, [1024, 640]);
        for (hf_name, gguf_name) in [
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.3.self_attn.q_norm.weight",
                "blk.3.attn_q_norm.weight",
            ),
            (
                "model.layers.3.self_attn.k_norm.weight",
                "blk.3.attn_k_norm.weight",
            ),
            (
                "model.layers.3.input_layernorm.weight",
                "blk.3.attn_norm.weight",
            ),
            (
                "model.layers.3.post_attention_layernorm.weight",
                "blk.3.post_attention_norm.weight",
            ),
            (
                "model.layers.3.pre_feedforward_layernorm.weight",
                "blk.3.ffn_norm.weight",
            ),
            (
                "model.layers.3.post_feedforward_layernorm.weight",
                "blk.3.post_ffw_norm.weight",
            ),
        ] {
            let w = &hf[hf_name].1;
            let g = gguf_values(&file, gguf_name);
            // What a converter adding 1 in f32 reads back.
            let back: Vec<f32> = w.iter().map(|v| v + 1.0).collect();
            let exact = back.iter().zip(&g).filter(|(a, b)| a == b).count();
            assert!(
                exact * 100 >= g.len() * 99,
                "{hf_name}: {exact} of {}",
                g.len()
            );
            for (a, b) in back.iter().zip(&g) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{hf_name}");
            }
        }
        // Projections are not permuted for gemma3.
        assert_eq!(
            hf["model.layers.0.self_attn.q_proj.weight"].1,
            gguf_values(&file, "blk.0.attn_q.weight")
        );
        let c = json_file(&dir, "config.json");
        assert_eq!(c["model_type"], "gemma3_text");
        assert_eq!(c["sliding_window"], 512);
        assert_eq!(c["head_dim"], 256);
        assert_eq!(c["layer_types"][5], "full_attention");
        assert_eq!(c["layer_types"][4], "sliding_attention");
        assert_eq!(c["sliding_window_pattern"], 6);
        assert_eq!(c["tie_word_embeddings"], true);
        let sp =
            sp::ModelProto::decode(&*std::fs::read(dir.join("tokenizer.model")).unwrap()).unwrap();
        assert_eq!(sp.pieces.len(), 262144);
        assert_eq!(sp.pieces[2].piece.as_deref(), Some("<bos>"));
        assert_eq!(sp.pieces[3].r#type, Some(UNKNOWN));
        assert_eq!(sp.pieces[238].piece.as_deref(), Some("<0x00>"));
        assert_eq!(sp.pieces[238].r#type, Some(BYTE));
        assert_eq!(sp.trainer_spec.unwrap().byte_fallback, Some(true));
        assert_eq!(sp.normalizer_spec.unwrap().add_dummy_prefix, Some(false));
        let tc = json_file(&dir, "tokenizer_config.json");
        assert_eq!(
            tc["added_tokens_decoder"]["106"]["content"],
            "<end_of_turn>"
        );
        assert_eq!(tc["added_tokens_decoder"]["107"]["special"], false);
        assert_eq!(tc["add_bos_token"], true);
        assert_eq!(tc["bos_token"], "<bos>");
    }

    #[test]
    fn qwen3_and_phi3_export_with_their_names() {
        let dir = cached(&synthetic(Synth::Qwen3, GgmlType::Q8_0), opts(Dtype::F16)).unwrap();
        let hf = load(&dir);
        assert_eq!(hf["model.layers.0.self_attn.q_norm.weight"].0, [64]);
        assert_eq!(hf["model.layers.0.self_attn.k_proj.weight"].0, [128, 256]);
        let c = json_file(&dir, "config.json");
        assert_eq!(c["architectures"][0], "Qwen3ForCausalLM");
        assert_eq!(c["head_dim"], 64);

        let gguf = synthetic(Synth::Phi3, GgmlType::Q8_0);
        let dir = cached(&gguf, opts(Dtype::F32)).unwrap();
        let hf = load(&dir);
        assert_eq!(hf["model.layers.0.self_attn.qkv_proj.weight"].0, [512, 256]);
        assert_eq!(hf["model.layers.0.mlp.gate_up_proj.weight"].0, [1536, 256]);
        assert!(!hf.keys().any(|k| k.contains("rope")));
        let file = GgufFile::open(&gguf).unwrap();
        assert_eq!(
            hf["model.layers.2.mlp.gate_up_proj.weight"].1,
            gguf_values(&file, "blk.2.ffn_up.weight")
        );
        let c = json_file(&dir, "config.json");
        assert_eq!(c["rope_scaling"]["type"], "longrope");
        let long: Vec<f32> = c["rope_scaling"]["long_factor"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(long, gguf_values(&file, "rope_factors_long.weight"));
        assert_eq!(c["original_max_position_embeddings"], 256);
        let tc = json_file(&dir, "tokenizer_config.json");
        assert_eq!(tc["tokenizer_class"], "GPT2Tokenizer");
    }

    #[test]
    fn shards_and_their_index_cover_every_tensor() {
        let gguf = synthetic(Synth::Qwen2, GgmlType::Q8_0);
        let one = load(&cached(&gguf, opts(Dtype::BF16)).unwrap());
        let sharded = ExportOptions {
            dtype: Dtype::BF16,
            max_shard_bytes: Some(2 << 20),
        };
        let dir = cached(&gguf, sharded).unwrap();
        let index = json_file(&dir, "model.safetensors.index.json");
        let map = index["weight_map"].as_object().unwrap();
        assert_eq!(map.len(), one.len());
        let mut shards: Vec<&str> = map.values().map(|f| f.as_str().unwrap()).collect();
        shards.sort();
        shards.dedup();
        let n = shards.len();
        assert!(n >= 3, "{shards:?}");
        for (i, s) in shards.iter().enumerate() {
            assert_eq!(*s, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
            assert!(dir.join(s).is_file());
        }
        assert!(!dir.join("model.safetensors").exists());
        let total: u64 = one.values().map(|(_, v)| v.len() as u64 * 2).sum();
        assert_eq!(index["metadata"]["total_size"], total);
        assert_eq!(load(&dir), one);
        assert_eq!(one["model.layers.0.self_attn.q_proj.bias"].0, [256]);
    }

    #[test]
    fn minus_one_round_trips_through_plus_one() {
        for v in [1.0f32, 1.5, 0.75, 2.3, 8.1, 0.5, -0.25, 31.0] {
            assert_eq!(minus_one(v) + 1.0, v, "{v}");
        }
    }
}
