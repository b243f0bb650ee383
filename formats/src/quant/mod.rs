//! ggml's tensor types: block layouts, sizes, and reference quantize / dequantize routines that
//! are bit-exact with ggml's (`ggml_quantize_chunk`, `ggml_get_type_traits()->to_float`).
//!
//! One file per block family, ggml's function names: `quantize_row_q4_0_ref` (the plain
//! reference), `quantize_q4_0` (rows, with optional importance weights, as ggml's
//! `quantize_q4_0`), `dequantize_row_q4_0`. This module owns the type table and the checked,
//! byte-level entry points [`quantize`] and [`dequantize`]; the family functions trust the
//! shapes they are given because these entry points checked them.

mod float;
mod iq4_nl;
mod k_quants;
mod legacy;
mod search;

pub use float::*;
pub use iq4_nl::*;
pub use k_quants::*;
pub use legacy::*;

use alloc::vec::Vec;
use core::fmt;

/// Elements per super-block of the K-quants (and of IQ4_XS, Q8_K).
pub const QK_K: usize = 256;

macro_rules! ggml_types {
    ($( $variant:ident = $id:literal, $name:literal, $block:expr, $size:expr; )*) => {
        /// A ggml tensor type, numbered as in `enum ggml_type` (these ids are stored in GGUF files).
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum GgmlType { $( $variant = $id, )* }

        impl GgmlType {
            /// Every type this crate knows the layout of, in id order.
            pub const ALL: &'static [GgmlType] = &[ $( GgmlType::$variant, )* ];

            /// The type with ggml id `id`, if it is one ggml still defines.
            pub fn from_id(id: u32) -> Option<Self> {
                match id { $( $id => Some(GgmlType::$variant), )* _ => None }
            }

            /// ggml's name for the type (`"q4_K"`, `"f16"`), as `ggml_type_name` prints it.
            pub fn name(self) -> &'static str {
                match self { $( GgmlType::$variant => $name, )* }
            }

            /// Elements per block.
            pub const fn block_size(self) -> usize {
                match self { $( GgmlType::$variant => $block, )* }
            }

            /// Bytes per block.
            pub const fn type_size(self) -> usize {
                match self { $( GgmlType::$variant => $size, )* }
            }
        }
    };
}

// Sizes are ggml's `sizeof(block_*)`; the block structs in the family files assert the same
// numbers at compile time.
ggml_types! {
    F32     = 0,  "f32",     1,    4;
    F16     = 1,  "f16",     1,    2;
    Q4_0    = 2,  "q4_0",    32,   18;
    Q4_1    = 3,  "q4_1",    32,   20;
    Q5_0    = 6,  "q5_0",    32,   22;
    Q5_1    = 7,  "q5_1",    32,   24;
    Q8_0    = 8,  "q8_0",    32,   34;
    Q8_1    = 9,  "q8_1",    32,   36;
    Q2_K    = 10, "q2_K",    QK_K, 84;
    Q3_K    = 11, "q3_K",    QK_K, 110;
    Q4_K    = 12, "q4_K",    QK_K, 144;
    Q5_K    = 13, "q5_K",    QK_K, 176;
    Q6_K    = 14, "q6_K",    QK_K, 210;
    Q8_K    = 15, "q8_K",    QK_K, 292;
    IQ2_XXS = 16, "iq2_xxs", QK_K, 66;
    IQ2_XS  = 17, "iq2_xs",  QK_K, 74;
    IQ3_XXS = 18, "iq3_xxs", QK_K, 98;
    IQ1_S   = 19, "iq1_s",   QK_K, 50;
    IQ4_NL  = 20, "iq4_nl",  32,   18;
    IQ3_S   = 21, "iq3_s",   QK_K, 110;
    IQ2_S   = 22, "iq2_s",   QK_K, 82;
    IQ4_XS  = 23, "iq4_xs",  QK_K, 136;
    I8      = 24, "i8",      1,    1;
    I16     = 25, "i16",     1,    2;
    I32     = 26, "i32",     1,    4;
    I64     = 27, "i64",     1,    8;
    F64     = 28, "f64",     1,    8;
    IQ1_M   = 29, "iq1_m",   QK_K, 56;
    BF16    = 30, "bf16",    1,    2;
    TQ1_0   = 34, "tq1_0",   QK_K, 54;
    TQ2_0   = 35, "tq2_0",   QK_K, 66;
    MXFP4   = 39, "mxfp4",   32,   17;
}

