//! The real Gemma 3 270M (the setup script's Q4_K_M file) in sintra-rt against llama.cpp
//! (issue #15): 18 layers, five of every six with a sliding window of 512 positions and their
//! own RoPE base, 4 query heads of 256 sharing one key/value head, per-head Q/K norms,
//! post-norms, a GELU-gated FFN, embeddings scaled by sqrt(640) and tied to the classifier of
//! 262,144 tokens.

use formats::gguf::GgufFile;
use formats::quant::GgmlType;
use runtime::model::{KvType, Llama};
use runtime::threads::Pool;
use runtime::tokenizer::Tokenizer;
use sintra_tests::{gemma3_270m_q4_k_m, llama, requant, tolerance};

/// With the exact kernel tables, sintra-rt's logits are llama.cpp's token-by-token logits (on
/// one thread) bit for bit at all 640 positions of eval text, past gemma3's 512-position window.
/// (On more threads, from position 256 on, llama.cpp pads its cache view to 512 cells and its
/// CPU flash attention splits the cells between its threads, combining their partial softmaxes
/// in f32: an order the exact tables do not reproduce yet. On one thread the split is one part
/// and changes nothing.)
#[test]
fn gemma3_270m_logits_are_llama_cpps_bit_for_bit() {
    const N: usize = 640;
    const EXACT: usize = N;
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
    llama::each_sequential_logits(&path, &tokens, 1, |pos, theirs| {
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

/// Eval text in gemma's tokens, with its BOS.
fn eval_tokens(file: &GgufFile) -> (Vec<u32>, Option<u32>) {
    let tok = Tokenizer::from_gguf(&file.header).unwrap();
    let text = std::fs::read_to_string(sintra_tests::data_file("eval.txt")).unwrap();
    let bos = tok.add_bos().then(|| tok.special_ids().bos).flatten();
    (tok.encode(&text, tok.add_bos(), false), bos)
}

/// sintra-rt against llama.cpp on gemma-3-270m over 2,040 positions of eval text (8 windows of
/// 512, the second half of each scored; `tolerance::teacher_forced`) and 64 greedy tokens from
/// three prompts (`tolerance::greedy`):
///
/// - on the exact tables (llama.cpp's arithmetic), issue #15's bars as written: top-1
///   agreement >= 99% and |ΔPPL| <= 0.5% against llama.cpp's token-by-token path, and the
///   greedy tokens identical or diverging only at a near-tie (1e-3);
/// - on the default table (packed weights summed in their own order, attention accumulated in
///   f32 rather than llama.cpp's f16), the tolerance of issue #14: top-1 agreement no worse than
///   llama.cpp's own two paths agree with each other less one point, perplexity within 0.5% of
///   one of them; where its greedy tokens part from llama.cpp's is shown.
fn check_gemma3(path: &std::path::Path, label: &str) {
    let file = GgufFile::open(path).unwrap();
    let (tokens, bos) = eval_tokens(&file);
    tolerance::Reference::new(path, &tokens, bos, (512, 8)).check_both_tables(label);
}

#[test]
fn gemma3_270m_q4_k_m_holds_the_tolerances() {
    check_gemma3(&gemma3_270m_q4_k_m(), "gemma-3-270m Q4_K_M");
}

#[test]
fn gemma3_270m_q8_0_holds_the_tolerances() {
    check_gemma3(&requant::gemma3_as(GgmlType::Q8_0), "gemma-3-270m Q8_0");
}

/// gemma3's GELU table is ggml's, entry for entry (its build contracts `1 + a * x * x` into a
/// fused multiply-add; without the same, one entry in 37,376 differs and gemma-3-270m's
/// logits part from llama.cpp's wherever a gate rounds to that half).
#[test]
fn gelu_table_is_ggmls() {
    extern "C" {
        static ggml_table_gelu_f16: [u16; 1 << 16];
    }
    // llama.cpp fills its table when its CPU backend starts: a model loaded and run.
    llama::generate_greedy(&gemma3_270m_q4_k_m(), "hi", 1, 1).unwrap();
    // SAFETY: a plain array of u16, written once before the run above returned and read-only
    // after.
    let theirs: &[u16; 1 << 16] = unsafe { &*std::ptr::addr_of!(ggml_table_gelu_f16) };
    let ours = runtime::model::llama::gelu_f16_table();
    let differ: Vec<usize> = (0..1 << 16)
        .filter(|&i| {
            let x = formats::quant::fp16_bits_to_fp32(i as u16);
            x > -10.0 && x < 10.0 && ours[i] != theirs[i]
        })
        .collect();
    assert!(differ.is_empty(), "entries differ at halves {differ:?}");
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
