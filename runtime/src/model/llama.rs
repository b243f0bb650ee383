//! The llama forward pass, top to bottom like llama2.c's `forward`: embedding -> per layer {
//! RMSNorm, Q/K/V, RoPE, cached attention, output projection, residual, RMSNorm, SiLU-gated FFN,
//! residual } -> final RMSNorm -> classifier.
//!
//! Three structs: [`Config`] (hyper-parameters, from GGUF metadata), [`Weights`] (views into
//! the memory map; nothing is copied but the small norm vectors), [`RunState`] (every buffer,
//! allocated once). A layer's steps are written once, over `n` token rows (`layer.rs`): this
//! file runs them on one token (decoding, [`Llama::forward`]), `batch.rs` on a prompt's batch.
//! The hot spot is the matrix-vector products: more than 95% of the time per token.

mod batch;
#[cfg(feature = "cuda")]
mod gpu;
#[cfg(not(feature = "cuda"))]
#[path = "llama/no_gpu.rs"]
mod gpu;
mod layer;
mod weights;

pub use batch::{LOGITS_BYTES, MAX_BATCH};
pub use layer::gelu_f16_table;
pub use weights::{LayerWeights, Weight, Weights};

use super::config::{Config, LayerShape};
use super::ModelError;
use crate::calibrate::Calibration;
use crate::threads::{Crew, Pool, Product};
use formats::gguf::GgufFile;
use formats::quant::{self, GgmlType};

/// Key/value cache element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F16,
    F32,
}

/// The key/value cache: per layer, `n_ctx` rows of `max_kv_dim`, as f16 bits or f32.
#[derive(Debug)]
enum KvCache {
    F16 { k: Vec<u16>, v: Vec<u16> }, // (layer, n_ctx, kv_dim)
    F32 { k: Vec<f32>, v: Vec<f32> }, // (layer, n_ctx, kv_dim)
}

/// Every buffer the forward pass needs, allocated once.
#[derive(Debug)]
pub struct RunState {
    pub n_ctx: usize,
    x: Vec<f32>,              // (n_embd) the residual stream
    x_in: Vec<f32>,           // (n_embd) the residual stream entering a block (calibration)
    xb: Vec<f32>,             // (max(n_embd, q_dim)) normed input / attention output
    xb2: Vec<f32>,            // (n_embd) output of a projection, before the residual add
    q: Vec<f32>,              // (q_dim)
    k: Vec<f32>,              // (kv_dim)
    v: Vec<f32>,              // (kv_dim)
    hb: Vec<f32>,             // (n_ff) gate
    hb2: Vec<f32>,            // (n_ff) up
    att: Vec<f32>,            // (n_ctx) scores of one head (f32 cache)
    q16: Vec<u16>,            // (MAX_QUERIES, head_dim) query heads as f16 (f16 cache)
    vkq16: Vec<u16>,          // (MAX_QUERIES, head_dim) their f16 value accumulators (f16 cache)
    act: Vec<u64>, // (3, act_words) quantized activations of a section (u64: 8-byte aligned)
    act_words: usize, // u64s per quantized activation
    rope_cache: Vec<f32>, // (rope_dim) cos, sin pairs for the current position
    rope_cache_swa: Vec<f32>, // (rope_dim or 0) the same at sliding layers' base
    pub logits: Vec<f32>, // (n_vocab)
    /// (logit_rows, n_vocab) a prompt's logits read back from the GPU (empty on the CPU).
    gpu_logits: Vec<f32>,
    kv: KvCache,
    kv_dim: usize,
    /// Calibration statistics collected by every forward pass, when attached (issue #7).
    pub calib: Option<Box<Calibration>>,
}

