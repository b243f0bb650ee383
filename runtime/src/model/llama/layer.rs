//! One transformer block over `n` token rows, written once for both ways the runtime runs it
//! (issue #15's seam): decoding (one row, matrix-vector products split over the decode crew,
//! [`OnCrew`]) and prompt processing (a batch of rows, matrix products and per-row steps split
//! over the pool, [`OnPool`]). [`layer`] reads top to bottom; what differs between the two
//! paths is only how a product, a per-row step and attention are run ([`Exec`]), never the
//! arithmetic of a row, so a prompt's logits stay bit-identical to token-by-token decoding.

use super::{
    rmsnorm, rmsnorm_in_place, rope_heads, AttnScratch, Heads, KvCache, LayerKv, LayerShape,
    LayerWeights,
};
use super::{Config, ModelError, Weight};
use crate::calibrate::{Calibration, Site};
use crate::threads::{Crew, Pool};
use core::ops::Range;

/// How a per-row step runs over rows: in place on one thread, or split over the pool.
pub(super) trait RunRows {
    /// `f(rows, out[rows])` over the rows of `out` (`width` values each), maybe in parallel.
    fn rows<F>(&self, out: &mut [f32], width: usize, f: F) -> Result<(), ModelError>
    where
        F: Fn(Range<usize>, &mut [f32]) -> Result<(), ModelError> + Sync;
}

impl RunRows for Pool {
    fn rows<F>(&self, out: &mut [f32], width: usize, f: F) -> Result<(), ModelError>
    where
        F: Fn(Range<usize>, &mut [f32]) -> Result<(), ModelError> + Sync,
    {
        self.for_tokens(out, width, f)
    }
}

/// How a block's steps run on its rows.
pub(super) trait Exec<'w>: RunRows {
    /// `out = w x[t]` for each `(w, out)` of `ws` and each of the `n` rows of `x` (outputs
    /// token-major: row `t` of `out` at `t * w.n_out`); a calibration run hears every input
    /// row first.
    fn project(
        &mut self,
        ws: &mut [(&Weight<'w>, &mut [f32])],
        x: &[f32],
        n: usize,
        calib: Option<(&mut Calibration, usize, Site)>,
    ) -> Result<(), ModelError>;

    /// Causal attention of the `n` query rows `q` (positions `pos0..pos0 + n`, whose keys and
    /// values are cached) into `out`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &mut self,
        layer: &LayerKv,
        kv: &KvCache,
        heads: Heads,
        pos0: usize,
        n: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<(), ModelError>;
}

/// A block's rows: `n` tokens of each buffer, token-major, each row of the current layer's
/// width (the buffers are sized for the widest layer).
pub(super) struct Rows<'b> {
    pub n: usize,
    /// The residual stream (n_embd a row).
    pub x: &'b mut [f32],
    /// The stream entering the block (calibration's block influence).
    pub x_in: &'b mut [f32],
    /// Normed input, then attention output (max(n_embd, q_dim) a row).
    pub xb: &'b mut [f32],
    /// A projection's output before the residual add (n_embd).
    pub xb2: &'b mut [f32],
    pub q: &'b mut [f32],
    pub k: &'b mut [f32],
    pub v: &'b mut [f32],
    /// The FFN's gate and up (n_ff).
    pub hb: &'b mut [f32],
    pub hb2: &'b mut [f32],
    /// Each row's RoPE table (cos, sin pairs of its position; rope_dim a row), and the same at
    /// the sliding-window layers' base (empty when no layer slides).
    pub rope: &'b [f32],
    pub rope_swa: &'b [f32],
}

/// Where the block is: its index and weights, its shape, the cache and the first row's
/// position.
struct Block<'a, 'w> {
    pub l: usize,
    pub weights: &'a LayerWeights<'w>,
    pub shape: LayerShape,
    pub kv: LayerKv,
    pub pos0: usize,
}

