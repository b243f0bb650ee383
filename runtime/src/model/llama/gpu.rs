//! The forward pass on an NVIDIA GPU (issue #21): the same steps as `layer.rs` in the same
//! order, each a kernel of `kernels::cuda` on device buffers. Weights are uploaded once, in the
//! file's layout; the KV cache lives on the device (f16); only the token ids, each position's
//! RoPE table and the logits wanted cross the bus. Held to the CPU path by tolerance: both
//! multiply the same values (the activations rounded as the CPU's kernels quantize them), the
//! GPU in f32 on dequantized weights and in its own order (`tests/tests/cuda.rs` under the
//! emulator, `scripts/gpu-check.sh` on a GPU).

use super::{rope_cache, Config, KvType, ModelError, Weight, Weights};
use kernels::cuda::{Attention, Dev, DeviceBuf, DeviceMatrix, Gpu, GpuError, MAX_HEAD_DIM};
use std::sync::Arc;

/// Token rows per call: [`super::MAX_BATCH`], as the CPU's prompt batches.
const ROWS: usize = super::MAX_BATCH;

fn gpu_err(e: GpuError) -> ModelError {
    ModelError::Tensor(format!("CUDA: {e}"))
}

#[derive(Debug)]
struct GpuLayer {
    attn_norm: DeviceBuf<f32>,
    wq: DeviceMatrix,
    wk: DeviceMatrix,
    wv: DeviceMatrix,
    bq: Option<DeviceBuf<f32>>,
    bk: Option<DeviceBuf<f32>>,
    bv: Option<DeviceBuf<f32>>,
    q_norm: Option<DeviceBuf<f32>>,
    k_norm: Option<DeviceBuf<f32>>,
    wo: DeviceMatrix,
    post_attn_norm: Option<DeviceBuf<f32>>,
    ffn_norm: DeviceBuf<f32>,
    w_gate: DeviceMatrix,
    w_up: DeviceMatrix,
    w_down: DeviceMatrix,
    post_ffn_norm: Option<DeviceBuf<f32>>,
}

/// A model's weights, buffers and KV cache on the GPU.
#[derive(Debug)]
pub(super) struct GpuModel {
    gpu: Arc<Gpu>,
    layers: Vec<GpuLayer>,
    token_embd: DeviceMatrix,
    /// The classifier; `None` where the model ties it to `token_embd`.
    output: Option<DeviceMatrix>,
    output_norm: DeviceBuf<f32>,
    n_ctx: usize,
    kv_dim: usize,
    /// Token rows in the hidden states (`x`) of the last call.
    n: usize,
    tokens: DeviceBuf<i32>,   // (ROWS)
    x: DeviceBuf<f32>,        // (ROWS, n_embd) the residual stream
    xb: DeviceBuf<f32>,       // (ROWS, max(n_embd, q_dim)) normed input / attention output
    xb2: DeviceBuf<f32>,      // (ROWS, n_embd) a projection's output before the residual add
    q: DeviceBuf<f32>,        // (ROWS, q_dim)
    k: DeviceBuf<f32>,        // (ROWS, kv_dim)
    v: DeviceBuf<f32>,        // (ROWS, kv_dim)
    hb: DeviceBuf<f32>,       // (ROWS, n_ff) gate
    hb2: DeviceBuf<f32>,      // (ROWS, n_ff) up
    xq: DeviceBuf<f32>, // (ROWS, widest input) a product's input, rounded as the CPU rounds it
    rope: DeviceBuf<f32>, // (ROWS, rope_dim) each row's cos, sin pairs
    rope_swa: DeviceBuf<f32>, // (ROWS, rope_dim) the same at sliding layers' base (or 1)
    logits: DeviceBuf<f32>, // (logit_rows, n_vocab)
    logit_rows: usize,
    kc: DeviceBuf<u16>, // (layer, n_ctx, kv_dim) keys, f16
    vc: DeviceBuf<u16>, // (layer, n_ctx, kv_dim) values, f16
    host_rope: Vec<f32>,
    host_rope_swa: Vec<f32>,
}

/// The GPU a model is placed on.
pub(super) type Device = Arc<Gpu>;

/// The process's GPU for a model placed by `place`: `None` for the CPU (said once on stderr
/// when a GPU was wanted but cannot be used); an error where `SINTRA_DEVICE=cuda` insists.
pub(super) fn device(place: super::Place) -> Result<Option<Device>, ModelError> {
    let wanted = crate::gpu::wanted().map_err(ModelError::Device)?;
    if place == super::Place::Cpu || wanted == crate::gpu::Wanted::Cpu {
        return Ok(None);
    }
    match crate::gpu::gpu() {
        Ok(g) => Ok(Some(g)),
        Err(why) => fall_back(&why).map(|()| None),
    }
}

