//! The type-erased entry points the runtime calls: weights straight from the (mmap'd) GGUF
//! tensor data, activations in the runtime's own buffers, both as bytes.
//!
//! Every call checks its sizes and alignments up front and returns a [`KernelError`] instead
//! of panicking; after the checks the typed kernels of a [`KernelTable`] run on in-place
//! casts. The free functions use the table [`crate::active`] picked for this CPU; the same
//! calls on a given table (`table.matvec(...)`) let tests and benchmarks pit instruction sets
//! against each other in one process.
//!
//! **Alignment.** Blocks are read in place, so buffers must be aligned for them: weight rows to
//! 2 bytes (the blocks' f16 fields; F32 weights to 4), which whole-block rows inside GGUF
//! tensor data (32-byte aligned) always are; activation buffers to 8 bytes (Q8_K's f32 scale
//! needs 4, the others 2; 8 covers every type).

use crate::dispatch::{active, KernelTable};
use crate::error::{KernelError, Operand};
use crate::scalar;
use bytemuck::Pod;
use core::ops::Range;
use formats::quant::{
    BlockIq4Nl, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
};

/// The weight types with a kernel, in ggml id order.
pub const WEIGHT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::BF16,
];

/// Whether weights of type `w` have a kernel here ([`WEIGHT_TYPES`]).
pub fn supported(w: GgmlType) -> bool {
    WEIGHT_TYPES.contains(&w)
}

/// The type the activation row is quantized to for weights of type `w`: ggml's
/// `type_traits_cpu[w].vec_dot_type`. Defined for every type as ggml defines it (F32 where
/// ggml has no entry), meaningful where [`supported`] is true.
pub fn vec_dot_type(w: GgmlType) -> GgmlType {
    use GgmlType::*;
    match w {
        F16 => F16,
        BF16 => BF16,
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | MXFP4 => Q8_0,
        Q4_1 | Q5_1 | Q8_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S | IQ2_S
        | IQ4_XS | IQ1_M | TQ1_0 | TQ2_0 => Q8_K,
        _ => F32,
    }
}

/// The byte sizes of one row of `n` values: (weights, quantized activation).
pub(crate) fn row_bytes(w: GgmlType, n: usize) -> Result<(usize, usize), KernelError> {
    if !supported(w) {
        return Err(KernelError::Unsupported(w));
    }
    let block = w.block_size();
    if n == 0 || !n.is_multiple_of(block) {
        return Err(KernelError::RowLength { ty: w, n, block });
    }
    // The vec_dot type has the same block size, so `n` is whole blocks of it too.
    match (w.row_size(n), vec_dot_type(w).row_size(n)) {
        (Some(weights), Some(act)) => Ok((weights, act)),
        _ => Err(KernelError::RowTooLong { ty: w, n }),
    }
}

/// Bytes of the quantized activation for a row of `n` values multiplied with weights of type
/// `w` (the size [`quantize_activation`] writes and [`vec_dot`] / [`matvec`] read).
pub fn activation_bytes(w: GgmlType, n: usize) -> Result<usize, KernelError> {
    row_bytes(w, n).map(|(_, act)| act)
}

/// The number of rows of `row_bytes` bytes in the weight matrix `w_bytes` (of type `w`),
/// checking that it is whole rows and that `rows` lies within them.
pub(crate) fn weight_rows(
    w: GgmlType,
    w_bytes: &[u8],
    row_bytes: usize,
    rows: &Range<usize>,
) -> Result<usize, KernelError> {
    if !w_bytes.len().is_multiple_of(row_bytes) {
        return Err(KernelError::WeightMatrixSize {
            ty: w,
            got: w_bytes.len(),
            row_bytes,
        });
    }
    let nrows = w_bytes.len() / row_bytes;
    if rows.start > rows.end || rows.end > nrows {
        return Err(KernelError::RowRange {
            ty: w,
            start: rows.start,
            end: rows.end,
            rows: nrows,
        });
    }
    Ok(nrows)
}

