//! sintra-rt: the on-device runtime. `main` parses arguments and calls `run`, which returns a
//! clear error for every bad input (exit code 1) — never a panic.

use formats::wire::{BenchRequest, CalibrateRequest, GenerateRequest};
use runtime::cli::{Args, Mode, HELP};
use runtime::sysinfo;
use runtime::tasks::{self, Loaded, PerplexitySettings};
use runtime::tokenizer::Tokenizer;
use std::io::Write;
use std::process::ExitCode;

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
    runtime::gpu::wanted()?;
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
            println!("{}", runtime::gpu::describe());
            Ok(())
        }
        Mode::Generate => generate(a),
        Mode::Bench => bench(a),
        Mode::Perplexity => run_perplexity(a),
        Mode::Tokenize => tokenize(a),
        Mode::Calibrate => calibrate(a),
        Mode::Serve => match (&a.http, &a.listen) {
            (Some(addr), _) => serve_http(a, addr),
            (None, Some(addr)) => runtime::serve::listen(&runtime::serve::ListenOptions {
                addr: addr.clone(),
                token: secret(a.token_file.as_deref(), "SINTRA_RT_TOKEN", "--token-file")?,
                root: a.root.clone(),
                idle: std::time::Duration::from_secs(a.idle_timeout),
            }),
            (None, None) => runtime::serve::stdio(),
        },
    }
}

fn serve_http(a: &Args, addr: &str) -> Result<(), String> {
    let opts = runtime::cli::HttpOptions {
        addr: addr.to_string(),
        model: a
            .model
            .clone()
            .ok_or("serve --http needs a model: -m MODEL.gguf")?,
        alias: a.alias.clone(),
        draft: a.draft.clone(),
        lookup: a.lookup,
        n_ctx: a.ctx,
        threads: threads(a),
        kv_f32: a.kv_f32,
        queue: a.queue,
        api_key: match &a.api_key {
            Some(k) => Some(k.clone()),
            None => secret(
                a.api_key_file.as_deref(),
                "SINTRA_API_KEY",
                "--api-key-file",
            )?,
        },
    };
    runtime::http::serve(&opts)
}

/// A secret from `file` (its first line) or else the environment variable `var`; `None` when
/// neither gives a non-empty one. Never printed.
fn secret(file: Option<&std::path::Path>, var: &str, flag: &str) -> Result<Option<String>, String> {
    let s = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("{flag} {}: {e}", f.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        None => std::env::var(var).unwrap_or_default(),
    };
    if file.is_some() && s.is_empty() {
        return Err(format!("{flag}: the file's first line is empty"));
    }
    Ok(Some(s).filter(|s| !s.is_empty()))
}

fn open(a: &Args) -> Result<Loaded, String> {
    let path = a
        .model
        .as_ref()
        .ok_or("no model given: pass -m MODEL.gguf")?;
    tasks::open_model(path).map_err(|e| e.message)
}

fn threads(a: &Args) -> u32 {
    a.threads.map_or(0, |t| t as u32)
}

fn generate(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    let prompt = a
        .prompt
        .as_deref()
        .ok_or("generate needs a prompt: -p TEXT")?;
    let req = GenerateRequest {
        prompt: prompt.to_string(),
        n_predict: a.n_predict.unwrap_or(128).min(u32::MAX as usize) as u32,
        threads: threads(a),
        temp: a.temp,
        top_k: a.top_k.min(u32::MAX as usize) as u32,
        top_p: a.top_p,
        seed: a.seed,
        chat: a.chat,
    };
    let mut stdout = std::io::stdout().lock();
    if !a.chat {
        let _ = write!(stdout, "{prompt}");
    }
    let draft = open_draft(a)?;
    let (r, stats) = tasks::generate(
        &l.file,
        &req,
        a.ctx,
        a.kv_f32,
        draft.source(),
        &mut |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        },
    )
    .map_err(|e| e.message)?;
    let _ = writeln!(stdout);
    eprintln!(
        "\nsintra-rt: prompt {} tokens ({:.1} tok/s), generated {} tokens ({:.1} tok/s), {} threads",
        r.n_prompt,
        r.prompt_tok_s,
        r.n_gen,
        r.gen_tok_s,
        tasks::pool(req.threads).threads()
    );
    if stats.drafted > 0 || draft.is_some() {
        eprintln!(
            "sintra-rt: {}: {} of {} drafted tokens kept ({:.1}%), {} checking passes, {} single passes",
            draft.name(),
            stats.accepted,
            stats.drafted,
            100.0 * stats.acceptance(),
            stats.verify_passes,
            stats.plain_passes
        );
    }
    Ok(())
}

