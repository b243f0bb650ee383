//! GGUF, llama.cpp's model file format (v2 and v3): a header of typed metadata and a tensor
//! table, then aligned tensor data.
//!
//! - [`parse`] reads the header from untrusted bytes into a [`Gguf`] (owned metadata, checked
//!   tensor table).
//! - [`GgufFile`] (std) memory-maps a file and hands out zero-copy tensor views.
//! - [`GgufWriter`] (std) writes a file atomically (temp file, fsync, rename), streaming tensor
//!   data; reading a file and writing it back unchanged reproduces it byte for byte.

mod reader;
mod value;
#[cfg(feature = "std")]
mod writer;

pub use reader::{parse, MAX_ARRAY_DEPTH, MAX_KEY_LEN, MAX_KV, MAX_STRING_LEN, MAX_TENSORS};
pub use value::{Array, Value, ValueType};
#[cfg(feature = "std")]
pub use writer::{GgufWriter, WriteError};

use crate::quant::GgmlType;
use alloc::string::String;
use alloc::vec::Vec;

/// `"GGUF"`.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Version written by [`GgufWriter`].
pub const GGUF_VERSION: u32 = 3;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that overrides the alignment.
pub const KEY_ALIGNMENT: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// A parsed GGUF header.
#[derive(Clone, Debug, PartialEq)]
pub struct Gguf {
    /// 2 or 3.
    pub version: u32,
    /// Alignment of tensor data (from `general.alignment`, else 32).
    pub alignment: usize,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    /// Bytes of magic, counts, metadata and tensor table.
    pub header_len: u64,
    /// File offset where the tensor data section starts (`header_len` aligned up).
    pub data_offset: u64,
}

/// One entry of the tensor table. `dims[0]` is the row length (ggml's `ne[0]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data relative to the data section.
    pub offset: u64,
    /// Product of the dimensions.
    pub n_elements: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
    /// File offset of this entry in the tensor table (for error messages).
    pub info_offset: u64,
}

impl TensorInfo {
    /// Elements per row (`ne[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of the other dimensions).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Shape as llama.cpp prints it: `[576, 49152]`.
    pub fn shape(&self) -> String {
        let mut s = String::from("[");
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&alloc::format!("{d}"));
        }
        s.push(']');
        s
    }
}

impl Gguf {
    /// Which of the `n_layer` layers of architecture `arch` attend over a sliding window, and
    /// its size, as llama.cpp reads them: `{arch}.attention.sliding_window` (absent or 0: no
    /// window), then `{arch}.attention.sliding_window_pattern`, one bool per layer or an
    /// integer `n` (layer `i` slides iff `i % n < n - 1`; 0: every layer), or where it is
    /// absent the architecture's default (gemma3: 6; another architecture's is unknown: an
    /// error naming the key).
    pub fn sliding_window_layers(
        &self,
        arch: &str,
        n_layer: usize,
    ) -> Result<Option<(usize, Vec<bool>)>, GgufError> {
        let window_key = alloc::format!("{arch}.attention.sliding_window");
        let window = match self.get(&window_key) {
            None => return Ok(None),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| GgufError::wrong_type(&window_key, "an integer", v))?,
        };
        if window == 0 {
            return Ok(None);
        }
        let key = alloc::format!("{arch}.attention.sliding_window_pattern");
        let every = |n: usize| (0..n_layer).map(|i| n == 0 || i % n < n - 1).collect();
        let slides = match self.get(&key) {
            None if arch == "gemma3" => every(6),
            None => return Err(GgufError::MissingKey(key)),
            Some(v) => match (v.as_u64(), v.as_array()) {
                (Some(n), _) => every(n as usize),
                (None, Some(Array::Bool(b))) if b.len() == n_layer => b.clone(),
                _ => {
                    return Err(GgufError::wrong_type(
                        &key,
                        "an integer or a bool per layer",
                        v,
                    ))
                }
            },
        };
        Ok(Some((window as usize, slides)))
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string value, or an error naming the key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_str()
            .ok_or_else(|| GgufError::wrong_type(key, "a string", v))
    }

    /// An unsigned integer value (any integer type that fits), or an error naming the key.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_u64()
            .ok_or_else(|| GgufError::wrong_type(key, "a non-negative integer", v))
    }

    /// A float value (f32 or f64), or an error naming the key.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_f32()
            .ok_or_else(|| GgufError::wrong_type(key, "a float", v))
    }

    /// `general.architecture`, the prefix of the model's hyper-parameter keys.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Total number of weights.
    pub fn n_parameters(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    /// Total bytes of tensor data.
    pub fn n_tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }
}

/// Why a GGUF file could not be read. Every variant names what was being read and, where it
/// comes from the file, the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("file is truncated: {what} at byte offset {offset} needs {need} bytes, {have} left")]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("{what} at byte offset {offset}: {problem}")]
    Malformed {
        what: String,
        offset: u64,
        problem: String,
    },
    #[error("metadata key '{0}' is missing")]
    MissingKey(String),
    #[error("metadata '{key}' should be {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    #[error("{0}")]
    Io(String),
}

impl GgufError {
    fn wrong_type(key: &str, expected: &'static str, v: &Value) -> Self {
        GgufError::WrongType {
            key: key.into(),
            expected,
            found: alloc::format!("{} {v}", v.value_type()),
        }
    }
}

#[cfg(feature = "std")]
pub use mapped::{GgufFile, TensorView};

