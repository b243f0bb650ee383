//! The tokenizer of a checkpoint as GGUF `tokenizer.ggml.*` keys (and `tokenizer.chat_template`),
//! written as llama.cpp's `convert_hf_to_gguf.py` writes them: the same keys, in the same order,
//! with the same value types, so that llama.cpp and sintra-rt tokenize a converted model as they
//! tokenize one converted by llama.cpp.
//!
//! Each architecture picks its vocabulary the way llama.cpp's class for it does (see
//! [`tokenizer_metadata`]); then:
//! - `bpe`: byte-level BPE from `tokenizer.json` (`tokenizer.ggml.model = "gpt2"`), with the
//!   pre-tokenizer named by hashing a check text (`pre`);
//! - `llama_hf`: a byte-fallback BPE `tokenizer.json` as a `"llama"` vocabulary;
//! - `spm`: SentencePiece's `tokenizer.model` (`"llama"`), also phi3's variant;
//! - `special`: llama.cpp's `SpecialVocab`: merges, special token ids, `add_*_token`, the chat
//!   template.
//!
//! llama.cpp's converter asserts or throws on input it does not expect; here such input is a
//! [`ConvertError`] naming the file and the value.

mod bpe;
mod llama_hf;
mod pre;
mod special;
mod spm;
#[cfg(test)]
mod tests;

use super::{Arch, ConvertError};
use formats::gguf::{Array, Value};
use std::path::{Path, PathBuf};

/// The most tokens a vocabulary may have (the largest real ones have 262,144): a `vocab_size`
/// above it is refused rather than padded into gigabytes of `[PAD{i}]` strings.
pub(crate) const MAX_VOCAB: usize = 1 << 22;

/// The largest tokenizer file read (`tokenizer.json` of big vocabularies is ~20 MB).
const MAX_FILE_BYTES: u64 = 512 << 20;

/// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) for the checkpoint in `dir`, in the
/// order llama.cpp's converter writes them.
///
/// The vocabulary is chosen as llama.cpp's class for `arch` chooses it:
/// - llama: SentencePiece if `tokenizer.model` exists, else a byte-fallback BPE `tokenizer.json`
///   as a `"llama"` vocabulary, else byte-level BPE (Llama 3, SmolLM2); `add_space_prefix` first
///   when `tokenizer_config.json` has `add_prefix_space`; CodeLlama's infill ids when
///   `vocab_size` is 32016; `add_bos_token = false` when `vocab_size` is 49152 (granite/SmolLM);
/// - qwen2, qwen3: SentencePiece if `tokenizer.model` exists, else byte-level BPE;
/// - gemma3: SentencePiece then `add_space_prefix = false` if `tokenizer.model` exists, else
///   byte-level BPE;
/// - phi3: byte-level BPE if `tokenizer_config.json` says `GPT2Tokenizer` (Phi-4), else its own
///   SentencePiece reading (added tokens from three files, no range checks in llama.cpp).
pub fn tokenizer_metadata(
    dir: &Path,
    arch: Arch,
    config: &serde_json::Value,
) -> Result<Vec<(String, Value)>, ConvertError> {
    let ck = Checkpoint::open(dir, config)?;
    let mut kv = Metadata::default();
    match arch {
        Arch::Llama => set_vocab_llama(&ck, &mut kv)?,
        Arch::Qwen2 | Arch::Qwen3 => {
            if ck.has(spm::TOKENIZER_MODEL) {
                spm::set_vocab_sentencepiece(&ck, &mut kv)?;
            } else {
                bpe::set_vocab_gpt2(&ck, &mut kv)?;
            }
        }
        Arch::Gemma3 => {
            if ck.has(spm::TOKENIZER_MODEL) {
                spm::set_vocab_sentencepiece(&ck, &mut kv)?;
                kv.set(ADD_SPACE_PREFIX, Value::Bool(false));
            } else {
                bpe::set_vocab_gpt2(&ck, &mut kv)?;
            }
        }
        Arch::Phi3 => {
            let class = ck.tokenizer_config_str("tokenizer_class")?;
            if class == Some("GPT2Tokenizer") {
                bpe::set_vocab_gpt2(&ck, &mut kv)?;
            } else {
                spm::set_vocab_phi3(&ck, &mut kv)?;
            }
        }
    }
    Ok(kv.into_vec())
}

