//! `decode-bench`: sintra-rt against llama.cpp on the same GGUF files, thread counts and machine,
//! in one run (issue #4). For each weight type and thread count: tg128 and pp512 tokens/s (median
//! and range over repetitions, after one discarded warm-up run on each side), their ratio, peak
//! RSS of each engine (each runs in its own process), and decode as a percentage of the memory
//! bandwidth roofline (weight and KV-cache bytes read per token against the bandwidth measured
//! here with the same thread count).
//!
//! ```sh
//! cargo run --release -p sintra-benches --bin decode-bench -- [--anchor native|native-no-amx|avx2|default] [--types Q4_0,Q4_K_M,Q8_0,Q4_1,gemma3] [--threads 1,2] [--reps 5] [--pp 512] [--tg 128]
//! ```
//!
//! **The anchor** (issue #14) is llama.cpp built for the CPU it runs on, as its CMake builds it by
//! default (`GGML_NATIVE=ON`): `--anchor native` (the default) builds this binary again with
//! `RUSTFLAGS="-C target-cpu=native"` in its own target directory (`target/anchor-native`;
//! llama-cpp-sys-2's build script then turns `GGML_NATIVE` on) and runs the llama.cpp side from
//! that build; nothing of ours runs in that process. `--anchor native-no-amx` builds it for every
//! vector extension of this CPU but AMX (`x86-64-v4` plus the VNNI/BF16/VBMI it has), for CPUs
//! where llama.cpp's AMX kernels crash (ggml-org/llama.cpp#20824; the development VM's Xeon).
//! `--anchor avx2` holds both engines to one
//! instruction set: llama.cpp built with only `avx2,fma,f16c` enabled (`target/anchor-avx2`)
//! against sintra-rt with `SINTRA_KERNELS=avx2`. `--anchor default` is llama.cpp as
//! llama-cpp-2 builds it without flags (the weak anchor of issue #4, for comparison only). The
//! table names the machine (CPU model and flags), our kernel table and llama.cpp's own system
//! info.
//! The Q4_0, Q4_K_M and Q8_0 files are made by llama.cpp's own `llama_model_quantize` from an
//! F32 copy of SmolLM2-135M-Instruct (see `sintra_tests::presets`); Q4_1 is the published file.
//! `--types gemma3` adds the published Gemma 3 270M in Q4_K_M (the setup script's cache).
//! llama.cpp runs in a child process of this binary (`--llama-child`), measured the way
//! llama-bench measures: pp = one batch of N prompt tokens from an empty cache, tg = N single-token
//! decodes from an empty cache.

use formats::gguf::GgufFile;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use runtime::tasks::median;
use sintra_tests::presets::{self, Preset};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--llama-child") {
        llama_child(&args[1..])
    } else {
        run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decode-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Which llama.cpp the bench compares against.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    /// Built for this CPU (`-C target-cpu=native`: `GGML_NATIVE=ON`).
    Native,
    /// Built for this CPU's vector extensions less AMX (`x86-64-v4` plus the VNNI, BF16, VBMI,
    /// BMI2, F16C and FMA it has): for machines where llama.cpp's native build crashes in its
    /// AMX kernels (`ggml_backend_amx_mul_mat`, a segmentation fault on the development VM).
    NativeNoAmx,
    /// Both held to AVX2 + FMA + F16C.
    Avx2,
    /// llama-cpp-2's default build (this binary's own).
    Default,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Native => "native",
            Anchor::NativeNoAmx => "native-no-amx",
            Anchor::Avx2 => "avx2",
            Anchor::Default => "default",
        }
    }

    /// The `RUSTFLAGS` of the anchor's build (`None`: this binary).
    fn rustflags(self) -> Option<String> {
        match self {
            Anchor::Native => Some("-C target-cpu=native".into()),
            Anchor::NativeNoAmx => {
                let mut features = Vec::new();
                macro_rules! has {
                    ($($f:tt),+) => {
                        $(if std::arch::is_x86_feature_detected!($f) {
                            features.push(concat!("+", $f));
                        })+
                    };
                }
                has!(
                    "avxvnni",
                    "avx512vnni",
                    "avx512bf16",
                    "avx512vbmi",
                    "bmi2",
                    "f16c",
                    "fma"
                );
                Some(format!(
                    "-C target-cpu=x86-64-v4 -C target-feature={}",
                    features.join(",")
                ))
            }
            Anchor::Avx2 => Some("-C target-feature=+avx2,+fma,+f16c".into()),
            Anchor::Default => None,
        }
    }

    /// What the table calls it.
    fn describe(self) -> &'static str {
        match self {
            Anchor::Native => {
                "llama.cpp built for this CPU (GGML_NATIVE=ON via -C target-cpu=native)"
            }
            Anchor::NativeNoAmx => {
                "llama.cpp built for this CPU's vector extensions less AMX (x86-64-v4 + its VNNI/BF16/VBMI; on CPUs with AMX its native build crashes in its AMX kernels)"
            }
            Anchor::Avx2 => {
                "llama.cpp built with avx2,fma,f16c only; sintra-rt held to its avx2 table"
            }
            Anchor::Default => {
                "llama.cpp as llama-cpp-2 builds it without flags (not native: a weak anchor)"
            }
        }
    }
}

