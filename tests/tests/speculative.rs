//! Speculative decoding (issue #17) changes speed, never output. Greedy: 128 tokens from ten
//! prompts of the evaluation text are the same token for token with a draft model made by
//! `sintra compress` from SmolLM2, with prompt lookup, and without drafts, in the library and
//! through the real `sintra-rt generate`. Sampling: the target's token distribution is kept
//! (a two-sample chi-square test over seeded runs; the algorithm itself is tested exactly in
//! `runtime::sampler`).

use formats::gguf::GgufFile;
use runtime::model::{KvType, Llama, ModelError};
use runtime::sampler::{Sampler, SamplerConfig};
use runtime::speculative::{self, Flow};
use runtime::tasks::{self, DraftSource};
use runtime::threads::Pool;
use runtime::tokenizer::Tokenizer;
use sintra_tests::{data_file, release_bin_path, smollm2_q4_1, succeeded};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A recipe with a draft as the planner makes one: Q4_0, a quarter of the blocks dropped.
const RECIPE_WITH_DRAFT: &str = r#"{"default_type":"Q4_1","draft":{"default_type":"Q4_0","drop_layers":[10,12,14,16,18,20,22,24]}}"#;

/// `sintra compress` on a recipe with a draft writes both files; the draft's path.
fn make_draft(dir: &Path) -> PathBuf {
    let recipe = dir.join("recipe.json");
    std::fs::write(&recipe, RECIPE_WITH_DRAFT).unwrap();
    let out = dir.join("model.gguf");
    let stdout = succeeded(
        &Command::new(release_bin_path("planner", "sintra"))
            .arg("compress")
            .arg(smollm2_q4_1())
            .arg("--recipe")
            .arg(&recipe)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap(),
    );
    let draft = dir.join("model.draft.gguf");
    assert!(out.is_file() && draft.is_file(), "{stdout}");
    assert!(stdout.contains("model.draft.gguf"), "{stdout}");
    let d = GgufFile::open(&draft).unwrap();
    assert_eq!(d.header.get_u64("llama.block_count").unwrap(), 22);
    draft
}

/// Ten prompts of the evaluation text: every fifth paragraph, cut to about 600 bytes.
fn eval_prompts() -> Vec<String> {
    let text = std::fs::read_to_string(data_file("eval.txt")).unwrap();
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.len() > 200)
        .collect();
    assert!(
        paragraphs.len() >= 50,
        "eval.txt has {} long paragraphs",
        paragraphs.len()
    );
    paragraphs
        .iter()
        .step_by(5)
        .take(10)
        .map(|p| {
            let mut end = p.len().min(600);
            while !p.is_char_boundary(end) {
                end -= 1;
            }
            p[..end].to_string()
        })
        .collect()
}

/// `n` tokens after `prompt` (token ids) with `source`'s drafts, and the counts.
fn continue_with(
    file: &GgufFile,
    source: DraftSource<'_>,
    prompt: &str,
    n: usize,
    sampling: SamplerConfig,
    pool: &Pool,
) -> (Vec<u32>, speculative::SpecStats) {
    let tok = Tokenizer::from_gguf(&file.header).unwrap();
    let tokens = tok.encode(prompt, true, true);
    let n_ctx = tokens.len() + n + 1;
    let mut drafter = tasks::drafter(source, &tok, n_ctx, false, sampling).unwrap();
    let mut model = Llama::new(file, n_ctx, KvType::F16).unwrap();
    let mut logits = Vec::new();
    model
        .forward_batch(&tokens, 0, pool, tokens.len() - 1, |_, l| {
            logits = l.to_vec();
            Ok::<(), ModelError>(())
        })
        .unwrap();
    let mut history = tokens.clone();
    let mut sampler = Sampler::new(sampling);
    let stats = speculative::decode(
        &mut model,
        pool,
        &mut sampler,
        drafter.as_mut(),
        None,
        &mut history,
        &logits,
        n,
        |t| tok.is_eog(t),
        |_| Flow::Continue,
    )
    .unwrap();
    (history.split_off(tokens.len()), stats)
}

