//! What the runtime does, shared by the command line (`sintra-rt bench ...`) and the wire
//! protocol (`sintra-rt serve`): each task takes a mapped model and its settings, reports
//! progress through a callback and returns the result as the wire protocol spells it, so the two
//! front ends only differ in how they print.

use crate::calibrate::Calibration;
use crate::chat;
use crate::model::{Config, KvType, Llama, ModelError};
use crate::perplexity::{perplexity, PplOptions};
use crate::sampler::{Sampler, SamplerConfig};
use crate::sysinfo;
use crate::threads::Pool;
use crate::tokenizer::Tokenizer;
use formats::gguf::GgufFile;
use formats::wire::{
    BenchRequest, BenchResult, BenchRun, CalibrateRequest, CalibrateResult, ErrorKind,
    GenerateRequest, GenerateResult, KlDivergence, PerplexityResult, Progress, RuntimeError,
};
use std::path::Path;
use std::time::Instant;

fn err(kind: ErrorKind, message: impl ToString) -> RuntimeError {
    RuntimeError {
        kind,
        message: message.to_string(),
    }
}

fn eval_err(e: impl ToString) -> RuntimeError {
    err(ErrorKind::Evaluation, e)
}

/// A memory-mapped model and how long mapping and parsing it took.
#[derive(Debug)]
pub struct Loaded {
    pub file: GgufFile,
    pub load_ms: f64,
}

