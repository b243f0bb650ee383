//! Matrix-matrix products for prompt processing (issue #4): the rows of a weight matrix times a
//! batch of activation rows (one per token), each quantized once by [`crate::quantize_activation`].
//!
//! **The arithmetic of every (row, token) pair is the arithmetic of [`crate::matvec`] on that
//! matrix and token,** bit for bit, on every instruction set: a batch of prompt tokens gives
//! the logits that feeding them one at a time gives (`tests/matmul.rs` checks every weight
//! type, the runtime checks the logits). That is [`crate::vec_dot`]'s arithmetic, but for the
//! matrices `matvec` multiplies in llama.cpp's 8-row interleaved order (Q4_0, Q4_K and IQ4_NL
//! with a multiple of 8 rows on AVX2, `KernelTable::interleaved`), which are [`tiled`] over
//! those kernels. What a matrix product gains is memory traffic and unpacking, never another
//! summation order:
//!
//! - **Tiled** ([`tiled`], every type on every table unless a kernel below replaces it): the
//!   table's own matrix-vector kernel on a tile of rows small enough to stay in L1, once per
//!   token. The weights are read from memory once per batch instead of once per token; each
//!   block is still unpacked once per token. Identical to the matrix-vector product by
//!   construction, so it is also what an instruction set gets while its kernels are changing.
//! - **Unpack once** (AVX2's `x86::avx2::matmul`, for the types prompt processing spends its
//!   time in): a weight block is unpacked (nibbles to bytes, scales to vectors) once for
//!   several tokens, and an activation block prepared once for several rows; each (row, token)
//!   pair keeps its own accumulator, fed the same integers and the same float steps in the
//!   same order as the vec_dot kernel of that instruction set.
//!
//! The output is one slice per token (`outs[t][r]`): the runtime keeps each token's vector
//! contiguous, and threads take disjoint row ranges of every token's vector, as they do for the
//! matrix-vector product.

use crate::dispatch::{KernelTable, Matvec};
use crate::error::{KernelError, Operand};
use crate::matvec::{cast, row_bytes, vec_dot_type, weight_rows};
use core::ops::Range;
use formats::quant::{
    BlockIq4Nl, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
};

/// `outs[t][r] = dot(row r of w, activation t of acts)`: `acts` holds `outs.len()`
/// activations and `w` holds `outs[t].len()` rows (the same for every `t`), all of
/// `acts.len() / outs.len()` blocks (values, for the float types).
pub(crate) type Matmul<W, A> = fn(w: &[W], acts: &[A], outs: &mut [&mut [f32]]);

/// The matrix-matrix kernels of one instruction set, one per weight type; `None` means
/// [`tiled`] over the table's matrix-vector kernel.
#[derive(Debug)]
pub struct MatmulKernels {
    pub(crate) f32: Option<Matmul<f32, f32>>,
    pub(crate) f16: Option<Matmul<u16, u16>>,
    pub(crate) bf16: Option<Matmul<u16, u16>>,
    pub(crate) q4_0: Option<Matmul<BlockQ4_0, BlockQ8_0>>,
    pub(crate) q4_1: Option<Matmul<BlockQ4_1, BlockQ8_1>>,
    pub(crate) q5_0: Option<Matmul<BlockQ5_0, BlockQ8_0>>,
    pub(crate) q5_1: Option<Matmul<BlockQ5_1, BlockQ8_1>>,
    pub(crate) q8_0: Option<Matmul<BlockQ8_0, BlockQ8_0>>,
    pub(crate) iq4_nl: Option<Matmul<BlockIq4Nl, BlockQ8_0>>,
    pub(crate) q2_k: Option<Matmul<BlockQ2K, BlockQ8K>>,
    pub(crate) q3_k: Option<Matmul<BlockQ3K, BlockQ8K>>,
    pub(crate) q4_k: Option<Matmul<BlockQ4K, BlockQ8K>>,
    pub(crate) q5_k: Option<Matmul<BlockQ5K, BlockQ8K>>,
    pub(crate) q6_k: Option<Matmul<BlockQ6K, BlockQ8K>>,
}