/// The draft source the command line names: a mapped draft model, prompt lookup, or none.
enum DraftArg {
    None,
    Model(Loaded),
    Lookup,
}

impl DraftArg {
    fn source(&self) -> tasks::DraftSource<'_> {
        match self {
            DraftArg::None => tasks::DraftSource::None,
            DraftArg::Model(l) => tasks::DraftSource::Model(&l.file),
            DraftArg::Lookup => tasks::DraftSource::Lookup,
        }
    }

    fn is_some(&self) -> bool {
        !matches!(self, DraftArg::None)
    }

    fn name(&self) -> String {
        match self {
            DraftArg::None => "no draft".into(),
            DraftArg::Model(l) => format!("draft {}", l.file.path().display()),
            DraftArg::Lookup => "prompt lookup".into(),
        }
    }
}

fn open_draft(a: &Args) -> Result<DraftArg, String> {
    Ok(match &a.draft {
        Some(path) => {
            DraftArg::Model(tasks::open_model(path).map_err(|e| format!("--draft: {}", e.message))?)
        }
        None if a.lookup => DraftArg::Lookup,
        None => DraftArg::None,
    })
}

/// `bench --draft DRAFT | --lookup -f PROMPT.txt`: generation with and without drafts.
fn bench_speculative(a: &Args, l: &Loaded) -> Result<(), String> {
    let draft = open_draft(a)?;
    let path = a
        .text_file
        .as_ref()
        .ok_or("bench with --draft or --lookup needs a prompt: -f PROMPT.txt")?;
    let prompt = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let n_gen = a.n_predict.unwrap_or(128);
    let r = tasks::bench_speculative(
        &l.file,
        draft.source(),
        &prompt,
        a.chat,
        n_gen,
        a.reps,
        threads(a),
        a.kv_f32,
        &mut |p| eprintln!("{}", p.note),
    )
    .map_err(|e| e.message)?;
    let (plain, spec) = (tasks::median(&r.plain_tok_s), tasks::median(&r.spec_tok_s));
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let threads = tasks::pool(threads(a)).threads();
    if a.json {
        println!(
            "{{\"model_filename\": {:?}, \"draft\": {:?}, \"isa\": \"{}\", \"n_threads\": {threads}, \"n_prompt\": {}, \"n_gen\": {}, \"plain_samples_ts\": [{}], \"speculative_samples_ts\": [{}], \"plain_median_ts\": {plain:.3}, \"speculative_median_ts\": {spec:.3}, \"speedup\": {:.4}, \"drafted\": {}, \"accepted\": {}, \"acceptance\": {:.4}, \"identical_output\": true}}",
            l.file.path().display().to_string(),
            draft.name(),
            kernels::isa_name(),
            r.n_prompt,
            r.n_gen,
            list(&r.plain_tok_s),
            list(&r.spec_tok_s),
            spec / plain,
            r.stats.drafted,
            r.stats.accepted,
            r.stats.acceptance(),
        );
    } else {
        println!("| model | drafts | isa | threads | test | plain t/s | speculative t/s | speed-up | kept |");
        println!("| ----- | ------ | --- | ------: | ---: | --------: | --------------: | -------: | ---: |");
        println!(
            "| {} | {} | {} | {threads} | tg{} after {} | {plain:.2} | {spec:.2} | {:.2}x | {:.1}% |",
            l.file.path().file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            draft.name(),
            kernels::isa_name(),
            r.n_gen,
            r.n_prompt,
            spec / plain,
            100.0 * r.stats.acceptance(),
        );
        println!(
            "\nmedians of {} interleaved repetitions; plain [{}], speculative [{}]; outputs identical",
            a.reps,
            list(&r.plain_tok_s),
            list(&r.spec_tok_s)
        );
    }
    Ok(())
}