/// `LlamaModel.set_vocab`.
fn set_vocab_llama(ck: &Checkpoint<'_>, kv: &mut Metadata) -> Result<(), ConvertError> {
    if let Some(value) = ck.tokenizer_config_get("add_prefix_space") {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::Bool(b) => kv.set(ADD_SPACE_PREFIX, Value::Bool(*b)),
            other => {
                return Err(ck.invalid(
                    TOKENIZER_CONFIG,
                    format!("add_prefix_space is {other}, not a bool"),
                ))
            }
        }
    }
    if ck.has(spm::TOKENIZER_MODEL) {
        spm::set_vocab_sentencepiece(ck, kv)?;
    } else if llama_hf::applies(ck) {
        llama_hf::set_vocab_llama_hf(ck, kv)?;
    } else {
        bpe::set_vocab_gpt2(ck, kv)?;
    }
    let vocab_size = ck.vocab_size()?;
    if vocab_size == Some(32016) {
        // CodeLlama's infill tokens.
        let types = ["prefix", "suffix", "middle", "eot"];
        let mut sv = special::SpecialVocab::load(ck, false, &types, None)?;
        for (typ, id) in [
            ("prefix", 32007),
            ("suffix", 32008),
            ("middle", 32009),
            ("eot", 32010),
        ] {
            sv.set_special_token(typ, id)?;
        }
        sv.add_to(kv);
    }
    if vocab_size == Some(49152) {
        // llama.cpp: "Apply to granite small models only" (SmolLM/SmolLM2 share the size).
        kv.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    }
    Ok(())
}

const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const TOKENIZER_JSON: &str = "tokenizer.json";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// gguf-py's `TokenType`: what `tokenizer.ggml.token_type` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// llama.cpp's `does_token_look_special`: added tokens some checkpoints forget to mark special.
pub(crate) fn does_token_look_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<｜") && token.ends_with("｜>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}

/// Metadata in insertion order where setting a key again replaces its value in place, as
/// gguf-py's `GGUFWriter.add_key_value` (a dict) does.
#[derive(Debug, Default)]
pub(crate) struct Metadata(Vec<(String, Value)>);

impl Metadata {
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// `GGUFWriter.add_array`: an empty array is not written.
    pub(crate) fn set_array(&mut self, key: &str, array: Array) {
        if array_len(&array) > 0 {
            self.set(key, Value::Array(array));
        }
    }

    pub(crate) fn set_str(&mut self, key: &str, value: &str) {
        self.set(key, Value::String(value.to_owned()));
    }

    pub(crate) fn into_vec(self) -> Vec<(String, Value)> {
        self.0
    }
}

fn array_len(array: &Array) -> usize {
    match array {
        Array::String(v) => v.len(),
        Array::I32(v) => v.len(),
        Array::F32(v) => v.len(),
        Array::U32(v) => v.len(),
        _ => 1,
    }
}

/// The tokenizer files of a checkpoint directory, the JSON ones parsed once.
pub(crate) struct Checkpoint<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) config: &'a serde_json::Value,
    /// `tokenizer.json`'s text and parse, when the file exists.
    pub(crate) tokenizer_json: Option<(String, serde_json::Value)>,
    /// `tokenizer_config.json`, when the file exists.
    pub(crate) tokenizer_config: Option<serde_json::Value>,
}

impl<'a> Checkpoint<'a> {
    fn open(dir: &'a Path, config: &'a serde_json::Value) -> Result<Self, ConvertError> {
        let mut ck = Checkpoint {
            dir,
            config,
            tokenizer_json: None,
            tokenizer_config: None,
        };
        if let Some(text) = ck.read_text(TOKENIZER_JSON)? {
            let json = ck.parse_object(TOKENIZER_JSON, &text)?;
            ck.tokenizer_json = Some((text, json));
        }
        if let Some(text) = ck.read_text(TOKENIZER_CONFIG)? {
            ck.tokenizer_config = Some(ck.parse_object(TOKENIZER_CONFIG, &text)?);
        }
        Ok(ck)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.path(name).is_file()
    }

