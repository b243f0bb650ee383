//! Text <-> token ids, reproducing llama.cpp's tokenizer (`src/llama-vocab.cpp`) token for token
//! from GGUF metadata alone.
//!
//! - [`Vocab`]: the `tokenizer.ggml.*` metadata as plain data ([`Vocab::from_gguf`]).
//! - [`Tokenizer::from_vocab`] checks it and builds the lookup tables once.
//! - [`Tokenizer::encode`]: special tokens first (llama.cpp's `tokenizer_st_partition`), then
//!   each stretch of plain text through byte-level BPE (`bpe.rs`, split by `pretokenize.rs`) or
//!   SentencePiece (`spm.rs`).
//! - [`Tokenizer::detokenize`] / [`Tokenizer::decode`] / [`Tokenizer::token_to_piece`]: back.
//!
//! **Invariant: llama.cpp is the specification.** Where llama.cpp departs from the Hugging Face
//! tokenizers (its hand-written regex splits, its clean-up of spaces when detokenizing), this
//! code follows llama.cpp; the differential tests in `tests/tests/tokenizer.rs` hold it to that.

mod bpe;
mod detokenize;
mod error;
mod gguf;
mod pretokenize;
mod special;
mod spm;
mod unicode_tables;
mod vocab;

pub use error::TokenizerError;
pub use pretokenize::{PreConfig, PreTokenizer};
pub use vocab::{token_type, SpecialIds, Vocab};

use bpe::Bpe;
use special::{Fragment, SpecialTokens};
use std::collections::HashMap;

/// Token attributes (llama.cpp's `llama_token_attr`), derived from the token types.
pub mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
}

/// Which algorithm turns plain text into tokens.
#[derive(Debug)]
enum Model {
    /// Byte-level BPE (`"gpt2"`).
    Bpe(Bpe),
    /// SentencePiece (`"llama"`).
    Spm,
}