impl MatmulKernels {
    /// Every type [`tiled`] over the table's matrix-vector kernels (the scalar oracle, NEON).
    pub(crate) const TILED: MatmulKernels = MatmulKernels {
        f32: None,
        f16: None,
        bf16: None,
        q4_0: None,
        q4_1: None,
        q5_0: None,
        q5_1: None,
        q8_0: None,
        iq4_nl: None,
        q2_k: None,
        q3_k: None,
        q4_k: None,
        q5_k: None,
        q6_k: None,
    };
}

/// Weight bytes per tile of [`tiled`]: half of a 32 KiB L1 data cache, so that the tile stays
/// there while every token's activation streams past it.
const TILE_BYTES: usize = 16 << 10;

/// The shape of a matrix kernel's call with `w_blocks` weight blocks, `act_blocks` activation
/// blocks and one output row per token: `(nb, rows)`, the blocks per row (per token) and the
/// rows to compute (the shortest output, at most as many as `w` holds). `None`, with every
/// output zeroed, when there are no tokens or no blocks.
pub(crate) fn shape(
    w_blocks: usize,
    act_blocks: usize,
    outs: &mut [&mut [f32]],
) -> Option<(usize, usize)> {
    let Some(nb) = act_blocks.checked_div(outs.len()).filter(|&nb| nb > 0) else {
        outs.iter_mut().for_each(|o| o.fill(0.0));
        return None;
    };
    let rows = outs.iter().map(|o| o.len()).min().unwrap_or(0);
    Some((nb, rows.min(w_blocks / nb)))
}

/// The matrix product as one matrix-vector product per token over tiles of rows: `matvec`'s
/// results exactly, with each weight row read from memory once per batch.
pub(crate) fn tiled<W, A>(w: &[W], acts: &[A], outs: &mut [&mut [f32]], matvec: Matvec<W, A>) {
    let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
        return;
    };
    let tile = (TILE_BYTES / (nb * size_of::<W>()).max(1)).max(1);
    for r0 in (0..rows).step_by(tile) {
        let r1 = (r0 + tile).min(rows);
        let Some(w_tile) = w.get(r0 * nb..r1 * nb) else {
            return;
        };
        for (out, act) in outs.iter_mut().zip(acts.chunks_exact(nb)) {
            matvec(w_tile, act, &mut out[r0..r1]);
        }
    }
}

