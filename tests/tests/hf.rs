//! Hugging Face checkpoints in (issue #16), end to end through the real `sintra` binary and a
//! loopback double of the Hub (`sintra_tests::hub`, a TEST DOUBLE: no network here).
//!
//! The round trip: GGUFs from the setup cache (and synthetic ones) are dequantized and written
//! out as Hugging Face checkpoints (`sintra_tests::hf_export`), served by the double,
//! downloaded and converted back by `sintra convert owner/repo --outtype f32`; the result must
//! hold the dequantized source's tensors bit for bit, tokenize all of eval text as the source
//! does in llama.cpp, and generate the same 32 greedy tokens in llama.cpp and sintra-rt.

use formats::gguf::GgufFile;
use formats::quant::GgmlType;
use sintra_tests::hf_export::{self, Dtype, ExportOptions};
use sintra_tests::hub::{HubServer, Times};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `sintra` (release: conversions move hundreds of MB) with its home in `home` and the double
/// as the Hub.
fn sintra(home: &Path, hub: &HubServer, args: &[&str]) -> Output {
    let out = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
        .args(args)
        .env("SINTRA_HOME", home)
        .env("HF_ENDPOINT", hub.url())
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    sintra_tests::unpanicked(out, &format!("sintra {args:?}"))
}

fn ok(out: &Output) -> String {
    sintra_tests::succeeded(out)
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "sintra should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Serves each checkpoint directory as `owner/name` at `main` (symlinked into the root).
fn serve(repos: &[(&str, &Path)]) -> (tempfile::TempDir, HubServer) {
    let root = tempfile::tempdir().unwrap();
    for (repo, dir) in repos {
        let parent = root.path().join(repo);
        std::fs::create_dir_all(&parent).unwrap();
        std::os::unix::fs::symlink(dir, parent.join("main")).unwrap();
    }
    let hub = HubServer::start(root.path()).unwrap();
    (root, hub)
}

/// Every tensor of `a` and `b`: same names, dims, types and bytes.
fn assert_same_tensors(a: &Path, b: &Path) {
    let (fa, fb) = (GgufFile::open(a).unwrap(), GgufFile::open(b).unwrap());
    let names = |f: &GgufFile| {
        let mut v: Vec<String> = f.header.tensors.iter().map(|t| t.name.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&fa),
        names(&fb),
        "tensor names of {} and {}",
        a.display(),
        b.display()
    );
    for t in &fa.header.tensors {
        let u = fb.header.tensor(&t.name).unwrap();
        assert_eq!((&t.dims, t.ty), (&u.dims, u.ty), "{}", t.name);
        assert!(fa.data(t) == fb.data(u), "{}: bytes differ", t.name);
    }
}

/// All of eval text tokenized by llama.cpp with each model's vocabulary.
fn assert_same_tokenization(a: &Path, b: &Path) {
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    let text = std::fs::read_to_string(sintra_tests::data_file("eval.txt")).unwrap();
    let tok = |p: &Path| {
        let params = LlamaModelParams::default().with_vocab_only(true);
        let m = LlamaModel::load_from_file(sintra_tests::llama::backend(), p, &params).unwrap();
        let ids: Vec<i32> = m
            .vocab()
            .tokenize(text.as_bytes(), true, false)
            .iter()
            .map(|t| t.0)
            .collect();
        ids
    };
    let (ta, tb) = (tok(a), tok(b));
    assert!(ta.len() > 1000, "eval text is {} tokens", ta.len());
    assert!(
        ta == tb,
        "llama.cpp tokenizes eval text differently ({} and {} tokens)",
        ta.len(),
        tb.len()
    );
}

const PROMPT: &str = "The capital of France is";

/// 32 greedy tokens in llama.cpp and in sintra-rt, the same for both files.
fn assert_same_greedy(a: &Path, b: &Path) {
    let _kernels = sintra_tests::kernels_as_selected();
    let l = |p: &Path| {
        sintra_tests::llama::generate_greedy(p, PROMPT, 32, 2)
            .unwrap()
            .0
    };
    assert_eq!(l(a), l(b), "llama.cpp's 32 greedy tokens");
    let s = |p: &Path| sintra_tests::sintra_greedy(p, PROMPT, 32);
    assert_eq!(s(a), s(b), "sintra-rt's 32 greedy tokens");
}

/// The round trip for one model: `original` exported as `repo`, the dry run reads only
/// `config.json`, `sintra convert` gives back `reference` (the dequantized original) bit for bit.
fn round_trip(original: &Path, reference: &Path, repo: &str, opts: ExportOptions) {
    let ck = hf_export::cached(original, opts).unwrap();
    let (_root, hub) = serve(&[(repo, &ck)]);
    let home = tempfile::tempdir().unwrap();
    let weights = if opts.max_shard_bytes.is_some() {
        "model-00001-of-"
    } else {
        "model.safetensors"
    };

    // Fit before download: config.json and the listing, no weights.
    let out = ok(&sintra(
        home.path(),
        &hub,
        &["--auto-detect", "--model-id", repo, "--dry-run"],
    ));
    assert!(
        out.contains("not downloaded") && out.contains("peak MiB"),
        "{out}"
    );
    let fetched_weights = hub
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.file.as_deref().is_some_and(|f| f.starts_with(weights)))
        .count();
    assert_eq!(fetched_weights, 0, "the dry run fetched weights:\n{out}");

    let gguf = home.path().join("converted.gguf");
    let out = ok(&sintra(
        home.path(),
        &hub,
        &[
            "convert",
            repo,
            "-o",
            gguf.to_str().unwrap(),
            "--outtype",
            "f32",
        ],
    ));
    assert!(out.contains("wrote"), "{out}");
    assert_same_tensors(&gguf, reference);
    assert_same_tokenization(&gguf, original);
    assert_same_greedy(&gguf, reference);
}