#[cfg(feature = "std")]
mod mapped {
    use super::*;
    use std::fs::File;
    use std::path::{Path, PathBuf};

    /// A memory-mapped GGUF file: the parsed header plus zero-copy views of tensor data.
    pub struct GgufFile {
        pub header: Gguf,
        path: PathBuf,
        map: memmap2::Mmap,
        /// Buffers derived from tensors ([`GgufFile::derived`]: repacked weights), by key,
        /// made once and kept as long as the file.
        derived: elsa::sync::FrozenMap<String, Box<[u64]>>,
        /// Set by the first [`GgufFile::release`], which turns huge pages off for the map.
        small_pages: std::sync::Once,
    }

    impl std::fmt::Debug for GgufFile {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GgufFile")
                .field("path", &self.path)
                .field("len", &self.map.len())
                .finish_non_exhaustive()
        }
    }

    /// A tensor's table entry and its bytes inside the map.
    #[derive(Debug, Clone, Copy)]
    pub struct TensorView<'a> {
        pub info: &'a TensorInfo,
        pub data: &'a [u8],
    }

    impl GgufFile {
        /// Map and parse `path`. The file is opened read-only and never modified.
        pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
            let path = path.as_ref();
            let file = File::open(path)
                .map_err(|e| GgufError::Io(format!("cannot open {}: {e}", path.display())))?;
            let len = file
                .metadata()
                .map_err(|e| GgufError::Io(format!("cannot stat {}: {e}", path.display())))?
                .len();
            if len == 0 {
                return Err(GgufError::Truncated {
                    what: "magic".into(),
                    offset: 0,
                    need: 4,
                    have: 0,
                });
            }
            // SAFETY: the map is read-only and private to this process. Another process
            // truncating the file underneath us would fault (SIGBUS) on access; that is the
            // documented hazard of every mmap-based model loader (llama.cpp included) and we
            // never write to the map.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| GgufError::Io(format!("cannot map {}: {e}", path.display())))?;
            let header = parse(&map)?;
            Ok(GgufFile {
                header,
                path: path.to_path_buf(),
                map,
                derived: elsa::sync::FrozenMap::new(),
                small_pages: std::sync::Once::new(),
            })
        }

        /// The buffer derived under `key` (a tensor's repacked weights, say): made by `make` the
        /// first time (`len` bytes, 8-aligned), the same bytes afterwards, for as long as the
        /// file lives, like its tensor views.
        pub fn derived<E>(
            &self,
            key: &str,
            len: usize,
            make: impl FnOnce(&mut [u8]) -> Result<(), E>,
        ) -> Result<&[u8], E> {
            let words: &[u64] = match self.derived.get(key) {
                Some(w) => w,
                None => {
                    let mut w = vec![0u64; len.div_ceil(8)].into_boxed_slice();
                    make(&mut bytemuck::cast_slice_mut(&mut w)[..len])?;
                    self.derived.insert(key.to_string(), w)
                }
            };
            Ok(&bytemuck::cast_slice(words)[..len])
        }

        /// Tell the OS that the pages wholly inside `data` (a view into this file's map) will
        /// not be needed soon: they leave the process's resident memory (a later read maps
        /// them in again from the file, unchanged). For tensors whose bytes were derived into
        /// another buffer, so that the two are not both resident. Ignored for a slice outside
        /// the map and where the OS refuses.
        pub fn release(&self, data: &[u8]) {
            let base = self.map.as_ptr() as usize;
            let start = (data.as_ptr() as usize).wrapping_sub(base);
            let Some(end) = start.checked_add(data.len()) else {
                return;
            };
            if end > self.map.len() {
                return;
            }
            let page = rustix::param::page_size();
            let (first, last) = (start.div_ceil(page) * page, end / page * page);
            if first < last {
                self.small_pages.call_once(|| {
                    // A page cache of large folios (ext4 since Linux 6.16, tmpfs) maps a 2 MiB
                    // run of the file as one huge page: releasing part of it drops the whole
                    // mapping, and the next read of any page in it maps all 2 MiB again,
                    // released tensors included (measured on a Q4_K_M file whose repacked
                    // Q5_0 tensors lie between K-quant ones: 8 MiB back after the first
                    // decode, over the memory budget). Small pages only, then.
                    let _ = self.map.advise(memmap2::Advice::NoHugePage);
                });
                // SAFETY: the map is read-only and private (`open`): dropping its pages loses
                // nothing, they read back as the file's bytes, which views still see
                // unchanged. The range is inside the map (checked above).
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        last - first,
                    )
                };
            }
        }

        /// The file's path.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// The whole file.
        pub fn bytes(&self) -> &[u8] {
            &self.map
        }

        /// Size of the file in bytes.
        pub fn file_len(&self) -> u64 {
            self.map.len() as u64
        }

        /// The bytes of tensor `info` (bounds were checked when the header was parsed).
        pub fn data(&self, info: &TensorInfo) -> &[u8] {
            let start = (self.header.data_offset + info.offset) as usize;
            &self.map[start..start + info.n_bytes as usize]
        }

        /// The tensor named `name`, or an error naming it.
        pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
            let info = self
                .header
                .tensor(name)
                .ok_or_else(|| GgufError::MissingTensor(name.into()))?;
            Ok(TensorView {
                info,
                data: self.data(info),
            })
        }

        /// Every tensor, in file order.
        pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
            self.header.tensors.iter().map(|info| TensorView {
                info,
                data: self.data(info),
            })
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
