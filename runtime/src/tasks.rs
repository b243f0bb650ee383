//! What the runtime does, shared by the command line (`sintra-rt bench ...`) and the wire
//! protocol (`sintra-rt serve`): each task takes a mapped model and its settings, reports
//! progress through a callback and returns the result as the wire protocol spells it, so the two
//! front ends only differ in how they print.

use crate::calibrate::Calibration;
use crate::chat;
use crate::model::{Config, KvType, Llama, ModelError, Place};
use crate::perplexity::{perplexity, PplOptions};
use crate::sampler::{Sampler, SamplerConfig};
use crate::speculative::{self, DraftModel, Drafter, Flow, PromptLookup, SpecStats};
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
    on_rep: &mut dyn FnMut(Progress),
) -> Result<BenchResult, RuntimeError> {
    let n_prompt = req.n_prompt as usize;
    let n_gen = req.n_gen as usize;
    let reps = req.repetitions.max(1);
    let n_ctx = n_prompt.max(n_gen).max(1);
    let mut model = Llama::new(file, n_ctx, kv_type(req.kv_f32)).map_err(eval_err)?;
    let device = model.device_name();
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
        isa: device,
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
    on_chunk: &mut dyn FnMut(usize, usize, f64),
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
    on_chunk: &mut dyn FnMut(usize, usize),
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
    // On the CPU: its forward pass is the one that collects the statistics.
    let mut model = Llama::new_on(file, n_ctx, KvType::F16, Place::Cpu).map_err(eval_err)?;
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

/// Where speculative decoding takes its drafts from, if anywhere.
#[derive(Debug, Clone, Copy, Default)]
pub enum DraftSource<'f> {
    #[default]
    None,
    /// A draft model with the target's vocabulary.
    Model(&'f GgufFile),
    /// The text so far (prompt lookup).
    Lookup,
}

/// Build the drafter `source` names for a target with tokenizer `tok`, its cache as long as
/// the target's.
pub fn drafter<'f>(
    source: DraftSource<'f>,
    tok: &Tokenizer,
    n_ctx: usize,
    kv_f32: bool,
    sampling: SamplerConfig,
) -> Result<Option<Drafter<'f>>, RuntimeError> {
    Ok(match source {
        DraftSource::None => None,
        DraftSource::Lookup => Some(Drafter::Lookup(PromptLookup::default())),
        DraftSource::Model(file) => {
            let draft_err = |e: &dyn std::fmt::Display| {
                err(
                    ErrorKind::ModelLoad,
                    format!("draft {}: {e}", file.path().display()),
                )
            };
            let draft_tok = Tokenizer::from_gguf(&file.header).map_err(|e| draft_err(&e))?;
            let model = Llama::new(file, n_ctx, kv_type(kv_f32)).map_err(|e| draft_err(&e))?;
            let m = DraftModel::new(model, &draft_tok, tok, sampling).map_err(|e| draft_err(&e))?;
            Some(Drafter::Model(Box::new(m)))
        }
    })
}

/// Generate up to `req.n_predict` tokens after the prompt; `on_piece` hears each piece of
/// text as soon as it is valid UTF-8. `n_ctx` defaults to the model's training context, at most
/// 2048. With a draft source, decoding is speculative: the same text (greedy) or the same
/// distribution (sampling), faster; the counts of drafted and kept tokens come back beside the
/// result.
pub fn generate(
    file: &GgufFile,
    req: &GenerateRequest,
    n_ctx: Option<usize>,
    kv_f32: bool,
    draft: DraftSource<'_>,
    on_piece: &mut dyn FnMut(&str),
) -> Result<(GenerateResult, SpecStats), RuntimeError> {
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
    if tokens.is_empty() {
        return Err(err(
            ErrorKind::InvalidRequest,
            "the prompt is empty and the model adds no BOS token: nothing to continue",
        ));
    }
    let sampling = SamplerConfig {
        temp: req.temp,
        top_k: req.top_k as usize,
        top_p: req.top_p,
        seed: req.seed,
    };
    let mut drafter = drafter(draft, &tok, n_ctx, kv_f32, sampling)?;
    let mut model = Llama::new(file, n_ctx, kv_type(kv_f32)).map_err(eval_err)?;
    let pool = pool(req.threads);
    let mut sampler = Sampler::new(sampling);
    let t0 = Instant::now();
    let logits = model.prefill(&tokens, 0, &pool).map_err(eval_err)?;
    let t_prompt = t0.elapsed().as_secs_f64();
    let mut out = String::new();
    let mut pending = Vec::new();
    let t1 = Instant::now();
    let mut history = tokens.clone();
    let stats = speculative::decode(
        &mut model,
        &pool,
        &mut sampler,
        drafter.as_mut(),
        None,
        &mut history,
        &logits,
        n_predict,
        |t| tok.is_eog(t),
        |t| {
            pending.extend_from_slice(tok.token_to_piece(t));
            // Hand out the longest valid UTF-8 prefix; keep a split character for later.
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
            Flow::Continue
        },
    )
    .map_err(eval_err)?;
    if !pending.is_empty() {
        let piece = String::from_utf8_lossy(&pending).into_owned();
        on_piece(&piece);
        out.push_str(&piece);
    }
    let t_gen = t1.elapsed().as_secs_f64();
    let n_gen = history.len() - tokens.len();
    Ok((
        GenerateResult {
            n_prompt: tokens.len() as u32,
            n_gen: n_gen as u32,
            prompt_tok_s: tokens.len() as f64 / t_prompt.max(1e-9),
            gen_tok_s: n_gen as f64 / t_gen.max(1e-9),
            text: out,
        },
        stats,
    ))
}

