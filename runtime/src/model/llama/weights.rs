//! The weights of a model as the forward pass reads them: views into the memory map (or, where
//! the active CPU kernels multiply a packed layout, the same rows packed once per file), and the
//! small norm and bias vectors dequantized once.

use super::{Config, ModelError};
use crate::threads::Mat;
use formats::gguf::{GgufFile, TensorInfo};
use formats::quant::{self, GgmlType};

/// Rows packed between two releases of the file's pages ([`Weight::from_file`]): a multiple
/// of the packing groups' rows (`kernels::packed::GROUP`: four on AArch64, eight on x86-64).
const PACK_ROWS: usize = 256;

/// A weight matrix in its file type: `n_out` rows of `n_in` values, row-major, as ggml stores
/// `[n_in, n_out]` tensors.
#[derive(Debug, Clone, Copy)]
pub struct Weight<'a> {
    pub ty: GgmlType,
    /// The file's rows, or (`packed`) the same rows packed in groups of rows for the active
    /// kernels (`kernels::packed`), made once per file ([`GgufFile::derived`]).
    pub data: &'a [u8],
    pub n_in: usize,
    pub n_out: usize,
    pub row_bytes: usize,
    pub packed: bool,
}

impl<'a> Weight<'a> {
    fn from_file(
        file: &'a GgufFile,
        name: &str,
        n_in: usize,
        n_out: usize,
        pack: bool,
    ) -> Result<Self, ModelError> {
        Self::load(file, name, n_in, n_out, pack)
    }

    /// A fused matrix (phi3's `attn_qkv`, `ffn_up`) as its parts of `parts` rows each, in
    /// order: views of the one tensor (packed only where every part starts on a packing group).
    fn split_from_file<const N: usize>(
        file: &'a GgufFile,
        name: &str,
        n_in: usize,
        parts: [usize; N],
        pack: bool,
    ) -> Result<[Self; N], ModelError> {
        let n_out = parts.iter().sum();
        let aligned = parts.iter().all(|p| p % kernels::packed::GROUP == 0);
        let whole = Self::load(file, name, n_in, n_out, pack && aligned)?;
        let mut first = 0;
        Ok(parts.map(|rows| {
            let bytes = first * whole.row_bytes..(first + rows) * whole.row_bytes;
            first += rows;
            Weight {
                data: &whole.data[bytes],
                n_out: rows,
                ..whole
            }
        }))
    }

    fn load(
        file: &'a GgufFile,
        name: &str,
        n_in: usize,
        n_out: usize,
        may_pack: bool,
    ) -> Result<Self, ModelError> {
        let view = file
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor(name.into()))?;
        check_shape(view.info, &[n_in, n_out])?;
        if !kernels::supported(view.info.ty) {
            return Err(ModelError::UnsupportedType {
                tensor: name.into(),
                ty: view.info.ty,
            });
        }
        let row_bytes = view
            .info
            .ty
            .row_size(n_in)
            .ok_or_else(|| ModelError::BadShape {
                tensor: name.into(),
                expected: format!("rows that are whole {} blocks", view.info.ty),
                found: view.info.shape(),
            })?;
        let ty = view.info.ty;
        // Repacked where the kernels in use multiply a packed layout (issue #14's fast path):
        // once per file, and the file's pages of the tensor released, so that the model is
        // not resident twice.
        if let Some(len) = kernels::packed::packed_len(ty, n_out, n_in)
            .filter(|_| may_pack && kernels::packed::packs(ty))
        {
            // A few hundred rows at a time, the file's pages released as they are packed: at
            // most a slice is resident twice. (Packed groups take the bytes of their
            // rows, in the same place.)
            let slice = PACK_ROWS * row_bytes;
            let data = file.derived(name, len, |dst| {
                let mut done = 0;
                for (src, dst) in view.data.chunks(slice).zip(dst.chunks_mut(slice)) {
                    kernels::packed::pack(ty, src, n_in, dst)
                        .map_err(|e| ModelError::Tensor(format!("{name}: packing: {e}")))?;
                    // Everything packed so far: the pages a slice shares with the previous one
                    // are whole now.
                    done += src.len();
                    file.release(&view.data[..done]);
                }
                Ok(())
            })?;
            return Ok(Weight {
                ty,
                data,
                n_in,
                n_out,
                row_bytes,
                packed: true,
            });
        }
        Ok(Weight {
            ty,
            data: view.data,
            n_in,
            n_out,
            row_bytes,
            packed: false,
        })
    }

    /// The matrix as the crew's sections take it.
    pub(super) fn mat(&self) -> Mat<'a> {
        Mat {
            ty: self.ty,
            data: self.data,
            n_in: self.n_in,
            packed: self.packed,
        }
    }

    /// Row `i` as f32 (embedding lookup).
    pub(super) fn row_f32(&self, i: usize, out: &mut [f32]) -> Result<(), ModelError> {
        let unpacked;
        let bytes = if self.packed {
            // The row in the file's layout again (u64 storage: aligned for its blocks).
            let mut row = vec![0u64; self.row_bytes.div_ceil(8)];
            let b = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut row)[..self.row_bytes];
            kernels::packed::unpack_row(self.ty, self.data, i, self.n_in, b)
                .map_err(|e| ModelError::Tensor(e.to_string()))?;
            unpacked = row;
            &bytemuck::cast_slice::<u64, u8>(&unpacked)[..self.row_bytes]
        } else {
            &self.data[i * self.row_bytes..(i + 1) * self.row_bytes]
        };
        match quant::dequantize_into(self.ty, bytes, out) {
            Ok(()) => Ok(()),
            // Under-aligned rows (a file with an odd alignment): take the copying path.
            Err(quant::QuantError::Misaligned { .. }) => {
                let v = quant::dequantize(self.ty, bytes)
                    .map_err(|e| ModelError::Tensor(e.to_string()))?;
                out.copy_from_slice(&v);
                Ok(())
            }
            Err(e) => Err(ModelError::Tensor(e.to_string())),
        }
    }
}