impl RunState {
    pub fn new(c: &Config, n_ctx: usize, kv_type: KvType) -> Self {
        let kv_dim = c.max_kv_dim();
        let q_dim = c.max_q_dim();
        let n_kv = c.n_layer() * n_ctx * kv_dim;
        let widest = c.n_embd.max(q_dim).max(c.max_ff());
        // Widest activation any supported weight type needs (rows are whole blocks, so the
        // widest row rounded up to a super-block bounds them all).
        let act_bytes = GgmlType::ALL
            .iter()
            .filter(|t| kernels::supported(**t))
            .filter_map(|&t| kernels::activation_bytes(t, widest.next_multiple_of(256)).ok())
            .max()
            .unwrap_or(0);
        RunState {
            n_ctx,
            x: vec![0.0; c.n_embd],
            x_in: vec![0.0; c.n_embd],
            xb: vec![0.0; c.n_embd.max(q_dim)],
            xb2: vec![0.0; c.n_embd],
            q: vec![0.0; q_dim],
            k: vec![0.0; kv_dim],
            v: vec![0.0; kv_dim],
            hb: vec![0.0; c.max_ff()],
            hb2: vec![0.0; c.max_ff()],
            att: vec![0.0; n_ctx],
            q16: vec![0; kernels::MAX_QUERIES * c.head_dim],
            vkq16: vec![0; kernels::MAX_QUERIES * c.head_dim],
            act: vec![0; 3 * act_bytes.div_ceil(8)],
            act_words: act_bytes.div_ceil(8),
            rope_cache: vec![0.0; c.rope_dim],
            rope_cache_swa: vec![0.0; if c.has_windows() { c.rope_dim } else { 0 }],
            logits: vec![0.0; c.n_vocab],
            gpu_logits: Vec::new(),
            kv: match kv_type {
                KvType::F16 => KvCache::F16 {
                    k: vec![0; n_kv],
                    v: vec![0; n_kv],
                },
                KvType::F32 => KvCache::F32 {
                    k: vec![0.0; n_kv],
                    v: vec![0.0; n_kv],
                },
            },
            kv_dim,
            calib: None,
        }
    }

    /// Bytes held by the KV cache.
    pub fn kv_bytes(&self) -> usize {
        match &self.kv {
            KvCache::F16 { k, v } => 2 * (k.len() + v.len()),
            KvCache::F32 { k, v } => 4 * (k.len() + v.len()),
        }
    }
}

/// `outs[i] = ws[i] x` for the `N` weights of one input, as one section of the crew: `x`
/// quantized once per distinct weight type, into the `N` activation slots of `act`.
fn project<'a, const N: usize>(
    ws: [&Weight<'a>; N],
    x: &[f32],
    outs: [&mut [f32]; N],
    act: &mut [u64],
    words: usize,
    crew: &Crew<'_, 'a>,
) -> Result<(), ModelError> {
    let mut src = [0usize; N];
    let mut lens = [0usize; N];
    for i in 0..N {
        match (0..i).find(|&j| ws[j].ty == ws[i].ty) {
            Some(j) => src[i] = j,
            None => {
                let slot = act.get_mut(i * words..(i + 1) * words).ok_or_else(|| {
                    ModelError::Tensor(format!("no activation slot {i} of {words} words"))
                })?;
                lens[i] = quantize_act(ws[i].ty, x, slot)?.len();
                src[i] = i;
            }
        }
    }
    let act: &[u64] = act;
    let mut k = 0;
    let mut products = outs.map(|out| {
        let slot = src[k];
        let bytes = bytemuck::cast_slice::<u64, u8>(&act[slot * words..(slot + 1) * words]);
        let p = Product {
            mat: ws[k].mat(),
            act: &bytes[..lens[slot]],
            out,
        };
        k += 1;
        p
    });
    crew.matvecs(&mut products)
        .map_err(|e| ModelError::Tensor(e.to_string()))
}

/// Quantize `x` into `act` for a matvec with weights of type `ty`; returns the used bytes.
fn quantize_act<'b>(ty: GgmlType, x: &[f32], act: &'b mut [u64]) -> Result<&'b [u8], ModelError> {
    let kerr = |e: kernels::KernelError| ModelError::Tensor(e.to_string());
    let n = kernels::activation_bytes(ty, x.len()).map_err(kerr)?;
    let bytes = bytemuck::cast_slice_mut::<u64, u8>(act)
        .get_mut(..n)
        .ok_or_else(|| ModelError::Tensor(format!("activation of {n} bytes exceeds the buffer")))?;
    kernels::quantize_activation(ty, x, bytes).map_err(kerr)?;
    Ok(bytes)
}

/// RMSNorm as ggml computes it: mean of squares accumulated in f64, then `x / sqrt(mean + eps)`
/// times the weight.
fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// [`rmsnorm`] of `v` in place (per-head Q/K norms).
fn rmsnorm_in_place(v: &mut [f32], weight: &[f32], eps: f32) {
    let scale = rms_scale(v, eps);
    for (x, &w) in v.iter_mut().zip(weight) {
        *x = *x * scale * w;
    }
}