/// Every block of the model in turn (`layers`, the cache of `n_ctx` positions of `kv_dim`
/// values a layer) on the rows `r`, whose first is at position `pos0`.
#[allow(clippy::too_many_arguments)]
pub(super) fn blocks<'w, E: Exec<'w>>(
    exec: &mut E,
    c: &Config,
    layers: &[LayerWeights<'w>],
    (n_ctx, kv_dim): (usize, usize),
    pos0: usize,
    r: &mut Rows<'_>,
    cache: &mut KvCache,
    mut calib: Option<&mut Calibration>,
) -> Result<(), ModelError> {
    for (l, (weights, &shape)) in layers.iter().zip(&c.layers).enumerate() {
        let kv = LayerKv::new(l, n_ctx, kv_dim);
        let b = Block {
            l,
            weights,
            shape,
            kv,
            pos0,
        };
        layer(exec, c, b, r, cache, calib.as_deref_mut())?;
    }
    Ok(())
}

/// Block `b` on the rows `r`: attention (RMSNorm, Q/K/V, RoPE, cache, attention, output
/// projection, residual), then the FFN (RMSNorm, SiLU(gate) * up, down, residual).
fn layer<'w, E: Exec<'w>>(
    exec: &mut E,
    c: &Config,
    b: Block<'_, 'w>,
    r: &mut Rows<'_>,
    cache: &mut KvCache,
    mut calib: Option<&mut Calibration>,
) -> Result<(), ModelError> {
    let (e, hd, n, l) = (c.n_embd, c.head_dim, r.n, b.l);
    let lw = b.weights;
    let (q_dim, kv_dim, n_ff) = (b.shape.n_head * hd, b.shape.n_head_kv * hd, b.shape.n_ff);
    if calib.is_some() {
        r.x_in[..n * e].copy_from_slice(&r.x[..n * e]);
    }

    // Attention: RMSNorm, then Q, K, V from the same quantized input.
    norm_rows(exec, r.xb, r.x, n, &lw.attn_norm, c.rms_eps)?;
    exec.project(
        &mut [
            (&lw.wq, &mut r.q[..]),
            (&lw.wk, &mut r.k[..]),
            (&lw.wv, &mut r.v[..]),
        ],
        &r.xb[..n * e],
        n,
        calib.as_deref_mut().map(|cal| (cal, l, Site::Attn)),
    )?;

    // Biases (qwen2), per-head Q/K norms (qwen3, gemma3) and RoPE on the rotated part of each
    // query and key head, then the keys and values cached.
    let (rope_dim, neox) = (c.rope_dim, c.rope_neox);
    let rope = if b.shape.window.is_some() {
        r.rope_swa
    } else {
        r.rope
    };
    let (eps, q_scale) = (c.rms_eps, c.q_scale);
    for (v, dim, bias, norm) in [
        (&mut *r.q, q_dim, &lw.bq, &lw.q_norm),
        (&mut *r.k, kv_dim, &lw.bk, &lw.k_norm),
    ] {
        exec.rows(&mut v[..n * dim], dim, |rows, v| {
            for (i, v) in rows.zip(v.chunks_exact_mut(dim)) {
                if let Some(bias) = bias {
                    add_rows(v, bias);
                }
                if let Some(w) = norm {
                    for head in v.chunks_exact_mut(hd) {
                        rmsnorm_in_place(head, w, eps);
                    }
                }
                rope_heads(
                    v,
                    hd,
                    rope_dim,
                    &rope[i * rope_dim..(i + 1) * rope_dim],
                    neox,
                );
            }
            Ok(())
        })?;
    }
    if let Some(bias) = &lw.bv {
        for v in r.v[..n * kv_dim].chunks_exact_mut(kv_dim) {
            add_rows(v, bias);
        }
    }
    // gemma3 and phi3 scale the queries (in f32, before attention rounds them to f16).
    if let Some(scale) = q_scale {
        r.q[..n * q_dim].iter_mut().for_each(|x| *x *= scale);
    }
    for i in 0..n {
        let rows = i * kv_dim..(i + 1) * kv_dim;
        b.kv.store(cache, b.pos0 + i, &r.k[rows.clone()], &r.v[rows]);
    }

    // Causal attention over positions 0..=pos0 + i for row i (the last `window` of them in a
    // sliding-window layer).
    let heads = Heads {
        n_head: b.shape.n_head,
        n_head_kv: b.shape.n_head_kv,
        head_dim: hd,
        kq_scale: if q_scale.is_some() {
            1.0
        } else {
            1.0 / (hd as f32).sqrt()
        },
        window: b.shape.window,
    };
    let (q, out) = (&r.q[..n * q_dim], &mut r.xb[..n * q_dim]);
    exec.attend(&b.kv, cache, heads, b.pos0, n, q, out)?;

    // Output projection, its post-norm (gemma3) and residual.
    exec.project(
        &mut [(&lw.wo, &mut r.xb2[..])],
        &r.xb[..n * q_dim],
        n,
        calib.as_deref_mut().map(|cal| (cal, l, Site::AttnOutput)),
    )?;
    residual(exec, r, n, e, lw.post_attn_norm.as_deref(), eps)?;

    // FFN: RMSNorm, SiLU(gate) * up (GELU(gate) * up for gemma3), down, post-norm, residual.
    if n_ff > 0 {
        norm_rows(exec, r.xb, r.x, n, &lw.ffn_norm, c.rms_eps)?;
        exec.project(
            &mut [(&lw.w_gate, &mut r.hb[..]), (&lw.w_up, &mut r.hb2[..])],
            &r.xb[..n * e],
            n,
            calib.as_deref_mut().map(|cal| (cal, l, Site::Ffn)),
        )?;
        // Row by row (the SIMD kernel's tail depends on the row length).
        let (up, gelu) = (&*r.hb2, c.gelu);
        exec.rows(&mut r.hb[..n * n_ff], n_ff, |rows, gate| {
            let ups = up[rows.start * n_ff..rows.end * n_ff].chunks_exact(n_ff);
            for (g, u) in gate.chunks_exact_mut(n_ff).zip(ups) {
                if gelu {
                    geglu(g, u);
                } else {
                    kernels::swiglu_f32(g, u);
                }
            }
            Ok(())
        })?;
        exec.project(
            &mut [(&lw.w_down, &mut r.xb2[..])],
            &r.hb[..n * n_ff],
            n,
            calib.as_deref_mut().map(|cal| (cal, l, Site::FfnDown)),
        )?;
        residual(exec, r, n, e, lw.post_ffn_norm.as_deref(), eps)?;
    }
    if let Some(cal) = calib {
        for (x_in, x) in r.x_in.chunks_exact(e).zip(r.x.chunks_exact(e)).take(n) {
            cal.block_start(x_in);
            cal.block_end(l, x);
        }
    }
    Ok(())
}

/// `rmsnorm` of each of the `n` rows of `x` into the rows of `out`.
pub(super) fn norm_rows<E: RunRows>(
    exec: &E,
    out: &mut [f32],
    x: &[f32],
    n: usize,
    weight: &[f32],
    eps: f32,
) -> Result<(), ModelError> {
    let e = weight.len();
    exec.rows(&mut out[..n * e], e, |rows, out| {
        let xs = x[rows.start * e..rows.end * e].chunks_exact(e);
        for (o, xr) in out.chunks_exact_mut(e).zip(xs) {
            rmsnorm(o, xr, weight, eps);
        }
        Ok(())
    })
}

/// The residual add.
fn add_rows(x: &mut [f32], d: &[f32]) {
    x.iter_mut().zip(d).for_each(|(x, d)| *x += d);
}

/// `x += xb2` on the `n` rows, through the post-norm `post` first where the model has one
/// (normed into `xb`, free by then).
fn residual<E: RunRows>(
    exec: &E,
    r: &mut Rows<'_>,
    n: usize,
    e: usize,
    post: Option<&[f32]>,
    eps: f32,
) -> Result<(), ModelError> {
    match post {
        Some(w) => {
            norm_rows(exec, r.xb, r.xb2, n, w, eps)?;
            add_rows(&mut r.x[..n * e], &r.xb[..n * e]);
        }
        None => add_rows(&mut r.x[..n * e], &r.xb2[..n * e]),
    }
    Ok(())
}

/// `gelu(gate) * up` in place, as ggml's CPU backend computes it (`ggml_vec_geglu_f32` with
/// `GGML_GELU_FP16`): 0 at or below -10, `gate * up` at or above 10, otherwise GELU's tanh
/// form looked up in a table of halves at the gate rounded to f16 ([`gelu_f16_table`]).
fn geglu(gate: &mut [f32], up: &[f32]) {
    use formats::quant::{fp16_bits_to_fp32, fp32_to_fp16_bits};
    let table = gelu_f16_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            fp16_bits_to_fp32(table[usize::from(fp32_to_fp16_bits(x))]) * u
        };
    }
}

