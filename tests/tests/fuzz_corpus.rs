//! Issue #20: the fuzz corpus replayed by the test suite. `fuzz/corpus/<target>/` holds the
//! inputs `cargo fuzz` kept for each target (minimized with `cargo fuzz cmin`, none crashing);
//! every one goes through the same check the fuzz target runs (`fuzz/checks.rs`), so a change
//! that makes any of them panic fails here, without a fuzzer.

#[path = "../../fuzz/checks.rs"]
mod checks;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 8] = [
    ("gguf_parse", checks::gguf_parse),
    ("wire_request", checks::wire_request),
    ("wire_response", checks::wire_response),
    ("recipe_json", checks::recipe_json),
    ("profile_yaml", checks::profile_yaml),
    ("inventory", checks::inventory),
    ("hf_config", checks::hf_config),
    ("hf_tokenizer", checks::hf_tokenizer),
];

#[test]
fn every_corpus_input_passes_its_fuzz_check() {
    let root = sintra_tests::repo_root().join("fuzz/corpus");
    let mut total = 0;
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 10,
            "{}: {} inputs (the corpus is missing)",
            dir.display(),
            files.len()
        );
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                panic!("{} panics its check", f.display());
            }
        }
        total += files.len();
    }
    eprintln!("{total} corpus inputs replayed");
}
