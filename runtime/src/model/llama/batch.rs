//! Prompt processing: a batch of tokens through the layers together (issue #4), so that each
//! weight matrix is read once per batch instead of once per token.
//!
//! The same block as [`Llama::forward`] (`layer.rs`), on every token row of the batch: each
//! matrix product quantizes the batch's input rows once and multiplies them all with each
//! weight row while it is in cache ([`kernels::matmul`]); attention is causal over the KV
//! cache (the batch's keys and values are cached first, then each token attends over positions
//! up to its own with the single-token code, `LayerKv::attend`). **Every value is computed with the arithmetic of the
//! token-by-token path**, so a prompt's logits are bit-identical whether it is fed at once or
//! one token at a time (`batch_logits_are_token_by_token_logits` below and in the integration
//! tests).
//!
//! Memory stays small: a batch is at most [`MAX_BATCH`] tokens (the buffers below are a few MB
//! for a small model), and the classifier runs over at most [`LOGITS_BYTES`] of logits at a
//! time, only for the positions whose logits are wanted.

use super::layer::{blocks, norm_rows, OnPool, Rows};
use super::{rmsnorm, rope_cache, scale_embedding, softcap, Llama, ModelError, Pool, Weight};
use crate::calibrate::{Calibration, Site};
use crate::model::Config;
use formats::quant::GgmlType;

/// Tokens per batch: enough that the weights' memory traffic and the ~8 parallel sections a
/// layer are a small part of the time, few enough that the batch's buffers stay small. For
/// SmolLM2 Q4_0 on 2 threads, pp512 and peak RSS (`sintra-rt bench -p 512 -t 2`): 64 tokens
/// 618 t/s, 110.5 MiB; 128: 677 t/s, 112.0 MiB; 256: 710 t/s, 115.1 MiB, past the file + KV
/// cache + 16 MiB budget of issue #4 (114.7 MiB).
pub const MAX_BATCH: usize = 128;

/// The most logits computed at once (a multiple of the vocabulary's row, at least one row).
pub const LOGITS_BYTES: usize = 6 << 20;

/// The buffers of a batch, token-major (one row per token), allocated at the first batch.
#[derive(Debug)]
pub(super) struct Batch {
    /// Tokens in the last batch.
    n: usize,
    x: Vec<f32>,        // (MAX_BATCH, n_embd) the residual stream
    x_in: Vec<f32>,     // (MAX_BATCH, n_embd) the residual stream entering a block (calibration)
    xb: Vec<f32>,       // (MAX_BATCH, max(n_embd, q_dim)) normed input / attention output
    xb2: Vec<f32>,      // (MAX_BATCH, n_embd) output of a projection, before the residual add
    q: Vec<f32>,        // (MAX_BATCH, q_dim)
    k: Vec<f32>,        // (MAX_BATCH, kv_dim)
    v: Vec<f32>,        // (MAX_BATCH, kv_dim)
    hb: Vec<f32>,       // (MAX_BATCH, n_ff) gate
    hb2: Vec<f32>,      // (MAX_BATCH, n_ff) up
    rope: Vec<f32>,     // (MAX_BATCH, rope_dim) cos, sin pairs of each token's position
    rope_swa: Vec<f32>, // (MAX_BATCH, rope_dim) the same at sliding layers' base (or empty)
    act: Vec<u64>,      // (MAX_BATCH, quantized row) the quantized input of a matrix product
    logits: Vec<f32>,   // (logit_rows, n_vocab)
    logit_rows: usize,
}

impl Batch {
    fn new(c: &Config) -> Self {
        let b = MAX_BATCH;
        let q_dim = c.max_q_dim();
        let widest = c.n_embd.max(q_dim).max(c.max_ff());
        // Widest quantized row any supported weight type needs (rows are whole blocks, so the
        // widest row rounded up to a super-block bounds them all).
        let act_bytes = GgmlType::ALL
            .iter()
            .filter(|t| kernels::supported(**t))
            .filter_map(|&t| kernels::activation_bytes(t, widest.next_multiple_of(256)).ok())
            .max()
            .unwrap_or(0);
        let logit_rows = (LOGITS_BYTES / (4 * c.n_vocab.max(1))).clamp(1, b);
        Batch {
            n: 0,
            x: vec![0.0; b * c.n_embd],
            x_in: vec![0.0; b * c.n_embd],
            xb: vec![0.0; b * c.n_embd.max(q_dim)],
            xb2: vec![0.0; b * c.n_embd],
            q: vec![0.0; b * q_dim],
            k: vec![0.0; b * c.max_kv_dim()],
            v: vec![0.0; b * c.max_kv_dim()],
            hb: vec![0.0; b * c.max_ff()],
            hb2: vec![0.0; b * c.max_ff()],
            rope: vec![0.0; b * c.rope_dim],
            rope_swa: vec![0.0; if c.has_windows() { b * c.rope_dim } else { 0 }],
            act: vec![0; (b * act_bytes).div_ceil(8) + 1],
            logits: vec![0.0; logit_rows * c.n_vocab],
            logit_rows,
        }
    }
}

