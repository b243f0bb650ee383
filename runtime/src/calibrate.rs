//! Calibration statistics for compression (issue #7), collected from the forward pass on a
//! calibration text and saved as a GGUF file the planner's executor reads:
//!
//! - **The importance matrix**: for every weight matrix, the sum over tokens of the squared
//!   activation entering each of its columns (`in_sum2`) and the token count, as llama.cpp's
//!   `llama-imatrix` collects them and in its GGUF layout (`general.type = "imatrix"`, tensors
//!   `<weight name>.in_sum2` and `<weight name>.counts`), so `llama-quantize --imatrix` reads
//!   our file too. Q, K and V share one input, and so do gate and up; the classifier's input is
//!   stored under the classifier's own tensor (`token_embd.weight` when the model ties them).
//! - **Block influence** per layer: the mean over tokens of `1 - cos(x_in, x_out)` between the
//!   residual stream entering and leaving the block (ShortGPT's measure: a block that barely
//!   turns the hidden state is a candidate for dropping), in `sintra.calibration.block_influence`.
//! - **FFN neuron norms**: the RMS activation of every FFN neuron is `sqrt(in_sum2 / counts)` of
//!   that layer's `ffn_down` input, which the importance matrix already holds.
//!
//! Windows of `n_ctx` tokens are evaluated from an empty cache, like the perplexity tool's;
//! every token of a window contributes (llama-imatrix does the same).

use crate::model::{Config, Llama, ModelError};
use crate::threads::Pool;
use formats::gguf::{GgufWriter, Value};
use formats::quant::GgmlType;
use std::path::Path;

/// Metadata key: mean `1 - cos(x_in, x_out)` of each block, one f32 per layer.
pub const KEY_BLOCK_INFLUENCE: &str = "sintra.calibration.block_influence";
/// Metadata key: the calibrated model's file name and size, for the reader's error messages.
pub const KEY_MODEL: &str = "sintra.calibration.model";

/// Where in a block an activation enters a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The normed input of Q, K and V.
    Attn,
    /// The attention output entering `attn_output`.
    AttnOutput,
    /// The normed input of gate and up.
    Ffn,
    /// SiLU(gate) * up entering `ffn_down`.
    FfnDown,
}

/// Running sums of squared activations, one per column of the matrices fed by one input.
#[derive(Debug, Clone)]
pub struct ColumnStats {
    pub sum2: Vec<f64>,
    pub count: u64,
}

impl ColumnStats {
    fn new(n: usize) -> Self {
        ColumnStats {
            sum2: vec![0.0; n],
            count: 0,
        }
    }

    fn add(&mut self, x: &[f32]) {
        for (s, &v) in self.sum2.iter_mut().zip(x) {
            *s += (v as f64) * (v as f64);
        }
        self.count += 1;
    }
}

#[derive(Debug, Clone)]
struct LayerStats {
    attn: ColumnStats,        // (n_embd)
    attn_output: ColumnStats, // (q_dim)
    ffn: ColumnStats,         // (n_embd)
    ffn_down: ColumnStats,    // (n_ff)
    influence_sum: f64,
    influence_n: u64,
}

/// What a calibration run has collected so far. Attach one to a model's run state
/// (`RunState::calib`) and every forward pass adds to it.
#[derive(Debug, Clone)]
pub struct Calibration {
    layers: Vec<LayerStats>,
    output: ColumnStats, // (n_embd) the classifier's input
    x_in: Vec<f32>,      // (n_embd) the residual stream entering the current block
    output_name: String, // the classifier's tensor name
    pub n_tokens: u64,
}

impl Calibration {
    pub fn new(c: &Config, output_name: &str) -> Self {
        let hd = c.head_dim;
        Calibration {
            layers: c
                .layers
                .iter()
                .map(|l| LayerStats {
                    attn: ColumnStats::new(c.n_embd),
                    attn_output: ColumnStats::new(l.n_head * hd),
                    ffn: ColumnStats::new(c.n_embd),
                    ffn_down: ColumnStats::new(l.n_ff),
                    influence_sum: 0.0,
                    influence_n: 0,
                })
                .collect(),
            output: ColumnStats::new(c.n_embd),
            x_in: vec![0.0; c.n_embd],
            output_name: output_name.to_string(),
            n_tokens: 0,
        }
    }

    /// The residual stream `x` enters block `layer`.
    pub fn block_start(&mut self, x: &[f32]) {
        self.x_in.copy_from_slice(x);
    }

    /// Block `layer` leaves the residual stream at `x`.
    pub fn block_end(&mut self, layer: usize, x: &[f32]) {
        let (mut dot, mut a2, mut b2) = (0f64, 0f64, 0f64);
        for (&a, &b) in self.x_in.iter().zip(x) {
            let (a, b) = (a as f64, b as f64);
            dot += a * b;
            a2 += a * a;
            b2 += b * b;
        }
        let denom = (a2 * b2).sqrt();
        let cos = if denom > 0.0 { dot / denom } else { 1.0 };
        let l = &mut self.layers[layer];
        l.influence_sum += 1.0 - cos;
        l.influence_n += 1;
    }

