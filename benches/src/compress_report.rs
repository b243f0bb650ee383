//! `compress-report`: our recipes against llama.cpp's quantization presets on SmolLM2-135M, from
//! one run (issues #7, #13), starting from an unquantized original on equal footing for both.
//!
//! ```sh
//! cargo build --workspace --profile test --bins && target/debug/compress-report [--eval-chunks 4] [--threads 2] [--out target/compress-report]
//! ```
//! (The workspace-wide test-profile build shares llama.cpp with the test suite; building the
//! benches crate alone would compile llama.cpp again with other features.)
//! 0. The original: the published Q4_1 file dequantized, every weight moved by a deterministic
//!    uniform offset within half its block's quantization step, written as F16
//!    (`sintra_tests::original`: no quantization grid lines up with it, and the published file
//!    is a plausible quantization of it). Every file below is made from it and scored against it;
//!    the published Q4_1 file is scored too, for reference.
//! 1. Calibration (`sintra-rt calibrate` through the wire, as the planner does) on
//!    `calibration.txt`: importance matrix and block influence.
//! 2. llama.cpp's presets Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K, made by llama.cpp
//!    itself (`llama_model_quantize`) from the original, without and with an importance matrix
//!    (ours: both sides get the same information).
//! 3. The planner's sensitivity pass (per-matrix KL divergence probes on the calibration text)
//!    and, for every preset's file size, the allocator's recipe within that size, written by the
//!    planner's executor.
//! 4. Layer dropping: 4 of 30 blocks chosen by block influence, at random (3 seeds) and the
//!    last 4.
//! 5. Every file scored against the original on held-out `eval.txt` by sintra-rt (KL
//!    divergence, top-1 agreement, PPL, each with its standard error) and its decode speed (tg64,
//!    median of 3) measured.
//!
//! Prints a markdown table and a dominance check per preset, and writes `pareto.svg` (KL
//! divergence against size) and `report.md` under `--out`.

use anyhow::Context as _;
use planner::calibration::{self, CalibrationSpec};
use planner::model_info::ModelInfo;
use planner::profile::RECIPE_TYPES;
use planner::sensitivity::{self, SensitivitySpec};
use runtime::tasks::{self, PerplexitySettings};
use sintra_tests::presets::{self, Preset};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

const PRESETS: [Preset; 7] = [
    Preset::Q8_0,
    Preset::Q6_K,
    Preset::Q5_K_M,
    Preset::Q4_K_M,
    Preset::Q4_0,
    Preset::Q3_K_M,
    Preset::Q2_K,
];

struct Opts {
    eval_chunks: usize,
    threads: u32,
    out: PathBuf,
    sens_ctx: u32,
    sens_chunks: u32,
    calib_chunks: u32,
}

