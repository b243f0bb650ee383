//! The GGUF's vocabulary (`tokenizer.ggml.*`) written back as the Hub's tokenizer files:
//! `tokenizer.json` for byte-level BPE (`gpt2`) and SentencePiece (`llama`) vocabularies, the
//! SentencePiece `tokenizer.model` for the latter (see [`super::sp`]), and
//! `tokenizer_config.json` with the special tokens, the chat template and the added tokens.

use super::config::opt_u64;
use super::{sp, Arch, ExportError};
use formats::gguf::{Array, Gguf, GgufError, Value};
use prost::Message;
use serde_json::{json, Map, Value as Json};

/// llama.cpp's token types (`llama_token_type`), also SentencePiece's piece types.
const NORMAL: i32 = 1;
pub(super) const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
pub(super) const BYTE: i32 = 6;

/// The GGUF's vocabulary.
#[derive(Debug)]
pub(super) struct Vocab {
    pub(super) model: String,
    pre: Option<String>,
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    merges: Vec<String>,
    bos: Option<u64>,
    eos: Option<u64>,
    unk: Option<u64>,
    pad: Option<u64>,
    /// `tokenizer.ggml.add_bos_token`.
    add_bos: bool,
}

impl Vocab {
    pub(super) fn read(h: &Gguf) -> Result<Vocab, ExportError> {
        let array = |key: &str| match h.get(key) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        };
        let tokens = match array("tokenizer.ggml.tokens") {
            Some(Array::String(t)) => t.clone(),
            _ => return Err(GgufError::MissingKey("tokenizer.ggml.tokens".into()).into()),
        };
        let types = match array("tokenizer.ggml.token_type") {
            Some(Array::I32(t)) => t.clone(),
            _ => vec![NORMAL; tokens.len()],
        };
        let scores = match array("tokenizer.ggml.scores") {
            Some(Array::F32(s)) => s.clone(),
            _ => vec![0.0; tokens.len()],
        };
        let merges = match array("tokenizer.ggml.merges") {
            Some(Array::String(m)) => m.clone(),
            _ => Vec::new(),
        };
        let id = |typ: &str| opt_u64(h, &format!("tokenizer.ggml.{typ}_token_id"));
        Ok(Vocab {
            model: h.get_str("tokenizer.ggml.model")?.to_string(),
            pre: h
                .get("tokenizer.ggml.pre")
                .and_then(Value::as_str)
                .map(str::to_string),
            tokens,
            types,
            scores,
            merges,
            bos: id("bos"),
            eos: id("eos"),
            unk: id("unknown"),
            pad: id("padding"),
            add_bos: h
                .get("tokenizer.ggml.add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The post-processor: BOS prepended when the vocabulary adds one (transformers 5 reads it
    /// from here, not from `tokenizer_config.json`'s `add_bos_token`), after `base` if any.
    fn post_processor(&self, base: Option<Json>) -> Json {
        let bos = self
            .bos
            .filter(|_| self.add_bos)
            .and_then(|b| Some((b, self.tokens.get(b as usize)?.clone())));
        let Some((id, text)) = bos else {
            return base.unwrap_or(Json::Null);
        };
        let template = json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": text, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {text.clone(): {"id": text, "ids": [id], "tokens": [text]}}});
        match base {
            Some(b) => json!({"type": "Sequence", "processors": [b, template]}),
            None => template,
        }
    }

    /// `model.vocab` of a `tokenizer.json`: every token and its id.
    fn vocab_map(&self) -> Map<String, Json> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect()
    }

    /// Tokens the converter must see as added tokens: control (special) and user-defined.
    fn added(&self) -> impl Iterator<Item = (usize, &str, bool)> {
        self.tokens.iter().enumerate().filter_map(|(i, t)| {
            let ty = self.types.get(i).copied().unwrap_or(NORMAL);
            (ty == CONTROL || ty == USER_DEFINED).then_some((i, t.as_str(), ty == CONTROL))
        })
    }

    fn added_tokens_json(&self) -> Vec<Json> {
        self.added()
            .map(|(id, content, special)| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": special})
            })
            .collect()
    }

    /// `tokenizer.json` of a byte-level BPE vocabulary (`tokenizer.ggml.model == "gpt2"`).
    pub(super) fn bpe_tokenizer_json(&self) -> Result<Json, ExportError> {
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match self.pre.as_deref() {
            // SmolLM's: single digits, then GPT-2's byte-level split.
            Some("smollm") => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            Some("gpt-2") | None => byte_level,
            Some(other) => {
                return Err(ExportError::Unsupported(format!(
                    "tokenizer.ggml.pre {other:?}"
                )))
            }
        };
        let vocab = self.vocab_map();
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens_json(),
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.post_processor(Some(json!({"type": "ByteLevel",
                "add_prefix_space": true, "trim_offsets": false, "use_regex": true}))),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true,
                        "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": self.merges},
        }))
    }

    /// `tokenizer.json` of a SentencePiece BPE vocabulary (gemma's layout): the merges are
    /// recovered from the vocabulary as transformers' `SentencePieceExtractor` does (every split
    /// of a piece into two pieces, ordered by the piece's score).
    pub(super) fn spm_tokenizer_json(&self) -> Json {
        let ids: std::collections::HashMap<&str, usize> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
        for (id, piece) in self.tokens.iter().enumerate() {
            if self.types.get(id) != Some(&NORMAL) {
                continue;
            }
            for (cut, _) in piece.char_indices().skip(1) {
                let (l, r) = piece.split_at(cut);
                if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                    merges.push((self.scores[id], id, li, ri));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.2, a.3).cmp(&(b.2, b.3))));
        let merges: Vec<Json> = merges
            .iter()
            .map(|&(_, _, l, r)| json!([self.tokens[l], self.tokens[r]]))
            .collect();
        let vocab = self.vocab_map();
        let unk = self.unk.map(|i| self.tokens[i as usize].clone());
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens_json(),
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
            "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                              "behavior": "MergedWithPrevious", "invert": false},
            "post_processor": self.post_processor(None),
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        })
    }

    /// `tokenizer.model`: the vocabulary as a SentencePiece BPE model with byte fallback.
    pub(super) fn sentencepiece_model(&self, h: &Gguf) -> Vec<u8> {
        let add_space_prefix = h
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let pieces = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut ty = self.types.get(i).copied().unwrap_or(NORMAL);
                // The converter turns `<unk>` into a control token through
                // added_tokens_decoder; SentencePiece itself needs exactly one unknown piece.
                if Some(i as u64) == self.unk {
                    ty = UNKNOWN;
                }
                sp::Piece {
                    piece: Some(t.clone()),
                    score: Some(self.scores.get(i).copied().unwrap_or(0.0)),
                    r#type: Some(ty),
                }
            })
            .collect();
        let id = |v: Option<u64>| Some(v.map_or(-1, |v| v as i32));
        // SentencePiece finds its special ids by these names.
        let piece = |v: Option<u64>| v.and_then(|i| self.tokens.get(i as usize)).cloned();
        let model = sp::ModelProto {
            pieces,
            trainer_spec: Some(sp::TrainerSpec {
                model_type: Some(2), // BPE
                vocab_size: Some(self.tokens.len() as i32),
                byte_fallback: Some(self.types.contains(&BYTE)),
                split_digits: Some(true),
                allow_whitespace_only_pieces: Some(true),
                unk_id: id(self.unk),
                bos_id: id(self.bos),
                eos_id: id(self.eos),
                pad_id: id(self.pad),
                unk_piece: piece(self.unk),
                bos_piece: piece(self.bos),
                eos_piece: piece(self.eos),
                pad_piece: piece(self.pad),
            }),
            normalizer_spec: Some(sp::NormalizerSpec {
                name: Some("identity".into()),
                add_dummy_prefix: Some(add_space_prefix),
                remove_extra_whitespaces: Some(false),
                escape_whitespaces: Some(true),
            }),
        };
        model.encode_to_vec()
    }

    /// `tokenizer_config.json`: special token strings, add_bos/add_eos, the chat template and
    /// `added_tokens_decoder`.
    pub(super) fn tokenizer_config(&self, h: &Gguf, arch: Arch, ctx: u64) -> Json {
        let mut c = Map::new();
        for key in ["add_bos_token", "add_eos_token", "add_sep_token"] {
            if let Some(b) = h
                .get(&format!("tokenizer.ggml.{key}"))
                .and_then(Value::as_bool)
            {
                c.insert(key.into(), json!(b));
            }
        }
        let decoder: Map<String, Json> = self
            .added()
            .map(|(id, content, special)| {
                (
                    id.to_string(),
                    json!({"content": content, "lstrip": false, "normalized": false,
                           "rstrip": false, "single_word": false, "special": special}),
                )
            })
            .collect();
        c.insert("added_tokens_decoder".into(), Json::Object(decoder));
        for (name, id) in [
            ("bos_token", self.bos),
            ("eos_token", self.eos),
            ("unk_token", self.unk),
            ("pad_token", self.pad),
        ] {
            if let Some(t) = id.and_then(|i| self.tokens.get(i as usize)) {
                c.insert(name.into(), json!(t));
            }
        }
        if let Some(t) = h.get("tokenizer.chat_template").and_then(Value::as_str) {
            c.insert("chat_template".into(), json!(t));
        }
        c.insert("clean_up_tokenization_spaces".into(), json!(false));
        c.insert("model_max_length".into(), json!(ctx));
        let class = match (self.model.as_str(), arch) {
            ("gpt2", _) => "GPT2Tokenizer",
            (_, Arch::Gemma3) => "GemmaTokenizer",
            _ => "LlamaTokenizer",
        };
        if self.model == "gpt2" {
            c.insert("add_prefix_space".into(), json!(false));
        } else {
            c.insert("sp_model_kwargs".into(), json!({}));
            c.insert("spaces_between_special_tokens".into(), json!(false));
        }
        c.insert("tokenizer_class".into(), json!(class));
        Json::Object(c)
    }
}
