//! [`Vocab::from_gguf`]: reads the `tokenizer.ggml.*` keys of a parsed GGUF header.

use super::{SpecialIds, TokenizerError, Vocab};
use formats::gguf::{Array, Gguf, Value};

impl Vocab {
    /// The vocabulary of a GGUF file. Keys llama.cpp treats as optional are optional here; a
    /// key of the wrong type is an error naming it (llama.cpp refuses those too).
    pub fn from_gguf(gguf: &Gguf) -> Result<Vocab, TokenizerError> {
        let model = string(gguf, "tokenizer.ggml.model")?
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        let tokens = strings(gguf, "tokenizer.ggml.tokens")?
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.tokens"))?;
        let merges = strings(gguf, "tokenizer.ggml.merges")?;
        if model == "gpt2" && merges.is_none() {
            return Err(TokenizerError::MissingKey("tokenizer.ggml.merges"));
        }
        let scores = match array(gguf, "tokenizer.ggml.scores", "an array of f32 or i32")? {
            None => Vec::new(),
            Some(Array::F32(v)) => v.clone(),
            Some(Array::I32(v)) => v.iter().map(|&s| s as f32).collect(),
            Some(_) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.scores",
                    expected: "an array of f32 or i32",
                })
            }
        };
        let token_types = match array(gguf, "tokenizer.ggml.token_type", "an array of i32")? {
            None => Vec::new(),
            Some(Array::I32(v)) => v.clone(),
            Some(_) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.token_type",
                    expected: "an array of i32",
                })
            }
        };
        // The deprecated prefix/suffix/middle keys win over fim_* where both are set and in
        // range, as in llama.cpp, which reads them last.
        let n = tokens.len() as u32;
        let newer = |old: Option<u32>, new: Option<u32>| new.filter(|&id| id < n).or(old);
        let special = SpecialIds {
            bos: id(gguf, "tokenizer.ggml.bos_token_id")?,
            eos: id(gguf, "tokenizer.ggml.eos_token_id")?,
            eot: id(gguf, "tokenizer.ggml.eot_token_id")?,
            eom: id(gguf, "tokenizer.ggml.eom_token_id")?,
            unk: id(gguf, "tokenizer.ggml.unknown_token_id")?,
            sep: id(gguf, "tokenizer.ggml.seperator_token_id")?,
            pad: id(gguf, "tokenizer.ggml.padding_token_id")?,
            mask: id(gguf, "tokenizer.ggml.mask_token_id")?,
            fim_pre: newer(
                id(gguf, "tokenizer.ggml.fim_pre_token_id")?,
                id(gguf, "tokenizer.ggml.prefix_token_id")?,
            ),
            fim_suf: newer(
                id(gguf, "tokenizer.ggml.fim_suf_token_id")?,
                id(gguf, "tokenizer.ggml.suffix_token_id")?,
            ),
            fim_mid: newer(
                id(gguf, "tokenizer.ggml.fim_mid_token_id")?,
                id(gguf, "tokenizer.ggml.middle_token_id")?,
            ),
            fim_pad: id(gguf, "tokenizer.ggml.fim_pad_token_id")?,
            fim_rep: id(gguf, "tokenizer.ggml.fim_rep_token_id")?,
            fim_sep: id(gguf, "tokenizer.ggml.fim_sep_token_id")?,
        };
        Ok(Vocab {
            model: model.to_string(),
            pre: string(gguf, "tokenizer.ggml.pre")?.map(str::to_string),
            tokens: tokens.to_vec(),
            scores,
            token_types,
            merges: merges.map(<[String]>::to_vec).unwrap_or_default(),
            special,
            add_bos: boolean(gguf, "tokenizer.ggml.add_bos_token")?,
            add_eos: boolean(gguf, "tokenizer.ggml.add_eos_token")?,
            add_space_prefix: boolean(gguf, "tokenizer.ggml.add_space_prefix")?,
        })
    }
}

/// `Ok(None)` if `key` is absent, an error if it has another type than `convert` accepts.
fn typed<'a, T>(
    gguf: &'a Gguf,
    key: &'static str,
    expected: &'static str,
    convert: impl Fn(&'a Value) -> Option<T>,
) -> Result<Option<T>, TokenizerError> {
    match gguf.get(key) {
        None => Ok(None),
        Some(v) => convert(v)
            .map(Some)
            .ok_or(TokenizerError::WrongType { key, expected }),
    }
}

fn string<'a>(gguf: &'a Gguf, key: &'static str) -> Result<Option<&'a str>, TokenizerError> {
    typed(gguf, key, "a string", Value::as_str)
}

fn strings<'a>(gguf: &'a Gguf, key: &'static str) -> Result<Option<&'a [String]>, TokenizerError> {
    typed(gguf, key, "an array of strings", |v| {
        v.as_array()?.as_strings()
    })
}

fn array<'a>(
    gguf: &'a Gguf,
    key: &'static str,
    expected: &'static str,
) -> Result<Option<&'a Array>, TokenizerError> {
    typed(gguf, key, expected, Value::as_array)
}

fn id(gguf: &Gguf, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    typed(gguf, key, "a token id (u32)", Value::as_u32)
}

fn boolean(gguf: &Gguf, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    typed(gguf, key, "a bool", Value::as_bool)
}