fn f32_export() -> ExportOptions {
    ExportOptions {
        dtype: Dtype::F32,
        max_shard_bytes: None,
    }
}

#[test]
fn smollm2_round_trips_through_a_hugging_face_checkpoint() {
    let original = sintra_tests::smollm2_q4_1();
    let reference = sintra_tests::requant::smollm2_as(GgmlType::F32);
    // Sharded, to download an index and its shards.
    let opts = ExportOptions {
        dtype: Dtype::F32,
        max_shard_bytes: Some(200 << 20),
    };
    round_trip(
        &original,
        &reference,
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        opts,
    );
}

#[test]
fn gemma3_270m_round_trips_through_a_hugging_face_checkpoint() {
    let original = sintra_tests::gemma3_270m_q4_k_m();
    let reference = sintra_tests::requant::gemma3_as(GgmlType::F32);
    round_trip(&original, &reference, "google/gemma-3-270m", f32_export());
}

#[test]
fn synthetic_qwen3_and_phi3_round_trip_through_hugging_face_checkpoints() {
    use sintra_tests::synthetic::{synthetic, Arch};
    for arch in [Arch::Qwen3, Arch::Phi3] {
        let original = synthetic(arch, GgmlType::Q8_0);
        let reference = dequantized(&original);
        // Not "phi3" in the name: llama.cpp gives a model whose general.name contains "phi3"
        // Phi-3's token attributes by name ("</s>"), which SmolLM2's vocabulary lacks.
        let repo = match arch {
            Arch::Phi3 => "sintra-test/synthetic-longrope".to_string(),
            a => format!("sintra-test/synthetic-{}", a.name()),
        };
        round_trip(&original, &reference, &repo, f32_export());
    }
}

/// Every output type from a local checkpoint directory: llama.cpp loads the file, and its greedy
/// tokens are sintra-rt's; norms stay F32, matrices take the type asked for.
#[test]
fn every_outtype_loads_in_llama_cpp_and_sintra_rt_alike() {
    use sintra_tests::synthetic::{synthetic, Arch};
    let original = synthetic(Arch::Llama, GgmlType::Q8_0);
    let ck = hf_export::cached(&original, f32_export()).unwrap();
    let home = tempfile::tempdir().unwrap();
    for (outtype, ty) in [
        ("f16", GgmlType::F16),
        ("bf16", GgmlType::BF16),
        ("q8_0", GgmlType::Q8_0),
    ] {
        let gguf = home.path().join(format!("{outtype}.gguf"));
        let out = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
            .args([
                "convert",
                ck.to_str().unwrap(),
                "-o",
                gguf.to_str().unwrap(),
                "--outtype",
                outtype,
            ])
            .env("SINTRA_HOME", home.path())
            .output()
            .unwrap();
        ok(&out);
        let f = GgufFile::open(&gguf).unwrap();
        for t in &f.header.tensors {
            let want = if t.dims.len() >= 2 { ty } else { GgmlType::F32 };
            assert_eq!(t.ty, want, "{outtype}: {}", t.name);
        }
        let _kernels = sintra_tests::exact_kernels();
        let (llama, _) = sintra_tests::llama::generate_greedy(&gguf, PROMPT, 16, 1).unwrap();
        let ours = sintra_tests::sintra_greedy(&gguf, PROMPT, 16);
        let llama: Vec<u32> = llama.iter().map(|&t| t as u32).collect();
        assert_eq!(
            ours, llama,
            "{outtype}: greedy tokens of sintra-rt and llama.cpp"
        );
    }
}

