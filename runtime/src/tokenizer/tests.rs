//! Unit tests on hand-made vocabularies. The differential tests against llama.cpp on real
//! vocabularies are in `tests/tests/tokenizer.rs`.

use super::bpe::BYTE_TO_CHAR;
use super::detokenize::{clean_up_spaces, parse_byte_token};
use super::*;

/// A byte-level BPE vocabulary: the 256 byte stand-ins (ids 0..=255), then `extra`.
fn bpe_vocab(pre: &str, extra: &[(&str, i32)], merges: &[&str]) -> Vocab {
    let mut tokens: Vec<String> = BYTE_TO_CHAR.iter().map(|c| c.to_string()).collect();
    let mut token_types = vec![token_type::NORMAL; 256];
    for &(text, ty) in extra {
        tokens.push(text.to_string());
        token_types.push(ty);
    }
    Vocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types,
        merges: merges.iter().map(|m| m.to_string()).collect(),
        ..Vocab::default()
    }
}

fn hello_bpe() -> Tokenizer {
    let extra = [
        ("he", token_type::NORMAL),            // 256
        ("ll", token_type::NORMAL),            // 257
        ("hell", token_type::NORMAL),          // 258
        ("hello", token_type::NORMAL),         // 259
        ("Ġw", token_type::NORMAL),            // 260
        ("Ġwo", token_type::NORMAL),           // 261
        ("<|im_start|>", token_type::CONTROL), // 262
        ("<|im_end|>", token_type::CONTROL),   // 263
        ("<tag>", token_type::USER_DEFINED),   // 264
    ];
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"];
    Tokenizer::from_vocab(bpe_vocab("smollm", &extra, &merges)).unwrap()
}

fn ids(t: &Tokenizer, texts: &[&str]) -> Vec<u32> {
    texts
        .iter()
        .map(|s| t.token_id(s).unwrap_or_else(|| panic!("no token {s:?}")))
        .collect()
}

#[test]
fn bpe_merges_by_rank() {
    let t = hello_bpe();
    assert_eq!(
        t.encode("hello world", false, false),
        ids(&t, &["hello", "Ġwo", "r", "l", "d"])
    );
    assert_eq!(t.encode("hel", false, false), ids(&t, &["he", "l"]));
    assert_eq!(t.encode("", true, true), Vec::<u32>::new());
}

#[test]
fn special_tokens_are_cut_out_first() {
    let t = hello_bpe();
    let text = "<|im_start|>hello<|im_end|>";
    assert_eq!(
        t.encode(text, false, true),
        ids(&t, &["<|im_start|>", "hello", "<|im_end|>"])
    );
    // Without parse_special, control tokens are text; user-defined ones are still cut out.
    let plain = t.encode(text, false, false);
    assert!(!plain.contains(&262) && plain.len() > 3);
    assert_eq!(
        t.encode("a<tag>b", false, false),
        ids(&t, &["a", "<tag>", "b"])
    );
    assert_eq!(t.decode(&t.encode(text, true, true)), text);
    // Control tokens vanish unless unparsed.
    assert_eq!(
        t.detokenize(&t.encode(text, false, true), false, false),
        b"hello"
    );
}

#[test]
fn bpe_round_trips_any_text() {
    let t = hello_bpe();
    for text in [
        "hello world",
        "  spaces  \n\n tabs\t",
        "数字 123 émoji 😀",
        "it's 'quoted'",
    ] {
        assert_eq!(t.decode(&t.encode(text, true, true)), text);
    }
}

#[test]
fn llama3_adds_bos_and_ignores_merges_for_whole_words() {
    let mut v = bpe_vocab(
        "llama-bpe",
        &[
            ("hello", token_type::NORMAL),
            ("<|begin_of_text|>", token_type::CONTROL),
        ],
        &["h e"],
    );
    v.special.bos = Some(257);
    let t = Tokenizer::from_vocab(v).unwrap();
    assert!(t.add_bos());
    // "hello" has no merge path, but is a token: ignore_merges emits it whole.
    assert_eq!(t.encode("hello", true, false), vec![257, 256]);
}

/// A SentencePiece vocabulary with byte fallback.
fn hello_spm(add_space_prefix: Option<bool>) -> Tokenizer {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut token_types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        token_types.push(token_type::BYTE);
        scores.push(0.0);
    }
    for (text, score) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("▁h", -3.0),
        ("ll", -3.5),
        ("▁he", -4.0),
        ("▁hell", -5.0),
        ("▁hello", -6.0),
        ("he", -7.0),
    ] {
        tokens.push(text.to_string());
        token_types.push(token_type::NORMAL);
        scores.push(score);
    }
    let vocab = Vocab {
        model: "llama".into(),
        tokens,
        token_types,
        scores,
        add_space_prefix,
        ..Vocab::default()
    };
    Tokenizer::from_vocab(vocab).unwrap()
}