fn kernel_err(e: kernels::KernelError) -> ModelError {
    ModelError::Tensor(e.to_string())
}

/// The `n` rows of `x` (`x.len() / n` values each) quantized for weights of type `ty`, end to
/// end in `act`: the input of a matrix product, for every weight of that type. Rows are
/// quantized in parallel on the pool's threads.
fn quantize_rows<'b>(
    ty: GgmlType,
    x: &[f32],
    n: usize,
    act: &'b mut [u64],
    pool: &Pool,
) -> Result<&'b [u8], ModelError> {
    let n_in = x.len() / n.max(1);
    let row = kernels::activation_bytes(ty, n_in).map_err(kernel_err)?;
    let bytes = bytemuck::cast_slice_mut::<u64, u8>(act)
        .get_mut(..row * n)
        .ok_or_else(|| {
            ModelError::Tensor(format!("{n} activations of {row} bytes exceed the buffer"))
        })?;
    pool.for_tokens(bytes, row, |rows, out| {
        let xs = x[rows.start * n_in..rows.end * n_in].chunks_exact(n_in);
        for (xr, ar) in xs.zip(out.chunks_exact_mut(row)) {
            kernels::quantize_activation(ty, xr, ar).map_err(kernel_err)?;
        }
        Ok(())
    })?;
    Ok(bytes)
}