/// A model that was to run on the GPU runs on the CPU instead, for `why`: said once, or an
/// error under `SINTRA_DEVICE=cuda`.
pub(super) fn fall_back(why: &str) -> Result<(), ModelError> {
    match crate::gpu::wanted() {
        Ok(w @ (crate::gpu::Wanted::Cuda | crate::gpu::Wanted::CudaEmulator)) => {
            let name = if w == crate::gpu::Wanted::Cuda {
                "cuda"
            } else {
                "cuda-emulator"
            };
            Err(ModelError::Device(format!(
                "SINTRA_DEVICE={name}: the model cannot run on the GPU: {why}"
            )))
        }
        Err(e) => Err(ModelError::Device(e)),
        Ok(_) => {
            crate::gpu::say_fallback(why);
            Ok(())
        }
    }
}

/// Why a model cannot run on the GPU before anything is uploaded: a weight type without a
/// kernel, a head too wide, an f32 cache asked for.
pub(super) fn unsupported(c: &Config, w: &Weights<'_>, kv: KvType) -> Option<String> {
    if kv != KvType::F16 {
        return Some("the GPU keeps its KV cache in f16 (--kv-f32 asked for f32)".into());
    }
    if c.head_dim % 32 != 0 || c.head_dim > MAX_HEAD_DIM {
        return Some(format!(
            "heads of {} values (the GPU's attention takes multiples of 32 up to {MAX_HEAD_DIM})",
            c.head_dim
        ));
    }
    let mut all = vec![&w.token_embd, &w.output];
    for l in &w.layers {
        all.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
    }
    all.into_iter()
        .find(|m| !kernels::cuda::supported(m.ty) || m.n_in % 32 != 0)
        .map(|m| format!("no GPU kernel for {} weights of rows of {}", m.ty, m.n_in))
}

impl GpuModel {
    /// Upload `w` (file layout: `Weights` built without packing) and allocate every buffer.
    pub(super) fn new(
        gpu: Device,
        c: &Config,
        w: &Weights<'_>,
        n_ctx: usize,
    ) -> Result<Self, String> {
        Self::upload(gpu, c, w, n_ctx).map_err(|e| e.to_string())
    }