fn bench(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    if a.draft.is_some() || a.lookup {
        return bench_speculative(a, &l);
    }
    let req = BenchRequest {
        n_prompt: a.n_prompt.unwrap_or(512).min(u32::MAX as usize) as u32,
        n_gen: a.n_predict.unwrap_or(128).min(u32::MAX as usize) as u32,
        threads: threads(a),
        repetitions: a.reps.min(u32::MAX as usize) as u32,
        kv_f32: a.kv_f32,
    };
    let r = tasks::bench(&l.file, &req, &mut |_| {}).map_err(|e| e.message)?;
    let model_name = l
        .file
        .path()
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    if a.json {
        let mut out = String::from("[\n");
        for (i, run) in r.runs.iter().enumerate() {
            let (m, s) = run.mean_std();
            let list: Vec<String> = run
                .samples_tok_s
                .iter()
                .map(|x| format!("{x:.3}"))
                .collect();
            out.push_str(&format!(
                "  {{\"build_commit\": \"sintra-rt {ver}\", \"cpu_info\": \"{isa}\", \"model_filename\": \"{model_name}\", \"model_size\": {size}, \"model_n_params\": {params}, \"n_threads\": {th}, \"n_prompt\": {np}, \"n_gen\": {ng}, \"type_k\": \"{kv}\", \"avg_ts\": {m:.3}, \"stddev_ts\": {s:.3}, \"samples_ts\": [{list}], \"load_ms\": {load:.1}, \"peak_rss_bytes\": {rss}, \"target\": \"{target}\"}}{comma}\n",
                ver = env!("CARGO_PKG_VERSION"),
                isa = r.isa,
                size = l.file.header.n_tensor_bytes(),
                params = l.file.header.n_parameters(),
                th = r.threads,
                np = run.n_prompt,
                ng = run.n_gen,
                kv = r.kv_type,
                list = list.join(", "),
                load = l.load_ms,
                rss = r.peak_rss_bytes,
                target = sysinfo::TARGET,
                comma = if i + 1 < r.runs.len() { "," } else { "" },
            ));
        }
        out.push(']');
        println!("{out}");
    } else {
        println!("| model | size | params | isa | threads | test | t/s |");
        println!("| ----- | ---: | -----: | --- | ------: | ---: | --: |");
        for run in &r.runs {
            let (m, s) = run.mean_std();
            let name = if run.n_prompt > 0 {
                format!("pp{}", run.n_prompt)
            } else {
                format!("tg{}", run.n_gen)
            };
            println!(
                "| {model_name} | {:.2} MiB | {:.2} M | {} | {} | {name} | {m:.2} ± {s:.2} |",
                l.file.header.n_tensor_bytes() as f64 / (1 << 20) as f64,
                l.file.header.n_parameters() as f64 / 1e6,
                r.isa,
                r.threads
            );
        }
        println!(
            "\nload {:.1} ms, peak RSS {:.1} MiB, {} repetitions, {} pool",
            l.load_ms,
            r.peak_rss_bytes as f64 / (1 << 20) as f64,
            req.repetitions,
            tasks::pool(req.threads).kind()
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
    let n_ctx = a.ctx.unwrap_or(512);
    let settings = PerplexitySettings {
        n_ctx,
        max_chunks: a.chunks,
        threads: threads(a),
        kv_f32: a.kv_f32,
        save_logits: a.save_logits.as_deref(),
        kld_base: a.kld_base.as_deref(),
    };
    let r = tasks::perplexity_text(&l.file, &text, &settings, &mut |done, total, ppl| {
        eprint!("\r[{done}/{total}] PPL {ppl:.4}   ");
    })
    .map_err(|e| e.message)?;
    eprintln!();
    println!("Final estimate: PPL = {:.4} +/- {:.5}", r.ppl, r.ppl_err);
    println!(
        "scored {} positions in {} chunks of {n_ctx} in {:.1} s",
        r.n_scored, r.n_chunks, r.seconds
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

fn calibrate(a: &Args) -> Result<(), String> {
    let l = open(a)?;
    let path = a
        .text_file
        .as_ref()
        .ok_or("calibrate needs a text file: -f TEXT")?;
    let out = a
        .output
        .as_ref()
        .ok_or("calibrate needs an output file: -o OUT.imatrix.gguf")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let req = CalibrateRequest {
        text,
        dataset: path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        n_ctx: a.ctx.unwrap_or(512).min(u32::MAX as usize) as u32,
        max_chunks: a.chunks.map(|c| c.min(u32::MAX as usize) as u32),
        threads: threads(a),
        output_path: out.display().to_string(),
    };
    let r = tasks::calibrate(&l.file, &req, &mut |done, total| {
        eprint!("\r[{done}/{total}] windows   ");
    })
    .map_err(|e| e.message)?;
    eprintln!();
    println!(
        "saved {} ({} tokens in {} windows of {}, {:.1} s)",
        r.path, r.n_tokens, r.n_chunks, req.n_ctx, r.seconds
    );
    let list: Vec<String> = r
        .block_influence
        .iter()
        .map(|x| format!("{x:.4}"))
        .collect();
    println!("block influence (1 - cos): [{}]", list.join(", "));
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