#[derive(Debug)]
struct Options {
    /// `--files-only`: make the files, print their paths, measure nothing (for
    /// `benches/arm-proxy.sh`).
    files_only: bool,
    anchor: Anchor,
    types: Vec<String>,
    threads: Vec<usize>,
    reps: usize,
    pp: usize,
    tg: usize,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        files_only: false,
        anchor: Anchor::Native,
        types: ["Q4_0", "Q4_K_M", "Q8_0", "Q4_1"]
            .map(String::from)
            .to_vec(),
        threads: vec![1, 2],
        reps: 5,
        pp: 512,
        tg: 128,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        let num = |v: String, what: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{what} {v:?} is not a positive integer"))
        };
        match flag.as_str() {
            "--anchor" => {
                o.anchor = match value()?.as_str() {
                    "native" => Anchor::Native,
                    "native-no-amx" => Anchor::NativeNoAmx,
                    "avx2" => Anchor::Avx2,
                    "default" => Anchor::Default,
                    v => {
                        return Err(format!(
                            "--anchor {v:?}: choose native, native-no-amx, avx2 or default"
                        ))
                    }
                }
            }
            "--types" => o.types = value()?.split(',').map(str::to_string).collect(),
            "--files-only" => o.files_only = true,
            "--threads" => {
                o.threads = value()?
                    .split(',')
                    .map(|t| num(t.to_string(), "--threads"))
                    .collect::<Result<_, _>>()?
            }
            "--reps" => o.reps = num(value()?, "--reps")?,
            "--pp" => o.pp = num(value()?, "--pp")?,
            "--tg" => o.tg = num(value()?, "--tg")?,
            "-h" | "--help" => {
                println!("usage: decode-bench [--anchor native|native-no-amx|avx2|default] [--types Q4_0,Q4_K_M,Q8_0,Q4_1,gemma3] [--threads 1,2] [--reps 5] [--pp 512] [--tg 128] [--files-only]");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag:?} (try --help)")),
        }
    }
    for t in &o.types {
        if t != GEMMA3 && Preset::parse(t).is_none() {
            return Err(format!(
                "unknown type {t:?}; choose from {}, {GEMMA3}",
                Preset::ALL.map(Preset::name).join(", ")
            ));
        }
    }
    Ok(o)
}

/// Tokens/s samples and peak RSS of one engine for one file and thread count.
#[derive(Debug, Default)]
struct Measured {
    pp: Vec<f64>,
    tg: Vec<f64>,
    rss: u64,
    /// llama.cpp's `llama_print_system_info()` (empty for sintra-rt).
    system_info: String,
}

fn run(args: &[String]) -> Result<(), String> {
    let o = parse_options(args)?;
    if o.files_only {
        for name in &o.types {
            println!("{name} {}", model_file(name).display());
        }
        return Ok(());
    }
    let rt = sintra_rt()?;
    let version = Command::new(&rt)
        .arg("--version")
        .envs(kernels_env(o.anchor))
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rt.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    eprintln!("sintra-rt: {version}");
    let anchor = anchor_binary(o.anchor)?;
    let machine = sintra_tests::machine();
    eprintln!("machine: {machine}");

    let mut bandwidth = Vec::new();
    for &t in &o.threads {
        let bw = measure_bandwidth(t);
        eprintln!("memory read bandwidth, {t} thread(s): {:.1} GB/s", bw / 1e9);
        bandwidth.push((t, bw));
    }

    let mut rows = Vec::new();
    for name in &o.types {
        let path = model_file(name);
        let file = GgufFile::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let traffic = bytes_per_token(&file, o.tg)?;
        let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        let kv = kv_bytes(&file, o.pp.max(o.tg))?;
        for &(t, bw) in &bandwidth {
            eprintln!("{name}, {t} thread(s): llama.cpp …");
            let llama = run_llama_child(&anchor, &path, t, &o)?;
            eprintln!("{name}, {t} thread(s): sintra-rt …");
            let ours = run_sintra(&rt, &path, t, &o)?;
            rows.push(Row {
                ty: name.clone(),
                size,
                kv,
                threads: t,
                bandwidth: bw,
                traffic,
                llama,
                ours,
            });
        }
    }
    let system_info = rows
        .first()
        .map_or(String::new(), |r| r.llama.system_info.clone());
    print_table(&rows, &o, &version, &machine, &system_info);
    Ok(())
}

