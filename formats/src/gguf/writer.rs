//! Writing GGUF files: metadata and tensor table first, then tensor data streamed from a
//! callback, each tensor padded to the alignment, exactly as llama.cpp's `gguf_write_to_file`
//! lays files out. Files are written to a temporary file beside the target, fsynced, and renamed
//! into place, so a crash never leaves a half-written model behind.

use super::value::{Array, Value};
use super::{
    Gguf, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, KEY_ALIGNMENT, MAX_DIMS,
};
use crate::quant::GgmlType;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("i/o error writing {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("tensor '{name}': {problem}")]
    BadTensor { name: String, problem: String },
    #[error("metadata '{key}': {problem}")]
    BadMetadata { key: String, problem: String },
    #[error("tensor '{name}': the data callback wrote {wrote} bytes, the tensor holds {expected}")]
    WrongDataSize {
        name: String,
        wrote: u64,
        expected: u64,
    },
}

/// A GGUF file being assembled: metadata in insertion order and a tensor table. Tensor data is
/// supplied when writing, one tensor at a time, so nothing large is held in memory.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> Self {
        GgufWriter {
            version: GGUF_VERSION,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Start from an existing header: same version, metadata and tensor table (in the same
    /// order), so that writing it back with the same data reproduces the file.
    pub fn from_header(header: &Gguf) -> Self {
        GgufWriter {
            version: header.version,
            metadata: header.metadata.clone(),
            tensors: header.tensors.clone(),
        }
    }

    /// Metadata in order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The tensor table in order (offsets are recomputed when writing).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Set `key`, replacing its value in place if present, else appending it.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Remove `key` if present.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        Some(self.metadata.remove(i).1)
    }

    /// Append a tensor to the table.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<&mut Self, WriteError> {
        let bad = |problem: String| WriteError::BadTensor {
            name: name.to_string(),
            problem,
        };
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(bad("a tensor with this name already exists".into()));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(bad(format!(
                "{} dimensions, expected 1 to {MAX_DIMS}",
                dims.len()
            )));
        }
        if dims[0] % ty.block_size() as u64 != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of the {ty} block size {}",
                dims[0],
                ty.block_size()
            )));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("element count overflows".into()))?;
        let n_bytes = (n_elements / ty.block_size() as u64)
            .checked_mul(ty.type_size() as u64)
            .ok_or_else(|| bad("byte size overflows".into()))?;
        self.tensors.push(TensorInfo {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            offset: 0,
            n_elements,
            n_bytes,
            info_offset: 0,
        });
        Ok(self)
    }

    /// Change a tensor's type (its size follows). Used when requantizing.
    pub fn set_tensor_type(&mut self, name: &str, ty: GgmlType) -> Result<(), WriteError> {
        let bad = |problem: String| WriteError::BadTensor {
            name: name.to_string(),
            problem,
        };
        let t = self
            .tensors
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| bad("no such tensor".into()))?;
        if t.row_len() % ty.block_size() as u64 != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of the {ty} block size {}",
                t.row_len(),
                ty.block_size()
            )));
        }
        t.ty = ty;
        t.n_bytes = t.n_elements / ty.block_size() as u64 * ty.type_size() as u64;
        Ok(())
    }

    fn alignment(&self) -> Result<u64, WriteError> {
        match self.metadata.iter().find(|(k, _)| k == KEY_ALIGNMENT) {
            None => Ok(DEFAULT_ALIGNMENT as u64),
            Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(*a as u64),
            Some((_, v)) => Err(WriteError::BadMetadata {
                key: KEY_ALIGNMENT.into(),
                problem: format!("must be a non-zero power of two u32, found {v}"),
            }),
        }
    }

    /// Offsets (relative to the data section) each tensor will be written at.
    pub fn layout(&self) -> Result<Vec<u64>, WriteError> {
        let align = self.alignment()?;
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            out.push(offset);
            offset = (offset + t.n_bytes).div_ceil(align) * align;
        }
        Ok(out)
    }

    /// Write the file to `w`. `data(i, info, w)` must write exactly `info.n_bytes` bytes of
    /// tensor `i`; the writer adds the padding. Returns the number of bytes written.
    pub fn write_to<W: Write>(
        &self,
        w: &mut W,
        mut data: impl FnMut(usize, &TensorInfo, &mut dyn Write) -> io::Result<()>,
    ) -> Result<u64, WriteError> {
        let io_err = |source| WriteError::Io {
            path: "<stream>".into(),
            source,
        };
        let align = self.alignment()?;
        let offsets = self.layout()?;
        let mut out = Counting { inner: w, n: 0 };
        let mut header = Vec::with_capacity(1 << 16);
        header.extend_from_slice(&GGUF_MAGIC);
        header.extend_from_slice(&self.version.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v);
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&(t.ty as u32).to_le_bytes());
            header.extend_from_slice(&off.to_le_bytes());
        }
        out.write_all(&header).map_err(io_err)?;
        pad(&mut out, align).map_err(io_err)?;
        for (i, t) in self.tensors.iter().enumerate() {
            let before = out.n;
            data(i, t, &mut out).map_err(io_err)?;
            let wrote = out.n - before;
            if wrote != t.n_bytes {
                return Err(WriteError::WrongDataSize {
                    name: t.name.clone(),
                    wrote,
                    expected: t.n_bytes,
                });
            }
            pad(&mut out, align).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        Ok(out.n)
    }

    /// Write the file to `path` atomically: a temporary file in the same directory, fsynced,
    /// then renamed over `path` (and the directory fsynced). On error nothing is left behind.
    pub fn write_to_path(
        &self,
        path: &Path,
        data: impl FnMut(usize, &TensorInfo, &mut dyn Write) -> io::Result<()>,
    ) -> Result<u64, WriteError> {
        let io_err = |source| WriteError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // `.sintra.<pid>.`: a later run can tell the temporary of a killed process from one
        // being written now (the planner's `home::sweep_stale_temporaries`).
        let tmp = tempfile::Builder::new()
            .prefix(&format!(
                ".sintra.{}.{}.",
                std::process::id(),
                path.file_name()
                    .map_or("gguf".into(), |n| n.to_string_lossy())
            ))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_err)?;
        let mut buf = BufWriter::with_capacity(1 << 20, tmp.as_file());
        let n = self.write_to(&mut buf, data).map_err(|e| match e {
            WriteError::Io { source, .. } => io_err(source),
            e => e,
        })?;
        buf.flush().map_err(io_err)?;
        drop(buf);
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|e| io_err(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all(); // best effort: not every filesystem lets a directory be fsynced
        }
        Ok(n)
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counting<'_, W>, align: u64) -> io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut k = (w.n.div_ceil(align) * align - w.n) as usize;
    while k > 0 {
        let m = k.min(ZEROS.len());
        w.write_all(&ZEROS[..m])?;
        k -= m;
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&(a.element_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}
