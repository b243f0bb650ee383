//! Perplexity and KL divergence, measured the way llama.cpp's `perplexity` tool measures them:
//! the text is cut into windows of `n_ctx` tokens (the first replaced by BOS when the vocabulary
//! adds one), each window is evaluated from an empty cache, and only the second half of each
//! window is scored, so every scored token sees at least `n_ctx / 2` tokens of context. A window
//! runs as a prompt ([`Llama::forward_batch`]), with the classifier only on the scored half.
//!
//! `--save-logits FILE` stores the log-probabilities of every scored position (as f16) with the
//! tokens; `--kl-divergence-base FILE` reads such a file from the original model and reports the
//! KL divergence from it, the top-1 agreement ("same top") and the perplexity change.

use crate::model::{Llama, ModelError};
use crate::threads::Pool;
use formats::quant::{fp16_bits_to_fp32, fp32_to_fp16_bits};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const LOGITS_MAGIC: &[u8; 8] = b"SNTRLGT1";

#[derive(Debug, Clone, Default)]
pub struct PplOptions {
    pub n_ctx: usize,
    /// Evaluate at most this many windows (default: as many as the text holds).
    pub max_chunks: Option<usize>,
}

/// KL divergence of a model from a base model over the same scored positions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KldStats {
    pub kld_mean: f64,
    pub kld_err: f64,
    /// Fraction of positions where both models' most likely token is the same.
    pub same_top: f64,
    pub same_top_err: f64,
    pub ppl_base: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PplResult {
    pub ppl: f64,
    /// One standard error of the perplexity estimate (llama.cpp's `+/-`).
    pub ppl_err: f64,
    pub n_scored: usize,
    pub n_chunks: usize,
    pub kld: Option<KldStats>,
    /// The model's top-1 token at every scored position (for agreement checks).
    pub top1: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PplError {
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("the text has {tokens} tokens, fewer than one window of {n_ctx}: use a longer text or a smaller --ctx")]
    TooShort { tokens: usize, n_ctx: usize },
    #[error("--ctx {0} is too small to score anything (at least 4)")]
    CtxTooSmall(usize),
    #[error("{path}: {problem}")]
    LogitsFile { path: String, problem: String },
}