fn check_shape(t: &TensorInfo, want: &[usize]) -> Result<(), ModelError> {
    let ok = t.dims.len() == want.len() && t.dims.iter().zip(want).all(|(&a, &b)| a == b as u64);
    if ok {
        return Ok(());
    }
    Err(ModelError::BadShape {
        tensor: t.name.clone(),
        expected: format!("{want:?}"),
        found: t.shape(),
    })
}

/// A norm vector, dequantized once (they are tiny).
fn norm(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
    let view = file
        .tensor(name)
        .map_err(|_| ModelError::MissingTensor(name.into()))?;
    check_shape(view.info, &[n])?;
    quant::dequantize(view.info.ty, view.data)
        .map_err(|e| ModelError::Tensor(format!("{name}: {e}")))
}

#[derive(Debug)]
pub struct LayerWeights<'a> {
    pub attn_norm: Vec<f32>, // (n_embd)
    pub wq: Weight<'a>,      // (n_head * head_dim, n_embd)
    pub wk: Weight<'a>,      // (n_head_kv * head_dim, n_embd)
    pub wv: Weight<'a>,      // (n_head_kv * head_dim, n_embd)
    /// Q, K and V biases (qwen2), where the file has them.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// Per-head RMS norms of queries and keys (head_dim each; qwen3, gemma3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: Weight<'a>, // (n_embd, n_head * head_dim)
    /// RMS norm of the attention's output before the residual add (gemma3).
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>, // (n_embd)
    pub w_gate: Weight<'a>, // (n_ff, n_embd)
    pub w_up: Weight<'a>,   // (n_ff, n_embd)
    pub w_down: Weight<'a>, // (n_embd, n_ff)
    /// RMS norm of the FFN's output before the residual add (gemma3).
    pub post_ffn_norm: Option<Vec<f32>>,
}

#[derive(Debug)]
pub struct Weights<'a> {
    pub token_embd: Weight<'a>, // (n_vocab, n_embd)
    pub layers: Vec<LayerWeights<'a>>,
    pub output_norm: Vec<f32>, // (n_embd)
    /// The classifier; `token_embd` when the model ties them (no `output.weight`).
    pub output: Weight<'a>, // (n_vocab, n_embd)
    /// Per-frequency RoPE divisors, if the model has them: Llama 3's `rope_freqs.weight`, or
    /// phi3's LongRoPE factors, `rope_factors_long.weight` for a context longer than
    /// [`Config::n_ctx_orig`] and `rope_factors_short.weight` otherwise (llama.cpp's choice).
    pub rope_freqs: Option<Vec<f32>>, // (rope_dim / 2)
}

