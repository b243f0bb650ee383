//! A byte-fallback BPE `tokenizer.json` (Llama/Mistral-style without `tokenizer.model`) as a
//! `"llama"` vocabulary: gguf-py's `LlamaHfVocab` and llama.cpp's `_set_vocab_llama_hf`.
//!
//! llama.cpp asks transformers for the special tokens (`all_special_tokens`); here they are the
//! `*_token` entries and `additional_special_tokens` of `tokenizer_config.json` (with
//! `LlamaTokenizer`'s defaults `<s>`, `</s>`, `<unk>` when the class is a Llama one or unnamed),
//! which is where transformers finds them for these checkpoints.

use super::bpe::load_tokenizer;
use super::spm::add_llama_vocab;
use super::{Checkpoint, Metadata, TokenList, TokenType};
use crate::convert::ConvertError;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};

/// Whether `LlamaHfVocab` takes the checkpoint: `tokenizer.json` holds a BPE model with byte
/// fallback and a `Sequence` decoder, and is not Llama 3's (`ignore_merges` without byte
/// fallback). Otherwise llama.cpp falls back to byte-level BPE.
pub(crate) fn applies(ck: &Checkpoint<'_>) -> bool {
    let Some((_, json)) = &ck.tokenizer_json else {
        return false;
    };
    let model = json.get("model");
    let field = |key: &str| model.and_then(|m| m.get(key));
    let is_bpe = field("type").and_then(Json::as_str) == Some("BPE");
    let byte_fallback = field("byte_fallback").and_then(Json::as_bool);
    let ignore_merges = field("ignore_merges")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if is_bpe && ignore_merges && !byte_fallback.unwrap_or(true) {
        return false; // Llama 3.
    }
    let decoder = json
        .get("decoder")
        .and_then(|d| d.get("type"))
        .and_then(Json::as_str);
    is_bpe && byte_fallback.unwrap_or(false) && decoder == Some("Sequence")
}

/// `_set_vocab_llama_hf`: the base vocabulary by id (score -1000; `<0xXX>` BYTE, special tokens
/// CONTROL, the rest NORMAL), then added tokens past it (CONTROL if special, else
/// USER_DEFINED); no padding to `vocab_size`.
pub(crate) fn set_vocab_llama_hf(
    ck: &Checkpoint<'_>,
    kv: &mut Metadata,
) -> Result<(), ConvertError> {
    let tokenizer = load_tokenizer(ck)?;
    let base = tokenizer.get_vocab_size(false);
    let vocab = tokenizer.get_vocab(true);
    let special_texts: HashSet<String> = special_tokens(ck).into_iter().collect();
    let specials: HashSet<u32> = special_texts
        .iter()
        .filter_map(|t| vocab.get(t).copied())
        .collect();
    let mut added: Vec<(u32, String)> = tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(id, _)| *id as usize >= base)
        .map(|(id, t)| (id, t.content))
        .collect();
    added.sort();
    let reverse: HashMap<u32, &str> = vocab.iter().map(|(t, id)| (*id, t.as_str())).collect();

    let mut list = TokenList::default();
    for id in 0..base as u32 {
        let Some(text) = reverse.get(&id) else {
            return Err(ck.invalid(
                super::TOKENIZER_JSON,
                format!("no token has id {id} (the vocabulary has {base})"),
            ));
        };
        let ty = if is_byte_token(text) {
            TokenType::Byte
        } else if specials.contains(&id) {
            TokenType::Control
        } else {
            TokenType::Normal
        };
        list.push(text.to_string(), -1000.0, ty);
    }
    for (_, text) in added {
        let ty = if special_texts.contains(&text) {
            TokenType::Control
        } else {
            TokenType::UserDefined
        };
        list.push(text, -1000.0, ty);
    }
    add_llama_vocab(ck, kv, list)
}

/// `<0xXX>`.
fn is_byte_token(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 6
        && b.starts_with(b"<0x")
        && b[5] == b'>'
        && b[3..5].iter().all(u8::is_ascii_hexdigit)
}

/// transformers' `all_special_tokens` for the checkpoint, as text.
fn special_tokens(ck: &Checkpoint<'_>) -> Vec<String> {
    let config = ck.tokenizer_config.as_ref();
    let content = |v: &Json| match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    };
    let llama_class = match config.and_then(|c| c.get("tokenizer_class")) {
        None | Some(Json::Null) => true,
        Some(class) => class
            .as_str()
            .is_some_and(|c| c.starts_with("LlamaTokenizer")),
    };
    let mut out = Vec::new();
    for (key, default) in [
        ("bos_token", Some("<s>")),
        ("eos_token", Some("</s>")),
        ("unk_token", Some("<unk>")),
        ("sep_token", None),
        ("pad_token", None),
        ("cls_token", None),
        ("mask_token", None),
    ] {
        match config.and_then(|c| c.get(key)) {
            Some(v) => out.extend(content(v)),
            None if llama_class => out.extend(default.map(str::to_owned)),
            None => {}
        }
    }
    if let Some(Json::Array(extra)) = config.and_then(|c| c.get("additional_special_tokens")) {
        out.extend(extra.iter().filter_map(content));
    }
    out
}
