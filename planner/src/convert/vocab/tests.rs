//! Tests of the tokenizer keys: small checkpoints written here, and the two real GGUFs of the
//! setup cache turned back into Hugging Face tokenizer files and converted again.

use super::pre::{chkhsh, hex, pre_for_hash, CHKTXT, CHKTXT_SHA256};
use super::spm::{ModelProto, PieceType, SentencePiece};
use super::tokenizer_metadata;
use crate::convert::{Arch, ConvertError};
use formats::gguf::{Array, GgufFile, Value};
use prost::Message;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

type Kv = Vec<(String, Value)>;

/// A checkpoint directory holding `files` (name, contents).
fn checkpoint(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

fn json_file<'a>(name: &'a str, value: &Json) -> (&'a str, Vec<u8>) {
    (name, serde_json::to_vec(value).unwrap())
}

fn spm_file(pieces: &[(&str, f32, PieceType)]) -> (&'static str, Vec<u8>) {
    let model = ModelProto {
        pieces: pieces
            .iter()
            .map(|&(piece, score, ty)| SentencePiece {
                piece: Some(piece.into()),
                score: Some(score),
                r#type: Some(ty as i32),
            })
            .collect(),
    };
    ("tokenizer.model", model.encode_to_vec())
}

fn get<'a>(kv: &'a Kv, key: &str) -> &'a Value {
    let found = kv.iter().find(|(k, _)| k == key);
    &found
        .unwrap_or_else(|| panic!("no {key} in {:?}", keys(kv)))
        .1
}

fn keys(kv: &Kv) -> Vec<&str> {
    kv.iter().map(|(k, _)| k.as_str()).collect()
}

fn strings(kv: &Kv, key: &str) -> Vec<String> {
    match get(kv, key) {
        Value::Array(Array::String(v)) => v.clone(),
        other => panic!("{key} is {other:?}"),
    }
}

fn i32s(kv: &Kv, key: &str) -> Vec<i32> {
    match get(kv, key) {
        Value::Array(Array::I32(v)) => v.clone(),
        other => panic!("{key} is {other:?}"),
    }
}

fn f32s(kv: &Kv, key: &str) -> Vec<f32> {
    match get(kv, key) {
        Value::Array(Array::F32(v)) => v.clone(),
        other => panic!("{key} is {other:?}"),
    }
}

const T: &str = "tokenizer.ggml.";

#[test]
fn chktxt_is_llamas_byte_for_byte() {
    assert_eq!(hex(&Sha256::digest(CHKTXT.as_bytes())), CHKTXT_SHA256);
    assert_eq!(chkhsh(&[1, 2, 3]), hex(&Sha256::digest(b"[1, 2, 3]")));
    assert_eq!(chkhsh(&[]), hex(&Sha256::digest(b"[]")));
    // llama.cpp's chain of `if`s lets the later entry win.
    let mpt = "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166";
    assert_eq!(pre_for_hash(mpt), Some("olmo"));
    let smollm = "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249";
    assert_eq!(pre_for_hash(smollm), Some("smollm"));
}