impl GgmlType {
    /// Bits per weight of the layout (`type_size * 8 / block_size`), e.g. 4.5 for Q4_0.
    pub fn bits_per_weight(self) -> f64 {
        (self.type_size() * 8) as f64 / self.block_size() as f64
    }

    /// Bytes of a row of `n` elements, or `None` if `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn row_size(self, n: usize) -> Option<usize> {
        if n % self.block_size() != 0 {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }

    /// Whether [`quantize`] can produce this type.
    pub fn can_quantize(self) -> bool {
        Self::QUANTIZABLE.contains(&self)
    }

    /// Whether [`dequantize`] can read this type.
    pub fn can_dequantize(self) -> bool {
        Self::QUANTIZABLE.contains(&self)
    }

    /// The types with a reference quantizer and dequantizer in this crate.
    pub const QUANTIZABLE: &'static [GgmlType] = &[
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ4_NL,
    ];

    /// Whether the quantizer uses importance weights when given them (ggml's imatrix path).
    pub fn uses_importance(self) -> bool {
        matches!(
            self,
            GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
                | GgmlType::IQ4_NL
        )
    }

    /// The type llama.cpp's `llama-quantize` writes instead of `self` for rows of `row_len`
    /// values that are not a whole number of `self`'s blocks (SmolLM2's 576-wide rows hold no
    /// whole 256-value super-block): Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, any other
    /// super-block type -> IQ4_NL. Types whose blocks fit are returned unchanged. The planner's
    /// executor and the test helpers both use this one copy.
    pub fn fallback_for_row(self, row_len: u64) -> GgmlType {
        if row_len % self.block_size() as u64 == 0 {
            return self;
        }
        match self {
            GgmlType::Q4_K => GgmlType::Q5_0,
            GgmlType::Q5_K => GgmlType::Q5_1,
            GgmlType::Q6_K => GgmlType::Q8_0,
            _ => GgmlType::IQ4_NL,
        }
    }

    /// Parse ggml's name (`q4_K`) case-insensitively, also accepting `Q4_K`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Upper-case like llama.cpp's tools print them: Q4_K, IQ4_NL, F16.
        for c in self.name().chars() {
            if c == 'K' {
                f.write_str("K")?;
            } else {
                fmt::Write::write_char(f, c.to_ascii_uppercase())?;
            }
        }
        Ok(())
    }
}

/// Why a quantize or dequantize call was refused. Nothing is written when an error is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The type has no (de)quantizer here.
    #[error("type {0} is not supported by the reference quantizer")]
    Unsupported(GgmlType),
    /// The row length is not a whole number of blocks.
    #[error("row length {n_per_row} is not a multiple of the {ty} block size {block}")]
    RowNotBlockAligned {
        ty: GgmlType,
        n_per_row: usize,
        block: usize,
    },
    /// The input is not a whole number of rows.
    #[error("input of {len} values is not a whole number of rows of {n_per_row}")]
    RaggedRows { len: usize, n_per_row: usize },
    /// The importance vector does not have one weight per column.
    #[error("importance vector has {got} weights, expected one per column ({n_per_row})")]
    ImportanceLength { got: usize, n_per_row: usize },
    /// The destination buffer has the wrong size.
    #[error("destination holds {got} bytes, {ty} needs {need}")]
    DestinationSize {
        ty: GgmlType,
        got: usize,
        need: usize,
    },
    /// The quantized input is not a whole number of blocks.
    #[error("{ty} data of {got} bytes is not a whole number of {size}-byte blocks")]
    RaggedBlocks {
        ty: GgmlType,
        got: usize,
        size: usize,
    },
    /// A byte buffer is not aligned for the block type.
    #[error("{ty} buffer is not aligned to {align} bytes")]
    Misaligned { ty: GgmlType, align: usize },
}

