//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) from `tokenizer.json`:
//! llama.cpp's `get_vocab_base` and `_set_vocab_gpt2`.
//!
//! llama.cpp loads the tokenizer with transformers' `AutoTokenizer`, which for these checkpoints
//! is the `tokenizers` library over `tokenizer.json`; here the same library is used directly.

use super::pre::{chkhsh, pre_for_hash, CHKTXT};
use super::special::{SpecialVocab, DEFAULT_TYPES};
use super::{does_token_look_special, Checkpoint, Metadata, TokenList, TokenType, TOKENIZER_JSON};
use crate::convert::ConvertError;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tokenizers::Tokenizer;

/// `_set_vocab_gpt2`: model, pre, tokens, types, then `SpecialVocab` with merges.
pub(crate) fn set_vocab_gpt2(ck: &Checkpoint<'_>, kv: &mut Metadata) -> Result<(), ConvertError> {
    let (list, pre) = vocab_base(ck)?;
    kv.set_str("tokenizer.ggml.model", "gpt2");
    kv.set_str("tokenizer.ggml.pre", pre);
    list.add_to(kv, false);
    SpecialVocab::load(ck, true, &DEFAULT_TYPES, None)?.add_to(kv);
    Ok(())
}

/// `tokenizer.json` loaded by the `tokenizers` library.
pub(crate) fn load_tokenizer(ck: &Checkpoint<'_>) -> Result<Tokenizer, ConvertError> {
    let Some((text, _)) = &ck.tokenizer_json else {
        return Err(ConvertError::Missing {
            path: ck.path(TOKENIZER_JSON),
            why: "the BPE vocabulary is read from it".into(),
        });
    };
    guarded(ck, "loading", || {
        text.parse::<Tokenizer>().map_err(|e| e.to_string())
    })
}

/// Runs a `tokenizers` call; its errors, and its panics on input it does not expect, become
/// [`ConvertError::Invalid`] naming `tokenizer.json`.
pub(crate) fn guarded<T>(
    ck: &Checkpoint<'_>,
    doing: &str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, ConvertError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ck.invalid(TOKENIZER_JSON, format!("{doing} the tokenizer: {e}"))),
        Err(_) => Err(ck.invalid(
            TOKENIZER_JSON,
            format!("{doing} the tokenizer: the tokenizers library panicked"),
        )),
    }
}

/// `get_vocab_base`: the tokens by id up to `vocab_size` (missing ids `[PAD{i}]` UNUSED), added
/// tokens CONTROL when special or looking special, else USER_DEFINED with `▁` written as a
/// space; the rest NORMAL. A non-normalized added token is first encoded and decoded back, as
/// llama.cpp does, because llama.cpp's tokenizer takes CONTROL and USER_DEFINED tokens as
/// already normalized.
pub(crate) fn vocab_base(ck: &Checkpoint<'_>) -> Result<(TokenList, &'static str), ConvertError> {
    let tokenizer = load_tokenizer(ck)?;
    let list = token_list(ck, &tokenizer)?;
    let pre = pre_tokenizer(ck, &tokenizer)?;
    Ok((list, pre))
}

/// [`vocab_base`]'s token list.
pub(crate) fn token_list(
    ck: &Checkpoint<'_>,
    tokenizer: &Tokenizer,
) -> Result<TokenList, ConvertError> {
    let vocab = tokenizer.get_vocab(true);
    let max_id = vocab.values().copied().max();
    let vocab_size = ck.vocab_size()?.unwrap_or(vocab.len());
    if let Some(max_id) = max_id.filter(|&m| m as usize >= vocab_size) {
        return Err(ck.invalid(
            TOKENIZER_JSON,
            format!("token id {max_id} is past vocab_size {vocab_size} (config.json)"),
        ));
    }
    // id -> text; an added token wins over a vocabulary entry with its id.
    let added = tokenizer.get_added_tokens_decoder();
    let mut reverse: HashMap<u32, String> = tokenizer
        .get_vocab(false)
        .into_iter()
        .map(|(text, id)| (id, text))
        .collect();
    for (id, token) in &added {
        reverse.insert(*id, token.content.clone());
    }
    let added_by_text: HashMap<&str, u32> = added
        .iter()
        .map(|(id, t)| (t.content.as_str(), *id))
        .collect();

    let mut list = TokenList::default();
    for i in 0..vocab_size as u32 {
        let Some(text) = reverse.get(&i) else {
            list.push(format!("[PAD{i}]"), 0.0, TokenType::Unused);
            continue;
        };
        let Some(token) = added_by_text
            .get(text.as_str())
            .and_then(|id| added.get(&i).or_else(|| added.get(id)))
        else {
            list.push(text.clone(), 0.0, TokenType::Normal);
            continue;
        };
        let mut text = text.clone();
        if !token.normalized {
            text = guarded(ck, "decoding an added token with", || {
                let ids = tokenizer
                    .encode(text.as_str(), false)
                    .map_err(|e| e.to_string())?;
                tokenizer
                    .decode(ids.get_ids(), false)
                    .map_err(|e| e.to_string())
            })?;
        }
        if token.special || does_token_look_special(&text) {
            list.push(text, 0.0, TokenType::Control);
        } else {
            list.push(text.replace('\u{2581}', " "), 0.0, TokenType::UserDefined);
        }
    }
    Ok(list)
}

/// `get_vocab_base_pre`: the pre-tokenizer's name from the hash of the check text's ids.
/// llama.cpp encodes with `AutoTokenizer.encode`, which adds the tokenizer's special tokens
/// (Llama 3's BOS is part of its hash), so this encodes with them too.
pub(crate) fn pre_tokenizer(
    ck: &Checkpoint<'_>,
    tokenizer: &Tokenizer,
) -> Result<&'static str, ConvertError> {
    let ids = guarded(ck, "encoding the check text with", || {
        tokenizer
            .encode(CHKTXT, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    })?;
    let hash = chkhsh(&ids);
    pre_for_hash(&hash).ok_or_else(|| {
        tracing::warn!(
            "the BPE pre-tokenizer was not recognized (chkhsh {hash}): the model is not in \
             llama.cpp's convert_hf_to_gguf_update.py yet, or its pre-tokenization config \
             changed upstream; see https://github.com/ggml-org/llama.cpp/pull/6920"
        );
        ConvertError::Unsupported {
            path: ck.path(TOKENIZER_JSON),
            what: "pre-tokenizer (chkhsh)",
            found: hash,
        }
    })
}