#[test]
fn spm_merges_by_score_with_space_prefix() {
    let t = hello_spm(None);
    assert_eq!(t.encode("hello", true, false), ids(&t, &["<s>", "▁hello"]));
    assert_eq!(
        t.encode("hello hello", false, false),
        ids(&t, &["▁hello", "▁hello"])
    );
    // llama.cpp strips the prefix space only when no BOS was removed before it.
    assert_eq!(
        t.decode(&t.encode("hello hello", false, true)),
        "hello hello"
    );
    assert_eq!(
        t.decode(&t.encode("hello hello", true, true)),
        " hello hello"
    );
    let t = hello_spm(Some(false));
    assert_eq!(t.encode("hello", false, false), ids(&t, &["he", "ll", "o"]));
}

#[test]
fn spm_falls_back_to_bytes() {
    let t = hello_spm(Some(false));
    assert_eq!(t.encode("é", false, false), ids(&t, &["<0xC3>", "<0xA9>"]));
    assert_eq!(t.decode(&t.encode("hé\nllo", true, true)), "hé\nllo");
}

#[test]
fn errors_name_the_bad_value() {
    let bad = |v: Vocab| Tokenizer::from_vocab(v).unwrap_err();
    let e = bad(bpe_vocab("qwen2", &[], &[]));
    assert_eq!(e, TokenizerError::UnknownPreTokenizer("qwen2".into()));
    assert!(e.to_string().contains("\"qwen2\""), "{e}");
    let e = bad(Vocab {
        model: "bert".into(),
        tokens: vec!["a".into()],
        ..Vocab::default()
    });
    assert!(e.to_string().contains("\"bert\""), "{e}");
    let e = bad(bpe_vocab("smollm", &[], &["h zz"]));
    assert!(
        matches!(&e, TokenizerError::MergeMissingToken { token, .. } if token == "zz"),
        "{e}"
    );
    assert!(matches!(
        bad(bpe_vocab("smollm", &[], &["hello"])),
        TokenizerError::MalformedMerge { index: 0, .. }
    ));
    assert!(matches!(
        bad(bpe_vocab("smollm", &[("a", 1)], &[])),
        TokenizerError::DuplicateToken {
            first: 97,
            second: 256,
            ..
        }
    ));
    let mut v = bpe_vocab("smollm", &[], &[]);
    v.scores = vec![0.0; 3];
    assert!(matches!(
        bad(v),
        TokenizerError::LengthMismatch {
            key: "scores",
            len: 3,
            ..
        }
    ));
    assert_eq!(
        bad(Vocab {
            model: "llama".into(),
            ..Vocab::default()
        }),
        TokenizerError::EmptyVocab
    );
    let v = Vocab {
        model: "llama".into(),
        tokens: vec!["a".into()],
        ..Vocab::default()
    };
    assert_eq!(bad(v), TokenizerError::MissingSpecialToken("bos"));
}

#[test]
fn clean_up_spaces_matches_llama_cpp() {
    let check = |input: &str, expect: &str| {
        let mut text = input.as_bytes().to_vec();
        clean_up_spaces(&mut text);
        assert_eq!(String::from_utf8_lossy(&text), expect, "input {input:?}");
    };
    check("Hello , world !", "Hello, world!");
    check("it 's he 'll we 're", "it's he 'll we're");
    check("a ' b", "a'b");
    check("", "");
}

#[test]
fn byte_token_text_parses_like_strtol() {
    assert_eq!(parse_byte_token("<0x0A>"), 10);
    assert_eq!(parse_byte_token("<0xfF>"), 255);
    assert_eq!(parse_byte_token("<0x"), 0);
    assert_eq!(parse_byte_token("<0xZ1>"), 0);
}

#[test]
fn vocab_from_gguf_metadata() {
    use formats::gguf::{Array, Gguf, Value};
    let strings =
        |v: &[&str]| Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()));
    let mut gguf = Gguf {
        version: 3,
        alignment: 32,
        metadata: vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
            (
                "tokenizer.ggml.tokens".into(),
                strings(&["a", "b", "ab", "<s>"]),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(Array::I32(vec![1, 1, 1, 3])),
            ),
            ("tokenizer.ggml.merges".into(), strings(&["a b"])),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(3)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        ],
        tensors: Vec::new(),
        header_len: 0,
        data_offset: 0,
    };
    let t = Tokenizer::from_gguf(&gguf).unwrap();
    assert_eq!(t.encode("abba", true, false), vec![3, 2, 1, 0]);
    assert_eq!(t.decode(&[3, 2, 1, 0]), "abba");

    gguf.metadata[3].1 = Value::Array(Array::F32(vec![0.0; 4]));
    let e = Tokenizer::from_gguf(&gguf).unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata key tokenizer.ggml.token_type is not an array of i32"
    );
    gguf.metadata.remove(4);
    let e = Tokenizer::from_gguf(&gguf).unwrap_err();
    assert_eq!(e, TokenizerError::MissingKey("tokenizer.ggml.merges"));
}
