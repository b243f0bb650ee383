//! Parsing a GGUF header (metadata and tensor table) from untrusted bytes.
//!
//! Every count and length read from the file is checked against the bytes that remain before
//! anything is allocated for it, so a 40-byte file claiming 2^60 tensors costs nothing; sizes use
//! checked arithmetic; errors carry the byte offset of the field and what was wrong with it.

use super::value::{Array, Value, ValueType};
use super::{Gguf, GgufError, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::quant::GgmlType;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Longest string accepted (keys, values, tensor names). Chat templates run to tens of KB.
pub const MAX_STRING_LEN: u64 = 16 << 20;
/// Longest key accepted.
pub const MAX_KEY_LEN: u64 = 64 << 10;
/// Deepest nesting of arrays of arrays.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most tensors accepted in one file (the largest models have tens of thousands).
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata entries accepted.
pub const MAX_KV: u64 = 1 << 20;

/// A bounds-checked little-endian cursor over the file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                need: n as u64,
                have: self.remaining() as u64,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn malformed(&self, offset: usize, what: String, problem: String) -> GgufError {
        GgufError::Malformed {
            what,
            offset: offset as u64,
            problem,
        }
    }

    /// A GGUF string: u64 length, then UTF-8 bytes (not NUL-terminated).
    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let at = self.pos;
        let len = self.u64(&|| format!("{} length", what()))?;
        if len > max {
            return Err(self.malformed(
                at,
                what(),
                format!("string length {len} exceeds the cap of {max}"),
            ));
        }
        let bytes = self.take(len as usize, what)?;
        match core::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => {
                Err(self.malformed(at + 8, what(), format!("string is not valid UTF-8 ({e})")))
            }
        }
    }

    /// An element count, capped by what the remaining bytes could possibly hold.
    fn count(
        &mut self,
        min_elem: usize,
        cap: u64,
        what: &dyn Fn() -> String,
    ) -> Result<usize, GgufError> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = (self.remaining() / min_elem.max(1)) as u64;
        if n > cap || n > fits {
            return Err(self.malformed(
                at,
                what(),
                format!(
                    "count {n} is impossible: at most {} fit in the {} bytes left",
                    fits.min(cap),
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }
}

/// Parse the header of a GGUF file. `bytes` is the whole file (usually a memory map): the tensor
/// table is checked against it, so every [`TensorInfo`] returned addresses bytes that exist.
pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.array::<4>(&|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(c.malformed(
                4,
                "version".into(),
                "GGUF v1 (32-bit counts) is not supported; re-convert the model".into(),
            ))
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(c.malformed(
                4,
                "version".into(),
                "big-endian GGUF files are not supported".into(),
            ))
        }
        v => {
            return Err(c.malformed(
                4,
                "version".into(),
                format!("unsupported version {v} (supported: 2, 3)"),
            ))
        }
    }
    let tensor_count_at = c.pos;
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.count(8 + 4 + 1, MAX_KV, &|| "metadata entry count".into())?;
    // The tensor table follows the metadata; its count is checked against the bytes left once
    // the metadata has been read.

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv);
    for i in 0..n_kv {
        let key_at = c.pos;
        let key = c.string(MAX_KEY_LEN, &|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(c.malformed(key_at, format!("metadata key #{i}"), "key is empty".into()));
        }
        if metadata.iter().any(|(k, _)| *k == key) {
            return Err(c.malformed(
                key_at,
                format!("metadata key #{i}"),
                format!("duplicate key '{key}'"),
            ));
        }
        let value = read_value(&mut c, &key)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == super::KEY_ALIGNMENT) {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => *a as usize,
        Some((_, v)) => {
            return Err(GgufError::Malformed {
                what: format!("metadata '{}'", super::KEY_ALIGNMENT),
                offset: 0,
                problem: format!(
                    "alignment must be a non-zero power of two u32, found {v} ({})",
                    v.value_type()
                ),
            })
        }
    };

    let min_tensor_info = 8 + 4 + 4 + 8; // empty name, 0 dims, type, offset
    let fits = (c.remaining() / min_tensor_info) as u64;
    if n_tensors > MAX_TENSORS || n_tensors > fits {
        return Err(c.malformed(
            tensor_count_at,
            "tensor count".into(),
            format!(
                "count {n_tensors} is impossible: at most {} tensor infos fit in the file",
                fits.min(MAX_TENSORS)
            ),
        ));
    }
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors as usize {
        let info = read_tensor_info(&mut c, i)?;
        if tensors.iter().any(|t| t.name == info.name) {
            return Err(c.malformed(
                c.pos,
                format!("tensor #{i}"),
                format!("duplicate tensor name '{}'", info.name),
            ));
        }
        tensors.push(info);
    }

    let header_end = c.pos as u64;
    let data_offset = align_up(header_end, alignment as u64)
        .ok_or_else(|| c.malformed(c.pos, "data section".into(), "offset overflows".into()))?;
    let file_len = bytes.len() as u64;
    if data_offset > file_len && !tensors.is_empty() {
        return Err(GgufError::Truncated {
            what: "tensor data section".into(),
            offset: header_end,
            need: data_offset - header_end,
            have: file_len - header_end,
        });
    }
    let data_len = file_len.saturating_sub(data_offset);
    for t in &tensors {
        if t.offset % alignment as u64 != 0 {
            return Err(GgufError::Malformed {
                what: format!("tensor '{}' offset", t.name),
                offset: t.info_offset,
                problem: format!(
                    "offset {} is not a multiple of the alignment {alignment}",
                    t.offset
                ),
            });
        }
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|e| e > data_len) {
            return Err(GgufError::Malformed {
                what: format!("tensor '{}' data", t.name),
                offset: t.info_offset,
                problem: format!(
                    "{} bytes at data offset {} run past the end of the file (data section holds {data_len} bytes)",
                    t.n_bytes, t.offset
                ),
            });
        }
    }

    Ok(Gguf {
        version,
        alignment,
        metadata,
        tensors,
        header_len: header_end,
        data_offset,
    })
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? / a * a)
}

