//! llama.cpp itself (through llama-cpp-2), for tests that need the reference runtime: loading a
//! file we wrote, generating text, tokenizing.

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

/// The process-wide llama.cpp backend (it may be initialised only once), with its logging off
/// unless `SINTRA_LLAMA_LOGS` is set (to see why llama.cpp refuses a file).
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut b = LlamaBackend::init().expect("llama.cpp backend");
        if std::env::var_os("SINTRA_LLAMA_LOGS").is_none() {
            b.void_logs();
        }
        b
    })
}

/// llama.cpp's own account of the instruction sets it was built for (`llama_print_system_info`:
/// `CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | ...`).
pub fn system_info() -> String {
    backend();
    // SAFETY: llama.cpp returns a pointer to a NUL-terminated string in a static buffer, valid
    // until the next call; it is copied at once.
    let info = unsafe { std::ffi::CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
    info.to_string_lossy().into_owned()
}

/// Load a model for CPU inference.
pub fn load(path: &Path) -> Result<LlamaModel, String> {
    LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
        .map_err(|e| format!("llama.cpp cannot load {}: {e}", path.display()))
}

/// Greedy generation of `n` tokens after `prompt` (BOS added as the vocabulary asks), every
/// token decoded on its own, the prompt's too (llama.cpp's generation path, which sintra-rt
/// reproduces bit for bit; its batched prompt path rounds differently). Returns the
/// generated token ids and their text.
pub fn generate_greedy(
    path: &Path,
    prompt: &str,
    n: usize,
    threads: i32,
) -> Result<(Vec<i32>, String), String> {
    generate_greedy_gaps(path, prompt, n, threads).map(|(tokens, _, text)| (tokens, text))
}

/// [`generate_greedy`], with each step's gap between its two largest logits (how near a tie
/// the choice was).
pub fn generate_greedy_gaps(
    path: &Path,
    prompt: &str,
    n: usize,
    threads: i32,
) -> Result<(Vec<i32>, Vec<f32>, String), String> {
    let model = load(path)?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend(), ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let vocab = model.vocab();
    let prompt_tokens = vocab.tokenize(prompt.as_bytes(), true, true);
    let mut batch = LlamaBatch::new(1, 1);
    for (i, &t) in prompt_tokens.iter().enumerate() {
        batch.clear();
        batch
            .add(t, i as i32, &[0], true)
            .map_err(|e| e.to_string())?;
        ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
    }
    let mut out = Vec::new();
    let mut gaps = Vec::new();
    let mut text = Vec::new();
    for pos in (prompt_tokens.len() as i32..).take(n) {
        let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
        let next = argmax(logits) as i32;
        out.push(next);
        gaps.push(top2_gap(logits));
        text.extend(vocab.token_to_piece(LlamaToken(next), false, None));
        if vocab.is_eog(LlamaToken(next)) {
            break;
        }
        batch.clear();
        batch
            .add(LlamaToken(next), pos, &[0], true)
            .map_err(|e| e.to_string())?;
        ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
    }
    Ok((out, gaps, String::from_utf8_lossy(&text).into_owned()))
}

/// The largest logit less the second largest.
pub fn top2_gap(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in logits {
        if x > a {
            (a, b) = (x, a);
        } else if x > b {
            b = x;
        }
    }
    a - b
}

/// Per scored position of a teacher-forced run: the negative log-likelihood of the next token
/// and the top-1 token.
pub type Scored = (Vec<f64>, Vec<u32>);

/// Eval text turned into the model's own greedy continuations, for models whose continuation of
/// real text is the only text they model (random weights): `n_chunks` windows of `n_ctx` tokens
/// as [`teacher_forced`] cuts them, each keeping its first `n_ctx / 2 + 1` tokens of `tokens`
/// (the first replaced by `bos`) and continued greedily by llama.cpp token by token on one
/// thread (its [`teacher_forced_sequential`] path), so every scored position's target is the
/// reference's own top-1 choice. Beside the tokens, what [`teacher_forced_sequential`] gives
/// for them: the same decode steps on the same tokens, scored as they go.
pub fn greedy_windows(
    path: &Path,
    tokens: &[u32],
    bos: Option<u32>,
    n_ctx: usize,
    n_chunks: usize,
) -> Result<(Vec<u32>, Scored), String> {
    let model = load(path)?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx as u32))
        .with_n_threads(1)
        .with_n_threads_batch(1);
    let mut ctx = model
        .new_context(backend(), ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let first = n_ctx / 2;
    let mut out = Vec::with_capacity(n_ctx * n_chunks);
    let (mut nll, mut top1) = (Vec::new(), Vec::new());
    let mut batch = LlamaBatch::new(1, 1);
    for c in 0..n_chunks {
        let win = &tokens[c * n_ctx..(c + 1) * n_ctx];
        ctx.clear_kv_cache();
        let start = out.len();
        out.extend(&win[..=first]);
        for j in 0..n_ctx - 1 {
            let t = match j {
                0 => bos.unwrap_or(win[0]),
                _ => out[start + j],
            };
            batch.clear();
            batch
                .add(LlamaToken(t as i32), j as i32, &[0], j >= first)
                .map_err(|e| e.to_string())?;
            ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
            if j >= first {
                let logits = ctx.get_logits_ith(0);
                let next = argmax(logits) as u32;
                score(logits, next, &mut nll, &mut top1);
                out.push(next);
            }
        }
    }
    Ok((out, (nll, top1)))
}

/// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// The negative log-likelihood of `target` under `logits` (a stable log-softmax in f64) and
/// the top-1 token, appended to the two lists.
fn score(logits: &[f32], target: u32, nll: &mut Vec<f64>, top1: &mut Vec<u32>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    nll.push(-((logits[target as usize] - max) as f64 - sum.ln()));
    top1.push(argmax(logits) as u32);
}

/// Teacher-forced evaluation with llama.cpp, llama.cpp's perplexity method: `n_chunks` windows of
/// `n_ctx` tokens (the first replaced by `bos`), each from an empty cache, scoring positions
/// `n_ctx/2 .. n_ctx-1`. Returns, per scored position, the negative log-likelihood of the next
/// token and the top-1 token.
pub fn teacher_forced(
    path: &Path,
    tokens: &[u32],
    bos: Option<u32>,
    n_ctx: usize,
    n_chunks: usize,
    threads: i32,
) -> Result<Scored, String> {
    let model = load(path)?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx as u32))
        .with_n_batch(n_ctx as u32)
        .with_n_ubatch(n_ctx as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend(), ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let first = n_ctx / 2;
    let mut nll = Vec::new();
    let mut top1 = Vec::new();
    let mut batch = LlamaBatch::new(n_ctx, 1);
    for c in 0..n_chunks {
        let win = &tokens[c * n_ctx..(c + 1) * n_ctx];
        ctx.clear_kv_cache();
        batch.clear();
        for j in 0..n_ctx - 1 {
            let t = if j == 0 {
                bos.unwrap_or(win[0])
            } else {
                win[j]
            };
            batch
                .add(LlamaToken(t as i32), j as i32, &[0], j >= first)
                .map_err(|e| e.to_string())?;
        }
        ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
        for j in first..n_ctx - 1 {
            score(
                ctx.get_logits_ith(j as i32),
                win[j + 1],
                &mut nll,
                &mut top1,
            );
        }
    }
    Ok((nll, top1))
}

/// [`teacher_forced`] with every token decoded on its own (llama.cpp's generation path), on
/// one thread: the windows, BOS and scored positions are the same. One thread because from
/// 512 cached cells on, ggml's flash attention splits the cells of one token between its
/// threads and merges the parts, which rounds differently; on one thread the split is a
/// single part and the result is the plain online softmax sintra-rt computes (issue #3).
pub fn teacher_forced_sequential(
    path: &Path,
    tokens: &[u32],
    bos: Option<u32>,
    n_ctx: usize,
    n_chunks: usize,
) -> Result<Scored, String> {
    let model = load(path)?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx as u32))
        .with_n_threads(1)
        .with_n_threads_batch(1);
    let mut ctx = model
        .new_context(backend(), ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let first = n_ctx / 2;
    let mut nll = Vec::new();
    let mut top1 = Vec::new();
    let mut batch = LlamaBatch::new(1, 1);
    for c in 0..n_chunks {
        let win = &tokens[c * n_ctx..(c + 1) * n_ctx];
        ctx.clear_kv_cache();
        for j in 0..n_ctx - 1 {
            let t = if j == 0 {
                bos.unwrap_or(win[0])
            } else {
                win[j]
            };
            batch.clear();
            batch
                .add(LlamaToken(t as i32), j as i32, &[0], j >= first)
                .map_err(|e| e.to_string())?;
            ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
            if j >= first {
                score(ctx.get_logits_ith(0), win[j + 1], &mut nll, &mut top1);
            }
        }
    }
    Ok((nll, top1))
}

/// Logits of every position of `tokens` evaluated as one batch from an empty cache.
pub fn batch_logits(path: &Path, tokens: &[u32], threads: i32) -> Result<Vec<Vec<f32>>, String> {
    let model = load(path)?;
    let n = tokens.len();
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n.max(16) as u32))
        .with_n_batch(n as u32)
        .with_n_ubatch(n as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend(), ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let mut batch = LlamaBatch::new(n, 1);
    for (j, &t) in tokens.iter().enumerate() {
        batch
            .add(LlamaToken(t as i32), j as i32, &[0], true)
            .map_err(|e| e.to_string())?;
    }
    ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
    Ok((0..n)
        .map(|j| ctx.get_logits_ith(j as i32).to_vec())
        .collect())
}

/// Logits of every position of `tokens`, decoded one token at a time.
pub fn sequential_logits(
    path: &Path,
    tokens: &[u32],
    threads: i32,
) -> Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::new();
    each_sequential_logits(path, tokens, threads, |_, l| out.push(l.to_vec()))?;
    Ok(out)
}

/// [`sequential_logits`] handed to `f(position, logits)` one position at a time (for large
/// vocabularies, whose logits of every position would not fit in memory).
pub fn each_sequential_logits(
    path: &Path,
    tokens: &[u32],
    threads: i32,
    f: impl FnMut(usize, &[f32]),
) -> Result<(), String> {
    each_sequential_logits_in(path, tokens, tokens.len().max(16), threads, f)
}

/// [`each_sequential_logits`] in a context of `n_ctx` cells (which llama.cpp rounds up to a
/// multiple of 256; it picks LongRoPE's factors).
pub fn each_sequential_logits_in(
    path: &Path,
    tokens: &[u32],
    n_ctx: usize,
    threads: i32,
    mut f: impl FnMut(usize, &[f32]),
) -> Result<(), String> {
    let model = load(path)?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx as u32))
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend(), ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let mut batch = LlamaBatch::new(1, 1);
    for (j, &t) in tokens.iter().enumerate() {
        batch.clear();
        batch
            .add(LlamaToken(t as i32), j as i32, &[0], true)
            .map_err(|e| e.to_string())?;
        ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
        f(j, ctx.get_logits_ith(0));
    }
    Ok(())
}