/// The matrix products of the weights `ws` with the same `n` input rows `x`: `out[t] = W x[t]`
/// for each weight and its token-major output. **The one place a batch's matrix products see
/// their f32 input**: a calibration run (`calib`, with the input's block and site) hears every
/// row here, in token order. Each row is quantized once per weight type; each product is split
/// over the pool's threads by contiguous row ranges.
pub(super) fn matmuls(
    ws: &mut [(&Weight<'_>, &mut [f32])],
    x: &[f32],
    n: usize,
    act: &mut [u64],
    pool: &Pool,
    calib: Option<(&mut Calibration, usize, Site)>,
) -> Result<(), ModelError> {
    if let Some((cal, layer, site)) = calib {
        for row in x.chunks_exact(x.len() / n.max(1)).take(n) {
            cal.add(layer, site, row);
        }
    }
    let mut quantized: Option<GgmlType> = None;
    for (w, out) in ws.iter_mut() {
        if quantized != Some(w.ty) {
            quantize_rows(w.ty, x, n, act, pool)?;
            quantized = Some(w.ty);
        }
        let row = kernels::activation_bytes(w.ty, w.n_in).map_err(kernel_err)?;
        let acts = &bytemuck::cast_slice::<u64, u8>(act)[..row * n];
        let out = &mut out[..n * w.n_out];
        let w = **w;
        pool.for_rows_batched(out, w.n_out, |rows, parts| {
            if w.packed {
                kernels::packed::matmul_packed(w.ty, w.data, rows, w.n_in, acts, parts)
            } else {
                kernels::matmul(w.ty, w.data, rows, w.n_in, acts, parts)
            }
            .map_err(kernel_err)
        })?;
    }
    Ok(())
}

impl Llama<'_> {
    /// Run `tokens` at positions `pos0, pos0 + 1, ...` (positions `< pos0` must already be
    /// cached), in batches of at most [`MAX_BATCH`], and hand the logits of every token from
    /// index `logits_from` on to `on_logits(index, logits)` in order (none when `logits_from >=
    /// tokens.len()`). The cache and the logits are bit-identical to calling
    /// [`Self::forward_opt`] on each token.
    pub fn forward_batch<E: From<ModelError>>(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        pool: &Pool,
        logits_from: usize,
        mut on_logits: impl FnMut(usize, &[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        if pos0 + tokens.len() > self.state.n_ctx {
            return Err(ModelError::ContextFull {
                n_ctx: self.state.n_ctx,
            }
            .into());
        }
        let n_vocab = self.config.n_vocab;
        for (i, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let start = i * MAX_BATCH;
            pool.run(|| self.forward_ubatch(chunk, pos0 + start, pool))?;
            let mut from = logits_from.max(start);
            while from < start + chunk.len() {
                let rows = self.logit_rows();
                let to = (from + rows).min(start + chunk.len());
                let logits = pool.run(|| self.ubatch_logits(from - start..to - start, pool))?;
                for (j, l) in logits.chunks_exact(n_vocab).enumerate() {
                    on_logits(from + j, l)?;
                }
                from = to;
            }
        }
        Ok(())
    }

    /// Run a prompt (`tokens` from position `pos0`, which must not be empty) in batches, with
    /// the classifier only on its last token, and return that token's logits: the step before
    /// every generation.
    pub fn prefill(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        pool: &Pool,
    ) -> Result<Vec<f32>, ModelError> {
        let mut logits = Vec::new();
        let last = tokens.len().saturating_sub(1);
        self.forward_batch(tokens, pos0, pool, last, |_, l| {
            logits = l.to_vec();
            Ok::<(), ModelError>(())
        })?;
        Ok(logits)
    }

    /// How many positions' logits [`Self::forward_batch`] computes at once.
    fn logit_rows(&self) -> usize {
        match &self.gpu {
            Some(g) => g.logit_rows(),
            None => self.batch.as_ref().map_or(1, |b| b.logit_rows),
        }
    }

    /// One batch through the layers, leaving its final hidden states in the batch's `x`.
    fn forward_ubatch(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        pool: &Pool,
    ) -> Result<(), ModelError> {
        if let Some(g) = self.gpu.as_deref_mut() {
            // (The GPU's model keeps its own buffers: no CPU batch is made.)
            super::no_calibration_on_gpu(&self.state)?;
            return g.run(&self.config, &self.weights, tokens, pos0);
        }
        let c = &self.config;
        let w = &self.weights;
        let s = &mut self.state;
        let b: &mut Batch = self.batch.get_or_insert_with(|| Box::new(Batch::new(c)));
        let n = tokens.len();
        if n == 0 || n > MAX_BATCH {
            return Err(ModelError::Tensor(format!(
                "a batch of {n} tokens (1 to {MAX_BATCH})"
            )));
        }
        if pos0 + n > s.n_ctx {
            return Err(ModelError::ContextFull { n_ctx: s.n_ctx });
        }
        let e = c.n_embd;

        // Embeddings and each position's RoPE table, then the blocks on the batch's rows.
        for (i, (&token, x)) in tokens.iter().zip(b.x.chunks_exact_mut(e)).enumerate() {
            if token as usize >= c.n_vocab {
                return Err(ModelError::BadToken {
                    token,
                    n_vocab: c.n_vocab,
                });
            }
            w.token_embd.row_f32(token as usize, x)?;
            scale_embedding(c, x);
            let rows = i * c.rope_dim..(i + 1) * c.rope_dim;
            let freqs = w.rope_freqs.as_deref();
            rope_cache(&mut b.rope[rows.clone()], pos0 + i, c, c.rope_base, freqs);
            if c.has_windows() {
                rope_cache(&mut b.rope_swa[rows], pos0 + i, c, c.rope_base_swa, freqs);
            }
        }
        let mut exec = OnPool {
            pool,
            act: &mut b.act,
            n_ctx: s.n_ctx,
            head_dim: c.head_dim,
        };
        let mut rows = Rows {
            n,
            x: &mut b.x,
            x_in: &mut b.x_in,
            xb: &mut b.xb,
            xb2: &mut b.xb2,
            q: &mut b.q,
            k: &mut b.k,
            v: &mut b.v,
            hb: &mut b.hb,
            hb2: &mut b.hb2,
            rope: &b.rope,
            rope_swa: &b.rope_swa,
        };
        let cache = (s.n_ctx, s.kv_dim);
        let calib = s.calib.as_deref_mut();
        blocks(
            &mut exec, c, &w.layers, cache, pos0, &mut rows, &mut s.kv, calib,
        )?;
        if let Some(cal) = s.calib.as_deref_mut() {
            // The classifier's input of every token, whether or not its logits are wanted.
            for x in b.x.chunks_exact(e).take(n) {
                rmsnorm(&mut b.xb[..e], x, &w.output_norm, c.rms_eps);
                cal.add_output(&b.xb[..e]);
            }
        }
        b.n = n;
        Ok(())
    }

    /// The logits of tokens `rows` of the last batch (at most its `logit_rows`), row after row.
    fn ubatch_logits(
        &mut self,
        rows: core::ops::Range<usize>,
        pool: &Pool,
    ) -> Result<&[f32], ModelError> {
        if let Some(g) = self.gpu.as_deref_mut() {
            let logits = &mut self.state.gpu_logits;
            logits.resize(rows.len() * self.config.n_vocab, 0.0);
            g.logits(&self.config, rows, logits)?;
            return Ok(logits);
        }
        let c = &self.config;
        let w = &self.weights;
        let Some(b) = self.batch.as_deref_mut() else {
            return Err(ModelError::Tensor("no batch has run".into()));
        };
        if rows.end > b.n || rows.len() > b.logit_rows {
            return Err(ModelError::Tensor(format!(
                "logits of batch rows {rows:?} (a batch of {}, {} at a time)",
                b.n, b.logit_rows
            )));
        }
        let (e, m) = (c.n_embd, rows.len());
        let x = &b.x[rows.start * e..rows.end * e];
        norm_rows(pool, &mut b.xb, x, m, &w.output_norm, c.rms_eps)?;
        let logits = &mut b.logits[..m * c.n_vocab];
        // (Calibration heard the classifier's input in `forward_ubatch`.)
        matmuls(
            &mut [(&w.output, logits)],
            &b.xb[..m * e],
            m,
            &mut b.act,
            pool,
            None,
        )?;
        softcap(c, &mut b.logits[..m * c.n_vocab]);
        Ok(&b.logits[..m * c.n_vocab])
    }
}

#[cfg(test)]
mod tests {
    // The bit-identity test on the real model lives in the integration tests
    // (`tests/tests/batch.rs`), which have the model files.
}
