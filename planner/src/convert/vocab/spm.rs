//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`) from `tokenizer.model`: llama.cpp's
//! `_create_vocab_sentencepiece` / `_set_vocab_sentencepiece`, and phi3's own variant.
//!
//! llama.cpp reads only each piece's text, score and type from the model (through
//! `SentencePieceProcessor`); the trainer and normalizer specs (`byte_fallback`,
//! `add_dummy_prefix`) are not consulted, so they are not decoded here either. A user-defined
//! piece is NORMAL to llama.cpp (it checks unknown, control, unused and byte only); added tokens
//! from `added_tokens.json` and `tokenizer_config.json` then override pieces by id.

use super::special::{SpecialVocab, DEFAULT_TYPES};
use super::{
    does_token_look_special, Checkpoint, Metadata, TokenList, TokenType, MAX_VOCAB,
    TOKENIZER_CONFIG, TOKENIZER_JSON,
};
use crate::convert::ConvertError;
use prost::Message;
use serde_json::Value as Json;

pub(crate) const TOKENIZER_MODEL: &str = "tokenizer.model";
const ADDED_TOKENS: &str = "added_tokens.json";

/// The parts of sentencepiece's `ModelProto` llama.cpp reads.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pub(crate) pieces: Vec<SentencePiece>,
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SentencePiece {
    #[prost(string, optional, tag = "1")]
    pub(crate) piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub(crate) score: Option<f32>,
    #[prost(enumeration = "PieceType", optional, tag = "3")]
    pub(crate) r#type: Option<i32>,
}

/// `ModelProto.SentencePiece.Type` (proto2 default: NORMAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum PieceType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// `tokenizer.model`'s pieces as (text, score, llama.cpp's token type).
fn read_pieces(ck: &Checkpoint<'_>) -> Result<Vec<(String, f32, TokenType)>, ConvertError> {
    let bytes = ck
        .read_bytes(TOKENIZER_MODEL)?
        .ok_or_else(|| ConvertError::Missing {
            path: ck.path(TOKENIZER_MODEL),
            why: "the SentencePiece vocabulary is read from it".into(),
        })?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| ck.invalid(TOKENIZER_MODEL, format!("not a SentencePiece model: {e}")))?;
    if model.pieces.is_empty() || model.pieces.len() > MAX_VOCAB {
        return Err(ck.invalid(
            TOKENIZER_MODEL,
            format!("{} pieces (expected 1 to {MAX_VOCAB})", model.pieces.len()),
        ));
    }
    model
        .pieces
        .into_iter()
        .enumerate()
        .map(|(id, p)| {
            let raw = p.r#type.unwrap_or(PieceType::Normal as i32);
            let ty = match PieceType::try_from(raw) {
                Ok(PieceType::Unknown) => TokenType::Unknown,
                Ok(PieceType::Control) => TokenType::Control,
                Ok(PieceType::Unused) => TokenType::Unused,
                Ok(PieceType::Byte) => TokenType::Byte,
                Ok(PieceType::Normal | PieceType::UserDefined) => TokenType::Normal,
                Err(_) => {
                    return Err(ck.invalid(
                        TOKENIZER_MODEL,
                        format!("piece {id} has unknown type {raw}"),
                    ))
                }
            };
            Ok((p.piece.unwrap_or_default(), p.score.unwrap_or(0.0), ty))
        })
        .collect()
}

/// `_set_vocab_sentencepiece`: model, pre `"default"`, tokens, scores, types, then
/// `SpecialVocab` (no merges, ids checked against the token count).
pub(crate) fn set_vocab_sentencepiece(
    ck: &Checkpoint<'_>,
    kv: &mut Metadata,
) -> Result<(), ConvertError> {
    let list = create_vocab_sentencepiece(ck)?;
    add_llama_vocab(ck, kv, list)
}

/// What `_set_vocab_sentencepiece`, phi3 and `_set_vocab_llama_hf` write after building the list.
pub(crate) fn add_llama_vocab(
    ck: &Checkpoint<'_>,
    kv: &mut Metadata,
    list: TokenList,
) -> Result<(), ConvertError> {
    let n_vocab = list.tokens.len();
    kv.set_str("tokenizer.ggml.model", "llama");
    kv.set_str("tokenizer.ggml.pre", "default");
    list.add_to(kv, true);
    SpecialVocab::load(ck, false, &DEFAULT_TYPES, Some(n_vocab))?.add_to(kv);
    Ok(())
}