#[derive(Debug, Clone)]
struct Row {
    group: &'static str,
    name: String,
    bytes: u64,
    bpw: f64,
    kld: f64,
    kld_se: f64,
    top1: f64,
    top1_se: f64,
    ppl: f64,
    tps: f64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compress-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> anyhow::Result<Opts> {
    let mut o = Opts {
        eval_chunks: 4,
        threads: 2,
        out: sintra_tests::repo_root().join("target/compress-report"),
        sens_ctx: 256,
        sens_chunks: 1,
        calib_chunks: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let mut v = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{f} needs a value"))
        };
        match f.as_str() {
            "--eval-chunks" => o.eval_chunks = v()?.parse()?,
            "--threads" => o.threads = v()?.parse()?,
            "--out" => o.out = v()?.into(),
            "--sens-ctx" => o.sens_ctx = v()?.parse()?,
            "--sens-chunks" => o.sens_chunks = v()?.parse()?,
            "--calib-chunks" => o.calib_chunks = v()?.parse()?,
            "-h" | "--help" => {
                println!("compress-report [--eval-chunks 4] [--threads 2] [--out DIR] [--sens-ctx 256] [--sens-chunks 1] [--calib-chunks 16]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

fn run() -> anyhow::Result<()> {
    let o = parse()?;
    std::fs::create_dir_all(&o.out)?;
    // The planner reaches the runtime through `sintra-rt serve`, found next to this binary:
    // build it there (same profile and target directory).
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("no directory for this executable")?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    cargo.args(["build", "--quiet", "-p", "runtime", "--bin", "sintra-rt"]);
    // target/release: the release build; target/debug: the optimized test profile (the one the
    // test suite built llama.cpp with), not the unoptimized dev profile.
    cargo.args(if release {
        ["--profile", "release"]
    } else {
        ["--profile", "test"]
    });
    let st = cargo.env("CARGO_TARGET_DIR", target_dir).status()?;
    anyhow::ensure!(st.success(), "building sintra-rt failed");
    eprintln!("[0/5] the original (F16, from the published Q4_1 file)");
    let src = sintra_tests::original::smollm2_original();
    let model = ModelInfo::load(&src)?;
    let shared = sintra_tests::data_file("calibration.txt");
    let eval_text = std::fs::read_to_string(sintra_tests::data_file("eval.txt"))?;

    eprintln!("[1/5] calibration on {}", shared.display());
    let mut cspec = CalibrationSpec::new(&shared, o.threads);
    cspec.chunks = o.calib_chunks;
    let calib = calibration::ensure(&model, &cspec, &o.out.join("calibration"))?;

    eprintln!("[2/5] llama.cpp presets (without and with the importance matrix)");
    let mut files: Vec<(&'static str, String, PathBuf)> = vec![
        ("original", "F16 original".into(), src.clone()),
        (
            "published",
            "Q4_1 (published)".into(),
            sintra_tests::smollm2_q4_1(),
        ),
    ];
    // The smaller of each preset's two files (without and with the importance matrix): the
    // budget our recipe must fit.
    let mut budgets = Vec::new();
    for p in PRESETS {
        let mut budget = u64::MAX;
        for (group, suffix, imatrix) in [
            ("llama.cpp", "", None),
            ("llama.cpp+imatrix", " imatrix", Some(&calib.importance)),
        ] {
            let path = o.out.join(format!(
                "llama-{}{}.gguf",
                p.name(),
                suffix.replace(' ', "-")
            ));
            if !path.is_file() {
                let tmp = path.with_extension("tmp");
                presets::llama_quantize_imatrix(&src, &tmp, p, o.threads as i32, imatrix)
                    .map_err(anyhow::Error::msg)?;
                std::fs::rename(&tmp, &path)?;
            }
            budget = budget.min(std::fs::metadata(&path)?.len());
            files.push((group, format!("{}{suffix}", p.name()), path));
        }
        budgets.push((p, budget));
    }

    eprintln!("[3/5] sensitivity pass and allocation");
    let sspec = SensitivitySpec {
        text_file: shared.clone(),
        n_ctx: o.sens_ctx,
        chunks: o.sens_chunks,
        threads: o.threads,
        imatrix: true,
    };
    let sens = sensitivity::ensure(&model, &calib, &sspec, &o.out.join("sensitivity"))?;
    let mut recipes = Vec::new();
    for &(p, budget) in &budgets {
        match sensitivity::allocate(&model, &sens, RECIPE_TYPES, budget) {
            Some(r) => recipes.push((format!("sintra ≤ {}", p.name()), r)),
            None => eprintln!("  no recipe fits {} ({budget} bytes)", p.name()),
        }
    }
    for (name, r) in &recipes {
        let path = o.out.join(format!("{}.gguf", slug(name)));
        planner::executor::execute(r, &model, &path, false, Some(&calib))?;
        std::fs::write(path.with_extension("recipe.json"), r.to_json_pretty())?;
        files.push(("sintra", name.clone(), path));
    }

    eprintln!("[4/5] layer dropping: 4 of {} blocks", model.n_layers);
    let n = model.n_layers;
    let by_influence: Vec<u32> = calib.least_influential().into_iter().take(4).collect();
    let mut drops: Vec<(String, Vec<u32>)> = vec![
        (format!("drop by influence {by_influence:?}"), by_influence),
        ("drop last 4".to_string(), (n - 4..n).collect()),
    ];
    let mut seed = 0x5eed_u64;
    for _ in 0..3 {
        let mut pick: Vec<u32> = Vec::new();
        while pick.len() < 4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let l = ((seed >> 33) % n as u64) as u32;
            if !pick.contains(&l) {
                pick.push(l);
            }
        }
        pick.sort_unstable();
        drops.push((format!("drop random {pick:?}"), pick));
    }
    let identity = sensitivity::identity_recipe(&model);
    for (name, layers) in &drops {
        let mut r = identity.clone();
        r.drop_layers = layers.clone();
        let path = o.out.join(format!("{}.gguf", slug(name)));
        planner::executor::execute(&r, &model, &path, false, None)?;
        files.push(("drop", name.clone(), path));
    }

    eprintln!(
        "[5/5] scoring {} files on eval.txt ({} windows of 512)",
        files.len(),
        o.eval_chunks
    );
    let base_logits = o.out.join("original.logits");
    let mut rows = Vec::new();
    for (i, (group, name, path)) in files.iter().enumerate() {
        let loaded = tasks::open_model(path).map_err(|e| anyhow::anyhow!(e.message))?;
        let settings = PerplexitySettings {
            n_ctx: 512,
            max_chunks: Some(o.eval_chunks),
            threads: o.threads,
            kv_f32: false,
            save_logits: (i == 0).then_some(base_logits.as_path()),
            kld_base: (i > 0).then_some(base_logits.as_path()),
        };
        let r = tasks::perplexity_text(&loaded.file, &eval_text, &settings, &mut |_, _, _| {})
            .map_err(|e| anyhow::anyhow!("{name}: {}", e.message))?;
        let b = tasks::bench(
            &loaded.file,
            &formats::wire::BenchRequest {
                n_prompt: 0,
                n_gen: 64,
                threads: o.threads,
                repetitions: 3,
                kv_f32: false,
            },
            &mut |_| {},
        )
        .map_err(|e| anyhow::anyhow!("{name}: {}", e.message))?;
        let mut tg: Vec<f64> = b
            .runs
            .iter()
            .flat_map(|r| r.samples_tok_s.iter().copied())
            .collect();
        tg.sort_by(f64::total_cmp);
        let bytes = std::fs::metadata(path)?.len();
        let params = loaded.file.header.n_parameters();
        let row = Row {
            group,
            name: name.clone(),
            bytes,
            bpw: loaded.file.header.n_tensor_bytes() as f64 * 8.0 / params.max(1) as f64,
            kld: r.kld.as_ref().map_or(0.0, |k| k.kld_mean),
            kld_se: r.kld.as_ref().map_or(0.0, |k| k.kld_err),
            top1: r.kld.as_ref().map_or(1.0, |k| k.same_top),
            top1_se: r.kld.as_ref().map_or(0.0, |k| k.same_top_err),
            ppl: r.ppl,
            tps: tg.get(tg.len() / 2).copied().unwrap_or(0.0),
        };
        eprintln!(
            "  {:<34} {:>7.2} MiB  KLD {:.5}±{:.5}  top-1 {:.4}±{:.4}  PPL {:.3}  {:.1} tok/s",
            row.name,
            mib(row.bytes),
            row.kld,
            row.kld_se,
            row.top1,
            row.top1_se,
            row.ppl,
            row.tps
        );
        rows.push(row);
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "Original: SmolLM2-135M-Instruct's published Q4_1 weights dequantized, each moved by a \
         deterministic uniform offset within half its block's quantization step, stored as F16 \
         (`tests/src/original.rs`). Every file is made from it and scored against it on {} \
         windows of 512 tokens of the held-out text; ± is one standard error.\n",
        o.eval_chunks
    );
    let _ = writeln!(
        md,
        "| group | file | MiB | bpw | KLD | top-1 | PPL | tg64 tok/s |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.3} | {:.5} ± {:.5} | {:.4} ± {:.4} | {:.3} | {:.1} |",
            r.group,
            r.name,
            mib(r.bytes),
            r.bpw,
            r.kld,
            r.kld_se,
            r.top1,
            r.top1_se,
            r.ppl,
            r.tps
        );
    }
    let _ = writeln!(
        md,
        "\nDominance (at every preset's size, a recipe of ours no larger with lower KLD; \
         \"within the noise\" when the gap is under two standard errors of the difference):\n"
    );
    let ours: Vec<&Row> = rows.iter().filter(|r| r.group == "sintra").collect();
    let mut all_dominated = true;
    for p in rows.iter().filter(|r| r.group.starts_with("llama.cpp")) {
        let best = ours
            .iter()
            .filter(|r| r.bytes <= p.bytes)
            .min_by(|a, b| a.kld.total_cmp(&b.kld));
        let ok = best.is_some_and(|b| b.kld < p.kld);
        all_dominated &= ok;
        let noise = best.is_some_and(|b| {
            (b.kld - p.kld).abs() < 2.0 * (b.kld_se.powi(2) + p.kld_se.powi(2)).sqrt()
        });
        let _ = writeln!(
            md,
            "- {} {} ({:.2} MiB, KLD {:.5}): {}{}",
            if ok { "✓" } else { "✗" },
            p.name,
            mib(p.bytes),
            p.kld,
            match best {
                Some(b) => format!("{} ({:.2} MiB, KLD {:.5})", b.name, mib(b.bytes), b.kld),
                None => "nothing of ours this small".into(),
            },
            if noise { " (within the noise)" } else { "" }
        );
    }
    let drop_top1 = |prefix: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.group == "drop" && r.name.starts_with(prefix))
            .map(|r| r.top1)
            .collect()
    };
    let (inf, last, rnd) = (
        drop_top1("drop by influence"),
        drop_top1("drop last"),
        drop_top1("drop random"),
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let _ = writeln!(
        md,
        "\nLayer dropping (top-1 agreement): by influence {:.4}, random (mean of {}) {:.4}, last 4 {:.4}",
        mean(&inf),
        rnd.len(),
        mean(&rnd),
        mean(&last)
    );
    let _ = writeln!(
        md,
        "\nAll presets dominated: {}",
        if all_dominated { "yes" } else { "no" }
    );
    print!("{md}");
    std::fs::write(o.out.join("report.md"), &md)?;
    std::fs::write(o.out.join("pareto.svg"), svg(&rows))?;
    eprintln!(
        "wrote {} and {}",
        o.out.join("report.md").display(),
        o.out.join("pareto.svg").display()
    );
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}

/// KL divergence (log scale) against size: llama.cpp's presets, with and without imatrix, and
/// ours; layer-dropped files are left out (another axis of loss).
fn svg(rows: &[Row]) -> String {
    let pts: Vec<&Row> = rows
        .iter()
        .filter(|r| r.group != "drop" && r.kld > 0.0)
        .collect();
    let (w, h, m) = (760.0, 480.0, 60.0);
    let xs: Vec<f64> = pts.iter().map(|r| mib(r.bytes)).collect();
    let ys: Vec<f64> = pts.iter().map(|r| r.kld.log10()).collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min) - 2.0,
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 2.0,
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min).floor(),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max).ceil(),
    );
    let px = |x: f64| m + (x - x0) / (x1 - x0).max(1e-9) * (w - 2.0 * m);
    let py = |y: f64| h - m - (y - y0) / (y1 - y0).max(1e-9) * (h - 2.0 * m);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(s, "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">SmolLM2-135M: KL divergence from the original vs file size</text>", w / 2.0);
    let _ = writeln!(
        s,
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - m,
        w - m,
        h - m
    );
    let _ = writeln!(
        s,
        "<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>",
        h - m
    );
    let mut e = y0;
    while e <= y1 {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">1e{e}</text><line x1=\"{m}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>", m - 4.0, py(e) + 4.0, w - m, y = py(e));
        e += 1.0;
    }
    let mut x = (x0 / 10.0).ceil() * 10.0;
    while x <= x1 {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x:.0}</text>",
            px(x),
            h - m + 16.0
        );
        x += 10.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">file size (MiB)</text>",
        w / 2.0,
        h - 15.0
    );
    let _ = writeln!(s, "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">KL divergence (log)</text>", h / 2.0, h / 2.0);
    for (group, colour) in [
        ("llama.cpp", "#d62728"),
        ("llama.cpp+imatrix", "#ff7f0e"),
        ("sintra", "#1f77b4"),
        ("published", "#7f7f7f"),
    ] {
        let mut g: Vec<&&Row> = pts.iter().filter(|r| r.group == group).collect();
        g.sort_by_key(|r| r.bytes);
        let line: Vec<String> = g
            .iter()
            .map(|r| format!("{:.1},{:.1}", px(mib(r.bytes)), py(r.kld.log10())))
            .collect();
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
            line.join(" ")
        );
        for r in g {
            let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{} {:.2} MiB KLD {:.5}</title></circle>", px(mib(r.bytes)), py(r.kld.log10()), r.name, mib(r.bytes), r.kld);
        }
    }
    for (i, (label, colour)) in [
        ("llama.cpp presets", "#d62728"),
        ("llama.cpp presets + imatrix", "#ff7f0e"),
        ("sintra (allocator)", "#1f77b4"),
        ("published Q4_1", "#7f7f7f"),
    ]
    .iter()
    .enumerate()
    {
        let y = m + 10.0 + 16.0 * i as f64;
        let _ = writeln!(s, "<circle cx=\"{}\" cy=\"{y}\" r=\"4\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{label}</text>", w - m - 190.0, w - m - 180.0, y + 4.0);
    }
    s.push_str("</svg>\n");
    s
}