/// `1 / sqrt(mean(x^2) + eps)`, the mean accumulated in f64 as ggml does.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// The embedding scale of architectures that have one (gemma3: `x * sqrt(n_embd)` in f32, as
/// llama.cpp's `ggml_scale`).
fn scale_embedding(c: &Config, x: &mut [f32]) {
    if let Some(scale) = c.embd_scale {
        x.iter_mut().for_each(|v| *v *= scale);
    }
}

/// The final logit soft-cap where the model has one: `cap * tanh(logit / cap)`, as llama.cpp
/// computes it (a scale by `1 / cap`, `tanh`, a scale by `cap`).
fn softcap(c: &Config, logits: &mut [f32]) {
    if let Some(cap) = c.logit_softcap {
        let inv = 1.0 / cap;
        logits.iter_mut().for_each(|l| *l = (*l * inv).tanh() * cap);
    }
}

/// cos/sin table for position `pos`, llama.cpp's way: theta starts at `pos` and is multiplied
/// by `base^(-2/rope_dim)` for each pair (in f32, so rounding matches), divided by the pair's
/// frequency factor, and both scaled by the attention factor (exact where it is 1).
fn rope_cache(cache: &mut [f32], pos: usize, c: &Config, base: f32, freqs: Option<&[f32]>) {
    let theta_scale = base.powf(-2.0 / c.rope_dim as f32);
    let mut theta = pos as f32;
    for i in 0..c.rope_dim / 2 {
        let ff = freqs.map_or(1.0, |f| f[i]);
        let t = c.rope_freq_scale * (theta / ff);
        cache[2 * i] = t.cos() * c.rope_attn_factor;
        cache[2 * i + 1] = t.sin() * c.rope_attn_factor;
        theta *= theta_scale;
    }
}

/// Rotate adjacent pairs of the first `rope_dim` values of every head (llama's "normal" RoPE;
/// GGUF conversion permuted Q and K so that this equals the Hugging Face rotation). With
/// ggml's roundings: its build fuses `x0 * cos - x1 * sin` into `fma(x0, cos, -(x1 * sin))`
/// and `x0 * sin + x1 * cos` into `fma(x0, sin, x1 * cos)` (issue #3).
fn rope(v: &mut [f32], head_dim: usize, cache: &[f32]) {
    for head in v.chunks_exact_mut(head_dim) {
        for (pair, cs) in head.chunks_exact_mut(2).zip(cache.chunks_exact(2)) {
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0.mul_add(cs[0], -(x1 * cs[1]));
            pair[1] = x0.mul_add(cs[1], x1 * cs[0]);
        }
    }
}

/// [`rope`] with NEOX's pairs (qwen2, qwen3, gemma3, phi3): value `i` of the rotated part with
/// value `i + rope_dim / 2`, by the angle of pair `i`, with the same roundings.
fn rope_neox(head: &mut [f32], cache: &[f32]) {
    let (lo, hi) = head.split_at_mut(head.len() / 2);
    for ((x0, x1), cs) in lo.iter_mut().zip(hi).zip(cache.chunks_exact(2)) {
        let (a, b) = (*x0, *x1);
        *x0 = a.mul_add(cs[0], -(b * cs[1]));
        *x1 = a.mul_add(cs[1], b * cs[0]);
    }
}