/// Quantize `src`, rows of `n_per_row` values, into `dst` (exactly `rows * row_size` bytes).
///
/// With `importance` (one weight per column, as llama.cpp's imatrix stores it) the types that
/// support it use ggml's importance-weighted search; the others ignore it, as ggml does.
/// Returns the number of bytes written.
pub fn quantize_into(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    importance: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<usize, QuantError> {
    if !ty.can_quantize() {
        return Err(QuantError::Unsupported(ty));
    }
    let block = ty.block_size();
    if n_per_row == 0 || n_per_row % block != 0 {
        return Err(QuantError::RowNotBlockAligned {
            ty,
            n_per_row,
            block,
        });
    }
    if src.len() % n_per_row != 0 {
        return Err(QuantError::RaggedRows {
            len: src.len(),
            n_per_row,
        });
    }
    if let Some(w) = importance {
        if w.len() != n_per_row {
            return Err(QuantError::ImportanceLength {
                got: w.len(),
                n_per_row,
            });
        }
    }
    let need = (src.len() / block) * ty.type_size();
    if dst.len() != need {
        return Err(QuantError::DestinationSize {
            ty,
            got: dst.len(),
            need,
        });
    }
    let w = if ty.uses_importance() {
        importance
    } else {
        None
    };
    #[allow(unused_macros)]
    macro_rules! blocks {
        ($t:ty) => {
            bytemuck::try_cast_slice_mut::<u8, $t>(dst).map_err(|_| QuantError::Misaligned {
                ty,
                align: core::mem::align_of::<$t>(),
            })?
        };
    }
    match ty {
        GgmlType::F32 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&s.to_le_bytes());
            }
        }
        GgmlType::F16 => quantize_row_f16(src, dst),
        GgmlType::BF16 => quantize_row_bf16(src, dst),
        GgmlType::Q4_0 => quantize_q4_0(src, blocks!(BlockQ4_0), n_per_row, w),
        GgmlType::Q4_1 => quantize_q4_1(src, blocks!(BlockQ4_1), n_per_row, w),
        GgmlType::Q5_0 => quantize_q5_0(src, blocks!(BlockQ5_0), n_per_row, w),
        GgmlType::Q5_1 => quantize_q5_1(src, blocks!(BlockQ5_1), n_per_row, w),
        GgmlType::Q8_0 => quantize_row_q8_0_ref(src, blocks!(BlockQ8_0)),
        GgmlType::Q8_1 => quantize_row_q8_1_ref(src, blocks!(BlockQ8_1)),
        GgmlType::IQ4_NL => quantize_iq4_nl(src, blocks!(BlockIq4Nl), n_per_row, w),
        GgmlType::Q2_K => quantize_q2_k(src, blocks!(BlockQ2K), n_per_row, w),
        GgmlType::Q3_K => quantize_q3_k(src, blocks!(BlockQ3K), n_per_row, w),
        GgmlType::Q4_K => quantize_q4_k(src, blocks!(BlockQ4K), n_per_row, w),
        GgmlType::Q5_K => quantize_q5_k(src, blocks!(BlockQ5K), n_per_row, w),
        GgmlType::Q6_K => quantize_q6_k(src, blocks!(BlockQ6K), n_per_row, w),
        GgmlType::Q8_K => quantize_row_q8_k_ref(src, blocks!(BlockQ8K)),
        _ => return Err(QuantError::Unsupported(ty)),
    }
    Ok(need)
}

/// [`quantize_into`] into a new buffer.
pub fn quantize(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    importance: Option<&[f32]>,
) -> Result<Vec<u8>, QuantError> {
    if !ty.can_quantize() {
        return Err(QuantError::Unsupported(ty));
    }
    if n_per_row == 0 || n_per_row % ty.block_size() != 0 {
        return Err(QuantError::RowNotBlockAligned {
            ty,
            n_per_row,
            block: ty.block_size(),
        });
    }
    let need = (src.len() / ty.block_size()) * ty.type_size();
    let mut out = alloc::vec![0u8; need];
    // The global allocator returns 16-byte aligned blocks on every platform we target, so the
    // block types (alignment <= 4) cast in place; otherwise go through aligned scratch.
    match quantize_into(ty, src, n_per_row, importance, &mut out) {
        Err(QuantError::Misaligned { .. }) => {
            let mut words = alloc::vec![0u64; need.div_ceil(8)];
            let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..need];
            quantize_into(ty, src, n_per_row, importance, bytes)?;
            out.copy_from_slice(bytes);
        }
        r => {
            r?;
        }
    }
    Ok(out)
}