/// GELU of every half, rounded to a half: ggml's `ggml_table_gelu_f16`, whose build contracts
/// `1 + a * x * x` into one fused multiply-add (without it one entry in 37,376 differs).
/// Made once per process (128 KiB).
pub fn gelu_f16_table() -> &'static [u16] {
    use formats::quant::{fp16_bits_to_fp32, fp32_to_fp16_bits};
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        const COEF_A: f32 = 0.044_715;
        (0..=u16::MAX)
            .map(|bits| {
                let x = fp16_bits_to_fp32(bits);
                let inner = SQRT_2_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0);
                fp32_to_fp16_bits(0.5 * x * (1.0 + inner.tanh()))
            })
            .collect()
    })
}

/// Decoding: one row, each section's matrix-vector products split over the crew.
pub(super) struct OnCrew<'c, 's, 'w> {
    pub crew: &'c Crew<'s, 'w>,
    /// The quantized activations of a section: one slot of `words` per product.
    pub act: &'c mut [u64],
    pub words: usize,
    pub scratch: AttnScratch<'c>,
}

impl RunRows for OnCrew<'_, '_, '_> {
    fn rows<F>(&self, out: &mut [f32], width: usize, f: F) -> Result<(), ModelError>
    where
        F: Fn(Range<usize>, &mut [f32]) -> Result<(), ModelError> + Sync,
    {
        f(0..out.len() / width.max(1), out)
    }
}