/// `bytes` as blocks of `B`, or [`KernelError::Misaligned`]. The caller has checked that the
/// length is whole blocks, so alignment is the only way the cast can fail.
pub(crate) fn cast<B: Pod>(
    bytes: &[u8],
    operand: Operand,
    ty: GgmlType,
) -> Result<&[B], KernelError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| KernelError::Misaligned {
        operand,
        ty,
        align: core::mem::align_of::<B>(),
    })
}

/// As [`cast`], mutably.
fn cast_mut<B: Pod>(
    bytes: &mut [u8],
    operand: Operand,
    ty: GgmlType,
) -> Result<&mut [B], KernelError> {
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| KernelError::Misaligned {
        operand,
        ty,
        align: core::mem::align_of::<B>(),
    })
}

impl KernelTable {
    /// Quantize the activation row `x` (`n = x.len()` values) for weights of type `w` into `out`,
    /// which must be exactly [`activation_bytes`]`(w, n)` bytes, **aligned to 8 bytes** (allocate
    /// it as `u64`s, for example).
    pub fn quantize_activation(
        &self,
        w: GgmlType,
        x: &[f32],
        out: &mut [u8],
    ) -> Result<(), KernelError> {
        let n = x.len();
        let (_, need) = row_bytes(w, n)?;
        let act = vec_dot_type(w);
        if out.len() != need {
            return Err(KernelError::ActivationSize {
                ty: act,
                n,
                got: out.len(),
                need,
            });
        }
        let op = Operand::Activation;
        match act {
            GgmlType::Q8_0 => (self.quantize_q8_0)(x, cast_mut(out, op, act)?),
            GgmlType::Q8_1 => (self.quantize_q8_1)(x, cast_mut(out, op, act)?),
            GgmlType::Q8_K => (self.quantize_q8_k)(x, cast_mut(out, op, act)?),
            // No table entry: one conversion per value, a negligible part of a product.
            GgmlType::F16 => scalar::quantize_row_f16(x, cast_mut(out, op, act)?),
            GgmlType::BF16 => scalar::quantize_row_bf16(x, cast_mut(out, op, act)?),
            GgmlType::F32 => cast_mut::<f32>(out, op, act)?.copy_from_slice(x),
            // row_bytes accepted only supported weight types, whose vec_dot types are above.
            _ => return Err(KernelError::Unsupported(w)),
        }
        Ok(())
    }

    /// The dot product of one weight row of type `w` (`n` values, exactly one row of bytes) with
    /// an activation row quantized by [`quantize_activation`] for the same `w` and `n`.
    pub fn vec_dot(
        &self,
        w: GgmlType,
        n: usize,
        w_row: &[u8],
        act: &[u8],
    ) -> Result<f32, KernelError> {
        let (need, _) = row_bytes(w, n)?;
        if w_row.len() != need {
            return Err(KernelError::WeightRowSize {
                ty: w,
                n,
                got: w_row.len(),
                need,
            });
        }
        let mut out = [0f32];
        self.matvec(w, w_row, 0..1, n, act, &mut out)?;
        Ok(out[0])
    }