/// SmolLM2's `tokenizer.json` rebuilt from its GGUF (vocabulary, merges in the pair form, the
/// real pre-tokenizer: digits split one by one, then byte-level with its regex) converts back to
/// the GGUF's keys: this proves the check-text hash end to end ("smollm").
#[test]
fn smollm2_tokenizer_json_converts_back_to_its_gguf_keys() {
    let gguf = GgufFile::open(crate::models::default_model().unwrap()).unwrap();
    let want: Kv = tokenizer_keys(&gguf);
    let tokens = strings(&want, "tokenizer.ggml.tokens");
    let merges = strings(&want, "tokenizer.ggml.merges");
    let types = i32s(&want, "tokenizer.ggml.token_type");
    let n_special = types.iter().take_while(|&&t| t == 3).count();
    assert_eq!(n_special, 17);
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Json> = tokens[..n_special]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let pairs: Vec<Json> = merges
        .iter()
        .map(|m| json!(m.split(' ').collect::<Vec<_>>()))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": true, "use_regex": true});
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": pairs},
    });
    let template = get(&want, "tokenizer.chat_template").as_str().unwrap();
    let tokenizer_config = json!({
        "add_prefix_space": false, "tokenizer_class": "GPT2Tokenizer",
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>", "chat_template": template,
    });
    let config = json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 49152,
                        "bos_token_id": 1, "eos_token_id": 2});
    let dir = checkpoint(&[
        json_file("tokenizer.json", &tokenizer),
        json_file("tokenizer_config.json", &tokenizer_config),
        json_file("config.json", &config),
    ]);
    let got = tokenizer_metadata(dir.path(), Arch::Llama, &config).unwrap();
    assert_eq!(
        get(&got, "tokenizer.ggml.pre"),
        &Value::String("smollm".into())
    );
    // The GGUF was written by an older converter that set add_bos_token before the vocabulary;
    // today's `LlamaModel.set_vocab` sets it last (the "granite small models" rule for
    // vocab_size 49152). Every other key is in the GGUF's order.
    let without_add_bos = |kv: &Kv| -> Vec<String> {
        keys(kv)
            .into_iter()
            .filter(|k| *k != "tokenizer.ggml.add_bos_token")
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(without_add_bos(&got), without_add_bos(&want));
    assert_eq!(got.len(), want.len());
    for (key, value) in &want {
        assert!(get(&got, key) == value, "{key} differs");
    }
}

/// gemma-3-270m's vocabulary written back as a `tokenizer.model` (pieces, scores, types; its
/// user-defined tokens with `▁` for spaces, as Gemma's tokenizer files have them), the added
/// tokens as `tokenizer_config.json` lists them and the `tokenizer.json` parts SpecialVocab reads
/// (added tokens, the BOS-adding post-processor) convert back to the GGUF's keys, plus the chat
/// template written into `tokenizer_config.json` (the GGUF has none).
#[test]
fn gemma3_tokenizer_model_converts_back_to_its_gguf_keys() {
    let file = "gemma-3-270m-q4_k_m.gguf";
    let path = crate::models::model_dirs()
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{file} is missing: run `bash scripts/setup.sh` first"));
    let gguf = GgufFile::open(path).unwrap();
    let want = tokenizer_keys(&gguf);
    let tokens = strings(&want, "tokenizer.ggml.tokens");
    let scores = f32s(&want, "tokenizer.ggml.scores");
    let types = i32s(&want, "tokenizer.ggml.token_type");
    let unk = get(&want, "tokenizer.ggml.unknown_token_id")
        .as_u32()
        .unwrap() as usize;

    let mut pieces = Vec::with_capacity(tokens.len());
    let mut decoder = serde_json::Map::new();
    for (i, ((token, &score), &ty)) in tokens.iter().zip(&scores).zip(&types).enumerate() {
        let (piece, ty) = match ty {
            1 => (token.clone(), PieceType::Normal),
            3 if i == unk => (token.clone(), PieceType::Unknown),
            3 => (token.clone(), PieceType::Control),
            4 => (token.replace(' ', "\u{2581}"), PieceType::UserDefined),
            6 => (token.clone(), PieceType::Byte),
            other => panic!("token {i} has type {other}"),
        };
        if matches!(
            ty,
            PieceType::Control | PieceType::Unknown | PieceType::UserDefined
        ) {
            let special = ty != PieceType::UserDefined;
            decoder.insert(i.to_string(), json!({"content": piece, "special": special}));
        }
        // sentencepiece gives the added tokens some score; llama.cpp writes -1000 for them.
        let score = if ty == PieceType::Normal || ty == PieceType::Byte {
            score
        } else {
            0.0
        };
        pieces.push(SentencePiece {
            piece: Some(piece),
            score: Some(score),
            r#type: Some(ty as i32),
        });
    }
    let model = ModelProto { pieces }.encode_to_vec();
    let added: Vec<Json> = (0..5)
        .map(|i| json!({"id": i, "content": tokens[i], "special": true, "normalized": false}))
        .collect();
    let tokenizer = json!({
        "added_tokens": added,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}]},
    });
    let template =
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['content'] }}{% endfor %}";
    let tokenizer_config = json!({
        "added_tokens_decoder": decoder, "add_bos_token": true, "add_eos_token": false,
        "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
        "chat_template": template, "tokenizer_class": "GemmaTokenizer",
    });
    let config = json!({"architectures": ["Gemma3ForCausalLM"], "vocab_size": tokens.len(),
                        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0});
    let dir = checkpoint(&[
        ("tokenizer.model", model),
        json_file("tokenizer.json", &tokenizer),
        json_file("tokenizer_config.json", &tokenizer_config),
        json_file("config.json", &config),
    ]);
    let got = tokenizer_metadata(dir.path(), Arch::Gemma3, &config).unwrap();
    let mut want_keys = keys(&want);
    let at = want_keys
        .iter()
        .position(|k| *k == "tokenizer.ggml.add_space_prefix")
        .unwrap();
    want_keys.insert(at, "tokenizer.chat_template");
    assert_eq!(keys(&got), want_keys);
    for (key, value) in &want {
        assert!(get(&got, key) == value, "{key} differs");
    }
    assert_eq!(
        get(&got, "tokenizer.chat_template").as_str(),
        Some(template)
    );
}