impl<'w> Exec<'w> for OnCrew<'_, '_, 'w> {
    fn project(
        &mut self,
        ws: &mut [(&Weight<'w>, &mut [f32])],
        x: &[f32],
        n: usize,
        calib: Option<(&mut Calibration, usize, Site)>,
    ) -> Result<(), ModelError> {
        debug_assert_eq!(n, 1, "the decode crew runs one row");
        if let Some((cal, layer, site)) = calib {
            cal.add(layer, site, x);
        }
        let (act, words, crew) = (&mut *self.act, self.words, self.crew);
        match ws {
            [(w0, o0)] => super::project([*w0], x, [&mut o0[..w0.n_out]], act, words, crew),
            [(w0, o0), (w1, o1)] => super::project(
                [*w0, *w1],
                x,
                [&mut o0[..w0.n_out], &mut o1[..w1.n_out]],
                act,
                words,
                crew,
            ),
            [(w0, o0), (w1, o1), (w2, o2)] => super::project(
                [*w0, *w1, *w2],
                x,
                [
                    &mut o0[..w0.n_out],
                    &mut o1[..w1.n_out],
                    &mut o2[..w2.n_out],
                ],
                act,
                words,
                crew,
            ),
            _ => Err(ModelError::Tensor(format!(
                "a decode section of {} products (1 to 3)",
                ws.len()
            ))),
        }
    }

    fn attend(
        &mut self,
        layer: &LayerKv,
        kv: &KvCache,
        heads: Heads,
        pos0: usize,
        n: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        debug_assert_eq!(n, 1, "the decode crew runs one row");
        let s = &mut self.scratch;
        let scratch = AttnScratch {
            q16: &mut *s.q16,
            vkq16: &mut *s.vkq16,
            att: &mut *s.att,
        };
        layer.attend(kv, heads, pos0, q, out, scratch)
    }
}

/// Prompt processing: a batch of rows, each product split over the pool's threads by weight
/// rows, per-row steps and attention by tokens.
pub(super) struct OnPool<'p> {
    pub pool: &'p Pool,
    /// The quantized input rows of a product.
    pub act: &'p mut [u64],
    pub n_ctx: usize,
    pub head_dim: usize,
}

impl RunRows for OnPool<'_> {
    fn rows<F>(&self, out: &mut [f32], width: usize, f: F) -> Result<(), ModelError>
    where
        F: Fn(Range<usize>, &mut [f32]) -> Result<(), ModelError> + Sync,
    {
        self.pool.rows(out, width, f)
    }
}

impl<'w> Exec<'w> for OnPool<'_> {
    fn project(
        &mut self,
        ws: &mut [(&Weight<'w>, &mut [f32])],
        x: &[f32],
        n: usize,
        calib: Option<(&mut Calibration, usize, Site)>,
    ) -> Result<(), ModelError> {
        super::batch::matmuls(ws, x, n, self.act, self.pool, calib)
    }

    fn attend(
        &mut self,
        layer: &LayerKv,
        kv: &KvCache,
        heads: Heads,
        pos0: usize,
        n: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        // Token i over positions 0..=pos0 + i, tokens split between threads by their number
        // of positions; each thread its own scratch.
        let (hd, n_ctx) = (self.head_dim, self.n_ctx);
        let q_dim = q.len() / n.max(1);
        self.pool.for_units(
            &mut out[..n * q_dim],
            q_dim,
            |i| pos0 + i + 1,
            |tokens, out| {
                let mut q16 = vec![0u16; kernels::MAX_QUERIES * hd];
                let mut vkq16 = vec![0u16; kernels::MAX_QUERIES * hd];
                let mut att = vec![0f32; n_ctx];
                let scratch = AttnScratch {
                    q16: &mut q16,
                    vkq16: &mut vkq16,
                    att: &mut att,
                };
                let q = &q[tokens.start * q_dim..tokens.end * q_dim];
                layer.attend(kv, heads, pos0 + tokens.start, q, out, scratch)
            },
        )
    }
}