/// A ready tokenizer: encode text to token ids and back.
#[derive(Debug)]
pub struct Tokenizer {
    model: Model,
    texts: Vec<String>,
    scores: Vec<f32>,
    attrs: Vec<u16>,
    token_to_id: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, cut out of the text before tokenizing.
    specials: SpecialTokens,
    /// `token_to_piece` of every token, concatenated; token `i` is `pieces[piece_ends[i-1]..piece_ends[i]]`.
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
    special: SpecialIds,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

impl Tokenizer {
    /// Checks `vocab` and builds the tokenizer. Defaults follow llama.cpp: a SentencePiece
    /// vocabulary adds BOS and a leading space unless the file says otherwise; a BPE one
    /// adds BOS only for pre-tokenizers that do (Llama 3).
    pub fn from_vocab(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        let n = vocab.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n > i32::MAX as usize {
            return Err(TokenizerError::TooManyTokens(n));
        }
        for (key, len) in [
            ("scores", vocab.scores.len()),
            ("token_type", vocab.token_types.len()),
        ] {
            if len != 0 && len < n {
                return Err(TokenizerError::LengthMismatch {
                    key,
                    len,
                    n_tokens: n,
                });
            }
        }

        // llama.cpp's per-model defaults, then the file's overrides.
        let (defaults, pre_config, mut add_bos, mut add_space_prefix) = match vocab.model.as_str() {
            "llama" => {
                let ids = SpecialIds {
                    bos: Some(1),
                    eos: Some(2),
                    unk: Some(0),
                    ..SpecialIds::default()
                };
                (ids, None, true, true)
            }
            "gpt2" => {
                let pre = vocab.pre.as_deref().unwrap_or("");
                let config = PreConfig::from_name(pre)
                    .ok_or_else(|| TokenizerError::UnknownPreTokenizer(pre.to_string()))?;
                let ids = SpecialIds {
                    bos: Some(11),
                    eos: Some(11),
                    ..SpecialIds::default()
                };
                (ids, Some(config), config.add_bos, false)
            }
            other => return Err(TokenizerError::UnknownModel(other.to_string())),
        };
        add_bos = vocab.add_bos.unwrap_or(add_bos);
        let add_eos = vocab.add_eos.unwrap_or(false);
        add_space_prefix = vocab.add_space_prefix.unwrap_or(add_space_prefix);
        let clean_spaces = pre_config.is_some_and(|c| c.clean_spaces);

        let mut texts = vocab.tokens;
        let mut token_to_id = HashMap::with_capacity(n);
        for (id, text) in texts.iter_mut().enumerate() {
            if text.is_empty() {
                *text = format!("[EMPTY_{id}]");
            }
            if let Some(first) = token_to_id.insert(text.clone(), id as u32) {
                return Err(TokenizerError::DuplicateToken {
                    first,
                    second: id as u32,
                    text: text.clone(),
                });
            }
        }
        // -0.0 -> 0.0, so the SentencePiece heap's total order agrees with C++'s `<`.
        let scores: Vec<f32> = match vocab.scores.is_empty() {
            true => vec![0.0; n],
            false => vocab.scores[..n]
                .iter()
                .map(|&s| if s == 0.0 { 0.0 } else { s })
                .collect(),
        };
        let mut attrs: Vec<u16> = (0..n)
            .map(|i| {
                match vocab
                    .token_types
                    .get(i)
                    .copied()
                    .unwrap_or(token_type::NORMAL)
                {
                    token_type::NORMAL => attr::NORMAL,
                    token_type::UNKNOWN => attr::UNKNOWN,
                    token_type::CONTROL => attr::CONTROL,
                    token_type::USER_DEFINED => attr::USER_DEFINED,
                    token_type::UNUSED => attr::UNUSED,
                    token_type::BYTE => attr::BYTE,
                    _ => 0,
                }
            })
            .collect();

        let (special, eog) = special::resolve(defaults, vocab.special, &token_to_id, &mut attrs);

        if add_bos && special.bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken("bos"));
        }
        if add_eos && special.eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken("eos"));
        }

        let model = match pre_config {
            Some(config) => Model::Bpe(Bpe::new(config, &vocab.merges, &token_to_id, n as u32)?),
            None => Model::Spm,
        };

        let specials = SpecialTokens::new(&texts, &attrs);

        let mut tokenizer = Tokenizer {
            model,
            texts,
            scores,
            attrs,
            token_to_id,
            specials,
            pieces: Vec::new(),
            piece_ends: Vec::with_capacity(n),
            special,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
        };
        tokenizer.build_pieces();
        Ok(tokenizer)
    }

    /// The tokenizer of a GGUF file (`Vocab::from_gguf`, then `from_vocab`).
    pub fn from_gguf(gguf: &formats::gguf::Gguf) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_vocab(Vocab::from_gguf(gguf)?)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_tokens(&self) -> usize {
        self.texts.len()
    }

    /// The special token ids in force (the file's, else the model's defaults).
    pub fn special_ids(&self) -> &SpecialIds {
        &self.special
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether generating `id` ends generation (EOS, end of turn, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// The raw text of token `id` as stored in the vocabulary (`Ġ`/`▁` not undone).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The attributes ([`attr`]) of token `id` (0 for an id out of range).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// Text to token ids. `add_special`: add BOS/EOS where the vocabulary says so.
    /// `parse_special`: control tokens written in the text (`<|im_start|>`) become those tokens
    /// rather than being tokenized as text; user-defined tokens always do.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let fragments = self
            .specials
            .partition(text, parse_special, &self.texts, &self.attrs);
        match &self.model {
            Model::Bpe(bpe) => {
                if add_special && self.add_bos {
                    out.extend(self.special.bos);
                }
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            bpe.tokenize(&text[range], &self.token_to_id, &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::Spm => {
                if add_special && self.add_bos {
                    out.extend(self.special.bos);
                }
                // A leading space goes on the text at the start and after each special token.
                let mut after_special = true;
                let mut escaped = String::new();
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            escaped.clear();
                            if self.add_space_prefix && after_special {
                                escaped.push('▁');
                            }
                            for c in text[range].chars() {
                                escaped.push(if c == ' ' { '▁' } else { c });
                            }
                            let score = |id: u32| self.scores[id as usize];
                            spm::tokenize(
                                &escaped,
                                &self.token_to_id,
                                score,
                                |b| self.byte_to_token(b),
                                &mut out,
                            );
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
        out
    }

    /// llama.cpp's `byte_to_token` for SentencePiece: `<0xNN>`, else the byte itself as a token.
    /// llama.cpp aborts when neither exists; this falls back to the unknown token.
    fn byte_to_token(&self, byte: u8) -> Option<u32> {
        let hex = format!("<0x{byte:02X}>");
        self.token_to_id
            .get(hex.as_str())
            .or_else(|| {
                if byte.is_ascii() {
                    self.token_to_id
                        .get(char::from(byte).encode_utf8(&mut [0; 4]))
                } else {
                    None
                }
            })
            .copied()
            .or(self.special.unk)
    }
}

#[cfg(test)]
mod tests;