/// The `--types` name of the real Gemma 3 270M (Q4_K_M, from the setup script's cache).
const GEMMA3: &str = "gemma3";

/// The file of type `name` (validated): the published Q4_1 file, made by llama.cpp's
/// `llama_model_quantize` (cached), or for [`GEMMA3`] the published gemma-3-270m Q4_K_M.
fn model_file(name: &str) -> PathBuf {
    if name == GEMMA3 {
        return sintra_tests::gemma3_270m_q4_k_m();
    }
    let preset = Preset::parse(name).expect("validated");
    if preset == Preset::Q4_1 {
        sintra_tests::smollm2_q4_1()
    } else {
        eprintln!(
            "making {} with llama.cpp's llama_model_quantize (cached)",
            preset.name()
        );
        presets::smollm2_preset(preset)
    }
}

/// `SINTRA_KERNELS` for sintra-rt under `anchor`: AVX2 when both are held to it.
fn kernels_env(anchor: Anchor) -> Vec<(&'static str, &'static str)> {
    match anchor {
        Anchor::Avx2 => vec![("SINTRA_KERNELS", "avx2")],
        _ => Vec::new(),
    }
}

/// The binary whose `--llama-child` runs the anchor's llama.cpp: this one, or this bench built
/// again with the anchor's `RUSTFLAGS` in its own target directory (the first build compiles
/// llama.cpp: minutes; later ones are cached).
fn anchor_binary(anchor: Anchor) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let Some(flags) = anchor.rustflags() else {
        return Ok(exe);
    };
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory")?
        .join(format!("anchor-{}", anchor.name()));
    eprintln!(
        "building the anchor: decode-bench with RUSTFLAGS=\"{flags}\" in {} (the first build compiles llama.cpp)",
        target_dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "sintra-benches",
            "--bin",
            "decode-bench",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", &flags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(sintra_tests::repo_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the {} anchor failed", anchor.name()));
    }
    let bin = target_dir.join("release/decode-bench");
    if !bin.is_file() {
        return Err(format!("{} was not built", bin.display()));
    }
    Ok(bin)
}

#[derive(Debug)]
struct Row {
    ty: String,
    size: u64,
    kv: u64,
    threads: usize,
    bandwidth: f64,
    traffic: f64,
    llama: Measured,
    ours: Measured,
}

fn range(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.1}–{max:.1}")
}

