//! [`TokenizerError`]: what is wrong with a vocabulary, naming the offending value.

use std::fmt;

/// Why a [`Vocab`](super::Vocab) cannot become a [`Tokenizer`](super::Tokenizer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` is neither `"gpt2"` nor `"llama"`.
    UnknownModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this tokenizer does not implement (empty:
    /// the key is missing).
    UnknownPreTokenizer(String),
    /// `tokenizer.ggml.tokens` is empty.
    EmptyVocab,
    /// More tokens than llama.cpp's `int32_t` ids can address.
    TooManyTokens(usize),
    /// A per-token array (`scores`, `token_type`) is shorter than the token list.
    LengthMismatch {
        key: &'static str,
        len: usize,
        n_tokens: usize,
    },
    /// Two tokens have the same text.
    DuplicateToken {
        first: u32,
        second: u32,
        text: String,
    },
    /// A merge has no `"left right"` shape.
    MalformedMerge { index: usize, merge: String },
    /// A merge names a token that is not in the vocabulary.
    MergeMissingToken {
        index: usize,
        merge: String,
        token: String,
    },
    /// The vocabulary adds a BOS/EOS token but has none.
    MissingSpecialToken(&'static str),
    /// A metadata key the tokenizer needs is absent.
    MissingKey(&'static str),
    /// A metadata key has another type than the tokenizer needs.
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownModel(model) => write!(
                f,
                "unknown tokenizer.ggml.model {model:?} (supported: \"gpt2\", \"llama\")"
            ),
            Self::UnknownPreTokenizer(pre) if pre.is_empty() => {
                write!(f, "tokenizer.ggml.pre is missing for a BPE vocabulary")
            }
            Self::UnknownPreTokenizer(pre) => write!(
                f,
                "unsupported tokenizer.ggml.pre {pre:?} (supported: smollm, llama-bpe, gpt-2, starcoder and their aliases)"
            ),
            Self::EmptyVocab => write!(f, "tokenizer.ggml.tokens is empty"),
            Self::TooManyTokens(n) => write!(f, "{n} tokens is more than token ids can address"),
            Self::LengthMismatch { key, len, n_tokens } => {
                write!(f, "tokenizer.ggml.{key} has {len} entries for {n_tokens} tokens")
            }
            Self::DuplicateToken { first, second, text } => {
                write!(f, "tokens {first} and {second} have the same text {text:?}")
            }
            Self::MalformedMerge { index, merge } => {
                write!(f, "merge {index} {merge:?} is not two tokens separated by a space")
            }
            Self::MergeMissingToken { index, merge, token } => {
                write!(f, "merge {index} {merge:?} names {token:?}, which is not a token")
            }
            Self::MissingSpecialToken(which) => {
                write!(f, "the vocabulary adds a {which} token but has no {which} token id")
            }
            Self::MissingKey(key) => write!(f, "metadata key {key} is missing"),
            Self::WrongType { key, expected } => write!(f, "metadata key {key} is not {expected}"),
        }
    }
}

impl std::error::Error for TokenizerError {}