    fn upload(gpu: Device, c: &Config, w: &Weights<'_>, n_ctx: usize) -> Result<Self, GpuError> {
        let g = &*gpu;
        let mat = |m: &Weight<'_>| {
            if m.packed {
                return Err(GpuError::Shape("packed weights reached the GPU".into()));
            }
            g.upload_matrix(m.ty, m.data, m.n_in, m.n_out)
        };
        let vec = |v: &[f32]| g.upload(v);
        let opt = |v: &Option<Vec<f32>>| v.as_deref().map(|v| g.upload(v)).transpose();
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            layers.push(GpuLayer {
                attn_norm: vec(&l.attn_norm)?,
                wq: mat(&l.wq)?,
                wk: mat(&l.wk)?,
                wv: mat(&l.wv)?,
                bq: opt(&l.bq)?,
                bk: opt(&l.bk)?,
                bv: opt(&l.bv)?,
                q_norm: opt(&l.q_norm)?,
                k_norm: opt(&l.k_norm)?,
                wo: mat(&l.wo)?,
                post_attn_norm: opt(&l.post_attn_norm)?,
                ffn_norm: vec(&l.ffn_norm)?,
                w_gate: mat(&l.w_gate)?,
                w_up: mat(&l.w_up)?,
                w_down: mat(&l.w_down)?,
                post_ffn_norm: opt(&l.post_ffn_norm)?,
            });
        }
        let tied = core::ptr::eq(w.output.data.as_ptr(), w.token_embd.data.as_ptr());
        let (q_dim, kv_dim, n_ff) = (c.max_q_dim(), c.max_kv_dim(), c.max_ff());
        let logit_rows = (super::LOGITS_BYTES / (4 * c.n_vocab.max(1))).clamp(1, ROWS);
        let n_kv = c.n_layer() * n_ctx * kv_dim;
        let swa = if c.has_windows() {
            ROWS * c.rope_dim
        } else {
            1
        };
        Ok(GpuModel {
            layers,
            token_embd: mat(&w.token_embd)?,
            output: if tied { None } else { Some(mat(&w.output)?) },
            output_norm: vec(&w.output_norm)?,
            n_ctx,
            kv_dim,
            n: 0,
            tokens: g.zeros(ROWS)?,
            x: g.zeros(ROWS * c.n_embd)?,
            xb: g.zeros(ROWS * c.n_embd.max(q_dim))?,
            xb2: g.zeros(ROWS * c.n_embd)?,
            q: g.zeros(ROWS * q_dim)?,
            k: g.zeros(ROWS * kv_dim)?,
            v: g.zeros(ROWS * kv_dim)?,
            hb: g.zeros(ROWS * n_ff)?,
            hb2: g.zeros(ROWS * n_ff)?,
            xq: g.zeros(ROWS * c.n_embd.max(q_dim).max(n_ff))?,
            rope: g.zeros(ROWS * c.rope_dim)?,
            rope_swa: g.zeros(swa)?,
            logits: g.zeros(logit_rows * c.n_vocab)?,
            logit_rows,
            kc: g.zeros(n_kv)?,
            vc: g.zeros(n_kv)?,
            host_rope: vec![0.0; ROWS * c.rope_dim],
            host_rope_swa: vec![0.0; swa],
            gpu,
        })
    }

    /// What runs the model, for `bench`: `cuda (NVIDIA H100 80GB HBM3, compute capability
    /// 9.0)`.
    pub(super) fn name(&self) -> String {
        let i = self.gpu.info();
        let (major, minor) = i.compute_capability;
        format!("cuda ({}, compute capability {major}.{minor})", i.name)
    }

    /// How many positions' logits [`Self::logits`] returns at once.
    pub(super) fn logit_rows(&self) -> usize {
        self.logit_rows
    }

    /// Run `tokens` (at most `ROWS`) at positions `pos0..` through the layers (positions
    /// `< pos0` cached), leaving their final hidden states on the device.
    pub(super) fn run(
        &mut self,
        c: &Config,
        w: &Weights<'_>,
        tokens: &[u32],
        pos0: usize,
    ) -> Result<(), ModelError> {
        let n = tokens.len();
        if n == 0 || n > ROWS {
            return Err(ModelError::Tensor(format!(
                "a batch of {n} tokens (1 to {ROWS})"
            )));
        }
        if pos0 + n > self.n_ctx {
            return Err(ModelError::ContextFull { n_ctx: self.n_ctx });
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
            return Err(ModelError::BadToken {
                token,
                n_vocab: c.n_vocab,
            });
        }
        // Each row's RoPE table, computed on the host exactly as the CPU path does.
        let rd = c.rope_dim;
        let freqs = w.rope_freqs.as_deref();
        for i in 0..n {
            rope_cache(
                &mut self.host_rope[i * rd..(i + 1) * rd],
                pos0 + i,
                c,
                c.rope_base,
                freqs,
            );
            if c.has_windows() {
                let t = &mut self.host_rope_swa[i * rd..(i + 1) * rd];
                rope_cache(t, pos0 + i, c, c.rope_base_swa, freqs);
            }
        }
        self.forward(c, tokens, pos0).map_err(gpu_err)?;
        self.n = n;
        Ok(())
    }

    fn forward(&mut self, c: &Config, tokens: &[u32], pos0: usize) -> Result<(), GpuError> {
        let g = &*self.gpu;
        g.bind()?;
        let n = tokens.len();
        let (e, hd, rd) = (c.n_embd, c.head_dim, c.rope_dim);
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        g.write(&mut self.tokens, 0, &ids)?;
        g.write(&mut self.rope, 0, &self.host_rope[..n * rd])?;
        if c.has_windows() {
            g.write(&mut self.rope_swa, 0, &self.host_rope_swa[..n * rd])?;
        }

        // Embeddings (scaled where the architecture says).
        let x = self.x.at(0..n * e)?;
        g.get_rows(&self.token_embd, self.tokens.at(0..n)?, x)?;
        if let Some(s) = c.embd_scale {
            g.scale(x, s)?;
        }

        for (l, (lw, shape)) in self.layers.iter().zip(&c.layers).enumerate() {
            let (q_dim, kv_w, n_ff) = (shape.n_head * hd, shape.n_head_kv * hd, shape.n_ff);
            let xb = self.xb.at(0..n * e)?;
            // Attention: RMSNorm, Q, K, V.
            g.rmsnorm(xb, x, lw.attn_norm.all(), n, c.rms_eps)?;
            let (q, k, v) = (
                self.q.at(0..n * q_dim)?,
                self.k.at(0..n * kv_w)?,
                self.v.at(0..n * kv_w)?,
            );
            let xq = self.xq.all();
            products(g, &[(&lw.wq, q), (&lw.wk, k), (&lw.wv, v)], xb, n, xq)?;
            // Biases, per-head norms, RoPE; the queries' scale; keys and values cached.
            let rope = if shape.window.is_some() {
                self.rope_swa.at(0..n * rd)?
            } else {
                self.rope.at(0..n * rd)?
            };
            for (t, heads, bias, norm) in [
                (q, shape.n_head, &lw.bq, &lw.q_norm),
                (k, shape.n_head_kv, &lw.bk, &lw.k_norm),
            ] {
                if let Some(b) = bias {
                    g.add_bias(t, b.all())?;
                }
                if let Some(w) = norm {
                    g.rmsnorm(t, t, w.all(), n * heads, c.rms_eps)?;
                }
                g.rope(t, rope, n, heads, hd, rd, c.rope_neox)?;
            }
            if let Some(b) = &lw.bv {
                g.add_bias(v, b.all())?;
            }
            if let Some(s) = c.q_scale {
                g.scale(q, s)?;
            }
            let layer_row0 = l * self.n_ctx;
            let (kc, vc) = (self.kc.all(), self.vc.all());
            g.kv_store(k, v, kc, vc, n, kv_w, layer_row0 + pos0, self.kv_dim)?;
            let att = Attention {
                n_tok: n,
                pos0,
                n_head: shape.n_head,
                n_head_kv: shape.n_head_kv,
                head_dim: hd,
                kv_dim: self.kv_dim,
                layer_row0,
                kq_scale: if c.q_scale.is_some() {
                    1.0
                } else {
                    1.0 / (hd as f32).sqrt()
                },
                window: shape.window,
            };
            let out = self.xb.at(0..n * q_dim)?;
            g.attention(&att, q, kc, vc, out)?;
            // Output projection, post-norm, residual.
            let xb2 = self.xb2.at(0..n * e)?;
            products(g, &[(&lw.wo, xb2)], out, n, xq)?;
            residual(g, x, xb2, xb, lw.post_attn_norm.as_ref(), n, c.rms_eps)?;
            // FFN.
            if n_ff > 0 {
                g.rmsnorm(xb, x, lw.ffn_norm.all(), n, c.rms_eps)?;
                let (gate, up) = (self.hb.at(0..n * n_ff)?, self.hb2.at(0..n * n_ff)?);
                products(g, &[(&lw.w_gate, gate), (&lw.w_up, up)], xb, n, xq)?;
                g.glu(gate, up, c.gelu)?;
                products(g, &[(&lw.w_down, xb2)], gate, n, xq)?;
                residual(g, x, xb2, xb, lw.post_ffn_norm.as_ref(), n, c.rms_eps)?;
            }
        }
        Ok(())
    }

    /// The logits of rows `rows` of the last call (at most [`Self::logit_rows`]) into `out`,
    /// row after row.
    pub(super) fn logits(
        &mut self,
        c: &Config,
        rows: core::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let m = rows.len();
        if rows.end > self.n || m > self.logit_rows || out.len() != m * c.n_vocab {
            return Err(ModelError::Tensor(format!(
                "logits of rows {rows:?} of a call of {} ({} at a time) into {} values",
                self.n,
                self.logit_rows,
                out.len()
            )));
        }
        let g = &*self.gpu;
        let e = c.n_embd;
        let mut run = || -> Result<(), GpuError> {
            g.bind()?;
            let x = self.x.at(rows.start * e..rows.end * e)?;
            let xb = self.xb.at(0..m * e)?;
            g.rmsnorm(xb, x, self.output_norm.all(), m, c.rms_eps)?;
            let logits = self.logits.at(0..m * c.n_vocab)?;
            g.matmul(
                self.output.as_ref().unwrap_or(&self.token_embd),
                xb,
                logits,
                m,
            )?;
            if let Some(cap) = c.logit_softcap {
                g.softcap(logits, cap)?;
            }
            g.read(&self.logits, 0, out)
        };
        run().map_err(gpu_err)
    }
}