/// The `tokenizer.*` keys of a GGUF, in its order.
fn tokenizer_keys(gguf: &GgufFile) -> Kv {
    gguf.header
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .cloned()
        .collect()
}

/// A tiny SentencePiece checkpoint: pieces of every type, `added_tokens.json`, the decoder of
/// `tokenizer_config.json` (special, looking special, user-defined with `▁`), padding to
/// `vocab_size`, ids from `config.json` when there is no `tokenizer.json`.
#[test]
fn sentencepiece_pieces_added_tokens_and_padding() {
    let model = spm_file(&[
        ("<unk>", 0.0, PieceType::Unknown),
        ("<s>", 0.0, PieceType::Control),
        ("</s>", 0.0, PieceType::Control),
        ("<0x0A>", 0.0, PieceType::Byte),
        ("\u{2581}a", -1.5, PieceType::Normal),
        ("<mine>", 0.0, PieceType::UserDefined),
        ("<gone>", 0.0, PieceType::Unused),
        ("b", -2.0, PieceType::Normal),
    ]);
    let tokenizer_config = json!({
        "add_bos_token": true, "add_eos_token": false, "add_prefix_space": true,
        "chat_template": [{"name": "default", "template": "D"},
                          {"name": "tool use", "template": "T"}],
        "added_tokens_decoder": {
            "8": {"content": "<|im_end|>", "special": false},
            "9": {"content": "\u{2581}\u{2581}", "special": false},
            "7": {"content": "<b>", "special": true},
            "99": {"content": "<far>", "special": true},
        },
    });
    let config = json!({"vocab_size": 11, "bos_token_id": 1, "eos_token_id": [2, 8],
                        "pad_token_id": 40});
    let dir = checkpoint(&[
        model,
        json_file("added_tokens.json", &json!({"<x>": 6, "<y>": 50})),
        json_file("tokenizer_config.json", &tokenizer_config),
    ]);
    let kv = tokenizer_metadata(dir.path(), Arch::Llama, &config).unwrap();
    assert_eq!(
        keys(&kv),
        [
            "add_space_prefix",
            "model",
            "pre",
            "tokens",
            "scores",
            "token_type",
            "bos_token_id",
            "add_bos_token",
            "add_eos_token",
        ]
        .iter()
        .map(|k| format!("{T}{k}"))
        .chain([
            "tokenizer.chat_template.tool_use".into(),
            "tokenizer.chat_templates".into(),
            "tokenizer.chat_template".into()
        ])
        .collect::<Vec<_>>()
    );
    assert_eq!(
        get(&kv, "tokenizer.ggml.add_space_prefix"),
        &Value::Bool(true)
    );
    assert_eq!(get(&kv, "tokenizer.ggml.model").as_str(), Some("llama"));
    assert_eq!(get(&kv, "tokenizer.ggml.pre").as_str(), Some("default"));
    assert_eq!(
        strings(&kv, "tokenizer.ggml.tokens"),
        [
            "<unk>",
            "<s>",
            "</s>",
            "<0x0A>",
            "\u{2581}a",
            "<mine>",
            "<x>",
            "<b>",
            "<|im_end|>",
            "  ",
            "[PAD10]"
        ]
    );
    assert_eq!(
        i32s(&kv, "tokenizer.ggml.token_type"),
        [2, 3, 3, 6, 1, 1, 4, 3, 3, 4, 5]
    );
    assert_eq!(
        f32s(&kv, "tokenizer.ggml.scores"),
        [0.0, 0.0, 0.0, 0.0, -1.5, 0.0, -1000.0, -1000.0, -1000.0, -1000.0, -10000.0]
    );
    // eos is a list in config.json (ignored, as llama.cpp does), pad is past the vocabulary.
    assert_eq!(get(&kv, "tokenizer.ggml.bos_token_id"), &Value::U32(1));
    assert_eq!(get(&kv, "tokenizer.chat_template").as_str(), Some("D"));
    assert_eq!(
        get(&kv, "tokenizer.chat_template.tool_use").as_str(),
        Some("T")
    );
}