fn print_table(rows: &[Row], o: &Options, version: &str, machine: &str, system_info: &str) {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "\nsintra-rt vs {}; same files, same threads; median [range] over {} repetitions after a warm-up\n",
        o.anchor.describe(),
        o.reps
    );
    println!("- machine: {machine}");
    println!("- sintra-rt: {version}");
    println!("- llama.cpp: {}\n", system_info.trim());
    println!("| type | file MiB | threads | test | llama.cpp t/s | sintra-rt t/s | ratio | goal |");
    println!("| ---- | -------: | ------: | ---- | ------------: | ------------: | ----: | ---- |");
    for r in rows {
        // Issue #14's bars: decode >= 1.3x and prompt processing >= 1.1x against llama.cpp
        // built for this CPU; held to AVX2 on both sides, prompt processing >= 1.0x.
        let pp_goal = if o.anchor == Anchor::Avx2 { 1.0 } else { 1.1 };
        for (test, goal, l, s) in [
            (format!("tg{}", o.tg), 1.3, &r.llama.tg, &r.ours.tg),
            (format!("pp{}", o.pp), pp_goal, &r.llama.pp, &r.ours.pp),
        ] {
            let ratio = median(s) / median(l);
            println!(
                "| {} | {:.1} | {} | {test} | {:.1} [{}] | {:.1} [{}] | {ratio:.2}x | {} >= {goal:.2}x |",
                r.ty,
                mib(r.size),
                r.threads,
                median(l),
                range(l),
                median(s),
                range(s),
                if ratio >= goal { "met" } else { "NOT met" },
            );
        }
    }
    println!("\nDecode against the memory-bandwidth roofline (bytes read per token / measured read bandwidth):\n");
    println!("| type | threads | MB read/token | bandwidth GB/s | roofline t/s | llama.cpp | sintra-rt |");
    println!("| ---- | ------: | ------------: | -------------: | -----------: | --------: | --------: |");
    for r in rows {
        let roof = r.bandwidth / r.traffic;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0}% | {:.0}% |",
            r.ty,
            r.threads,
            r.traffic / 1e6,
            r.bandwidth / 1e9,
            roof,
            100.0 * median(&r.llama.tg) / roof,
            100.0 * median(&r.ours.tg) / roof,
        );
    }
    println!("\nPeak RSS (goal: sintra-rt <= file + KV cache + 16 MiB):\n");
    println!("| type | threads | file MiB | KV MiB | llama.cpp MiB | sintra-rt MiB | budget MiB | goal |");
    println!("| ---- | ------: | -------: | -----: | ------------: | ------------: | ---------: | ---- |");
    for r in rows {
        let budget = r.size + r.kv + (16 << 20);
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.ty,
            r.threads,
            mib(r.size),
            mib(r.kv),
            mib(r.llama.rss),
            mib(r.ours.rss),
            mib(budget),
            if r.ours.rss <= budget {
                "met"
            } else {
                "NOT met"
            },
        );
    }
}

/// The release `sintra-rt` next to this binary, built first so the bench never measures a stale
/// one.
fn sintra_rt() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory for the bench binary")?;
    sintra_tests::cargo_build("runtime", "sintra-rt", "release", None, &[], target_dir)
}