fn read_value(c: &mut Cursor<'_>, key: &str) -> Result<Value, GgufError> {
    let at = c.pos;
    let tag = c.u32(&|| format!("type of '{key}'"))?;
    let ty = ValueType::from_tag(tag).ok_or_else(|| {
        c.malformed(
            at,
            format!("type of '{key}'"),
            format!("unknown value type {tag}"),
        )
    })?;
    if ty == ValueType::Array {
        return Ok(Value::Array(read_array(c, key, 1)?));
    }
    read_scalar(c, ty, key)
}

fn read_scalar(c: &mut Cursor<'_>, ty: ValueType, key: &str) -> Result<Value, GgufError> {
    let what = || format!("value of '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(&what)?[0]),
        ValueType::I8 => Value::I8(c.array::<1>(&what)?[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        ValueType::Bool => Value::Bool(read_bool(c, &what)?),
        ValueType::String => Value::String(c.string(MAX_STRING_LEN, &what)?),
        ValueType::Array => unreachable!("arrays are read by read_array"),
    })
}

fn read_bool(c: &mut Cursor<'_>, what: &dyn Fn() -> String) -> Result<bool, GgufError> {
    let at = c.pos;
    match c.array::<1>(what)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(c.malformed(at, what(), format!("bool byte is {b}, expected 0 or 1"))),
    }
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array, GgufError> {
    let at = c.pos;
    if depth > MAX_ARRAY_DEPTH {
        return Err(c.malformed(
            at,
            format!("array '{key}'"),
            format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
        ));
    }
    let tag = c.u32(&|| format!("element type of array '{key}'"))?;
    let ty = ValueType::from_tag(tag).ok_or_else(|| {
        c.malformed(
            at,
            format!("element type of array '{key}'"),
            format!("unknown value type {tag}"),
        )
    })?;
    let n = c.count(ty.min_size(), u64::MAX, &|| {
        format!("length of array '{key}'")
    })?;

    // Fixed-size elements: one bounds check for the whole run, then decode.
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            let size = core::mem::size_of::<$t>();
            let raw = c.take(n * size, &|| format!("elements of array '{key}'"))?;
            Array::$variant(
                raw.chunks_exact(size)
                    .map(|b| <$t>::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            )
        }};
    }
    Ok(match ty {
        ValueType::U8 => Array::U8(
            c.take(n, &|| format!("elements of array '{key}'"))?
                .to_vec(),
        ),
        ValueType::I8 => Array::I8(
            c.take(n, &|| format!("elements of array '{key}'"))?
                .iter()
                .map(|&b| b as i8)
                .collect(),
        ),
        ValueType::U16 => fixed!(U16, u16),
        ValueType::I16 => fixed!(I16, i16),
        ValueType::U32 => fixed!(U32, u32),
        ValueType::I32 => fixed!(I32, i32),
        ValueType::F32 => fixed!(F32, f32),
        ValueType::U64 => fixed!(U64, u64),
        ValueType::I64 => fixed!(I64, i64),
        ValueType::F64 => fixed!(F64, f64),
        ValueType::Bool => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(read_bool(c, &|| format!("element {i} of array '{key}'"))?);
            }
            Array::Bool(v)
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(c.string(MAX_STRING_LEN, &|| format!("element {i} of array '{key}'"))?);
            }
            Array::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}

fn read_tensor_info(c: &mut Cursor<'_>, i: usize) -> Result<TensorInfo, GgufError> {
    let info_offset = c.pos as u64;
    let name = c.string(MAX_KEY_LEN, &|| format!("name of tensor #{i}"))?;
    let at = c.pos;
    let n_dims = c.u32(&|| format!("dimension count of tensor '{name}'"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(c.malformed(
            at,
            format!("tensor '{name}' dimension count"),
            format!("{n_dims} dimensions, at most {MAX_DIMS} allowed"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut n_elements: u64 = 1;
    for d in 0..n_dims as usize {
        let at = c.pos;
        let dim = c.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
        // ggml stores dimensions as int64_t; anything above i64::MAX is negative there.
        n_elements = n_elements
            .checked_mul(dim)
            .filter(|&n| n <= i64::MAX as u64 && dim <= i64::MAX as u64)
            .ok_or_else(|| {
                c.malformed(
                    at,
                    format!("tensor '{name}' dimension {d}"),
                    format!("dimension {dim} makes the element count overflow"),
                )
            })?;
        dims.push(dim);
    }
    let at = c.pos;
    let tag = c.u32(&|| format!("type of tensor '{name}'"))?;
    let ty = GgmlType::from_id(tag).ok_or_else(|| {
        c.malformed(
            at,
            format!("tensor '{name}' type"),
            format!("unknown ggml type {tag}"),
        )
    })?;
    let row = dims.first().copied().unwrap_or(1);
    if row % ty.block_size() as u64 != 0 {
        return Err(c.malformed(
            at,
            format!("tensor '{name}' type"),
            format!(
                "row length {row} is not a multiple of the {ty} block size {}",
                ty.block_size()
            ),
        ));
    }
    let n_bytes = (n_elements / ty.block_size() as u64)
        .checked_mul(ty.type_size() as u64)
        .ok_or_else(|| {
            c.malformed(
                at,
                format!("tensor '{name}' size"),
                "byte size overflows".into(),
            )
        })?;
    let offset = c.u64(&|| format!("data offset of tensor '{name}'"))?;
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_elements,
        n_bytes,
        info_offset,
    })
}