/// Gemma3 without `tokenizer.model` goes the byte-level BPE way, as llama.cpp does; qwen too.
#[test]
fn gemma3_and_qwen_without_tokenizer_model_use_bpe() {
    let dir = checkpoint(&[json_file("tokenizer.json", &tiny_bpe(false))]);
    for arch in [Arch::Gemma3, Arch::Qwen2, Arch::Qwen3, Arch::Llama] {
        let err = tokenizer_metadata(dir.path(), arch, &json!({})).unwrap_err();
        match err {
            ConvertError::Unsupported { what, found, path } => {
                assert_eq!(what, "pre-tokenizer (chkhsh)");
                assert_eq!(found.len(), 64);
                assert!(path.ends_with("tokenizer.json"));
            }
            other => panic!("{arch:?}: {other}"),
        }
    }
}

/// A `tokenizer.json` added token.
fn added_token(id: u32, content: &str, special: bool, normalized: bool) -> Json {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": normalized, "special": special})
}

/// A tiny byte-level BPE `tokenizer.json` (GPT-2's pre-tokenizer) over the bytes of "ab\n",
/// or with byte fallback and a `Sequence` decoder (Llama 2 / Mistral style).
fn tiny_bpe(byte_fallback: bool) -> Json {
    let vocab = if byte_fallback {
        json!({"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "a": 4, "b": 5, "ab": 6})
    } else {
        json!({"a": 0, "b": 1, "Ċ": 2, "ab": 3})
    };
    let decoder = if byte_fallback {
        json!({"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]})
    } else {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": true})
    };
    let added = if byte_fallback {
        json!([
            added_token(1, "<s>", true, false),
            added_token(7, "<tool>", false, true),
            added_token(8, "</s2>", true, false),
        ])
    } else {
        json!([
            added_token(4, "<|end|>", true, false),
            added_token(5, "x y", false, true)
        ])
    };
    json!({
        "version": "1.0", "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                          "use_regex": true},
        "post_processor": null, "decoder": decoder,
        "model": {"type": "BPE", "byte_fallback": byte_fallback,
                  "unk_token": if byte_fallback { json!("<unk>") } else { json!(null) },
                  "vocab": vocab, "merges": [["a", "b"]]},
    })
}

#[test]
fn bpe_tokens_types_and_padding() {
    let dir = checkpoint(&[json_file("tokenizer.json", &tiny_bpe(false))]);
    let config = json!({"vocab_size": 8});
    let ck = super::Checkpoint::open(dir.path(), &config).unwrap();
    // The tiny tokenizer's pre-tokenizer hash is unknown: check the vocabulary without it.
    let tokenizer = super::bpe::load_tokenizer(&ck).unwrap();
    let list = super::bpe::token_list(&ck, &tokenizer).unwrap();
    assert_eq!(
        list.tokens,
        ["a", "b", "Ċ", "ab", "<|end|>", "x y", "[PAD6]", "[PAD7]"]
    );
    let types: Vec<i32> = list.types.iter().map(|&t| t as i32).collect();
    assert_eq!(types, [1, 1, 1, 1, 3, 4, 5, 5]);
}

#[test]
fn llama_hf_vocabulary_from_a_byte_fallback_tokenizer_json() {
    let dir = checkpoint(&[
        json_file("tokenizer.json", &tiny_bpe(true)),
        json_file(
            "tokenizer_config.json",
            &json!({"bos_token": "<s>", "eos_token": "</s>"}),
        ),
    ]);
    let kv = tokenizer_metadata(dir.path(), Arch::Llama, &json!({"vocab_size": 9})).unwrap();
    assert_eq!(get(&kv, "tokenizer.ggml.model").as_str(), Some("llama"));
    assert_eq!(
        strings(&kv, "tokenizer.ggml.tokens"),
        ["<unk>", "<s>", "</s>", "<0x0A>", "a", "b", "ab", "<tool>", "</s2>"]
    );
    assert_eq!(
        i32s(&kv, "tokenizer.ggml.token_type"),
        [3, 3, 3, 6, 1, 1, 1, 4, 4]
    );
    assert_eq!(get(&kv, "tokenizer.ggml.bos_token_id"), &Value::U32(1));
}

/// SpecialVocab: merges in both forms (spaces inside a pair part written as U+0120), the
/// template's trailing token taking EOS (the configured one becomes EOT), the chat template
/// from `chat_template.jinja`.
#[test]
fn special_vocab_merges_post_processor_and_template_file() {
    let mut tokenizer = tiny_bpe(false);
    tokenizer["model"]["merges"] = json!([["a", "b"], ["x y", "z"]]);
    tokenizer["post_processor"] = json!({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "a"}}, {"Sequence": {"id": "A"}},
                   {"SpecialToken": {"id": "<|end|>"}}],
        "pair": []});
    tokenizer["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(added_token(0, "a", true, false));
    let dir = checkpoint(&[
        json_file("tokenizer.json", &tokenizer),
        json_file(
            "tokenizer_config.json",
            &json!({"bos_token": "a", "eos_token": "x y"}),
        ),
        ("chat_template.jinja", b"{{ x }}".to_vec()),
    ]);
    let empty = json!({});
    let ck = super::Checkpoint::open(dir.path(), &empty).unwrap();
    let sv = super::special::SpecialVocab::load(&ck, true, &super::special::DEFAULT_TYPES, None)
        .unwrap();
    assert_eq!(sv.merges, ["a b", "x\u{120}y z"]);
    assert_eq!(
        sv.ids,
        [("bos".into(), 0), ("eos".into(), 4), ("eot".into(), 5)]
    );
    assert_eq!(sv.add, [("bos".into(), true), ("eos".into(), true)]);
    assert_eq!(
        sv.chat_template,
        Some(super::special::ChatTemplate::One("{{ x }}".into()))
    );
    let mut kv = super::Metadata::default();
    sv.add_to(&mut kv);
    let kv = kv.into_vec();
    assert_eq!(get(&kv, "tokenizer.ggml.eot_token_id"), &Value::U32(5));
    assert_eq!(strings(&kv, "tokenizer.ggml.merges")[1], "x\u{120}y z");
}

/// Phi3: added tokens from three files, `tokenizer.json`'s last; an id past `vocab_size` is an
/// error naming the file (llama.cpp would index past its list).
#[test]
fn phi3_added_tokens_and_out_of_range_ids() {
    let model = spm_file(&[
        ("<unk>", 0.0, PieceType::Unknown),
        ("<s>", 0.0, PieceType::Control),
        ("a", -1.0, PieceType::Normal),
    ]);
    let tokenizer = json!({"added_tokens": [
        {"id": 3, "content": "<|end|>", "special": true},
        {"id": 4, "content": "<|user|>", "special": false}]});
    let config = json!({"vocab_size": 6, "bos_token_id": 1});
    let dir = checkpoint(&[model.clone(), json_file("tokenizer.json", &tokenizer)]);
    let kv = tokenizer_metadata(dir.path(), Arch::Phi3, &config).unwrap();
    assert_eq!(
        strings(&kv, "tokenizer.ggml.tokens"),
        ["<unk>", "<s>", "a", "<|end|>", "<|user|>", "[PAD5]"]
    );
    assert_eq!(i32s(&kv, "tokenizer.ggml.token_type"), [2, 3, 1, 3, 4, 5]);

    let far = json!({"added_tokens": [{"id": 6, "content": "<|far|>", "special": true}]});
    let dir = checkpoint(&[model, json_file("tokenizer.json", &far)]);
    let err = tokenizer_metadata(dir.path(), Arch::Phi3, &config).unwrap_err();
    assert!(
        matches!(&err, ConvertError::Invalid { path, message }
            if path.ends_with("tokenizer.json") && message.contains("6")),
        "{err}"
    );

    let dir = checkpoint(&[]);
    let err = tokenizer_metadata(dir.path(), Arch::Phi3, &config).unwrap_err();
    assert!(matches!(err, ConvertError::Missing { .. }), "{err}");
}

/// Hostile files are errors naming the file, never panics.
#[test]
fn hostile_input_is_an_error_naming_the_file() {
    let check = |files: &[(&str, Vec<u8>)], arch: Arch, config: Json, file: &str| {
        let dir = checkpoint(files);
        let err = tokenizer_metadata(dir.path(), arch, &config).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(file), "{shown} should name {file}");
    };
    let model = spm_file(&[
        ("<unk>", 0.0, PieceType::Unknown),
        ("a", 0.0, PieceType::Normal),
    ]);
    let truncated = model.1[..model.1.len() - 2].to_vec();
    check(
        &[("tokenizer.model", truncated)],
        Arch::Llama,
        json!({}),
        "tokenizer.model",
    );
    check(
        &[("tokenizer.model", vec![0xff; 64])],
        Arch::Gemma3,
        json!({}),
        "tokenizer.model",
    );
    check(
        &[("tokenizer.json", b"{\"model\": ".to_vec())],
        Arch::Qwen2,
        json!({}),
        "tokenizer.json",
    );
    check(
        &[("tokenizer.json", b"[1, 2]".to_vec())],
        Arch::Qwen2,
        json!({}),
        "tokenizer.json",
    );
    check(
        &[json_file(
            "tokenizer.json",
            &json!({"model": {"type": "Nope"}}),
        )],
        Arch::Qwen3,
        json!({}),
        "tokenizer.json",
    );
    check(
        std::slice::from_ref(&model),
        Arch::Llama,
        json!({"vocab_size": 1u64 << 40}),
        "config.json",
    );
    check(
        std::slice::from_ref(&model),
        Arch::Llama,
        json!({"bos_token_id": -1}),
        "config.json",
    );
    check(
        &[
            model.clone(),
            json_file("added_tokens.json", &json!({"<x>": "seven"})),
        ],
        Arch::Llama,
        json!({}),
        "added_tokens.json",
    );
    check(
        &[
            model.clone(),
            json_file(
                "tokenizer_config.json",
                &json!({"added_tokens_decoder": {"one": {"content": "x"}}}),
            ),
        ],
        Arch::Gemma3,
        json!({}),
        "tokenizer_config.json",
    );
    check(
        &[
            model,
            json_file("tokenizer_config.json", &json!({"add_prefix_space": "yes"})),
        ],
        Arch::Llama,
        json!({}),
        "tokenizer_config.json",
    );
    // A vocabulary larger than config.json's vocab_size.
    check(
        &[json_file("tokenizer.json", &tiny_bpe(false))],
        Arch::Qwen2,
        json!({"vocab_size": 3}),
        "tokenizer.json",
    );
    // Merges in a form llama.cpp does not know.
    let mut bad_merges = tiny_bpe(false);
    bad_merges["model"]["merges"] = json!([{"a": "b"}]);
    let dir = checkpoint(&[json_file("tokenizer.json", &bad_merges)]);
    let empty = json!({});
    let ck = super::Checkpoint::open(dir.path(), &empty).unwrap();
    let err = super::special::merges_of(&ck, &ck.tokenizer_json.as_ref().unwrap().1).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    // Nothing at all.
    check(&[], Arch::Qwen2, json!({}), "tokenizer.json");
}
