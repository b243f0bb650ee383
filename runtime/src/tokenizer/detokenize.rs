//! Token ids back to bytes: the piece of each token (llama.cpp's `token_to_piece`) and the
//! clean-up of the joined text (its `detokenize`).

use super::{attr, bpe, Model, Tokenizer};

impl Tokenizer {
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

    /// Fills the piece cache (llama.cpp's `token_to_piece_for_cache`).
    pub(super) fn build_pieces(&mut self) {
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
pub(super) fn parse_byte_token(text: &str) -> u8 {
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
pub(super) fn clean_up_spaces(text: &mut Vec<u8>) {
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