/// Dequantize `src` (whole blocks of `ty`) into `dst`, which must hold exactly the number of
/// values those blocks encode.
pub fn dequantize_into(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !ty.can_dequantize() {
        return Err(QuantError::Unsupported(ty));
    }
    let size = ty.type_size();
    if src.len() % size != 0 {
        return Err(QuantError::RaggedBlocks {
            ty,
            got: src.len(),
            size,
        });
    }
    let n = src.len() / size * ty.block_size();
    if dst.len() != n {
        return Err(QuantError::DestinationSize {
            ty,
            got: dst.len() * 4,
            need: n * 4,
        });
    }
    #[allow(unused_macros)]
    macro_rules! blocks {
        ($t:ty) => {
            bytemuck::try_cast_slice::<u8, $t>(src).map_err(|_| QuantError::Misaligned {
                ty,
                align: core::mem::align_of::<$t>(),
            })?
        };
    }
    match ty {
        GgmlType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        GgmlType::F16 => dequantize_row_f16(src, dst),
        GgmlType::BF16 => dequantize_row_bf16(src, dst),
        GgmlType::Q4_0 => dequantize_row_q4_0(blocks!(BlockQ4_0), dst),
        GgmlType::Q4_1 => dequantize_row_q4_1(blocks!(BlockQ4_1), dst),
        GgmlType::Q5_0 => dequantize_row_q5_0(blocks!(BlockQ5_0), dst),
        GgmlType::Q5_1 => dequantize_row_q5_1(blocks!(BlockQ5_1), dst),
        GgmlType::Q8_0 => dequantize_row_q8_0(blocks!(BlockQ8_0), dst),
        GgmlType::Q8_1 => dequantize_row_q8_1(blocks!(BlockQ8_1), dst),
        GgmlType::IQ4_NL => dequantize_row_iq4_nl(blocks!(BlockIq4Nl), dst),
        GgmlType::Q2_K => dequantize_row_q2_k(blocks!(BlockQ2K), dst),
        GgmlType::Q3_K => dequantize_row_q3_k(blocks!(BlockQ3K), dst),
        GgmlType::Q4_K => dequantize_row_q4_k(blocks!(BlockQ4K), dst),
        GgmlType::Q5_K => dequantize_row_q5_k(blocks!(BlockQ5K), dst),
        GgmlType::Q6_K => dequantize_row_q6_k(blocks!(BlockQ6K), dst),
        GgmlType::Q8_K => dequantize_row_q8_k(blocks!(BlockQ8K), dst),
        _ => return Err(QuantError::Unsupported(ty)),
    }
    Ok(())
}

/// [`dequantize_into`] into a new buffer.
pub fn dequantize(ty: GgmlType, src: &[u8]) -> Result<Vec<f32>, QuantError> {
    let size = ty.type_size();
    if src.len() % size != 0 {
        return Err(QuantError::RaggedBlocks {
            ty,
            got: src.len(),
            size,
        });
    }
    let mut out = alloc::vec![0f32; src.len() / size * ty.block_size()];
    // Byte slices from a file or a Vec<u8> may be under-aligned for the block type (Q8_K holds
    // an f32): copy into aligned storage first when needed.
    if (src.as_ptr() as usize) % 8 != 0 {
        let mut words = alloc::vec![0u64; src.len().div_ceil(8)];
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..src.len()];
        bytes.copy_from_slice(src);
        dequantize_into(ty, bytes, &mut out)?;
    } else {
        dequantize_into(ty, src, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn type_table_round_trips_ids_and_names() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t as u32), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::Q4_K.to_string(), "Q4_K");
        assert_eq!(GgmlType::IQ4_NL.to_string(), "IQ4_NL");
        assert_eq!(GgmlType::Q4_0.bits_per_weight(), 4.5);
    }

    #[test]
    fn quantize_rejects_bad_shapes_without_panicking() {
        let x = [0.5f32; 64];
        for ty in [GgmlType::Q4_K, GgmlType::Q4_0] {
            let err = quantize(ty, &x, 48, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    QuantError::RowNotBlockAligned { .. } | QuantError::Unsupported(_)
                ),
                "{err}"
            );
        }
        assert!(matches!(
            quantize(GgmlType::F16, &x, 32, Some(&[1.0; 31])),
            Err(QuantError::ImportanceLength { .. })
        ));
        assert!(matches!(
            quantize(GgmlType::IQ2_XS, &x, 64, None),
            Err(QuantError::Unsupported(_))
        ));
        assert!(matches!(
            dequantize(GgmlType::Q4_0, &[0u8; 17]),
            Err(QuantError::RaggedBlocks { .. })
        ));
    }
}
