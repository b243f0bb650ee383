//! The one error type of the type-erased entry points.

use crate::dispatch::Isa;
use core::fmt;
use formats::quant::GgmlType;

/// Which buffer of a kernel call an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// The weight matrix or row (GGUF tensor data).
    Weights,
    /// The quantized activation row.
    Activation,
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operand::Weights => "weights",
            Operand::Activation => "activation",
        })
    }
}

/// Why a kernel call was refused. Nothing is written to the output when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The weight type has no kernel (see [`crate::supported`]).
    #[error("weight type {0} has no kernel")]
    Unsupported(GgmlType),
    /// The matrix cannot be (or was not) packed: a type without a packed layout or kernel in
    /// this table, or a row count that is not whole groups (`packed::GROUP` rows).
    #[error("a {ty} matrix of {rows} rows has no packed layout or kernel here")]
    NotPacked { ty: GgmlType, rows: usize },
    /// The row length is zero or not a whole number of blocks of the weight type.
    #[error("row length {n} is not a positive multiple of the {ty} block size {block}")]
    RowLength {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    /// A row of `n` values of `ty` does not fit in `usize` bytes.
    #[error("a row of {n} {ty} values overflows the address space")]
    RowTooLong { ty: GgmlType, n: usize },
    /// A single weight row ([`crate::vec_dot`]) has the wrong number of bytes.
    #[error("{ty} row of {n} values needs {need} bytes of weights, got {got}")]
    WeightRowSize {
        ty: GgmlType,
        n: usize,
        got: usize,
        need: usize,
    },
    /// A weight matrix ([`crate::matvec`]) is not a whole number of rows.
    #[error("{ty} weights of {got} bytes are not a whole number of {row_bytes}-byte rows")]
    WeightMatrixSize {
        ty: GgmlType,
        got: usize,
        row_bytes: usize,
    },
    /// The row range is reversed or reaches past the last row of the matrix.
    #[error("row range {start}..{end} is not within the {rows} rows of the {ty} matrix")]
    RowRange {
        ty: GgmlType,
        start: usize,
        end: usize,
        rows: usize,
    },
    /// The activation buffer does not hold exactly one quantized row of `n` values. `ty` is
    /// the activation (vec_dot) type.
    #[error("{ty} activation for a row of {n} needs {need} bytes, got {got}")]
    ActivationSize {
        ty: GgmlType,
        n: usize,
        got: usize,
        need: usize,
    },
    /// The output slice does not have one value per row of the range.
    #[error("output holds {got} values, the row range has {need} rows")]
    OutputLength { got: usize, need: usize },
    /// The activations of a matrix product ([`crate::matmul`]) are not exactly `tokens`
    /// quantized rows of `n` values. `ty` is the activation type.
    #[error("{ty} activations for {tokens} rows of {n} need {need} bytes, got {got}")]
    ActivationsSize {
        ty: GgmlType,
        n: usize,
        tokens: usize,
        got: usize,
        need: usize,
    },
    /// The output of token `token` of a matrix product ([`crate::matmul`]) does not have one
    /// value per row of the range.
    #[error("output of token {token} holds {got} values, the row range has {rows} rows")]
    ProductOutputLength {
        token: usize,
        got: usize,
        rows: usize,
    },
    /// A buffer is not aligned for the blocks of `ty` read from it in place.
    #[error("{operand} buffer of type {ty} is not aligned to {align} bytes")]
    Misaligned {
        operand: Operand,
        ty: GgmlType,
        align: usize,
    },
    /// The queries, keys, values or scratch of [`crate::KernelTable::attend_f16`] do not fit
    /// together (the message says how).
    #[error("attention: {0}")]
    Attention(&'static str),
    /// [`crate::use_isa`] was asked for kernels this build or CPU does not have.
    #[error("{0} kernels are not available on this build or CPU")]
    IsaUnavailable(Isa),
}
