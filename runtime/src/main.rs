//! sintra-rt: the on-device runtime. `main` parses arguments and calls `run`, which returns a
//! clear error for every bad input (exit code 1) — never a panic.

use formats::gguf::GgufFile;
use runtime::cli::{Args, Mode, HELP};
use runtime::model::{KvType, Llama};
use runtime::perplexity::{perplexity, PplOptions};
use runtime::sampler::{Sampler, SamplerConfig};
use runtime::threads::Pool;
use runtime::tokenizer::Tokenizer;
use runtime::{chat, sysinfo};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sintra-rt: error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sintra-rt: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    sysinfo::select_kernels()?;
    match a.mode {
        Mode::Help => {
            print!("{HELP}");
            Ok(())
        }
        Mode::Version => {
            println!(
                "sintra-rt {} ({}, kernels: {})",
                env!("CARGO_PKG_VERSION"),
                sysinfo::TARGET,
                kernels::isa_name()
            );
            Ok(())
        }
        Mode::Generate => generate(a),
        Mode::Bench => bench(a),
        Mode::Perplexity => run_perplexity(a),
        Mode::Tokenize => tokenize(a),
    }
}

struct Loaded {
    file: GgufFile,
    load_ms: f64,
}

fn open(a: &Args) -> Result<Loaded, String> {
    let path = a
        .model
        .as_ref()
        .ok_or("no model given: pass -m MODEL.gguf")?;
    let t = Instant::now();
    let file = GgufFile::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Loaded {
        file,
        load_ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

fn pool(a: &Args) -> Pool {
    Pool::new(a.threads.unwrap_or_else(sysinfo::cores))
}

fn kv_type(a: &Args) -> KvType {
    if a.kv_f32 {
        KvType::F32
    } else {
        KvType::F16
    }
}

fn generate(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    let prompt = a
        .prompt
        .as_deref()
        .ok_or("generate needs a prompt: -p TEXT")?;
    let tok = Tokenizer::from_gguf(&l.file.header).map_err(|e| e.to_string())?;
    let text = if a.chat {
        chat::render_user_turn(&l.file.header, prompt)?
    } else {
        prompt.to_string()
    };
    let tokens = tok.encode(&text, true, true);
    let n_predict = a.n_predict.unwrap_or(128);
    let probe = runtime::model::Config::from_gguf(&l.file.header).map_err(|e| e.to_string())?;
    let n_ctx = a.ctx.unwrap_or(probe.n_ctx_train.min(2048));
    if tokens.len() > n_ctx {
        return Err(format!(
            "the prompt is {} tokens, longer than the context of {n_ctx}; raise -c/--ctx",
            tokens.len()
        ));
    }
    let mut model = Llama::new(&l.file, n_ctx, kv_type(a)).map_err(|e| e.to_string())?;
    let pool = pool(a);
    let mut sampler = Sampler::new(SamplerConfig {
        temp: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    });
    let t0 = Instant::now();
    let mut logits = Vec::new();
    for (pos, &t) in tokens.iter().enumerate() {
        let want = pos + 1 == tokens.len();
        let out = model
            .forward_opt(t, pos, &pool, want)
            .map_err(|e| e.to_string())?;
        if want {
            logits = out.to_vec();
        }
    }
    let t_prompt = t0.elapsed().as_secs_f64();
    if !a.chat {
        print!("{prompt}");
    }
    let mut stdout = std::io::stdout().lock();
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
        // Print the longest valid UTF-8 prefix; keep a split multi-byte character for later.
        let valid = match std::str::from_utf8(&pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let _ = stdout.write_all(&pending[..valid]);
        let _ = stdout.flush();
        pending.drain(..valid);
        if pos >= n_ctx || n_gen == n_predict {
            break;
        }
        logits = model
            .forward(next, pos, &pool)
            .map_err(|e| e.to_string())?
            .to_vec();
        pos += 1;
    }
    let _ = stdout.write_all(&pending);
    let _ = writeln!(stdout);
    let t_gen = t1.elapsed().as_secs_f64();
    eprintln!(
        "\nsintra-rt: prompt {} tokens in {:.2} s ({:.1} tok/s), generated {n_gen} tokens in {:.2} s ({:.1} tok/s), {} threads",
        tokens.len(),
        t_prompt,
        tokens.len() as f64 / t_prompt.max(1e-9),
        t_gen,
        n_gen as f64 / t_gen.max(1e-9),
        pool.threads()
    );
    Ok(())
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn bench(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    let n_prompt = a.n_prompt.unwrap_or(512);
    let n_gen = a.n_predict.unwrap_or(128);
    let n_ctx = (n_prompt.max(n_gen)).max(1);
    let mut model = Llama::new(&l.file, n_ctx, kv_type(a)).map_err(|e| e.to_string())?;
    let pool = pool(a);
    let n_vocab = model.config.n_vocab as u32;
    // llama-bench feeds arbitrary tokens: speed does not depend on which.
    let token = |i: usize| (i as u32 * 7919 + 13) % n_vocab;
    let mut results = Vec::new();
    for (name, n, is_pp) in [("pp", n_prompt, true), ("tg", n_gen, false)] {
        if n == 0 {
            continue;
        }
        let mut samples = Vec::new();
        for _ in 0..a.reps {
            let t = Instant::now();
            for pos in 0..n {
                // pp: all but the last position skip the classifier, as a prompt does.
                let want = !is_pp || pos + 1 == n;
                model
                    .forward_opt(token(pos), pos, &pool, want)
                    .map_err(|e| e.to_string())?;
            }
            samples.push(n as f64 / t.elapsed().as_secs_f64());
        }
        results.push((format!("{name}{n}"), n, is_pp, samples));
    }
    let rss = sysinfo::peak_rss_bytes();
    let model_name = l
        .file
        .path()
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    if a.json {
        let mut out = String::from("[\n");
        for (i, (_, n, is_pp, samples)) in results.iter().enumerate() {
            let (m, s) = mean_std(samples);
            let list: Vec<String> = samples.iter().map(|x| format!("{x:.3}")).collect();
            out.push_str(&format!(
                "  {{\"build_commit\": \"sintra-rt {ver}\", \"cpu_info\": \"{isa}\", \"model_filename\": \"{model_name}\", \"model_size\": {size}, \"model_n_params\": {params}, \"n_threads\": {th}, \"n_prompt\": {np}, \"n_gen\": {ng}, \"type_k\": \"{kv}\", \"avg_ts\": {m:.3}, \"stddev_ts\": {s:.3}, \"samples_ts\": [{list}], \"load_ms\": {load:.1}, \"peak_rss_bytes\": {rss}, \"target\": \"{target}\"}}{comma}\n",
                ver = env!("CARGO_PKG_VERSION"),
                isa = kernels::isa_name(),
                size = l.file.header.n_tensor_bytes(),
                params = l.file.header.n_parameters(),
                th = pool.threads(),
                np = if *is_pp { *n } else { 0 },
                ng = if *is_pp { 0 } else { *n },
                kv = if a.kv_f32 { "f32" } else { "f16" },
                list = list.join(", "),
                load = l.load_ms,
                target = sysinfo::TARGET,
                comma = if i + 1 < results.len() { "," } else { "" },
            ));
        }
        out.push(']');
        println!("{out}");
    } else {
        println!("| model | size | params | isa | threads | test | t/s |");
        println!("| ----- | ---: | -----: | --- | ------: | ---: | --: |");
        for (name, _, _, samples) in &results {
            let (m, s) = mean_std(samples);
            println!(
                "| {model_name} | {:.2} MiB | {:.2} M | {} | {} | {name} | {m:.2} ± {s:.2} |",
                l.file.header.n_tensor_bytes() as f64 / (1 << 20) as f64,
                l.file.header.n_parameters() as f64 / 1e6,
                kernels::isa_name(),
                pool.threads()
            );
        }
        println!(
            "\nload {:.1} ms, peak RSS {:.1} MiB, {} repetitions, {} pool",
            l.load_ms,
            rss as f64 / (1 << 20) as f64,
            a.reps,
            pool.kind()
        );
    }
    Ok(())
}

fn run_perplexity(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    let path = a
        .text_file
        .as_ref()
        .ok_or("perplexity needs a text file: -f TEXT")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tok = Tokenizer::from_gguf(&l.file.header).map_err(|e| e.to_string())?;
    let tokens = tok.encode(&text, tok.add_bos(), false);
    let n_ctx = a.ctx.unwrap_or(512);
    let mut model = Llama::new(&l.file, n_ctx, kv_type(a)).map_err(|e| e.to_string())?;
    let pool = pool(a);
    let bos = if tok.add_bos() {
        tok.special_ids().bos
    } else {
        None
    };
    eprintln!(
        "perplexity: {} tokens, ctx {n_ctx}, {} threads",
        tokens.len(),
        pool.threads()
    );
    let t = Instant::now();
    let opts = PplOptions {
        n_ctx,
        max_chunks: a.chunks,
    };
    let r = perplexity(
        &mut model,
        &tokens,
        bos,
        &opts,
        a.save_logits.as_deref(),
        a.kld_base.as_deref(),
        &pool,
        |done, total, ppl| {
            eprint!("\r[{done}/{total}] PPL {ppl:.4}   ");
        },
    )
    .map_err(|e| e.to_string())?;
    eprintln!();
    println!("Final estimate: PPL = {:.4} +/- {:.5}", r.ppl, r.ppl_err);
    println!(
        "scored {} positions in {} chunks of {n_ctx} in {:.1} s",
        r.n_scored,
        r.n_chunks,
        t.elapsed().as_secs_f64()
    );
    if let Some(k) = r.kld {
        println!("Mean KLD:        {:.6} ± {:.6}", k.kld_mean, k.kld_err);
        println!(
            "Same top p:      {:.3} ± {:.3} %",
            100.0 * k.same_top,
            100.0 * k.same_top_err
        );
        println!("PPL(base):       {:.4}", k.ppl_base);
        println!("PPL(Q)-PPL(base): {:+.4}", r.ppl - k.ppl_base);
    }
    Ok(())
}

/// One `id<TAB>piece` line per token, as llama.cpp's `llama-tokenize`.
fn tokenize(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    let prompt = a
        .prompt
        .as_deref()
        .ok_or("tokenize needs a prompt: -p TEXT")?;
    let tok = Tokenizer::from_gguf(&l.file.header).map_err(|e| e.to_string())?;
    let special = !a.no_special;
    for id in tok.encode(prompt, special, special) {
        println!(
            "{id}\t{:?}",
            String::from_utf8_lossy(tok.token_to_piece(id))
        );
    }
    Ok(())
}