/// `_create_vocab_sentencepiece`: `vocab_size` slots (from `config.json`, else the model's
/// piece count) start as `[PAD{i}]` UNUSED with score -10000; pieces fill them (pieces past
/// `vocab_size` are dropped); `added_tokens.json` makes tokens USER_DEFINED;
/// `tokenizer_config.json`'s `added_tokens_decoder` makes them CONTROL (special, or looking
/// special) or USER_DEFINED with `▁` written as a space; added tokens score -1000 and ids past
/// `vocab_size` are skipped.
pub(crate) fn create_vocab_sentencepiece(ck: &Checkpoint<'_>) -> Result<TokenList, ConvertError> {
    let pieces = read_pieces(ck)?;
    // Python's `or`: a zero or missing size falls back to the next.
    let vocab_size = match ck.config_count("vocab_size_per_layer_input")? {
        Some(n) if n > 0 => n,
        _ => match ck.vocab_size()? {
            Some(n) if n > 0 => n,
            _ => pieces.len(),
        },
    };
    let mut list = padded(vocab_size);
    if pieces.len() > vocab_size {
        tracing::warn!(
            "tokenizer.model: pieces from {vocab_size} on ignored (vocab_size is {vocab_size})"
        );
    }
    for (id, (text, score, ty)) in pieces.into_iter().take(vocab_size).enumerate() {
        list.tokens[id] = text;
        list.scores[id] = score;
        list.types[id] = ty;
    }
    for (content, id) in added_tokens_json(ck)? {
        if id >= vocab_size {
            tracing::warn!("added_tokens.json: token {id} ignored, past vocab_size {vocab_size}");
            continue;
        }
        list.tokens[id] = content;
        list.scores[id] = -1000.0;
        list.types[id] = TokenType::UserDefined;
    }
    for (id, content, special) in added_tokens_decoder(ck)? {
        if id >= vocab_size {
            tracing::warn!(
                "added_tokens_decoder: token {id} ignored, past vocab_size {vocab_size}"
            );
            continue;
        }
        let (token, ty) = if special || does_token_look_special(&content) {
            (content, TokenType::Control)
        } else {
            // llama.cpp: "pre-normalize user-defined spaces".
            (content.replace('\u{2581}', " "), TokenType::UserDefined)
        };
        list.tokens[id] = token;
        list.scores[id] = -1000.0;
        list.types[id] = ty;
    }
    Ok(list)
}

/// `Phi3MiniModel.set_vocab`'s SentencePiece branch: like [`create_vocab_sentencepiece`] but
/// every piece must fit in `vocab_size`, `tokenizer.json`'s `added_tokens` also apply (last),
/// and added tokens are USER_DEFINED unless marked special (no look-special guess, no `▁`
/// rewrite). llama.cpp indexes its lists with these ids unchecked; an id past `vocab_size` is an
/// error here.
pub(crate) fn set_vocab_phi3(ck: &Checkpoint<'_>, kv: &mut Metadata) -> Result<(), ConvertError> {
    if !ck.has(TOKENIZER_MODEL) {
        return Err(ConvertError::Missing {
            path: ck.path(TOKENIZER_MODEL),
            why: "phi3's SentencePiece vocabulary is read from it".into(),
        });
    }
    let pieces = read_pieces(ck)?;
    let vocab_size = ck.vocab_size()?.unwrap_or(pieces.len());
    let out_of_range = |file: &str, id: usize| {
        ck.invalid(
            file,
            format!("token id {id} is past vocab_size {vocab_size}"),
        )
    };
    if pieces.len() > vocab_size {
        return Err(out_of_range(TOKENIZER_MODEL, pieces.len() - 1));
    }
    let mut list = padded(vocab_size);
    for (id, (text, score, ty)) in pieces.into_iter().enumerate() {
        list.tokens[id] = text;
        list.scores[id] = score;
        list.types[id] = ty;
    }
    for (content, id) in added_tokens_json(ck)? {
        if id >= vocab_size {
            continue; // llama.cpp skips these (and only these).
        }
        list.tokens[id] = content;
        list.scores[id] = -1000.0;
        list.types[id] = TokenType::UserDefined;
    }
    let mut overrides = added_tokens_decoder(ck)?
        .into_iter()
        .map(|t| (TOKENIZER_CONFIG, t))
        .collect::<Vec<_>>();
    overrides.extend(
        tokenizer_json_added(ck)?
            .into_iter()
            .map(|t| (TOKENIZER_JSON, t)),
    );
    for (file, (id, content, special)) in overrides {
        if id >= vocab_size {
            return Err(out_of_range(file, id));
        }
        list.tokens[id] = content;
        list.scores[id] = -1000.0;
        list.types[id] = if special {
            TokenType::Control
        } else {
            TokenType::UserDefined
        };
    }
    add_llama_vocab(ck, kv, list)
}