/// [`rope`] (or [`rope_neox`]) of the first `rope_dim` values of each head of `v` (heads of
/// `head_dim`).
fn rope_heads(v: &mut [f32], head_dim: usize, rope_dim: usize, cache: &[f32], neox: bool) {
    if neox {
        for head in v.chunks_exact_mut(head_dim) {
            rope_neox(&mut head[..rope_dim], cache);
        }
    } else if rope_dim == head_dim {
        rope(v, head_dim, cache);
    } else {
        for head in v.chunks_exact_mut(head_dim) {
            rope(&mut head[..rope_dim], rope_dim, cache);
        }
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// The attention shape of a layer: query heads, key/value heads (each serving
/// `n_head / n_head_kv` query heads), head size, the score scale (`1 / sqrt(head_dim)`, or 1
/// where the queries were scaled) and a sliding window (the positions a query sees, its own
/// included).
#[derive(Debug, Clone, Copy)]
struct Heads {
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    kq_scale: f32,
    window: Option<usize>,
}

impl Heads {
    /// The first position the query at `pos` attends to.
    fn first_position(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }
}

/// One thread's attention buffers: query heads rounded to f16 and their f16 value accumulators
/// (f16 cache), the scores of one head (f32 cache; at least `pos + 1`).
#[derive(Debug)]
struct AttnScratch<'s> {
    q16: &'s mut [u16],   // (MAX_QUERIES, head_dim)
    vkq16: &'s mut [u16], // (MAX_QUERIES, head_dim)
    att: &'s mut [f32],   // (n_ctx)
}

/// Where a layer's keys and values are in the cache: row `p` (position `p`, `kv_dim` values
/// of which the layer uses its own key/value width) starts at `(layer * n_ctx + p) * kv_dim`.
#[derive(Debug, Clone, Copy)]
struct LayerKv {
    layer: usize,
    n_ctx: usize,
    kv_dim: usize,
}

impl LayerKv {
    fn new(layer: usize, n_ctx: usize, kv_dim: usize) -> Self {
        LayerKv {
            layer,
            n_ctx,
            kv_dim,
        }
    }

    fn row(&self, pos: usize) -> usize {
        (self.layer * self.n_ctx + pos) * self.kv_dim
    }

    /// Cache the key `k` and value `v` of position `pos` (f16 caches round them).
    fn store(&self, kv: &mut KvCache, pos: usize, k: &[f32], v: &[f32]) {
        let at = self.row(pos);
        match kv {
            KvCache::F16 { k: kc, v: vc } => {
                for (d, &x) in kc[at..at + k.len()].iter_mut().zip(k) {
                    *d = quant::fp32_to_fp16_bits(x);
                }
                for (d, &x) in vc[at..at + v.len()].iter_mut().zip(v) {
                    *d = quant::fp32_to_fp16_bits(x);
                }
            }
            KvCache::F32 { k: kc, v: vc } => {
                kc[at..at + k.len()].copy_from_slice(k);
                vc[at..at + v.len()].copy_from_slice(v);
            }
        }
    }

    /// The attention of `n` consecutive tokens, the first at position `pos0` (their keys and
    /// values already cached): each query head of each token's row of `q` (`n` rows of
    /// `n_head * head_dim`) over positions 0..=its own of its key/value group, into the same
    /// row of `out`. Every token's result is the same whether it runs alone or with others.
    fn attend(
        &self,
        kv: &KvCache,
        h: Heads,
        pos0: usize,
        q: &[f32],
        out: &mut [f32],
        s: AttnScratch<'_>,
    ) -> Result<(), ModelError> {
        let hd = h.head_dim;
        let q_dim = h.n_head * hd;
        let group = h.n_head / h.n_head_kv.max(1);
        match kv {
            // Flash attention as ggml's CPU backend runs it for one token (llama.cpp enables it
            // on CPU; see `kernels::KernelTable::attend_f16`), for the query heads of one
            // key/value head and as many tokens as one call takes.
            KvCache::F16 { k, v } => {
                // Each call's queries see positions from one first position on: a sliding-window
                // layer's tokens share theirs (0) only while the window holds the whole past.
                let n = q.len() / q_dim;
                let shared_first = n == 0 || h.first_position(pos0 + n - 1) == 0;
                let tokens_per_call = match shared_first {
                    true => (kernels::MAX_QUERIES / group.max(1)).max(1),
                    false => 1,
                };
                let chunk = tokens_per_call * q_dim;
                let table = kernels::active();
                for kv_head in 0..h.n_head_kv {
                    let heads = kv_head * group * hd..(kv_head + 1) * group * hd;
                    for (c, (qc, oc)) in q.chunks(chunk).zip(out.chunks_mut(chunk)).enumerate() {
                        let first = h.first_position(pos0 + c * tokens_per_call);
                        let at = self.row(first) + kv_head * hd;
                        let (keys, values) = (&k[at..], &v[at..]);
                        // The query heads of this key/value head, rounded to f16.
                        let qh = qc
                            .chunks_exact(q_dim)
                            .flat_map(|row| row[heads.clone()].chunks_exact(hd));
                        for (q16, qh) in s.q16.chunks_exact_mut(hd).zip(qh) {
                            kernels::scalar::quantize_row_f16(qh, q16);
                        }
                        let outs = oc.chunks_exact_mut(q_dim).enumerate().flat_map(|(i, row)| {
                            let n_pos = pos0 + c * tokens_per_call + i + 1 - first;
                            let row: &mut [f32] = &mut row[heads.clone()];
                            row.chunks_exact_mut(hd).map(move |out| (n_pos, out))
                        });
                        let mut queries: Vec<kernels::F16Query<'_>> = s
                            .q16
                            .chunks_exact(hd)
                            .zip(outs)
                            .map(|(q16, (n_pos, out))| kernels::F16Query { q16, n_pos, out })
                            .collect();
                        table
                            .attend_f16(
                                &mut queries,
                                keys,
                                values,
                                self.kv_dim,
                                h.kq_scale,
                                s.vkq16,
                            )
                            .map_err(|e| ModelError::Tensor(e.to_string()))?;
                    }
                }
                Ok(())
            }
            KvCache::F32 { k, v } => {
                for (i, (q, out)) in q
                    .chunks_exact(q_dim)
                    .zip(out.chunks_exact_mut(q_dim))
                    .enumerate()
                {
                    let pos = pos0 + i;
                    let first = h.first_position(pos);
                    for head in 0..h.n_head {
                        let q = &q[head * hd..(head + 1) * hd];
                        let kv_off = (head / group) * hd;
                        let out = &mut out[head * hd..(head + 1) * hd];
                        let att = &mut s.att[..=pos - first];
                        for (t, a) in att.iter_mut().enumerate() {
                            let base = self.row(first + t) + kv_off;
                            let dot = k[base..base + hd]
                                .iter()
                                .zip(q)
                                .map(|(&kv, &qv)| kv * qv)
                                .sum::<f32>();
                            *a = dot * h.kq_scale;
                        }
                        softmax(att);
                        out.fill(0.0);
                        for (t, &a) in att.iter().enumerate() {
                            let base = self.row(first + t) + kv_off;
                            for (o, &vv) in out.iter_mut().zip(&v[base..base + hd]) {
                                *o += a * vv;
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Where a model may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On the GPU where this build and machine have one ([`crate::gpu`]), else the CPU.
    Auto,
    /// On the CPU (calibration, whose statistics the CPU path collects).
    Cpu,
}

/// Calibration statistics are collected by the CPU path: a model on the GPU has none to give.
fn no_calibration_on_gpu(s: &RunState) -> Result<(), ModelError> {
    match s.calib {
        Some(_) => Err(ModelError::Tensor(
            "calibration statistics are collected on the CPU: load the model with Place::Cpu"
                .into(),
        )),
        None => Ok(()),
    }
}

/// A model ready to run: config, weights (borrowing the map) and run state.
#[derive(Debug)]
pub struct Llama<'a> {
    pub config: Config,
    pub weights: Weights<'a>,
    pub state: RunState,
    /// The buffers of prompt processing ([`Self::forward_batch`]), made at its first batch.
    batch: Option<Box<batch::Batch>>,
    /// The model on the GPU, when it runs there (issue #21): every forward pass then runs on
    /// it, with its own KV cache; `state`'s buffers stay unused but for the logits.
    gpu: Option<Box<gpu::GpuModel>>,
}

impl<'a> Llama<'a> {
    /// The model of `file` for a context of `n_ctx`, on the GPU where there is one
    /// ([`Place::Auto`]).
    pub fn new(file: &'a GgufFile, n_ctx: usize, kv_type: KvType) -> Result<Self, ModelError> {
        Self::new_on(file, n_ctx, kv_type, Place::Auto)
    }

    /// [`Self::new`], placed by `place`.
    pub fn new_on(
        file: &'a GgufFile,
        n_ctx: usize,
        kv_type: KvType,
        place: Place,
    ) -> Result<Self, ModelError> {
        let config = Config::from_gguf(&file.header)?;
        if n_ctx == 0 {
            return Err(ModelError::BadHparam {
                key: "--ctx".into(),
                problem: "context size must be positive".into(),
            });
        }
        let device = gpu::device(place)?;
        // The GPU reads the file's layout; the CPU kernels may want theirs packed.
        let mut weights = Weights::load(file, &config, n_ctx, device.is_none())?;
        let mut on_gpu = None;
        if let Some(device) = device {
            let why = match gpu::unsupported(&config, &weights, kv_type) {
                Some(why) => why,
                None => match gpu::GpuModel::new(device, &config, &weights, n_ctx) {
                    Ok(m) => {
                        on_gpu = Some(Box::new(m));
                        String::new()
                    }
                    Err(e) => e,
                },
            };
            if on_gpu.is_none() {
                gpu::fall_back(&why)?;
                weights = Weights::from_file(file, &config, n_ctx)?;
            }
        }
        let mut state = RunState::new(&config, n_ctx, kv_type);
        if on_gpu.is_some() {
            // The cache lives on the device.
            state.kv = KvCache::F16 {
                k: Vec::new(),
                v: Vec::new(),
            };
        }
        Ok(Llama {
            config,
            weights,
            state,
            batch: None,
            gpu: on_gpu,
        })
    }

    /// What runs this model's matrix products: the GPU (`cuda (NVIDIA ..., compute
    /// capability 9.0)`) or the CPU's kernel table (`avx512+vnni`).
    pub fn device_name(&self) -> String {
        match &self.gpu {
            Some(g) => g.name(),
            None => kernels::isa_name().to_string(),
        }
    }

    /// Run one token at position `pos` (0-based; positions `< pos` must already be cached) and
    /// return the next-token logits.
    pub fn forward(&mut self, token: u32, pos: usize, pool: &Pool) -> Result<&[f32], ModelError> {
        self.forward_opt(token, pos, pool, true)
    }

    /// [`Self::forward`], skipping the final norm and classifier when `want_logits` is false
    /// (prompt tokens whose logits nobody reads; the classifier is a fifth of a small model).
    pub fn forward_opt(
        &mut self,
        token: u32,
        pos: usize,
        pool: &Pool,
        want_logits: bool,
    ) -> Result<&[f32], ModelError> {
        if let Some(g) = self.gpu.as_deref_mut() {
            no_calibration_on_gpu(&self.state)?;
            g.run(&self.config, &self.weights, &[token], pos)?;
            if !want_logits {
                return Ok(&[]);
            }
            g.logits(&self.config, 0..1, &mut self.state.logits)?;
            return Ok(&self.state.logits);
        }
        let c = &self.config;
        let widest = c
            .n_vocab
            .max(c.max_q_dim() + 2 * c.max_kv_dim())
            .max(2 * c.max_ff())
            .max(c.n_embd);
        pool.decode(widest, |crew| {
            self.forward_on_crew(token, pos, crew, want_logits)
        })
    }

    /// The forward pass itself, its matrix products on `crew` (see [`Pool::decode`]).
    fn forward_on_crew(
        &mut self,
        token: u32,
        pos: usize,
        crew: &Crew<'_, 'a>,
        want_logits: bool,
    ) -> Result<&[f32], ModelError> {
        let c = &self.config;
        let w = &self.weights;
        let s = &mut self.state;
        if pos >= s.n_ctx {
            return Err(ModelError::ContextFull { n_ctx: s.n_ctx });
        }
        if token as usize >= c.n_vocab {
            return Err(ModelError::BadToken {
                token,
                n_vocab: c.n_vocab,
            });
        }
        let e = c.n_embd;

        // Embedding, this position's RoPE tables, then the blocks on this one row.
        w.token_embd.row_f32(token as usize, &mut s.x)?;
        scale_embedding(c, &mut s.x);
        rope_cache(
            &mut s.rope_cache,
            pos,
            c,
            c.rope_base,
            w.rope_freqs.as_deref(),
        );
        if c.has_windows() {
            let freqs = w.rope_freqs.as_deref();
            rope_cache(&mut s.rope_cache_swa, pos, c, c.rope_base_swa, freqs);
        }
        let mut exec = layer::OnCrew {
            crew,
            act: &mut s.act,
            words: s.act_words,
            scratch: AttnScratch {
                q16: &mut s.q16,
                vkq16: &mut s.vkq16,
                att: &mut s.att,
            },
        };
        let mut rows = layer::Rows {
            n: 1,
            x: &mut s.x,
            x_in: &mut s.x_in,
            xb: &mut s.xb,
            xb2: &mut s.xb2,
            q: &mut s.q,
            k: &mut s.k,
            v: &mut s.v,
            hb: &mut s.hb,
            hb2: &mut s.hb2,
            rope: &s.rope_cache,
            rope_swa: &s.rope_cache_swa,
        };
        let cache = (s.n_ctx, s.kv_dim);
        let calib = s.calib.as_deref_mut();
        layer::blocks(
            &mut exec, c, &w.layers, cache, pos, &mut rows, &mut s.kv, calib,
        )?;

        if !want_logits && s.calib.is_none() {
            return Ok(&[]);
        }
        // Final norm and classifier.
        rmsnorm(&mut s.xb[..e], &s.x, &w.output_norm, c.rms_eps);
        if let Some(cal) = &mut s.calib {
            cal.add_output(&s.xb[..e]);
            if !want_logits {
                return Ok(&[]);
            }
        }
        layer::Exec::project(
            &mut exec,
            &mut [(&w.output, &mut s.logits[..])],
            &s.xb[..e],
            1,
            None,
        )?;
        softcap(c, &mut s.logits);
        Ok(&s.logits)
    }
}