#[test]
fn greedy_output_is_the_same_with_every_kind_of_draft() {
    let _kernels = sintra_tests::kernels_as_selected();
    let dir = tempfile::tempdir().unwrap();
    let draft_path = make_draft(dir.path());
    let target = GgufFile::open(smollm2_q4_1()).unwrap();
    let draft = GgufFile::open(&draft_path).unwrap();
    let pool = Pool::new(2);
    let greedy = SamplerConfig {
        temp: 0.0,
        ..SamplerConfig::default()
    };
    let mut totals = [(0u64, 0u64); 2];
    let mut generated = 0;
    for (i, prompt) in eval_prompts().iter().enumerate() {
        let (plain, _) = continue_with(&target, DraftSource::None, prompt, 128, greedy, &pool);
        // A prompt may end at the end-of-text token; most run to 128.
        generated += plain.len();
        for (k, source) in [DraftSource::Model(&draft), DraftSource::Lookup]
            .into_iter()
            .enumerate()
        {
            let (spec, stats) = continue_with(&target, source, prompt, 128, greedy, &pool);
            let same = plain.iter().zip(&spec).take_while(|(a, b)| a == b).count();
            assert_eq!(
                spec, plain,
                "prompt {i} with {source:?}: the output departs at token {same}"
            );
            totals[k].0 += stats.drafted;
            totals[k].1 += stats.accepted;
        }
    }
    assert!(
        generated >= 1000,
        "only {generated} tokens generated in all"
    );
    for (name, (drafted, accepted)) in ["draft model", "prompt lookup"].iter().zip(totals) {
        eprintln!("{name}: {accepted} of {drafted} drafted tokens kept");
        // Drafts were made and checked, some kept and some not: both branches ran.
        assert!(
            drafted > 0 && accepted > 0,
            "{name}: {accepted} of {drafted}"
        );
    }
    assert!(
        totals[0].1 < totals[0].0,
        "the draft model was never rejected"
    );

    // The real binary: the same text with and without each kind of draft.
    let rt = release_bin_path("runtime", "sintra-rt");
    let prompt = &eval_prompts()[3];
    let generate = |extra: &[&str]| {
        let mut cmd = Command::new(&rt);
        cmd.arg("generate")
            .arg("-m")
            .arg(smollm2_q4_1())
            .args(["-p", prompt, "-n", "128", "-t", "2"])
            .args(extra);
        let out = cmd.output().unwrap();
        (
            succeeded(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (plain, _) = generate(&[]);
    let draft_arg = draft_path.to_str().unwrap();
    for extra in [&["--draft", draft_arg][..], &["--lookup"][..]] {
        let (text, log) = generate(extra);
        assert_eq!(
            text, plain,
            "sintra-rt generate {extra:?} changed the output"
        );
        assert!(log.contains("drafted tokens kept"), "{log}");
    }
}

/// With sampling, the token checked against a draft is distributed as the target says. The
/// first generated token is fixed (its logits forced), so the second — the first one drafted
/// and checked — has an exact distribution, the target's after the prompt and that token;
/// 3,000 seeded draws of it with each kind of draft are tested against it (chi-square).
#[test]
fn speculative_sampling_keeps_the_distribution_of_real_tokens() {
    let _kernels = sintra_tests::kernels_as_selected();
    let dir = tempfile::tempdir().unwrap();
    let draft_path = make_draft(dir.path());
    let target = GgufFile::open(smollm2_q4_1()).unwrap();
    let draft = GgufFile::open(&draft_path).unwrap();
    let tok = Tokenizer::from_gguf(&target.header).unwrap();
    let pool = Pool::new(2);
    // A prompt that repeats itself, so that prompt lookup drafts too.
    let prompt = tok.encode(
        "The cat sat on the mat. The dog sat on the rug. The cat sat on the",
        true,
        true,
    );
    let first = tok.encode(" mat", false, false)[0];
    let sampling = |seed| SamplerConfig {
        temp: 1.5,
        top_k: 40,
        top_p: 1.0,
        seed,
    };
    let n_ctx = prompt.len() + 32;
    let mut model = Llama::new(&target, n_ctx, KvType::F16).unwrap();
    model
        .forward_batch(&prompt, 0, &pool, prompt.len(), |_, _| {
            Ok::<(), ModelError>(())
        })
        .unwrap();
    let exact = {
        let logits = model.forward(first, prompt.len(), &pool).unwrap().to_vec();
        Sampler::new(sampling(0)).distribution(&logits).to_vec()
    };
    let mut forced = vec![f32::MIN; model.config.n_vocab];
    forced[first as usize] = 0.0;
    let n = 3000;
    for source in [DraftSource::Model(&draft), DraftSource::Lookup] {
        let mut drafter = tasks::drafter(source, &tok, n_ctx, false, sampling(1))
            .unwrap()
            .unwrap();
        let mut counts = std::collections::HashMap::<u32, f64>::new();
        let (mut drafted, mut accepted) = (0, 0);
        for seed in 0..n {
            let mut history = prompt.clone();
            let mut sampler = Sampler::new(sampling(seed));
            let stats = speculative::decode(
                &mut model,
                &pool,
                &mut sampler,
                Some(&mut drafter),
                None,
                &mut history,
                &forced,
                2,
                |_| false,
                |_| Flow::Continue,
            )
            .unwrap();
            assert_eq!(history[prompt.len()], first);
            drafted += stats.drafted;
            accepted += stats.accepted;
            *counts.entry(history[prompt.len() + 1]).or_default() += 1.0;
        }
        // Every draw of the second token was checked against a draft, and drafts were both kept
        // and replaced: the test reaches both branches of speculative sampling.
        assert_eq!(drafted, n, "{source:?}: {drafted} drafts in {n} runs");
        assert!(
            accepted > n / 20 && accepted < n - n / 20,
            "{source:?}: {accepted} of {drafted} kept"
        );
        // Bins of at least 5 expected draws; the rest of the distribution pooled.
        let mut chi2 = 0.0;
        let mut df = 0;
        let (mut rest_e, mut rest_o) = (0.0, 0.0);
        for &(p, t) in &exact {
            let e = p as f64 * n as f64;
            let o = counts.get(&t).copied().unwrap_or(0.0);
            if e >= 5.0 {
                chi2 += (o - e).powi(2) / e;
                df += 1;
            } else {
                rest_e += e;
                rest_o += o;
            }
        }
        if rest_e > 0.0 {
            chi2 += (rest_o - rest_e).powi(2) / rest_e.max(1e-9);
            df += 1;
        }
        let df = df - 1;
        // The 0.999 quantile of chi-square (Wilson-Hilferty).
        let d = df as f64;
        let limit = d * (1.0 - 2.0 / (9.0 * d) + 3.09 * (2.0 / (9.0 * d)).sqrt()).powi(3);
        eprintln!(
            "{source:?}: {accepted} of {drafted} drafts kept; chi2 {chi2:.1} on {df} df (limit {limit:.1})"
        );
        assert!(df >= 3, "too few likely tokens to test: {exact:?}");
        assert!(chi2 < limit, "{source:?}: chi2 {chi2:.1} > {limit:.1}");
    }
}

/// The optimizer with `--draft auto` on this host: each candidate gets a draft, measured by the
/// real runtime through the wire protocol (greedy generation with and without it, checked
/// equal); the outcome — acceptance, both speeds, kept or not — is in the experiment, the
/// history and the report, and a draft that does not pay leaves no file behind.
#[test]
fn the_optimizer_makes_and_measures_drafts() {
    let _one = sintra_tests::measuring_lock();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = crate::planner::release_sintra(&home, tmp.path())(&[
        "--auto-detect",
        "--draft",
        "auto",
        "--max-iters",
        "1",
        "--no-sensitivity",
        "--output-dir",
        "out",
    ])
    .output()
    .unwrap();
    let stdout = succeeded(&sintra_tests::unpanicked(out, "sintra --draft auto"));
    assert!(stdout.contains("drafted tokens kept"), "{stdout}");
    let run_dir = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        report.contains("## Drafts (speculative decoding)"),
        "{report}"
    );
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let json: String = db
        .query_row("SELECT json FROM experiments", [], |r| r.get(0))
        .unwrap();
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    let d = &e["draft"];
    let speed = &d["speed"];
    eprintln!("{}", serde_json::to_string_pretty(d).unwrap());
    assert!(speed["drafted"].as_u64().unwrap() > 0, "{d}");
    assert!(
        speed["plain_tps"].as_f64().unwrap() > 0.0 && speed["spec_tps"].as_f64().unwrap() > 0.0
    );
    let ratio = speed["ratio"].as_f64().unwrap();
    assert_eq!(d["kept"].as_bool().unwrap(), ratio >= 1.05, "{d}");
    // The draft ships beside the best model only when it is kept.
    assert_eq!(
        run_dir.join("model.draft.gguf").is_file(),
        d["kept"].as_bool().unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().contains("candidate"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
