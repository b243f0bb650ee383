//! The weights of a checkpoint: `model.safetensors`, or the shards named by
//! `model.safetensors.index.json`, memory-mapped and read a block of elements at a time.
//!
//! Headers are parsed and checked by the `safetensors` crate (offsets, lengths, dtype sizes);
//! rows are decoded from BF16, F16 or F32 into f32. Pages read are handed back to the OS after
//! each block ([`Weights::release`]), so converting a model of any size keeps only a block's
//! worth of the file resident.

use super::ConvertError;
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Element types we convert from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    F32,
    F16,
    BF16,
}

impl SourceType {
    pub fn size(self) -> usize {
        match self {
            SourceType::F32 => 4,
            SourceType::F16 | SourceType::BF16 => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SourceType::F32 => "F32",
            SourceType::F16 => "F16",
            SourceType::BF16 => "BF16",
        }
    }
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    pub ty: SourceType,
    /// Torch order (rows last-but-one, row length last).
    pub shape: Vec<u64>,
    shard: usize,
    /// Byte range in the shard's map.
    range: Range<usize>,
}

impl SourceTensor {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// Every tensor of a checkpoint, by name.
pub struct Weights {
    shards: Vec<Shard>,
    pub tensors: BTreeMap<String, SourceTensor>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field(
                "shards",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The shard files of the checkpoint in `dir`, in the index's order.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let bytes = std::fs::read(&index).map_err(io(&index))?;
        let invalid = |message: String| ConvertError::Invalid {
            path: index.clone(),
            message,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| invalid("no \"weight_map\" object".into()))?;
        let mut files: Vec<String> = Vec::new();
        for (tensor, file) in map {
            let Some(file) = file.as_str() else {
                return Err(invalid(format!(
                    "weight_map[\"{tensor}\"] is {file}, not a file name"
                )));
            };
            let plain =
                !file.is_empty() && !file.contains(['/', '\\']) && file != "." && file != "..";
            if !plain {
                return Err(invalid(format!(
                    "weight_map[\"{tensor}\"] names \"{file}\", not a file beside the index"
                )));
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
        }
        if files.is_empty() {
            return Err(invalid("weight_map is empty".into()));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(ConvertError::Missing {
        path: dir.to_path_buf(),
        why: "no model.safetensors and no model.safetensors.index.json: sintra converts safetensors checkpoints".into(),
    })
}

impl Weights {
    /// Maps and indexes the checkpoint's shards.
    pub fn open(dir: &Path) -> Result<Weights, ConvertError> {
        let mut shards = Vec::new();
        let mut tensors = BTreeMap::new();
        for path in shard_files(dir)? {
            let file = File::open(&path).map_err(io(&path))?;
            // SAFETY: the map is read-only and private; the checkpoint is ours to read and is
            // never written through it. A file truncated by another process while mapped would
            // fault on access, as with every mmap reader (llama.cpp, safetensors, candle).
            let map = unsafe { Mmap::map(&file) }.map_err(io(&path))?;
            let (n, meta) =
                SafeTensors::read_metadata(&map).map_err(|e| ConvertError::Invalid {
                    path: path.clone(),
                    message: format!("not a safetensors file: {e}"),
                })?;
            let base = 8 + n;
            let shard = shards.len();
            for (name, info) in meta.tensors() {
                let ty = match info.dtype {
                    Dtype::F32 => SourceType::F32,
                    Dtype::F16 => SourceType::F16,
                    Dtype::BF16 => SourceType::BF16,
                    other => {
                        return Err(ConvertError::Unsupported {
                            path: path.clone(),
                            what: "tensor dtype (sintra converts BF16, F16 and F32)",
                            found: format!("{other:?} in {name}"),
                        })
                    }
                };
                let (a, b) = info.data_offsets;
                let range = base + a..base + b;
                if range.end > map.len() {
                    return Err(ConvertError::Invalid {
                        path: path.clone(),
                        message: format!("tensor {name} ends past the file"),
                    });
                }
                let t = SourceTensor {
                    ty,
                    shape: info.shape.iter().map(|&d| d as u64).collect(),
                    shard,
                    range,
                };
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(ConvertError::Invalid {
                        path: path.clone(),
                        message: format!("tensor {name} is in more than one shard"),
                    });
                }
            }
            shards.push(Shard { path, map });
        }
        Ok(Weights { shards, tensors })
    }

    /// The shard files' names, comma-separated (`model.safetensors`).
    pub fn file_names(&self) -> String {
        let names: Vec<String> = self
            .shards
            .iter()
            .map(|s| {
                s.path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            })
            .collect();
        names.join(", ")
    }

    /// The file that holds `t`.
    pub fn path_of(&self, t: &SourceTensor) -> &Path {
        &self.shards[t.shard].path
    }

    /// Appends elements `elems` of `t` (in storage order) to `out` as f32.
    pub fn read(&self, t: &SourceTensor, elems: Range<u64>, out: &mut Vec<f32>) {
        let bytes = &self.shards[t.shard].map[self.byte_range(t, elems)];
        match t.ty {
            SourceType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            SourceType::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            SourceType::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
        }
    }

    /// Bytes of elements `elems` of `t` in its shard's map, clamped to the tensor.
    fn byte_range(&self, t: &SourceTensor, elems: Range<u64>) -> Range<usize> {
        let size = t.ty.size();
        let start = (t.range.start + elems.start as usize * size).min(t.range.end);
        let end = (t.range.start + elems.end as usize * size).min(t.range.end);
        start..end.max(start)
    }

    /// Hands the pages of elements `elems` of `t` back to the OS: they leave resident memory
    /// and read back from the file if touched again.
    pub fn release(&self, t: &SourceTensor, elems: Range<u64>) {
        let Range { start, end } = self.byte_range(t, elems);
        let map = &self.shards[t.shard].map;
        let page = rustix::param::page_size();
        // Whole pages inside the range only: a page shared with the next tensor is released
        // with that one.
        let (first, last) = (start.div_ceil(page) * page, end / page * page);
        if first < last && last <= map.len() {
            // SAFETY: the map is read-only and private: dropping its pages loses nothing, they
            // read back as the file's bytes. The range lies inside the map (checked above), and
            // no slice of it outlives `read`, which copies what it reads.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
            };
        }
    }
}