fn file_err(path: &Path, problem: impl ToString) -> PplError {
    PplError::LogitsFile {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Base-model log-probabilities, read back from `--save-logits`.
struct BaseLogits {
    reader: BufReader<File>,
    n_vocab: usize,
    nll_sum: f64,
    row: Vec<u16>,
}

/// Header of a logits file: n_ctx, n_vocab, chunk count, then the evaluated tokens.
fn write_header(
    w: &mut impl Write,
    n_ctx: usize,
    n_vocab: usize,
    tokens: &[u32],
) -> io::Result<()> {
    w.write_all(LOGITS_MAGIC)?;
    for v in [n_ctx as u64, n_vocab as u64, tokens.len() as u64] {
        w.write_all(&v.to_le_bytes())?;
    }
    for t in tokens {
        w.write_all(&t.to_le_bytes())?;
    }
    Ok(())
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

impl BaseLogits {
    fn open(path: &Path, n_ctx: usize, n_vocab: usize, tokens: &[u32]) -> Result<Self, PplError> {
        let f = File::open(path).map_err(|e| file_err(path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|e| file_err(path, e))?;
        if &magic != LOGITS_MAGIC {
            return Err(file_err(
                path,
                "not a sintra-rt logits file (made with --save-logits)",
            ));
        }
        let hdr: Vec<u64> = (0..3)
            .map(|_| read_u64(&mut r))
            .collect::<Result<_, _>>()
            .map_err(|e| file_err(path, e))?;
        if hdr[0] != n_ctx as u64 || hdr[1] != n_vocab as u64 {
            return Err(file_err(
                path,
                format!("saved with ctx {} and vocabulary {}, this run has ctx {n_ctx} and vocabulary {n_vocab}", hdr[0], hdr[1]),
            ));
        }
        if hdr[2] != tokens.len() as u64 {
            return Err(file_err(
                path,
                format!(
                    "saved over {} tokens, this run evaluates {}: use the same text and --chunks",
                    hdr[2],
                    tokens.len()
                ),
            ));
        }
        for (i, &t) in tokens.iter().enumerate() {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| file_err(path, e))?;
            if u32::from_le_bytes(b) != t {
                return Err(file_err(
                    path,
                    format!(
                        "token {i} differs from this run's: the text or tokenizer is not the same"
                    ),
                ));
            }
        }
        Ok(BaseLogits {
            reader: r,
            n_vocab,
            nll_sum: 0.0,
            row: vec![0; n_vocab],
        })
    }

    /// The next saved row of log-probabilities, decoded into `out`.
    fn next(&mut self, out: &mut [f32], path: &Path) -> Result<(), PplError> {
        let mut bytes = vec![0u8; self.n_vocab * 2];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| file_err(path, format!("ends early: {e}")))?;
        for (r, b) in self.row.iter_mut().zip(bytes.chunks_exact(2)) {
            *r = u16::from_le_bytes([b[0], b[1]]);
        }
        for (o, &r) in out.iter_mut().zip(&self.row) {
            *o = fp16_bits_to_fp32(r);
        }
        Ok(())
    }
}

/// log-softmax of `logits` into `out` (in f64 accumulation, as llama.cpp).
fn log_softmax(logits: &[f32], out: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let log_sum = sum.ln() as f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = l - max - log_sum;
    }
}

/// Run llama.cpp's perplexity method over `tokens`. `on_chunk(done, total, ppl_so_far)` reports
/// progress after each window.
pub fn perplexity(
    model: &mut Llama<'_>,
    tokens: &[u32],
    bos: Option<u32>,
    opts: &PplOptions,
    save_logits: Option<&Path>,
    kld_base: Option<&Path>,
    pool: &Pool,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PplResult, PplError> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 4 {
        return Err(PplError::CtxTooSmall(n_ctx));
    }
    if n_ctx > model.state.n_ctx {
        return Err(ModelError::ContextFull {
            n_ctx: model.state.n_ctx,
        }
        .into());
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if let Some(m) = opts.max_chunks {
        n_chunks = n_chunks.min(m);
    }
    if n_chunks == 0 {
        return Err(PplError::TooShort {
            tokens: tokens.len(),
            n_ctx,
        });
    }
    let tokens = &tokens[..n_chunks * n_ctx];
    let n_vocab = model.config.n_vocab;
    let first = n_ctx / 2;

    let mut saver = match save_logits {
        Some(p) => {
            let f = File::create(p).map_err(|e| file_err(p, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            write_header(&mut w, n_ctx, n_vocab, tokens).map_err(|e| file_err(p, e))?;
            Some((w, p))
        }
        None => None,
    };
    let mut base = match kld_base {
        Some(p) => Some((BaseLogits::open(p, n_ctx, n_vocab, tokens)?, p)),
        None => None,
    };

    let mut logp = vec![0f32; n_vocab];
    let mut base_logp = vec![0f32; n_vocab];
    let mut row_bytes = vec![0u8; n_vocab * 2];
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let (mut kld_sum, mut kld2, mut same) = (0f64, 0f64, 0usize);
    let mut top1 = Vec::with_capacity(n_chunks * (n_ctx - 1 - first));

    for chunk in 0..n_chunks {
        let win = &tokens[chunk * n_ctx..(chunk + 1) * n_ctx];
        // The window but its last token, the first replaced by BOS, as one prompt: logits
        // only for the scored second half.
        let mut input = win[..n_ctx - 1].to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        model.forward_batch(&input, 0, pool, first, |j, logits| {
            log_softmax(logits, &mut logp);
            let target = win[j + 1] as usize;
            let l = -(logp[target] as f64);
            nll += l;
            nll2 += l * l;
            count += 1;
            let top = crate::sampler::argmax(&logp);
            top1.push(top);
            if let Some((w, p)) = saver.as_mut() {
                for (b, &v) in row_bytes.chunks_exact_mut(2).zip(&logp) {
                    b.copy_from_slice(&fp32_to_fp16_bits(v).to_le_bytes());
                }
                w.write_all(&row_bytes).map_err(|e| file_err(p, e))?;
            }
            if let Some((b, p)) = base.as_mut() {
                b.next(&mut base_logp, p)?;
                b.nll_sum += -(base_logp[target] as f64);
                // KL(base || model) = sum p_base * (log p_base - log p_model)
                let kld: f64 = base_logp
                    .iter()
                    .zip(&logp)
                    .map(|(&lb, &lm)| {
                        let pb = (lb as f64).exp();
                        pb * (lb as f64 - lm as f64)
                    })
                    .sum();
                kld_sum += kld;
                kld2 += kld * kld;
                if crate::sampler::argmax(&base_logp) == top {
                    same += 1;
                }
            }
            Ok::<(), PplError>(())
        })?;
        on_chunk(chunk + 1, n_chunks, (nll / count as f64).exp());
    }
    if let Some((mut w, p)) = saver {
        w.flush().map_err(|e| file_err(p, e))?;
    }

    let n = count as f64;
    let mean = nll / n;
    let var = (nll2 / n - mean * mean).max(0.0);
    let ppl = mean.exp();
    let ppl_err = if count > 1 {
        (var / (n - 1.0)).sqrt() * ppl
    } else {
        0.0
    };
    let kld = base.map(|(b, _)| {
        let m = kld_sum / n;
        let v = (kld2 / n - m * m).max(0.0);
        let p = same as f64 / n;
        KldStats {
            kld_mean: m,
            kld_err: if count > 1 {
                (v / (n - 1.0)).sqrt()
            } else {
                0.0
            },
            same_top: p,
            same_top_err: (p * (1.0 - p) / (n - 1.0).max(1.0)).sqrt(),
            ppl_base: (b.nll_sum / n).exp(),
        }
    });
    Ok(PplResult {
        ppl,
        ppl_err,
        n_scored: count,
        n_chunks,
        kld,
        top1,
    })
}