/// `y = w x` for each `(w, y)` of `ws` and the `n` rows of `x`, the rows first rounded into
/// `scratch` as the CPU kernels quantize activations for `w`'s type (`Gpu::round_activations`),
/// once per activation type as the CPU's `project` does: the two paths then multiply the same
/// values, and differ only in how they sum.
fn products(
    g: &Gpu,
    ws: &[(&DeviceMatrix, Dev<f32>)],
    x: Dev<f32>,
    n: usize,
    scratch: Dev<f32>,
) -> Result<(), GpuError> {
    let mut in_scratch = None; // the activation type `scratch` holds
    for &(w, y) in ws {
        let x = x.prefix(n * w.n_in)?;
        let act = kernels::vec_dot_type(w.ty);
        let input = if in_scratch == Some(act) {
            scratch
        } else if g.round_activations(w.ty, x, scratch)? {
            in_scratch = Some(act);
            scratch
        } else {
            x
        };
        g.matmul(w, input, y, n)?;
    }
    Ok(())
}

/// `x += d`, through the post-norm `post` first where the model has one (into `scratch`).
fn residual(
    g: &Gpu,
    x: Dev<f32>,
    d: Dev<f32>,
    scratch: Dev<f32>,
    post: Option<&DeviceBuf<f32>>,
    n: usize,
    eps: f32,
) -> Result<(), GpuError> {
    match post {
        Some(w) => {
            g.rmsnorm(scratch, d, w.all(), n, eps)?;
            g.add(x, scratch)
        }
        None => g.add(x, d),
    }
}
