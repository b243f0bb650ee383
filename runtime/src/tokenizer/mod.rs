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
mod error;
mod pretokenize;
mod spm;
mod unicode_tables;
mod vocab;

pub use error::TokenizerError;
pub use pretokenize::{PreConfig, PreTokenizer};
pub use vocab::{token_type, SpecialIds, Vocab};

use bpe::Bpe;
use std::collections::HashMap;
use std::ops::Range;

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
    /// Control, user-defined and unknown tokens, longest text first: the order in which
    /// [`Tokenizer::encode`] cuts them out of the text.
    special_order: Vec<u32>,
    special_trie: Trie,
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

/// A stretch of the input: plain text (a byte range) or a special token cut out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

/// Token texts that end a turn or the text: llama.cpp makes them control tokens and
/// end-of-generation tokens whatever the file says (`llama_vocab::impl::load`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle token texts llama.cpp recognises when the file names no id for them:
/// (pre, suffix, middle, pad, repo, file separator).
const FIM_TEXTS: [&[&str]; 6] = [
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];

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
        let (mut special, pre_config, mut add_bos, mut add_space_prefix) =
            match vocab.model.as_str() {
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

        // Ids from the file replace the defaults when in range; defaults out of range are dropped.
        let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
        let file = vocab.special;
        let slots: [(&mut Option<u32>, Option<u32>); 14] = [
            (&mut special.bos, file.bos),
            (&mut special.eos, file.eos),
            (&mut special.eot, file.eot),
            (&mut special.eom, file.eom),
            (&mut special.unk, file.unk),
            (&mut special.sep, file.sep),
            (&mut special.pad, file.pad),
            (&mut special.mask, file.mask),
            (&mut special.fim_pre, file.fim_pre),
            (&mut special.fim_suf, file.fim_suf),
            (&mut special.fim_mid, file.fim_mid),
            (&mut special.fim_pad, file.fim_pad),
            (&mut special.fim_rep, file.fim_rep),
            (&mut special.fim_sep, file.fim_sep),
        ];
        for (slot, from_file) in slots {
            *slot = in_range(from_file).or(in_range(*slot));
        }

        // Recognise FIM and end-of-generation tokens by their text, as llama.cpp does. Where
        // several texts of one FIM kind exist llama.cpp takes whichever its hash map yields
        // first; this takes the lowest id.
        let find = |names: &[&str]| {
            names
                .iter()
                .filter_map(|t| token_to_id.get(*t).copied())
                .min()
        };
        let fim_slots = [
            &mut special.fim_pre,
            &mut special.fim_suf,
            &mut special.fim_mid,
            &mut special.fim_pad,
            &mut special.fim_rep,
            &mut special.fim_sep,
        ];
        for (slot, names) in fim_slots.into_iter().zip(FIM_TEXTS) {
            if slot.is_none() {
                *slot = find(names);
                if let Some(id) = *slot {
                    attrs[id as usize] |= attr::CONTROL;
                }
            }
        }
        let mut eog: Vec<u32> = EOG_TEXTS
            .iter()
            .filter_map(|t| token_to_id.get(*t).copied())
            .collect();
        for &id in &eog {
            attrs[id as usize] |= attr::CONTROL;
        }
        let others = [
            special.fim_pad,
            special.fim_rep,
            special.fim_sep,
            special.eos,
            special.eot,
            special.eom,
        ];
        eog.extend(others.into_iter().flatten());
        // gpt-oss: these are always rendered.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(text) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        // o200k_harmony / solar-open: "<|end|>" is no end of generation next to these.
        let has = |t: &str| token_to_id.get(t).is_some_and(|id| eog.contains(id));
        if (has("<|return|>") && has("<|call|>") || has("<|calls|>") && has("<|flush|>"))
            && has("<|end|>")
        {
            let end = token_to_id["<|end|>"];
            eog.retain(|&id| id != end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
        eog.sort_unstable();
        eog.dedup();

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

        // llama.cpp sorts with an unstable sort by length; ties between equally long special
        // tokens only matter when they overlap in the text, and then this keeps id order.
        let mut special_order: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_order.sort_by_key(|&id| std::cmp::Reverse(texts[id as usize].len()));
        let mut special_trie = Trie::default();
        for (rank, &id) in special_order.iter().enumerate() {
            special_trie.insert(texts[id as usize].as_bytes(), rank as u32);
        }

        let mut tokenizer = Tokenizer {
            model,
            texts,
            scores,
            attrs,
            token_to_id,
            special_order,
            special_trie,
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
        let fragments = self.partition(text, parse_special);
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

    /// The bytes token `id` stands for, with control tokens rendered as their text (llama.cpp's
    /// `token_to_piece(.., special = true)`). Empty for an id out of range. A piece may be part
    /// of a UTF-8 sequence.
    pub fn token_to_piece(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match self.piece_ends.get(i) {
            Some(&end) => &self.pieces[if i == 0 { 0 } else { self.piece_ends[i - 1] }..end],
            None => &[],
        }
    }

    /// Token ids to bytes, as llama.cpp's `llama_detokenize`. `remove_special`: drop the BOS
    /// and EOS that `encode` adds. `unparse_special`: render control tokens as their text
    /// (else they vanish). Ids out of range render as nothing.
    pub fn detokenize(
        &self,
        tokens: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        let mut tokens = tokens;
        let mut remove_space = self.add_space_prefix;
        if let (true, [first, rest @ ..]) = (remove_special && self.add_bos, tokens) {
            if Some(*first) == self.special.bos {
                remove_space = false;
                tokens = rest;
            }
        }
        if let (true, [rest @ .., last]) = (remove_special && self.add_eos, tokens) {
            if Some(*last) == self.special.eos {
                tokens = rest;
            }
        }
        let mut text = Vec::with_capacity(tokens.len() * 4);
        for &id in tokens {
            let hidden =
                !unparse_special && self.token_attr(id) & (attr::UNKNOWN | attr::CONTROL) != 0;
            if !hidden {
                let piece = self.token_to_piece(id);
                let piece = match piece.first() {
                    Some(b' ') if remove_space => &piece[1..],
                    _ => piece,
                };
                text.extend_from_slice(piece);
            }
            remove_space = false;
        }
        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        text
    }

    /// Token ids back to text: [`Tokenizer::detokenize`] dropping the BOS/EOS that `encode`
    /// added and keeping special tokens written in the text, so that
    /// `decode(&encode(text, true, true)) == text` (invalid UTF-8, from a cut sequence, becomes
    /// U+FFFD).
    pub fn decode(&self, tokens: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(tokens, true, true)).into_owned()
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

    /// Cuts the special tokens out of `text`, longest first, leftmost occurrence first
    /// (llama.cpp's `tokenizer_st_partition`). Control and unknown tokens only with
    /// `parse_special`.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut fragments = vec![Fragment::Text(0..text.len())];
        // One pass over the text finds which special tokens occur at all; only those need the
        // search below (Gemma 3 has 6,414 special tokens).
        let present = self
            .special_trie
            .occurring(text.as_bytes(), self.special_order.len());
        for (rank, &id) in self.special_order.iter().enumerate() {
            if !present[rank] {
                continue;
            }
            if !parse_special && self.attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = self.texts[id as usize].as_str();
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(range) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut last = range.start;
                for (at, _) in text[range.clone()].match_indices(needle) {
                    let at = range.start + at;
                    if at > last {
                        next.push(Fragment::Text(last..at));
                    }
                    next.push(Fragment::Token(id));
                    last = at + needle.len();
                }
                if last < range.end {
                    next.push(Fragment::Text(last..range.end));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// Fills the piece cache (llama.cpp's `token_to_piece_for_cache`).
    fn build_pieces(&mut self) {
        let is_bpe = matches!(self.model, Model::Bpe(_));
        for (text, &a) in self.texts.iter().zip(&self.attrs) {
            if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
                self.pieces.extend_from_slice(text.as_bytes());
            } else if a & attr::NORMAL != 0 {
                if is_bpe {
                    decode_byte_level(text, &mut self.pieces);
                } else {
                    self.pieces
                        .extend_from_slice(text.replace('▁', " ").as_bytes());
                }
            } else if a & attr::BYTE != 0 {
                self.pieces.push(parse_byte_token(text));
            }
            self.piece_ends.push(self.pieces.len());
        }
    }
}

/// Undoes GPT-2's byte-to-character mapping (llama.cpp's `llama_decode_text`, including its
/// marker for characters that stand for no byte).
fn decode_byte_level(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match bpe::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// The byte of a `<0xNN>` token: `strtol(text.substr(3, 2), 16)`, 0 where that reads nothing.
fn parse_byte_token(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or_default();
    let mut value = 0u8;
    for &d in digits.iter().take(2) {
        match (d as char).to_digit(16) {
            Some(v) => value = value * 16 + v as u8,
            None => break,
        }
    }
    value
}

/// llama.cpp's `clean_spaces` passes over detokenized text (`clean_up_tokenization_spaces`):
/// drop the space before `?!.,`, around a lone `'`, and before `'s 'm 're 've`. Ported loop
/// for loop, in place, because the passes read bytes the previous iteration rewrote.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // first pass: " ?", " !", " .", " ,"
    let total1 = text.len();
    let mut total = usize::from(total1 > 0);
    for i in 1..total1 {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    // second pass: strip a single apostrophe between spaces, " ' "
    let total2 = total;
    total = usize::from(total2 > 0);
    let mut i = 1;
    while i < total2 {
        let x = text[i];
        if x == b'\'' && i + 1 < total2 && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    // third pass: " 's", " 'm", " 're", " 've" (llama.cpp keeps " 't", " 'd", " 'll")
    let total3 = total;
    total = usize::from(total3 > 0);
    for i in 1..total3 {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < total3 {
            let x1 = text[i + 1];
            if matches!(x1, b's' | b'm') {
                total -= 1;
            } else if i + 2 < total3 {
                let x2 = text[i + 2];
                if matches!((x1, x2), (b'r', b'e') | (b'v', b'e')) {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// A byte trie of the special token texts, to find in one pass which of them occur in a text.
#[derive(Debug, Default)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// Rank (position in `special_order`) of the token ending here.
    rank: Option<u32>,
}

impl Trie {
    fn insert(&mut self, key: &[u8], rank: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut node = 0usize;
        for &b in key {
            let children = &self.nodes[node].children;
            node = match children.binary_search_by_key(&b, |&(c, _)| c) {
                Ok(i) => children[i].1 as usize,
                Err(i) => {
                    let child = self.nodes.len();
                    self.nodes[node].children.insert(i, (b, child as u32));
                    self.nodes.push(TrieNode::default());
                    child
                }
            };
        }
        self.nodes[node].rank.get_or_insert(rank);
    }

    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&b, |&(c, _)| c)
            .ok()
            .map(|i| children[i].1 as usize)
    }

    /// `present[rank]`: whether that token occurs anywhere in `text`.
    fn occurring(&self, text: &[u8], n: usize) -> Vec<bool> {
        let mut present = vec![false; n];
        if self.nodes.is_empty() {
            return present;
        }
        for start in 0..text.len() {
            let mut node = 0;
            for &b in &text[start..] {
                match self.child(node, b) {
                    Some(next) => node = next,
                    None => break,
                }
                if let Some(rank) = self.nodes[node].rank {
                    present[rank as usize] = true;
                }
            }
        }
        present
    }
}

#[cfg(test)]
mod tests;