    /// `out[i] = dot(row rows.start + i of w_bytes, act)` for every row of `rows`: the rows of a
    /// weight matrix (`w_bytes`, whole rows of `n` values of type `w`) times one activation row
    /// quantized by [`quantize_activation`]. Threads call it on disjoint row ranges with disjoint
    /// `out` slices; the result of a row does not depend on the range it was computed in.
    pub fn matvec(
        &self,
        w: GgmlType,
        w_bytes: &[u8],
        rows: Range<usize>,
        n: usize,
        act: &[u8],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let (row_bytes, act_bytes) = row_bytes(w, n)?;
        if act.len() != act_bytes {
            return Err(KernelError::ActivationSize {
                ty: vec_dot_type(w),
                n,
                got: act.len(),
                need: act_bytes,
            });
        }
        let nrows = weight_rows(w, w_bytes, row_bytes, &rows)?;
        if out.len() != rows.len() {
            return Err(KernelError::OutputLength {
                got: out.len(),
                need: rows.len(),
            });
        }
        // In bounds: rows.end <= nrows, and nrows * row_bytes is the length.
        let w_rows = &w_bytes[rows.start * row_bytes..rows.end * row_bytes];
        let act_ty = vec_dot_type(w);
        macro_rules! run {
            ($wb:ty, $ab:ty, $kernel:expr) => {
                ($kernel)(
                    cast::<$wb>(w_rows, Operand::Weights, w)?,
                    cast::<$ab>(act, Operand::Activation, act_ty)?,
                    out,
                )
            };
        }
        // llama.cpp's order for this matrix: its repacked one where it repacks.
        let interleaved = self
            .interleaved
            .as_ref()
            .filter(|_| nrows.is_multiple_of(8));
        match (w, interleaved) {
            (GgmlType::Q4_0, Some(k)) => run!(BlockQ4_0, BlockQ8_0, k.q4_0),
            (GgmlType::Q4_K, Some(k)) => run!(BlockQ4K, BlockQ8K, k.q4_k),
            (GgmlType::IQ4_NL, Some(k)) => run!(BlockIq4Nl, BlockQ8_0, k.iq4_nl),
            (GgmlType::F32, _) => run!(f32, f32, self.f32),
            (GgmlType::F16, _) => run!(u16, u16, self.f16),
            (GgmlType::BF16, _) => run!(u16, u16, self.bf16),
            (GgmlType::Q4_0, _) => run!(BlockQ4_0, BlockQ8_0, self.q4_0),
            (GgmlType::Q4_1, _) => run!(BlockQ4_1, BlockQ8_1, self.q4_1),
            (GgmlType::Q5_0, _) => run!(BlockQ5_0, BlockQ8_0, self.q5_0),
            (GgmlType::Q5_1, _) => run!(BlockQ5_1, BlockQ8_1, self.q5_1),
            (GgmlType::Q8_0, _) => run!(BlockQ8_0, BlockQ8_0, self.q8_0),
            (GgmlType::IQ4_NL, _) => run!(BlockIq4Nl, BlockQ8_0, self.iq4_nl),
            (GgmlType::Q2_K, _) => run!(BlockQ2K, BlockQ8K, self.q2_k),
            (GgmlType::Q3_K, _) => run!(BlockQ3K, BlockQ8K, self.q3_k),
            (GgmlType::Q4_K, _) => run!(BlockQ4K, BlockQ8K, self.q4_k),
            (GgmlType::Q5_K, _) => run!(BlockQ5K, BlockQ8K, self.q5_k),
            (GgmlType::Q6_K, _) => run!(BlockQ6K, BlockQ8K, self.q6_k),
            // row_bytes accepted only supported types.
            _ => return Err(KernelError::Unsupported(w)),
        }
        Ok(())
    }
}

/// Quantize the activation row `x` for weights of type `w` into `out` with the kernels in use
/// ([`KernelTable::quantize_activation`] on [`crate::active`]).
pub fn quantize_activation(w: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    active().quantize_activation(w, x, out)
}

/// The dot product of one weight row with a quantized activation row, with the kernels in use
/// ([`KernelTable::vec_dot`] on [`crate::active`]).
pub fn vec_dot(w: GgmlType, n: usize, w_row: &[u8], act: &[u8]) -> Result<f32, KernelError> {
    active().vec_dot(w, n, w_row, act)
}

/// Rows of a weight matrix times one quantized activation row, with the kernels in use
/// ([`KernelTable::matvec`] on [`crate::active`]).
pub fn matvec(
    w: GgmlType,
    w_bytes: &[u8],
    rows: Range<usize>,
    n: usize,
    act: &[u8],
    out: &mut [f32],
) -> Result<(), KernelError> {
    active().matvec(w, w_bytes, rows, n, act, out)
}