/// Map and parse a GGUF file.
pub fn open_model(path: &Path) -> Result<Loaded, RuntimeError> {
    let t = Instant::now();
    let file = GgufFile::open(path)
        .map_err(|e| err(ErrorKind::ModelLoad, format!("{}: {e}", path.display())))?;
    // Fail now, not at the first request, on a model this runtime cannot run.
    Config::from_gguf(&file.header)
        .map_err(|e| err(ErrorKind::ModelLoad, format!("{}: {e}", path.display())))?;
    Ok(Loaded {
        file,
        load_ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// A thread pool of `threads` threads, 0 meaning all cores.
pub fn pool(threads: u32) -> Pool {
    Pool::new(if threads == 0 {
        sysinfo::cores()
    } else {
        threads as usize
    })
}

fn kv_type(kv_f32: bool) -> KvType {
    if kv_f32 {
        KvType::F32
    } else {
        KvType::F16
    }
}

/// llama-bench's measurement: `n_prompt` tokens of prompt processing and `n_gen` tokens of
/// generation, each `repetitions` times from an empty cache, after a discarded warm-up. `on_rep`
/// hears after each repetition. The result says what else the machine was doing meanwhile.
pub fn bench(
    file: &GgufFile,
    req: &BenchRequest,
    mut on_rep: impl FnMut(Progress),
) -> Result<BenchResult, RuntimeError> {
    let n_prompt = req.n_prompt as usize;
    let n_gen = req.n_gen as usize;
    let reps = req.repetitions.max(1);
    let n_ctx = n_prompt.max(n_gen).max(1);
    let mut model = Llama::new(file, n_ctx, kv_type(req.kv_f32)).map_err(eval_err)?;
    let pool = pool(req.threads);
    let n_vocab = model.config.n_vocab as u32;
    // llama-bench feeds arbitrary tokens: speed does not depend on which.
    let token = |i: usize| (i as u32).wrapping_mul(7919).wrapping_add(13) % n_vocab;
    let mut runs = Vec::new();
    let total = reps * (u32::from(n_prompt > 0) + u32::from(n_gen > 0));
    let mut done = 0;
    let load_1m = sysinfo::load_avg_1m();
    let cpu_start = sysinfo::cpu_times();
    let mut run = |n: usize, is_pp: bool| -> Result<f64, RuntimeError> {
        let t = Instant::now();
        if is_pp {
            // A prompt: in batches, the classifier only on the last position.
            let tokens: Vec<u32> = (0..n).map(token).collect();
            model
                .forward_batch(&tokens, 0, &pool, n - 1, |_, _| Ok::<(), ModelError>(()))
                .map_err(eval_err)?;
        } else {
            for pos in 0..n {
                model.forward(token(pos), pos, &pool).map_err(eval_err)?;
            }
        }
        Ok(n as f64 / t.elapsed().as_secs_f64().max(1e-9))
    };
    // A warm-up, discarded (as llama-bench does): the first pass faults the mapped weights in,
    // starts the threads and wakes the cores from their low clocks.
    if n_prompt > 0 {
        run(n_prompt.min(64), true)?;
    }
    if n_gen > 0 {
        run(n_gen.min(16), false)?;
    }
    for (n, is_pp) in [(n_prompt, true), (n_gen, false)] {
        if n == 0 {
            continue;
        }
        let mut samples = Vec::new();
        for rep in 0..reps {
            let tok_s = run(n, is_pp)?;
            samples.push(tok_s);
            done += 1;
            on_rep(Progress {
                done,
                total,
                note: format!(
                    "{}{n} repetition {}/{reps}: {tok_s:.2} tok/s",
                    if is_pp { "pp" } else { "tg" },
                    rep + 1
                ),
            });
        }
        runs.push(BenchRun {
            n_prompt: if is_pp { n as u32 } else { 0 },
            n_gen: if is_pp { 0 } else { n as u32 },
            samples_tok_s: samples,
        });
    }
    Ok(BenchResult {
        isa: kernels::isa_name().to_string(),
        threads: pool.threads() as u32,
        kv_type: if req.kv_f32 { "f32" } else { "f16" }.to_string(),
        runs,
        peak_rss_bytes: sysinfo::peak_rss_bytes(),
        load: sysinfo::machine_load(cpu_start, load_1m),
    })
}

/// Settings of a perplexity run beyond the text.
#[derive(Debug, Clone, Default)]
pub struct PerplexitySettings<'a> {
    pub n_ctx: usize,
    pub max_chunks: Option<usize>,
    pub threads: u32,
    pub kv_f32: bool,
    /// Save this model's log-probabilities here (the base run).
    pub save_logits: Option<&'a Path>,
    /// Compare with the base model's log-probabilities saved here.
    pub kld_base: Option<&'a Path>,
}

/// llama.cpp's perplexity method over `text`, tokenized with the model's tokenizer.
/// `on_chunk(done, total, ppl_so_far)` hears after each window.
pub fn perplexity_text(
    file: &GgufFile,
    text: &str,
    s: &PerplexitySettings<'_>,
    on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PerplexityResult, RuntimeError> {
    let tok = Tokenizer::from_gguf(&file.header).map_err(|e| err(ErrorKind::ModelLoad, e))?;
    let tokens = tok.encode(text, tok.add_bos(), false);
    let bos = if tok.add_bos() {
        tok.special_ids().bos
    } else {
        None
    };
    let mut model = Llama::new(file, s.n_ctx.max(1), kv_type(s.kv_f32)).map_err(eval_err)?;
    let pool = pool(s.threads);
    eprintln!(
        "perplexity: {} tokens, ctx {}, {} threads",
        tokens.len(),
        s.n_ctx,
        pool.threads()
    );
    let t = Instant::now();
    let opts = PplOptions {
        n_ctx: s.n_ctx,
        max_chunks: s.max_chunks,
    };
    let r = perplexity(
        &mut model,
        &tokens,
        bos,
        &opts,
        s.save_logits,
        s.kld_base,
        &pool,
        on_chunk,
    )
    .map_err(|e| match e {
        crate::perplexity::PplError::LogitsFile { .. } => err(ErrorKind::Io, e),
        crate::perplexity::PplError::Model(_) => eval_err(e),
        _ => err(ErrorKind::InvalidRequest, e),
    })?;
    Ok(PerplexityResult {
        ppl: r.ppl,
        ppl_err: r.ppl_err,
        n_tokens: (r.n_chunks * s.n_ctx) as u32,
        n_scored: r.n_scored as u32,
        n_chunks: r.n_chunks as u32,
        seconds: t.elapsed().as_secs_f64(),
        kld: r.kld.map(|k| KlDivergence {
            kld_mean: k.kld_mean,
            kld_err: k.kld_err,
            same_top: k.same_top,
            same_top_err: k.same_top_err,
            ppl_base: k.ppl_base,
        }),
    })
}

/// Collect calibration statistics (`crate::calibrate`) for `file` on `req.text` and save them
/// to `req.output_path`. `on_chunk(done, total)` hears after each window.
pub fn calibrate(
    file: &GgufFile,
    req: &CalibrateRequest,
    on_chunk: impl FnMut(usize, usize),
) -> Result<CalibrateResult, RuntimeError> {
    let n_ctx = req.n_ctx as usize;
    if n_ctx < 2 {
        return Err(err(
            ErrorKind::InvalidRequest,
            format!("n_ctx {n_ctx} is too small to calibrate (at least 2)"),
        ));
    }
    if req.output_path.is_empty() {
        return Err(err(ErrorKind::InvalidRequest, "no output path"));
    }
    let tok = Tokenizer::from_gguf(&file.header).map_err(|e| err(ErrorKind::ModelLoad, e))?;
    let tokens = tok.encode(&req.text, tok.add_bos(), false);
    if tokens.len() < n_ctx {
        return Err(err(
            ErrorKind::InvalidRequest,
            format!(
                "the text has {} tokens, fewer than one window of {n_ctx}",
                tokens.len()
            ),
        ));
    }
    let bos = if tok.add_bos() {
        tok.special_ids().bos
    } else {
        None
    };
    let mut model = Llama::new(file, n_ctx, KvType::F16).map_err(eval_err)?;
    let output_name = if file.header.tensor("output.weight").is_some() {
        "output.weight"
    } else {
        "token_embd.weight"
    };
    let cal = Calibration::new(&model.config, output_name);
    let pool = pool(req.threads);
    eprintln!(
        "calibrate: {} tokens, ctx {n_ctx}, {} threads",
        tokens.len(),
        pool.threads()
    );
    let t = Instant::now();
    let (cal, n_chunks) = crate::calibrate::run(
        &mut model,
        cal,
        &tokens,
        bos,
        n_ctx,
        req.max_chunks.map(|c| c as usize),
        &pool,
        on_chunk,
    )
    .map_err(eval_err)?;
    let model_name = format!(
        "{} ({} bytes)",
        file.path()
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        file.file_len()
    );
    let path = Path::new(&req.output_path);
    cal.save(
        path,
        (&req.dataset, &model_name),
        (n_chunks, n_ctx),
        |name| file.header.tensor(name).is_some(),
    )
    .map_err(|e| err(ErrorKind::Io, e))?;
    Ok(CalibrateResult {
        path: req.output_path.clone(),
        n_tokens: cal.n_tokens,
        n_chunks: n_chunks as u32,
        seconds: t.elapsed().as_secs_f64(),
        block_influence: cal.block_influence(),
    })
}

/// Generate up to `req.n_predict` tokens after the prompt; `on_piece` hears each piece of
/// text as soon as it is valid UTF-8. `n_ctx` defaults to the model's training context, at most
/// 2048.
pub fn generate(
    file: &GgufFile,
    req: &GenerateRequest,
    n_ctx: Option<usize>,
    kv_f32: bool,
    mut on_piece: impl FnMut(&str),
) -> Result<GenerateResult, RuntimeError> {
    let tok = Tokenizer::from_gguf(&file.header).map_err(|e| err(ErrorKind::ModelLoad, e))?;
    let text = if req.chat {
        chat::render_user_turn(&file.header, &req.prompt)
            .map_err(|e| err(ErrorKind::InvalidRequest, e))?
    } else {
        req.prompt.clone()
    };
    let tokens = tok.encode(&text, true, true);
    let n_predict = req.n_predict as usize;
    let probe = Config::from_gguf(&file.header).map_err(|e| err(ErrorKind::ModelLoad, e))?;
    let n_ctx = n_ctx.unwrap_or(probe.n_ctx_train.min(2048));
    if tokens.len() > n_ctx {
        return Err(err(
            ErrorKind::InvalidRequest,
            format!(
                "the prompt is {} tokens, longer than the context of {n_ctx}; raise -c/--ctx",
                tokens.len()
            ),
        ));
    }
    let mut model = Llama::new(file, n_ctx, kv_type(kv_f32)).map_err(eval_err)?;
    let pool = pool(req.threads);
    let mut sampler = Sampler::new(SamplerConfig {
        temp: req.temp,
        top_k: req.top_k as usize,
        top_p: req.top_p,
        seed: req.seed,
    });
    let t0 = Instant::now();
    let mut logits = Vec::new();
    // The prompt in batches, the classifier only on its last position.
    model
        .forward_batch(&tokens, 0, &pool, tokens.len().saturating_sub(1), |_, l| {
            logits = l.to_vec();
            Ok::<(), ModelError>(())
        })
        .map_err(eval_err)?;
    let t_prompt = t0.elapsed().as_secs_f64();
    let mut out = String::new();
    let mut pending = Vec::new();
    let t1 = Instant::now();
    let mut n_gen = 0;
    let mut pos = tokens.len();
    while n_gen < n_predict && !logits.is_empty() {
        let next = sampler.sample(&logits);
        if tok.is_eog(next) {
            break;
        }
        n_gen += 1;
        pending.extend_from_slice(tok.token_to_piece(next));
        // Hand out the longest valid UTF-8 prefix; keep a split multi-byte character for later.
        let valid = match std::str::from_utf8(&pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid > 0 {
            let piece = String::from_utf8_lossy(&pending[..valid]).into_owned();
            on_piece(&piece);
            out.push_str(&piece);
            pending.drain(..valid);
        }
        if pos >= n_ctx || n_gen == n_predict {
            break;
        }
        logits = model.forward(next, pos, &pool).map_err(eval_err)?.to_vec();
        pos += 1;
    }
    if !pending.is_empty() {
        let piece = String::from_utf8_lossy(&pending).into_owned();
        on_piece(&piece);
        out.push_str(&piece);
    }
    let t_gen = t1.elapsed().as_secs_f64();
    Ok(GenerateResult {
        n_prompt: tokens.len() as u32,
        n_gen: n_gen as u32,
        prompt_tok_s: tokens.len() as f64 / t_prompt.max(1e-9),
        gen_tok_s: n_gen as f64 / t_gen.max(1e-9),
        text: out,
    })
}
