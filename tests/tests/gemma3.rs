//! The real Gemma 3 270M (the setup script's Q4_K_M file) in sintra-rt against llama.cpp
//! (issue #15): 18 layers, five of every six with a sliding window of 512 positions and their
//! own RoPE base, 4 query heads of 256 sharing one key/value head, per-head Q/K norms,
//! post-norms, a GELU-gated FFN, embeddings scaled by sqrt(640) and tied to the classifier of
//! 262,144 tokens.

use formats::gguf::GgufFile;
use runtime::model::{KvType, Llama};
use runtime::threads::Pool;
use runtime::tokenizer::Tokenizer;
use sintra_tests::{gemma3_270m_q4_k_m, llama};

/// With the exact kernel tables, sintra-rt's logits are llama.cpp's token-by-token logits bit
/// for bit at the first 256 positions of eval text. (From position 256 on, llama.cpp pads its
/// cache view to 512 cells and its CPU flash attention splits the cells between its threads,
/// combining their partial softmaxes in f32: an order the exact tables do not reproduce yet.
/// Past that point, and past gemma3's 512-position window, the agreement is printed; the
/// sliding windows themselves are held bit for bit by the synthetic gemma3 model, whose window
/// is 32: `synthetic::sintra_rt_runs_every_synthetic_architecture_as_llama_cpp_does`.)
#[test]
fn gemma3_270m_logits_are_llama_cpps_bit_for_bit() {
    const N: usize = 640;
    const EXACT: usize = 256;
    let path = gemma3_270m_q4_k_m();
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file.header).unwrap();
    let text = std::fs::read_to_string(sintra_tests::data_file("eval.txt")).unwrap();
    let mut tokens = tok.encode(&text[..20_000], tok.add_bos(), false);
    assert!(tokens.len() >= N, "{} tokens", tokens.len());
    tokens.truncate(N);

    let _exact = sintra_tests::exact_kernels();
    let pool = Pool::new(2);
    let mut model = Llama::new(&file, N, KvType::F16).unwrap();
    let windows: Vec<Option<usize>> = model.config.layers.iter().map(|l| l.window).collect();
    assert_eq!(
        windows.iter().filter(|w| w.is_none()).count(),
        3,
        "{windows:?}"
    );
    let mut ours = tokens.iter().enumerate().map(|(pos, &t)| {
        let logits = model.forward(t, pos, &pool).unwrap();
        (llama::argmax(logits), logits.to_vec())
    });
    let (mut same, mut first_diff) = (0, None);
    let mut same_top = 0;
    llama::each_sequential_logits(&path, &tokens, 2, |pos, theirs| {
        let (top, logits) = ours.next().unwrap();
        same_top += usize::from(top == llama::argmax(theirs));
        if logits == theirs {
            same += usize::from(pos < EXACT);
        } else if first_diff.is_none() {
            let worst = logits
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            first_diff = Some((pos, worst));
        }
    })
    .unwrap();
    eprintln!(
        "gemma-3-270m Q4_K_M ({}): {same} of the first {EXACT} positions' logits identical to \
         llama.cpp's; over all {N}, top-1 agreement {same_top}/{N}, first difference (position, \
         largest |d|) {first_diff:?}",
        kernels::isa_name()
    );
    assert_eq!(
        same, EXACT,
        "first difference (position, largest |d|): {first_diff:?}"
    );
}

/// `sintra compress` on gemma-3-270m writes files that llama.cpp loads and that continue a
/// prompt with the same 16 greedy tokens in llama.cpp and sintra-rt (exact tables): a mixed
/// recipe, two layers dropped (the sliding-window pattern, which gemma3 leaves to a default of
/// every sixth layer global, rewritten as the kept layers' own flags: without that the global
/// layers 5, 11 and 17 would run windowed after the drop) and 25% FFN pruning.
#[test]
fn compressed_gemma3_files_run_in_llama_cpp_and_sintra_rt() {
    use formats::gguf::{Array, Value};
    let _exact = sintra_tests::exact_kernels();
    let src = gemma3_270m_q4_k_m();
    let dir = tempfile::tempdir().unwrap();
    let sintra = sintra_tests::release_bin_path("planner", "sintra");
    let cases = [
        (
            "mixed",
            r#"{"default_type":"Q8_0","overrides":[{"tensor":"blk\\.\\d+\\.ffn_(gate|up)\\.weight","type":"Q5_0"},{"tensor":"blk\\.\\d+\\.ffn_down\\.weight","type":"Q6_K"}]}"#,
        ),
        ("dropped", r#"{"default_type":"Q8_0","drop_layers":[2,9]}"#),
        (
            "pruned",
            r#"{"default_type":"Q8_0","ffn_prune":{"ratio":0.25}}"#,
        ),
    ];
    let prompt = "The capital of France is";
    for (name, recipe) in cases {
        let r = dir.path().join(format!("{name}.json"));
        std::fs::write(&r, recipe).unwrap();
        let out = dir.path().join(format!("{name}.gguf"));
        let status = std::process::Command::new(&sintra)
            .arg("compress")
            .arg(&src)
            .arg("--recipe")
            .arg(&r)
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "{name}: sintra compress failed");
        let file = GgufFile::open(&out).unwrap();
        if name == "dropped" {
            assert_eq!(file.header.get_u64("gemma3.block_count").unwrap(), 16);
            let pattern = file.header.get("gemma3.attention.sliding_window_pattern");
            // Layers 0-17 less 2 and 9: the global ones (5, 11, 17) are now 4, 9 and 15.
            let want: Vec<bool> = (0..16).map(|i| ![4, 9, 15].contains(&i)).collect();
            assert!(
                matches!(pattern, Some(Value::Array(Array::Bool(b))) if *b == want),
                "{pattern:?}"
            );
            let model = Llama::new(&file, 64, KvType::F16).unwrap();
            let global: Vec<usize> = (0..16)
                .filter(|&l| model.config.layers[l].window.is_none())
                .collect();
            assert_eq!(global, vec![4, 9, 15]);
        }
        let (want, text) = llama::generate_greedy(&out, prompt, 16, 2)
            .unwrap_or_else(|e| panic!("llama.cpp cannot run the {name} file: {e}"));
        assert!(!want.is_empty(), "{name}: llama.cpp generated nothing");
        let got = sintra_tests::sintra_greedy(&out, prompt, want.len());
        let want: Vec<u32> = want.iter().map(|&t| t as u32).collect();
        assert_eq!(
            got, want,
            "{name}: sintra-rt and llama.cpp continue differently (llama.cpp: {text:?})"
        );
        eprintln!("gemma3 {name}: {prompt:?} -> {text:?}");
    }
}
