//! The synthetic models of issue #15 (`sintra_tests::synthetic`): each architecture's file is
//! one llama.cpp loads and runs, so that it can serve as the reference for sintra-rt's forward
//! pass of that architecture. Checked here: llama.cpp loads every file (Q8_0 and Q4_K), its
//! logits over 64 tokens of eval text are finite and spread (not a constant row, which a
//! mis-shaped tensor or a missing norm would give), its greedy continuation runs, and the same
//! file is the same bytes when made twice (the cache key holds).

use formats::gguf::GgufFile;
use formats::quant::GgmlType;
use sintra_tests::llama;
use sintra_tests::synthetic::{synthetic, Arch, N_LAYER, VERSION};

/// The first 64 tokens of eval.txt as SmolLM2's tokenizer (every synthetic model's) cuts them.
fn eval_tokens() -> Vec<u32> {
    let file = GgufFile::open(sintra_tests::smollm2_q4_1()).unwrap();
    let tok = runtime::tokenizer::Tokenizer::from_gguf(&file.header).unwrap();
    let text = std::fs::read_to_string(sintra_tests::data_file("eval.txt")).unwrap();
    let mut tokens = tok.encode(&text[..4000], tok.add_bos(), false);
    tokens.truncate(64);
    tokens
}

#[test]
fn llama_cpp_runs_every_synthetic_architecture() {
    let tokens = eval_tokens();
    for arch in Arch::ALL {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_K] {
            let path = synthetic(arch, ty);
            let file = GgufFile::open(&path).unwrap();
            assert_eq!(
                file.header.architecture().unwrap(),
                arch.name(),
                "{}",
                path.display()
            );
            let blocks = file
                .header
                .tensors
                .iter()
                .filter(|t| t.name.ends_with(".attn_norm.weight"))
                .count();
            assert_eq!(blocks, N_LAYER);
            let logits = llama::batch_logits(&path, &tokens, 2)
                .unwrap_or_else(|e| panic!("{arch:?} {ty}: {e}"));
            assert_eq!(logits.len(), tokens.len());
            for (i, row) in logits.iter().enumerate() {
                assert!(
                    row.iter().all(|x| x.is_finite()),
                    "{arch:?} {ty}: position {i} has a non-finite logit"
                );
                let mean = row.iter().map(|&x| f64::from(x)).sum::<f64>() / row.len() as f64;
                let var = row
                    .iter()
                    .map(|&x| (f64::from(x) - mean).powi(2))
                    .sum::<f64>()
                    / row.len() as f64;
                assert!(
                    var.sqrt() > 0.1,
                    "{arch:?} {ty}: position {i}'s logits hardly vary (sd {})",
                    var.sqrt()
                );
            }
            let (generated, _) = llama::generate_greedy(&path, "The Rust book", 8, 2)
                .unwrap_or_else(|e| panic!("{arch:?} {ty}: {e}"));
            assert!(!generated.is_empty(), "{arch:?} {ty}: no token generated");
            eprintln!(
                "synthetic v{VERSION} {} {ty}: {} bytes, llama.cpp logits sd {:.2} at the last \
                 position, greedy {generated:?}",
                arch.name(),
                std::fs::metadata(&path).unwrap().len(),
                {
                    let row = logits.last().unwrap();
                    let m = row.iter().sum::<f32>() / row.len() as f32;
                    (row.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / row.len() as f32).sqrt()
                }
            );
        }
    }
}

/// The construction is deterministic: a second write of a model is the cached file's bytes.
#[test]
fn synthetic_models_are_deterministic() {
    let cached = synthetic(Arch::Qwen3, GgmlType::Q8_0);
    let again = std::env::temp_dir().join(format!("synthetic-again-{}.gguf", std::process::id()));
    sintra_tests::synthetic::write_to(Arch::Qwen3, GgmlType::Q8_0, &again);
    let same = std::fs::read(&cached).unwrap() == std::fs::read(&again).unwrap();
    std::fs::remove_file(&again).ok();
    assert!(same, "two writes of the synthetic qwen3 model differ");
}
