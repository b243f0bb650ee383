#![allow(dead_code)] // each fuzz target uses one of these
//! What each fuzz target checks, one function per target, shared with the test suite: the
//! fuzz targets (`fuzz_targets/*.rs`) call these on every input, and `tests/tests/fuzz_corpus.rs`
//! replays the checked-in corpus (`fuzz/corpus/<target>/`) through them on every test run.
//! Each must return on any input: no panic, no hang, no allocation past the caps.

use formats::wire::{self, Request, Response};
use std::path::Path;

/// Frames both ways. `data` is taken (1) as a message's postcard bytes, COBS-framed so every
/// input is a well-formed frame, (2) as raw bytes on a stream, cut into frames by the reader.
/// A message that decodes encodes again to a frame that decodes to the same message (compared
/// by its encoding: a NaN is not equal to itself).
fn frames<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut framed = vec![0u8; data.len() + data.len() / 254 + 2];
    let n = cobs::encode(data, &mut framed);
    framed.truncate(n);
    if let Ok(m) = wire::decode::<T>(&framed) {
        let again = wire::encode(&m).expect("a decoded message encodes");
        let m2 = wire::decode::<T>(&again).expect("and decodes");
        assert_eq!(wire::encode(&m2).expect("encodes"), again);
    }
    let mut stream = std::io::BufReader::new(data);
    let mut buf = Vec::new();
    while let Ok(true) = wire::read_frame(&mut stream, &mut buf) {
        let _ = wire::decode::<T>(&buf);
    }
}

/// What the runtime reads: a planner's requests.
pub fn wire_request(data: &[u8]) {
    frames::<Request>(data);
}

/// What the planner reads: a runtime's responses.
pub fn wire_response(data: &[u8]) {
    frames::<Response>(data);
    let _ = wire::hello_protocol_version(data);
}

/// A recipe as an architect (or a user) writes it; one that parses prints and parses again
/// to the same recipe.
pub fn recipe_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = planner::recipe::Recipe::from_json(text) {
        let again = planner::recipe::Recipe::from_json(&r.to_json_pretty())
            .expect("a printed recipe parses");
        assert_eq!(again, r);
    }
}

/// A hardware profile (YAML).
pub fn profile_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = planner::profile::Profile::from_yaml(text, "fuzz.yaml");
    }
}

/// An Ansible inventory, read as INI and as YAML.
pub fn inventory(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = planner::fleet::inventory::Inventory::parse(Path::new("hosts.ini"), text);
        let _ = planner::fleet::inventory::Inventory::parse(Path::new("hosts.yml"), text);
    }
}

/// A Hugging Face `config.json` as it arrives: the hyper-parameters, the GGUF metadata and the
/// tensor plan the converter derives from it.
pub fn hf_config(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(h) = planner::convert::arch::Hparams::from_json(json, "config.json".into()) else {
        return;
    };
    let _ = planner::convert::arch::metadata(&h);
    let _ = planner::convert::arch::tensors(&h);
}

/// A Hugging Face `tokenizer.json` (with a `tokenizer_config.json` holding the same bytes) in
/// a checkpoint directory beside a fixed llama `config.json`, through the converter's
/// vocabulary reader. The directory is one per process, on tmpfs when there is one.
pub fn hf_tokenizer(data: &[u8]) {
    thread_local! {
        static DIR: std::path::PathBuf = {
            let base = if Path::new("/dev/shm").is_dir() {
                std::path::PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let d = base.join(format!("sintra-fuzz-tok-{}", std::process::id()));
            std::fs::create_dir_all(&d).expect("a scratch directory");
            d
        };
    }
    DIR.with(|dir| {
        std::fs::write(dir.join("tokenizer.json"), data).expect("write tokenizer.json");
        let _ = std::fs::remove_file(dir.join("tokenizer_config.json"));
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 4, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 128
        });
        for arch in [
            planner::convert::Arch::Llama,
            planner::convert::Arch::Qwen2,
            planner::convert::Arch::Phi3,
        ] {
            let _ = planner::convert::vocab::tokenizer_metadata(dir, arch, &config);
        }
        std::fs::write(dir.join("tokenizer_config.json"), data).expect("write");
        let _ = planner::convert::vocab::tokenizer_metadata(
            dir,
            planner::convert::Arch::Llama,
            &config,
        );
    });
}

/// The GGUF header parser (the first target): any bytes give a header or an error; a parsed
/// header's tensors lie inside the input, and writing it back parses to as many tensors.
pub fn gguf_parse(data: &[u8]) {
    use formats::gguf::{parse, GgufWriter};
    let Ok(g) = parse(data) else { return };
    for t in &g.tensors {
        let start = g.data_offset + t.offset;
        assert!(start + t.n_bytes <= data.len() as u64);
    }
    let mut out = Vec::new();
    let written = GgufWriter::from_header(&g).write_to(&mut out, |_, t, w| {
        w.write_all(&vec![0u8; t.n_bytes as usize])
    });
    if written.is_ok() {
        let again = parse(&out).expect("a written header parses");
        assert_eq!(again.tensors.len(), g.tensors.len());
    }
}