fn run_sintra(rt: &Path, model: &Path, threads: usize, o: &Options) -> Result<Measured, String> {
    let out = Command::new(rt)
        .arg("bench")
        .arg("-m")
        .arg(model)
        .args(["-p", &o.pp.to_string(), "-n", &o.tg.to_string()])
        .envs(kernels_env(o.anchor))
        .args([
            "-t",
            &threads.to_string(),
            "-r",
            &(o.reps + 1).to_string(),
            "--json",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rt.display()))?;
    if !out.status.success() {
        return Err(format!(
            "sintra-rt bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("sintra-rt bench --json printed invalid JSON: {e}"))?;
    let mut m = Measured::default();
    for rec in json
        .as_array()
        .ok_or("sintra-rt bench --json: not an array")?
    {
        let samples: Vec<f64> = rec["samples_ts"]
            .as_array()
            .ok_or("sintra-rt bench --json: no samples_ts")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .skip(1) // the warm-up run
            .collect();
        if rec["n_prompt"].as_u64().unwrap_or(0) > 0 {
            m.pp = samples;
        } else {
            m.tg = samples;
        }
        m.rss = rec["peak_rss_bytes"].as_u64().unwrap_or(0);
    }
    if m.pp.is_empty() || m.tg.is_empty() {
        return Err("sintra-rt bench --json lacks pp or tg samples".into());
    }
    Ok(m)
}

fn run_llama_child(
    anchor: &Path,
    model: &Path,
    threads: usize,
    o: &Options,
) -> Result<Measured, String> {
    let out = Command::new(anchor)
        .arg("--llama-child")
        .arg(model)
        .args([threads, o.pp, o.tg, o.reps].map(|n| n.to_string()))
        .output()
        .map_err(|e| format!("cannot run the llama.cpp child: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "llama.cpp child ({}) failed ({}): {}",
            anchor.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("llama.cpp child printed invalid JSON: {e}"))?;
    let list = |k: &str| -> Vec<f64> {
        json[k]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    Ok(Measured {
        pp: list("pp"),
        tg: list("tg"),
        rss: json["rss"].as_u64().unwrap_or(0),
        system_info: json["system_info"].as_str().unwrap_or("").to_string(),
    })
}

/// The llama.cpp side, in its own process so its peak RSS is its own: one warm-up run, then
/// `reps` runs of pp and of tg, each from an empty cache; prints JSON on stdout.
fn llama_child(args: &[String]) -> Result<(), String> {
    let [model, threads, pp, tg, reps] = args else {
        return Err("--llama-child MODEL THREADS PP TG REPS".into());
    };
    let n = |s: &String| s.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
    let (threads, pp, tg, reps) = (n(threads)?, n(pp)?, n(tg)?, n(reps)?);
    let backend = sintra_tests::llama::backend();
    let model = sintra_tests::llama::load(Path::new(model))?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new((pp + tg) as u32))
        .with_n_batch(pp as u32)
        .with_n_ubatch(pp as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut ctx = model
        .new_context(backend, ctx_params)
        .map_err(|e| format!("context: {e}"))?;
    let n_vocab = model.n_vocab() as u32;
    let token = |i: usize| LlamaToken(((i as u32 * 7919 + 13) % n_vocab) as i32);
    let mut batch = LlamaBatch::new(pp.max(1), 1);
    let mut run_pp = |ctx: &mut llama_cpp_2::context::LlamaContext<'_>| -> Result<f64, String> {
        ctx.clear_kv_cache();
        batch.clear();
        for i in 0..pp {
            batch
                .add(token(i), i as i32, &[0], i + 1 == pp)
                .map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        ctx.decode(&mut batch).map_err(|e| format!("decode: {e}"))?;
        Ok(pp as f64 / t.elapsed().as_secs_f64())
    };
    let mut one = LlamaBatch::new(1, 1);
    let mut run_tg = |ctx: &mut llama_cpp_2::context::LlamaContext<'_>| -> Result<f64, String> {
        ctx.clear_kv_cache();
        let t = Instant::now();
        for i in 0..tg {
            one.clear();
            one.add(token(i), i as i32, &[0], true)
                .map_err(|e| e.to_string())?;
            ctx.decode(&mut one).map_err(|e| format!("decode: {e}"))?;
        }
        Ok(tg as f64 / t.elapsed().as_secs_f64())
    };
    run_pp(&mut ctx)?;
    let pp_samples: Vec<f64> = (0..reps)
        .map(|_| run_pp(&mut ctx))
        .collect::<Result<_, _>>()?;
    run_tg(&mut ctx)?;
    let tg_samples: Vec<f64> = (0..reps)
        .map(|_| run_tg(&mut ctx))
        .collect::<Result<_, _>>()?;
    println!(
        "{}",
        serde_json::json!({
            "pp": pp_samples,
            "tg": tg_samples,
            "rss": peak_rss(),
            "system_info": sintra_tests::llama::system_info(),
        })
    );
    Ok(())
}

/// This process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes a decode step reads: every matrix (the classifier whole, the embedding one row) plus
/// the KV cache at the average position of a tg run.
fn bytes_per_token(file: &GgufFile, tg: usize) -> Result<f64, String> {
    let h = &file.header;
    let mut bytes = 0f64;
    let tied = h.tensor("output.weight").is_none();
    for t in &h.tensors {
        if t.name == "token_embd.weight" {
            let rows = t.dims.get(1).copied().unwrap_or(1).max(1);
            bytes += t.n_bytes as f64 / rows as f64;
            if tied {
                bytes += t.n_bytes as f64;
            }
        } else {
            bytes += t.n_bytes as f64;
        }
    }
    Ok(bytes + kv_bytes(file, tg / 2)? as f64)
}

/// f16 K and V cache bytes for `n_ctx` positions.
fn kv_bytes(file: &GgufFile, n_ctx: usize) -> Result<u64, String> {
    let c = runtime::model::Config::from_gguf(&file.header).map_err(|e| e.to_string())?;
    Ok((c.n_layer() * n_ctx * c.max_kv_dim() * 2 * 2) as u64)
}

/// Read bandwidth with `threads` threads: each sums its own slice of a 1 GiB buffer; the median
/// of five passes.
fn measure_bandwidth(threads: usize) -> f64 {
    let words = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads);
    let mut passes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || sum_words(c)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        std::hint::black_box(sum);
        passes.push((words * 8) as f64 / t.elapsed().as_secs_f64());
    }
    median(&passes)
}

/// Four independent accumulators so the loop is bound by memory, not by the add chain.
fn sum_words(c: &[u64]) -> u64 {
    let mut acc = [0u64; 4];
    for q in c.chunks_exact(4) {
        for i in 0..4 {
            acc[i] = acc[i].wrapping_add(q[i]);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}
