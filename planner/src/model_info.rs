//! What the planner needs to know about a source model: its tensors, layers and size, read
//! from the GGUF header (no tensor data is touched).

use anyhow::{Context, Result};
use formats::gguf::GgufFile;
use formats::quant::GgmlType;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One tensor of the source model.
#[derive(Debug, Clone, Serialize)]
pub struct TensorMeta {
    pub name: String,
    #[serde(serialize_with = "ser_type")]
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorMeta {
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Whether this is a matrix (quantized by recipes) rather than a norm or bias vector.
    pub fn is_matrix(&self) -> bool {
        self.dims.iter().filter(|&&d| d > 1).count() >= 2
    }
}

pub fn ser_type<S: serde::Serializer>(t: &GgmlType, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// The source model, summarized.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: String,
    pub arch: String,
    pub n_layers: u32,
    pub n_params: u64,
    pub file_len: u64,
    pub tensor_bytes: u64,
    /// Bytes before the tensor data (metadata, vocabulary, tensor table).
    pub header_bytes: u64,
    /// Whether the classifier reuses `token_embd.weight` (no `output.weight`).
    pub tied_embeddings: bool,
    /// A cheap identity for the history database: size, tensor table and the first MiB.
    pub fingerprint: String,
    #[serde(skip)]
    pub tensors: Vec<TensorMeta>,
}

impl ModelInfo {
    pub fn load(path: &Path) -> Result<ModelInfo> {
        let file = GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
        let h = &file.header;
        let arch = h.architecture().unwrap_or("unknown").to_string();
        let n_layers = h
            .get_u64(&format!("{arch}.block_count"))
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| {
                // No block_count: count the blk.N prefixes.
                h.tensors
                    .iter()
                    .filter_map(|t| layer_of(&t.name))
                    .max()
                    .map_or(0, |m| m + 1)
            });
        let tensors: Vec<TensorMeta> = h
            .tensors
            .iter()
            .map(|t| TensorMeta {
                name: t.name.clone(),
                ty: t.ty,
                dims: t.dims.clone(),
                n_elements: t.n_elements,
                n_bytes: t.n_bytes,
            })
            .collect();
        let name = h
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                path.file_stem()
                    .map_or("model".into(), |s| s.to_string_lossy().into_owned())
            });
        let file_len = file.file_len();
        let tensor_bytes = h.n_tensor_bytes();
        let fingerprint = fingerprint(file.bytes(), &tensors);
        Ok(ModelInfo {
            path: path.to_path_buf(),
            name,
            arch,
            n_layers,
            n_params: h.n_parameters(),
            file_len,
            tensor_bytes,
            header_bytes: file_len.saturating_sub(tensor_bytes),
            tied_embeddings: !tensors.iter().any(|t| t.name == "output.weight"),
            fingerprint,
            tensors,
        })
    }

    /// FFN channels of layer `layer` (rows of its `ffn_gate`), 0 if it has no FFN.
    pub fn n_ff(&self, layer: u32) -> u64 {
        let name = format!("blk.{layer}.ffn_gate.weight");
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.dims.get(1).copied())
            .unwrap_or(0)
    }

    /// Bits per weight of the source.
    pub fn bpw(&self) -> f64 {
        self.tensor_bytes as f64 * 8.0 / self.n_params.max(1) as f64
    }
}

/// `blk.N.` -> N.
pub fn layer_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("blk.")?;
    rest.split('.').next()?.parse().ok()
}

/// FNV-1a over the size, the tensor table and the first MiB: stable for a file, cheap for a
/// large one, and different for any two models a user would confuse.
fn fingerprint(bytes: &[u8], tensors: &[TensorMeta]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(bytes.len() as u64).to_le_bytes());
    for t in tensors {
        eat(t.name.as_bytes());
        eat(&(t.ty as u32).to_le_bytes());
        for d in &t.dims {
            eat(&d.to_le_bytes());
        }
    }
    eat(&bytes[..bytes.len().min(1 << 20)]);
    format!("{h:016x}")
}