impl KernelTable {
    /// `outs[t][i] = dot(row rows.start + i of w_bytes, activation t of acts)` for every row of
    /// `rows` and every token `t < outs.len()`: the rows of a weight matrix (whole rows of `n`
    /// values of type `w`) times `outs.len()` activation rows, each quantized by
    /// [`Self::quantize_activation`] and laid end to end in `acts` (aligned to 8 bytes); each
    /// `outs[t]` holds `rows.len()` values. Every value is bit-identical to [`Self::vec_dot`] on
    /// its row and activation; threads call it on disjoint row ranges with disjoint outputs, as
    /// [`Self::matvec`].
    pub fn matmul(
        &self,
        w: GgmlType,
        w_bytes: &[u8],
        rows: Range<usize>,
        n: usize,
        acts: &[u8],
        outs: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        let (row_bytes, act_bytes) = row_bytes(w, n)?;
        let n_tokens = outs.len();
        let act_ty = vec_dot_type(w);
        let need = act_bytes
            .checked_mul(n_tokens)
            .ok_or(KernelError::RowTooLong { ty: w, n })?;
        if acts.len() != need {
            return Err(KernelError::ActivationsSize {
                ty: act_ty,
                n,
                tokens: n_tokens,
                got: acts.len(),
                need,
            });
        }
        let nrows = weight_rows(w, w_bytes, row_bytes, &rows)?;
        if let Some((t, o)) = outs.iter().enumerate().find(|(_, o)| o.len() != rows.len()) {
            return Err(KernelError::ProductOutputLength {
                token: t,
                got: o.len(),
                rows: rows.len(),
            });
        }
        if n_tokens == 0 {
            return Ok(());
        }
        // In bounds: rows.end <= nrows, and nrows * row_bytes is the length.
        let w_rows = &w_bytes[rows.start * row_bytes..rows.end * row_bytes];
        let mm = self.matmul;
        macro_rules! run {
            ($wb:ty, $ab:ty, $kernel:ident) => {{
                let wr = cast::<$wb>(w_rows, Operand::Weights, w)?;
                let a = cast::<$ab>(acts, Operand::Activation, act_ty)?;
                match mm.$kernel {
                    Some(kernel) => kernel(wr, a, outs),
                    None => tiled(wr, a, outs, self.$kernel),
                }
            }};
        }
        // The matrices `matvec` multiplies in llama.cpp's 8-row interleaved order: tiled over
        // those kernels (the unpack-once ones above keep the `vec_dot` order).
        if let Some(k) = self
            .interleaved
            .as_ref()
            .filter(|_| nrows.is_multiple_of(8))
        {
            macro_rules! interleaved {
                ($wb:ty, $ab:ty, $kernel:ident) => {{
                    let wr = cast::<$wb>(w_rows, Operand::Weights, w)?;
                    let a = cast::<$ab>(acts, Operand::Activation, act_ty)?;
                    tiled(wr, a, outs, k.$kernel);
                    return Ok(());
                }};
            }
            if let (GgmlType::Q4_0, Some(kernel)) = (w, k.q4_0_matmul) {
                let wr = cast::<BlockQ4_0>(w_rows, Operand::Weights, w)?;
                let a = cast::<BlockQ8_0>(acts, Operand::Activation, act_ty)?;
                kernel(wr, a, outs);
                return Ok(());
            }
            if let (GgmlType::Q4_K, Some(kernel)) = (w, k.q4_k_matmul) {
                let wr = cast::<BlockQ4K>(w_rows, Operand::Weights, w)?;
                let a = cast::<BlockQ8K>(acts, Operand::Activation, act_ty)?;
                kernel(wr, a, outs);
                return Ok(());
            }
            match w {
                GgmlType::Q4_0 => interleaved!(BlockQ4_0, BlockQ8_0, q4_0),
                GgmlType::Q4_K => interleaved!(BlockQ4K, BlockQ8K, q4_k),
                GgmlType::IQ4_NL => interleaved!(BlockIq4Nl, BlockQ8_0, iq4_nl),
                _ => {}
            }
        }
        match w {
            GgmlType::F32 => run!(f32, f32, f32),
            GgmlType::F16 => run!(u16, u16, f16),
            GgmlType::BF16 => run!(u16, u16, bf16),
            GgmlType::Q4_0 => run!(BlockQ4_0, BlockQ8_0, q4_0),
            GgmlType::Q4_1 => run!(BlockQ4_1, BlockQ8_1, q4_1),
            GgmlType::Q5_0 => run!(BlockQ5_0, BlockQ8_0, q5_0),
            GgmlType::Q5_1 => run!(BlockQ5_1, BlockQ8_1, q5_1),
            GgmlType::Q8_0 => run!(BlockQ8_0, BlockQ8_0, q8_0),
            GgmlType::IQ4_NL => run!(BlockIq4Nl, BlockQ8_0, iq4_nl),
            GgmlType::Q2_K => run!(BlockQ2K, BlockQ8K, q2_k),
            GgmlType::Q3_K => run!(BlockQ3K, BlockQ8K, q3_k),
            GgmlType::Q4_K => run!(BlockQ4K, BlockQ8K, q4_k),
            GgmlType::Q5_K => run!(BlockQ5K, BlockQ8K, q5_k),
            GgmlType::Q6_K => run!(BlockQ6K, BlockQ8K, q6_k),
            // row_bytes accepted only supported types.
            _ => return Err(KernelError::Unsupported(w)),
        }
        Ok(())
    }
}

/// Rows of a weight matrix times a batch of quantized activation rows, with the kernels in use
/// ([`KernelTable::matmul`] on [`crate::active`]).
pub fn matmul(
    w: GgmlType,
    w_bytes: &[u8],
    rows: Range<usize>,
    n: usize,
    acts: &[u8],
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    crate::active().matmul(w, w_bytes, rows, n, acts, outs)
}