impl<'a> Weights<'a> {
    /// The weights of `file`, for a context of `n_ctx` positions (which picks LongRoPE's
    /// factors), packed for the CPU kernels where they multiply a packed layout.
    pub fn from_file(file: &'a GgufFile, c: &Config, n_ctx: usize) -> Result<Self, ModelError> {
        Self::load(file, c, n_ctx, true)
    }

    /// [`Self::from_file`], with every matrix in the file's layout unless `pack` (the GPU's
    /// upload reads that layout).
    pub(super) fn load(
        file: &'a GgufFile,
        c: &Config,
        n_ctx: usize,
        pack: bool,
    ) -> Result<Self, ModelError> {
        let e = c.n_embd;
        let token_embd = Weight::from_file(file, "token_embd.weight", e, c.n_vocab, pack)?;
        let mut layers = Vec::with_capacity(c.n_layer());
        for (i, l) in c.layers.iter().enumerate() {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let has = |name: &str| file.header.tensor(name).is_some();
            let (q, kv, hd) = (l.n_head * c.head_dim, l.n_head_kv * c.head_dim, c.head_dim);
            // Q, K, V: three matrices, or one fused `attn_qkv` (phi3), Q's rows first.
            let [wq, wk, wv] = if !has(&n("attn_q")) && has(&n("attn_qkv")) {
                Weight::split_from_file(file, &n("attn_qkv"), e, [q, kv, kv], pack)?
            } else {
                [
                    Weight::from_file(file, &n("attn_q"), e, q, pack)?,
                    Weight::from_file(file, &n("attn_k"), e, kv, pack)?,
                    Weight::from_file(file, &n("attn_v"), e, kv, pack)?,
                ]
            };
            // Gate and up: two matrices, or one `ffn_up` of twice the rows (phi3), gate first.
            let [w_gate, w_up] = if !has(&n("ffn_gate")) && l.n_ff > 0 {
                Weight::split_from_file(file, &n("ffn_up"), e, [l.n_ff, l.n_ff], pack)?
            } else {
                [
                    Weight::from_file(file, &n("ffn_gate"), e, l.n_ff, pack)?,
                    Weight::from_file(file, &n("ffn_up"), e, l.n_ff, pack)?,
                ]
            };
            let bias = |s: &str, len: usize| {
                let name = format!("blk.{i}.{s}.bias");
                has(&name).then(|| norm(file, &name, len)).transpose()
            };
            let required = |needed: bool, s: &str, len: usize| {
                needed.then(|| norm(file, &n(s), len)).transpose()
            };
            layers.push(LayerWeights {
                attn_norm: norm(file, &n("attn_norm"), e)?,
                wq,
                wk,
                wv,
                bq: bias("attn_q", q)?,
                bk: bias("attn_k", kv)?,
                bv: bias("attn_v", kv)?,
                q_norm: required(c.qk_norm, "attn_q_norm", hd)?,
                k_norm: required(c.qk_norm, "attn_k_norm", hd)?,
                wo: Weight::from_file(file, &n("attn_output"), q, e, pack)?,
                post_attn_norm: required(c.post_norms, "post_attention_norm", e)?,
                ffn_norm: norm(file, &n("ffn_norm"), e)?,
                w_gate,
                w_up,
                w_down: Weight::from_file(file, &n("ffn_down"), l.n_ff, e, pack)?,
                post_ffn_norm: required(c.post_norms, "post_ffw_norm", e)?,
            });
        }
        let output = match file.header.tensor("output.weight") {
            Some(_) => Weight::from_file(file, "output.weight", e, c.n_vocab, pack)?,
            None => token_embd,
        };
        let longrope = match n_ctx > c.n_ctx_orig {
            true => "rope_factors_long.weight",
            false => "rope_factors_short.weight",
        };
        let rope_freqs = ["rope_freqs.weight", longrope]
            .into_iter()
            .find(|name| file.header.tensor(name).is_some())
            .map(|name| norm(file, name, c.rope_dim / 2))
            .transpose()?;
        Ok(Weights {
            token_embd,
            layers,
            output_norm: norm(file, "output_norm.weight", e)?,
            output,
            rope_freqs,
        })
    }
}