/// What [`bench_speculative`] measured.
#[derive(Debug, Clone)]
pub struct SpecBench {
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Generation speed without drafts, one sample per repetition (tokens/s).
    pub plain_tok_s: Vec<f64>,
    /// The same with drafts, interleaved with the plain runs.
    pub spec_tok_s: Vec<f64>,
    /// Drafted and kept tokens over all measured repetitions.
    pub stats: SpecStats,
    /// The greedy continuation (the same with and without drafts, or the bench fails).
    pub text: String,
}

/// Greedy generation of `n_gen` tokens after `prompt` with and without drafts from `draft`,
/// `reps` times each, interleaved (plain, speculative, plain, ...) after a discarded warm-up
/// of both. Only generation is timed; the draft model's share of the prompt is part of the
/// speculative time (it is work speculation adds). Fails if the two outputs ever differ.
#[allow(clippy::too_many_arguments)]
pub fn bench_speculative(
    file: &GgufFile,
    draft: DraftSource<'_>,
    prompt: &str,
    chat: bool,
    n_gen: usize,
    reps: usize,
    threads: u32,
    kv_f32: bool,
    on_rep: &mut dyn FnMut(Progress),
) -> Result<SpecBench, RuntimeError> {
    if matches!(draft, DraftSource::None) {
        return Err(err(ErrorKind::InvalidRequest, "no draft source to compare"));
    }
    let tok = Tokenizer::from_gguf(&file.header).map_err(|e| err(ErrorKind::ModelLoad, e))?;
    let text = if chat {
        chat::render_user_turn(&file.header, prompt)
            .map_err(|e| err(ErrorKind::InvalidRequest, e))?
    } else {
        prompt.to_string()
    };
    let tokens = tok.encode(&text, true, true);
    if tokens.is_empty() {
        return Err(err(ErrorKind::InvalidRequest, "the prompt has no tokens"));
    }
    let n_ctx = tokens.len() + n_gen + 1;
    let sampling = SamplerConfig {
        temp: 0.0,
        ..SamplerConfig::default()
    };
    let mut drafter = drafter(draft, &tok, n_ctx, kv_f32, sampling)?
        .ok_or_else(|| err(ErrorKind::InvalidRequest, "no draft source"))?;
    let mut model = Llama::new(file, n_ctx, kv_type(kv_f32)).map_err(eval_err)?;
    let pool = pool(threads);
    let mut run = |spec: bool| -> Result<(Vec<u32>, f64, SpecStats), RuntimeError> {
        let logits = model.prefill(&tokens, 0, &pool).map_err(eval_err)?;
        drafter.reset();
        let mut history = tokens.clone();
        let mut sampler = Sampler::new(sampling);
        let t = Instant::now();
        let d = if spec { Some(&mut drafter) } else { None };
        let stats = speculative::decode(
            &mut model,
            &pool,
            &mut sampler,
            d,
            None,
            &mut history,
            &logits,
            n_gen,
            |t| tok.is_eog(t),
            |_| Flow::Continue,
        )
        .map_err(eval_err)?;
        let seconds = t.elapsed().as_secs_f64();
        let generated = history.split_off(tokens.len());
        let tok_s = generated.len() as f64 / seconds.max(1e-9);
        Ok((generated, tok_s, stats))
    };
    // Warm-up, discarded: faults both models' weights in and wakes the cores.
    let (reference, _, _) = run(false)?;
    run(true)?;
    let mut out = SpecBench {
        n_prompt: tokens.len(),
        n_gen: reference.len(),
        plain_tok_s: Vec::new(),
        spec_tok_s: Vec::new(),
        stats: SpecStats::default(),
        text: tok.decode(&reference),
    };
    let reps = reps.max(1);
    for rep in 0..reps {
        for spec in [false, true] {
            let (generated, tok_s, stats) = run(spec)?;
            if generated != reference {
                let at = generated
                    .iter()
                    .zip(&reference)
                    .take_while(|(a, b)| a == b)
                    .count();
                return Err(eval_err(format!(
                    "speculative decoding changed the greedy output at generated token {at} (repetition {}): a bug, please report it",
                    rep + 1
                )));
            }
            if spec {
                out.spec_tok_s.push(tok_s);
                out.stats.drafted += stats.drafted;
                out.stats.accepted += stats.accepted;
                out.stats.verify_passes += stats.verify_passes;
                out.stats.plain_passes += stats.plain_passes;
            } else {
                out.plain_tok_s.push(tok_s);
            }
            on_rep(Progress {
                done: (2 * rep + usize::from(spec) + 1) as u32,
                total: (2 * reps) as u32,
                note: format!(
                    "tg{} {} repetition {}/{reps}: {tok_s:.2} tok/s",
                    reference.len(),
                    if spec { "speculative" } else { "plain" },
                    rep + 1
                ),
            });
        }
    }
    Ok(out)
}

/// The median of `v` (the mean of the middle two for an even count; NaN when empty): what the
/// bench commands and the benches report.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}
