//! [`Vocab`]: the tokenizer's part of a GGUF file's metadata, as plain data.

/// The `tokenizer.ggml.*` metadata a [`Tokenizer`](super::Tokenizer) is built from. Plain data:
/// a test can write one by hand; [`Vocab::from_gguf`] reads one from a model file. Nothing is
/// validated here; [`Tokenizer::from_vocab`](super::Tokenizer::from_vocab) does that.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a BPE vocabulary (`"smollm"`, `"llama-bpe"`).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: token texts; a token's id is its index.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: merge priority of SentencePiece tokens (empty: all 0).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type`: llama.cpp's `llama_token_type` per token (empty: all
    /// normal). See [`token_type`].
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: BPE merges, `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.*_token_id`; `None` where the file does not set one (the model's
    /// defaults then apply, as in llama.cpp).
    pub special: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`: SentencePiece's leading `▁` on the first word.
    pub add_space_prefix: Option<bool>,
}

/// Ids of the special tokens a GGUF file names (`tokenizer.ggml.bos_token_id`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Values of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}