/// `src` with every tensor dequantized to F32, beside it.
fn dequantized(src: &Path) -> PathBuf {
    let out = src.with_extension("F32.gguf");
    if !out.is_file() {
        sintra_tests::requant::requantize(src, &out, GgmlType::F32);
    }
    out
}

#[test]
fn downloads_resume_check_their_sha256_and_say_what_a_repository_lacks() {
    let original =
        sintra_tests::synthetic::synthetic(sintra_tests::synthetic::Arch::Qwen3, GgmlType::Q8_0);
    let opts = ExportOptions {
        dtype: Dtype::BF16,
        max_shard_bytes: Some(4 << 20),
    };
    let ck = hf_export::cached(&original, opts).unwrap();
    // A repository with config.json only: no weights of any kind.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(ck.join("config.json"), bare.path().join("config.json")).unwrap();
    let (_root, hub) = serve(&[("t/qwen3", &ck), ("t/bare", bare.path())]);
    let home = tempfile::tempdir().unwrap();
    let out_path = home.path().join("q.gguf");
    let out = out_path.to_str().unwrap();
    let shards: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert!(shards.len() >= 3, "{shards:?}");
    let mut shards = shards;
    shards.sort();

    // A corrupted shard fails its checksum, naming it; nothing of it is kept.
    hub.corrupt(&shards[1], Times::Always);
    let err = failed(&sintra(
        home.path(),
        &hub,
        &["convert", "t/qwen3", "-o", out],
    ));
    assert!(err.contains("sha256") && err.contains(&shards[1]), "{err}");
    assert!(!out_path.exists());
    hub.clear_faults();

    // Killed in the middle of the last shard (its connection cut again and again, so the
    // download sits in its retries): the next run fetches neither finished shard again and
    // resumes the cut one from its `.part` file with a Range request.
    assert_eq!(hub.downloads(&shards[0]), 1);
    hub.cut_after(&shards[2], 100_000, Times::Always);
    let mut child = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
        .args(["convert", "t/qwen3", "-o", out])
        .env("SINTRA_HOME", home.path())
        .env("HF_ENDPOINT", hub.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part_name = format!("{}.part", shards[2]);
    let t0 = std::time::Instant::now();
    let part = loop {
        let found = walk(&home.path().join("models")).into_iter().find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy() == part_name)
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        });
        if let Some(p) = found {
            break p;
        }
        assert!(t0.elapsed().as_secs() < 120, "no {part_name} appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0);
    // The corrupted shard's second download was good.
    let done_before = hub.downloads(&shards[1]);
    assert_eq!(done_before, 2);
    hub.clear_faults();
    ok(&sintra(
        home.path(),
        &hub,
        &["convert", "t/qwen3", "-o", out],
    ));
    assert_eq!(
        hub.downloads(&shards[0]),
        1,
        "a finished shard was fetched again"
    );
    assert_eq!(
        hub.downloads(&shards[1]),
        done_before,
        "a finished shard was fetched again"
    );
    let last = hub
        .requests()
        .into_iter()
        .rfind(|r| r.method == "GET" && r.file.as_deref() == Some(shards[2].as_str()))
        .unwrap();
    assert!(
        last.range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-")),
        "the killed shard was fetched from the start again: {last:?}"
    );
    assert!(!walk(&home.path().join("models"))
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".part")));
    let f = GgufFile::open(&out_path).unwrap();
    assert_eq!(f.header.architecture().unwrap(), "qwen3");
    assert!(
        f.header.tensors.iter().any(|t| t.ty == GgmlType::BF16),
        "auto keeps BF16"
    );

    // A repository with neither safetensors nor GGUF says so; a missing one names itself.
    let err = failed(&sintra(
        home.path(),
        &hub,
        &["convert", "t/bare", "-o", out],
    ));
    assert!(
        err.contains("t/bare") && err.contains("neither safetensors nor GGUF"),
        "{err}"
    );
    let err = failed(&sintra(
        home.path(),
        &hub,
        &["convert", "t/nothing-here", "-o", out],
    ));
    assert!(
        err.contains("t/nothing-here") && err.contains("not found"),
        "{err}"
    );

    // A gated repository (listed freely, its files refused): an error naming it and what to
    // do; HF_TOKEN opens it. A fresh home, so that nothing comes from the cache.
    hub.gate("t/qwen3");
    hub.set_token("hf_test_token");
    let fresh = tempfile::tempdir().unwrap();
    let err = failed(&sintra(
        fresh.path(),
        &hub,
        &["convert", "t/qwen3", "-o", out],
    ));
    assert!(
        err.contains("t/qwen3") && err.contains("gated") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let with_token = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
        .args(["convert", "t/qwen3", "-o", out])
        .env("SINTRA_HOME", fresh.path())
        .env("HF_ENDPOINT", hub.url())
        .env("HF_TOKEN", "hf_test_token")
        .output()
        .unwrap();
    ok(&with_token);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A synthetic llama checkpoint of at least 1.5 GB (TinyLlama's widths, 16 layers, BF16, an
/// untied output) in `dir`, written one tensor at a time; SmolLM2's exported tokenizer files.
/// Not cached: it lives as long as its test's temporary directory (kept under `target/`, its
/// 1.5 GB stayed on CI's disk for the rest of the run).
fn big_checkpoint(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let small = hf_export::cached(&sintra_tests::smollm2_q4_1(), f32_export()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(small.join(f), dir.join(f)).unwrap();
    }
    let (e, ff, layers, vocab, heads, kv_heads) =
        (2048usize, 5632usize, 16usize, 49152usize, 32usize, 4usize);
    let kv = e / heads * kv_heads;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": e,
        "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, e]),
        ("model.norm.weight".into(), vec![e]),
        ("lm_head.weight".into(), vec![vocab, e]),
    ];
    for l in 0..layers {
        let p = |t: &str| format!("model.layers.{l}.{t}");
        shapes.extend([
            (p("input_layernorm.weight"), vec![e]),
            (p("post_attention_layernorm.weight"), vec![e]),
            (p("self_attn.q_proj.weight"), vec![e, e]),
            (p("self_attn.k_proj.weight"), vec![kv, e]),
            (p("self_attn.v_proj.weight"), vec![kv, e]),
            (p("self_attn.o_proj.weight"), vec![e, e]),
            (p("mlp.gate_proj.weight"), vec![ff, e]),
            (p("mlp.up_proj.weight"), vec![ff, e]),
            (p("mlp.down_proj.weight"), vec![e, ff]),
        ]);
    }
    struct Gen(Vec<usize>, u64);
    impl safetensors::View for &Gen {
        fn dtype(&self) -> safetensors::Dtype {
            safetensors::Dtype::BF16
        }
        fn shape(&self) -> &[usize] {
            &self.0
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            // Small values of every sign and exponent a weight has, from an xorshift.
            let mut x = self.1 | 1;
            let mut out = Vec::with_capacity(self.data_len());
            for _ in 0..self.0.iter().product::<usize>() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let sign = ((x >> 63) as u16) << 15;
                let exp = (110 + (x >> 40) % 16) as u16; // 2^-17 .. 2^-2
                let v = sign | (exp << 7) | ((x >> 20) as u16 & 0x7f);
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.into()
        }
        fn data_len(&self) -> usize {
            self.0.iter().product::<usize>() * 2
        }
    }
    let gens: Vec<(String, Gen)> = shapes
        .into_iter()
        .enumerate()
        .map(|(i, (n, s))| (n, Gen(s, 0x9e37_79b9_7f4a_7c15 ^ i as u64)))
        .collect();
    safetensors::serialize_to_file(
        gens.iter().map(|(n, g)| (n.as_str(), g)),
        None,
        &dir.join("model.safetensors"),
    )
    .unwrap();
}

/// Tensors stream one at a time: converting a 1.5 GB+ checkpoint keeps peak RSS under 300 MB
/// (the kernel's high-water mark, which `sintra convert` reports on Linux).
#[test]
fn converting_a_large_checkpoint_keeps_peak_memory_under_300_mb() {
    let out_dir = tempfile::tempdir().unwrap();
    let ck = out_dir.path().join("big-llama-bf16");
    big_checkpoint(&ck);
    let size = std::fs::metadata(ck.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(size >= 1_500_000_000, "{size}");
    let gguf = out_dir.path().join("big.gguf");
    let out = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
        .args([
            "convert",
            ck.to_str().unwrap(),
            "-o",
            gguf.to_str().unwrap(),
        ])
        .env("SINTRA_HOME", out_dir.path())
        .output()
        .unwrap();
    let stdout = ok(&out);
    let peak_mib: f64 = stdout
        .lines()
        .find_map(|l| l.split("peak memory ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in:\n{stdout}"));
    eprintln!(
        "converted {:.2} GB with a peak RSS of {peak_mib:.1} MiB",
        size as f64 / 1e9
    );
    assert!(
        peak_mib * 1048576.0 < 300e6,
        "peak RSS {peak_mib} MiB:\n{stdout}"
    );
    let f = GgufFile::open(&gguf).unwrap();
    assert_eq!(f.header.tensors.len(), 3 + 16 * 9);
    assert!(f
        .header
        .tensors
        .iter()
        .all(|t| t.ty == GgmlType::BF16 || t.ty == GgmlType::F32));
}

/// `sintra --model-id owner/repo` without `--model-file`: the checkpoint is downloaded and
/// converted once (BF16 kept), and that GGUF is the run's original — the reference candidates
/// are scored against and the source they are quantized from; the report sets the
/// fit-before-download prediction beside each measurement. A second run converts nothing.
#[test]
fn the_optimizer_starts_from_the_converted_original() {
    let original =
        sintra_tests::synthetic::synthetic(sintra_tests::synthetic::Arch::Qwen3, GgmlType::Q8_0);
    let ck = hf_export::cached(
        &original,
        ExportOptions {
            dtype: Dtype::BF16,
            max_shard_bytes: None,
        },
    )
    .unwrap();
    let (_root, hub) = serve(&[("sintra-test/tiny-qwen3", &ck)]);
    let home = tempfile::tempdir().unwrap();
    let eval = sintra_tests::data_file("eval.txt");
    let outputs = home.path().join("outputs");
    let args = [
        "--auto-detect",
        "--model-id",
        "sintra-test/tiny-qwen3",
        "--target-tps",
        "1",
        "--target-accuracy",
        "0.1",
        "--no-sensitivity",
        "--max-iters",
        "2",
        "--patience",
        "0",
        "--threads",
        "1",
        "--eval-text",
        eval.to_str().unwrap(),
        "--eval-chunks",
        "1",
        "--output-dir",
        outputs.to_str().unwrap(),
    ];
    let out = ok(&sintra(home.path(), &hub, &args));
    let converted: Vec<PathBuf> = walk(&home.path().join("models/converted"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    assert_eq!(converted.len(), 1, "{converted:?}");
    assert!(
        converted[0]
            .to_string_lossy()
            .ends_with("tiny-qwen3.BF16.gguf"),
        "{converted:?}"
    );
    let f = GgufFile::open(&converted[0]).unwrap();
    assert_eq!(
        f.header.tensor("blk.0.attn_q.weight").unwrap().ty,
        GgmlType::BF16
    );
    let run_dir = std::fs::read_dir(&outputs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        report.contains(&converted[0].display().to_string()),
        "the report names another original:\n{report}"
    );
    assert!(report.contains("Fit before download"), "{report}");
    assert!(report.contains("Median |error|"), "{report}");
    assert!(out.contains("tiny-qwen3"), "{out}");

    // The second run finds the conversion (and the checkpoint) in the cache.
    let weights_before = hub.downloads("model.safetensors");
    let mtime = std::fs::metadata(&converted[0])
        .unwrap()
        .modified()
        .unwrap();
    ok(&sintra(home.path(), &hub, &args));
    assert_eq!(hub.downloads("model.safetensors"), weights_before);
    assert_eq!(
        std::fs::metadata(&converted[0])
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}