    pub(crate) fn invalid(&self, name: &str, message: String) -> ConvertError {
        ConvertError::Invalid {
            path: self.path(name),
            message,
        }
    }

    /// The bytes of `name`, or `None` when there is no such file.
    pub(crate) fn read_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, ConvertError> {
        let path = self.path(name);
        if !path.is_file() {
            return Ok(None);
        }
        let io = |source| ConvertError::Io {
            path: path.clone(),
            source,
        };
        let len = std::fs::metadata(&path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(self.invalid(
                name,
                format!("{len} bytes, more than the {MAX_FILE_BYTES} read"),
            ));
        }
        std::fs::read(&path).map(Some).map_err(io)
    }

    pub(crate) fn read_text(&self, name: &str) -> Result<Option<String>, ConvertError> {
        match self.read_bytes(name)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| self.invalid(name, format!("not UTF-8: {e}"))),
        }
    }

    /// `name` parsed as JSON, or `None` when there is no such file.
    pub(crate) fn read_json(&self, name: &str) -> Result<Option<serde_json::Value>, ConvertError> {
        match self.read_text(name)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| self.invalid(name, format!("malformed JSON: {e}"))),
        }
    }

    fn parse_object(&self, name: &str, text: &str) -> Result<serde_json::Value, ConvertError> {
        let json: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| self.invalid(name, format!("malformed JSON: {e}")))?;
        if !json.is_object() {
            return Err(self.invalid(name, "not a JSON object".into()));
        }
        Ok(json)
    }

    pub(crate) fn tokenizer_config_get(&self, key: &str) -> Option<&serde_json::Value> {
        self.tokenizer_config.as_ref().and_then(|c| c.get(key))
    }

    fn tokenizer_config_str(&self, key: &str) -> Result<Option<&str>, ConvertError> {
        match self.tokenizer_config_get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.invalid(TOKENIZER_CONFIG, format!("{key} is {other}, not a string")))
            }
        }
    }

    /// `config.json`'s `vocab_size` (or its `text_config`'s), checked against [`MAX_VOCAB`].
    pub(crate) fn vocab_size(&self) -> Result<Option<usize>, ConvertError> {
        self.config_count("vocab_size")
    }

    /// A count from `config.json` (or its `text_config`): absent or null is `None`.
    pub(crate) fn config_count(&self, key: &str) -> Result<Option<usize>, ConvertError> {
        let value = self
            .config
            .get(key)
            .or_else(|| self.config.get("text_config").and_then(|t| t.get(key)));
        match value {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if n <= MAX_VOCAB => Ok(Some(n)),
                _ => Err(ConvertError::Invalid {
                    path: self.path("config.json"),
                    message: format!("{key} is {v}, not a count up to {MAX_VOCAB}"),
                }),
            },
        }
    }
}

/// The `tokenizer.ggml.tokens`, `scores` and `token_type` arrays of a vocabulary.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TokenList {
    pub(crate) tokens: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) types: Vec<TokenType>,
}

impl TokenList {
    pub(crate) fn push(&mut self, token: String, score: f32, ty: TokenType) {
        self.tokens.push(token);
        self.scores.push(score);
        self.types.push(ty);
    }

    /// `add_token_list`, (`add_token_scores`,) `add_token_types`.
    pub(crate) fn add_to(self, kv: &mut Metadata, with_scores: bool) {
        kv.set_array("tokenizer.ggml.tokens", Array::String(self.tokens));
        if with_scores {
            kv.set_array("tokenizer.ggml.scores", Array::F32(self.scores));
        }
        let types = self.types.into_iter().map(|t| t as i32).collect();
        kv.set_array("tokenizer.ggml.token_type", Array::I32(types));
    }
}