/// `vocab_size` slots of `[PAD{i}]`, score -10000, UNUSED.
fn padded(vocab_size: usize) -> TokenList {
    TokenList {
        tokens: (0..vocab_size).map(|i| format!("[PAD{i}]")).collect(),
        scores: vec![-10000.0; vocab_size],
        types: vec![TokenType::Unused; vocab_size],
    }
}

/// `added_tokens.json`: `{"content": id}` in file order.
fn added_tokens_json(ck: &Checkpoint<'_>) -> Result<Vec<(String, usize)>, ConvertError> {
    let Some(json) = ck.read_json(ADDED_TOKENS)? else {
        return Ok(Vec::new());
    };
    let Json::Object(map) = json else {
        return Err(ck.invalid(ADDED_TOKENS, "not a JSON object".into()));
    };
    map.into_iter()
        .map(|(content, id)| match id.as_u64() {
            Some(id) => Ok((content, usize::try_from(id).unwrap_or(usize::MAX))),
            None => Err(ck.invalid(
                ADDED_TOKENS,
                format!("token {content:?} has id {id}, not a token id"),
            )),
        })
        .collect()
}

/// `tokenizer_config.json`'s `added_tokens_decoder`: `{"id": {"content", "special"}}` as (id,
/// content, special), in file order.
fn added_tokens_decoder(ck: &Checkpoint<'_>) -> Result<Vec<(usize, String, bool)>, ConvertError> {
    let decoder = match ck.tokenizer_config_get("added_tokens_decoder") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Object(map)) => map,
        Some(other) => {
            return Err(ck.invalid(
                TOKENIZER_CONFIG,
                format!("added_tokens_decoder is {other}, not an object"),
            ))
        }
    };
    decoder
        .iter()
        .map(|(key, data)| {
            let id = key.trim().parse::<usize>().map_err(|_| {
                ck.invalid(
                    TOKENIZER_CONFIG,
                    format!("added_tokens_decoder key {key:?} is not a token id"),
                )
            })?;
            let (content, special) = added_token_fields(data).ok_or_else(|| {
                ck.invalid(
                    TOKENIZER_CONFIG,
                    format!("added_tokens_decoder[{key}] has no string content: {data}"),
                )
            })?;
            Ok((id, content, special))
        })
        .collect()
}

/// `tokenizer.json`'s `added_tokens`: `[{"id", "content", "special"}]` as (id, content, special).
fn tokenizer_json_added(ck: &Checkpoint<'_>) -> Result<Vec<(usize, String, bool)>, ConvertError> {
    let Some((_, json)) = &ck.tokenizer_json else {
        return Ok(Vec::new());
    };
    let list = match json.get("added_tokens") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(list)) => list,
        Some(other) => {
            return Err(ck.invalid(
                TOKENIZER_JSON,
                format!("added_tokens is {other}, not a list"),
            ))
        }
    };
    list.iter()
        .map(|data| {
            let id = data
                .get("id")
                .and_then(Json::as_u64)
                .map(|id| usize::try_from(id).unwrap_or(usize::MAX));
            match (id, added_token_fields(data)) {
                (Some(id), Some((content, special))) => Ok((id, content, special)),
                _ => Err(ck.invalid(
                    TOKENIZER_JSON,
                    format!("added token without an id and a string content: {data}"),
                )),
            }
        })
        .collect()
}

/// An added token's `content` and whether it is `special` (Python truthiness).
fn added_token_fields(data: &Json) -> Option<(String, bool)> {
    let content = data.get("content")?.as_str()?.to_owned();
    let special = data.get("special").is_some_and(super::special::truthy);
    Some((content, special))
}