    /// `x` enters the matrices of `site` in block `layer`.
    pub fn add(&mut self, layer: usize, site: Site, x: &[f32]) {
        let l = &mut self.layers[layer];
        match site {
            Site::Attn => l.attn.add(x),
            Site::AttnOutput => l.attn_output.add(x),
            Site::Ffn => l.ffn.add(x),
            Site::FfnDown => l.ffn_down.add(x),
        }
    }

    /// `x` enters the classifier (one token done).
    pub fn add_output(&mut self, x: &[f32]) {
        self.output.add(x);
        self.n_tokens += 1;
    }

    /// Mean `1 - cos` of each block (0 for a block no token went through).
    pub fn block_influence(&self) -> Vec<f32> {
        self.layers
            .iter()
            .map(|l| {
                if l.influence_n == 0 {
                    0.0
                } else {
                    (l.influence_sum / l.influence_n as f64) as f32
                }
            })
            .collect()
    }

    /// Every weight matrix's name with the statistics of its input: the names of separate and
    /// of fused matrices alike (phi3's `attn_qkv`, whose input is Q, K and V's; a fused
    /// `ffn_up` has the name of the separate one), so that a file keeps those it has.
    pub fn matrices(&self) -> Vec<(String, &ColumnStats)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (name, s) in [
                ("attn_q", &l.attn),
                ("attn_k", &l.attn),
                ("attn_v", &l.attn),
                ("attn_qkv", &l.attn),
                ("attn_output", &l.attn_output),
                ("ffn_gate", &l.ffn),
                ("ffn_up", &l.ffn),
                ("ffn_down", &l.ffn_down),
            ] {
                out.push((format!("blk.{i}.{name}.weight"), s));
            }
        }
        out.push((self.output_name.clone(), &self.output));
        out
    }

    /// Write the statistics of the matrices `has` names (the model's own tensors) as a
    /// llama.cpp-style imatrix GGUF file at `dst` (temporary file and rename). `dataset` names
    /// the calibration text; `chunks` and `n_ctx` describe the run.
    pub fn save(
        &self,
        dst: &Path,
        (dataset, model): (&str, &str),
        (chunks, n_ctx): (usize, usize),
        has: impl Fn(&str) -> bool,
    ) -> Result<u64, String> {
        let mut w = GgufWriter::new();
        w.set("general.type", Value::String("imatrix".into()));
        w.set(
            "imatrix.datasets",
            Value::Array(formats::gguf::Array::String(vec![dataset.to_string()])),
        );
        w.set("imatrix.chunk_count", Value::U32(chunks as u32));
        w.set("imatrix.chunk_size", Value::U32(n_ctx as u32));
        w.set(KEY_MODEL, Value::String(model.to_string()));
        w.set(
            KEY_BLOCK_INFLUENCE,
            Value::Array(formats::gguf::Array::F32(self.block_influence())),
        );
        let mut matrices = self.matrices();
        matrices.retain(|(name, _)| has(name));
        for (name, s) in &matrices {
            let e = |e: formats::gguf::WriteError| e.to_string();
            w.add_tensor(
                &format!("{name}.in_sum2"),
                &[s.sum2.len() as u64, 1],
                GgmlType::F32,
            )
            .map_err(e)?;
            w.add_tensor(&format!("{name}.counts"), &[1, 1], GgmlType::F32)
                .map_err(e)?;
        }
        w.write_to_path(dst, |i, _, out| {
            let s = matrices[i / 2].1;
            if i % 2 == 0 {
                for &v in &s.sum2 {
                    out.write_all(&(v as f32).to_le_bytes())?;
                }
            } else {
                out.write_all(&(s.count as f32).to_le_bytes())?;
            }
            Ok(())
        })
        .map_err(|e| format!("{}: {e}", dst.display()))
    }
}

/// Evaluate `tokens` in windows of `n_ctx` (at most `max_chunks` of them) with `cal` attached,
/// the first token of each window replaced by `bos` when the vocabulary has one.
/// `on_chunk(done, total)` hears after each window. Returns the number of windows.
pub fn run(
    model: &mut Llama<'_>,
    cal: Calibration,
    tokens: &[u32],
    bos: Option<u32>,
    n_ctx: usize,
    max_chunks: Option<usize>,
    pool: &Pool,
    mut on_chunk: impl FnMut(usize, usize),
) -> Result<(Calibration, usize), ModelError> {
    let mut n_chunks = tokens.len() / n_ctx.max(1);
    if let Some(m) = max_chunks {
        n_chunks = n_chunks.min(m);
    }
    model.state.calib = Some(Box::new(cal));
    let mut result = Ok(());
    for chunk in 0..n_chunks {
        let mut window = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
        if let (Some(first), Some(b)) = (window.first_mut(), bos) {
            *first = b;
        }
        // A prompt without logits: the batch path hears every token, as one at a time would.
        let no_logits = window.len();
        if let Err(e) = model.forward_batch(&window, 0, pool, no_logits, |_, _| Ok(())) {
            result = Err(e);
            break;
        }
        on_chunk(chunk + 1, n_chunks);
    }
    let cal = model.state.calib.take();
    result?;
    let cal = cal.ok_or_else(|| ModelError::Tensor("calibration state lost".into()))?;
    Ok((*cal, n_chunks))
}
