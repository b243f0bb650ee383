//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), as llama.cpp's `llm_tokenizer_bpe_session`:
//! pre-tokenize into words, map every byte of a word to its GPT-2 stand-in character, then merge
//! adjacent symbols lowest rank first (ties: leftmost first) until no ranked pair is left.

use super::pretokenize::PreConfig;
use super::TokenizerError;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes
/// (controls, space, `0x7f..=0xa0`, `0xad`) are moved to U+0100.. in byte order.
pub const BYTE_TO_CHAR: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        let cp = if printable {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        table[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    table
};

/// Inverse of [`BYTE_TO_CHAR`]: the byte a stand-in character encodes.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && BYTE_TO_CHAR[cp as usize] == c {
        return Some(cp as u8);
    }
    if (256..256 + 68).contains(&cp) {
        return BYTE_TO_CHAR.iter().position(|&m| m == c).map(|b| b as u8);
    }
    None
}

/// Token id of a symbol that is no token (a merge result missing from the vocabulary).
const NO_TOKEN: u32 = u32::MAX;

/// Merge table of a BPE vocabulary.
#[derive(Debug)]
pub struct Bpe {
    pub config: PreConfig,
    /// (left id, right id) -> (rank, id of the merged symbol). A merged symbol that is not in
    /// the vocabulary gets an id past its end, so later merges can still refer to it.
    ranks: HashMap<(u32, u32), (u32, u32)>,
    n_tokens: u32,
}

impl Bpe {
    /// Reads `tokenizer.ggml.merges`: one `"left right"` per line, rank = line number. As in
    /// llama.cpp, the split is at the first space after the first byte, and a repeated pair
    /// keeps its first rank.
    pub fn new(
        config: PreConfig,
        merges: &[String],
        token_to_id: &HashMap<String, u32>,
        n_tokens: u32,
    ) -> Result<Bpe, TokenizerError> {
        let mut ranks = HashMap::with_capacity(merges.len());
        let mut extra: HashMap<String, u32> = HashMap::new();
        for (index, merge) in merges.iter().enumerate() {
            let split = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let Some(pos) = split else {
                return Err(TokenizerError::MalformedMerge {
                    index,
                    merge: merge.clone(),
                });
            };
            let (left, right) = (&merge[..pos], &merge[pos + 1..]);
            let id_of = |part: &str| {
                token_to_id
                    .get(part)
                    .copied()
                    .ok_or_else(|| TokenizerError::MergeMissingToken {
                        index,
                        merge: merge.clone(),
                        token: part.to_string(),
                    })
            };
            let (left_id, right_id) = (id_of(left)?, id_of(right)?);
            let merged = [left, right].concat();
            let merged_id = match token_to_id.get(&merged) {
                Some(&id) => id,
                None => {
                    let next = n_tokens.saturating_add(extra.len() as u32);
                    *extra.entry(merged).or_insert(next)
                }
            };
            ranks
                .entry((left_id, right_id))
                .or_insert((index as u32, merged_id));
        }
        Ok(Bpe {
            config,
            ranks,
            n_tokens,
        })
    }

    /// Appends the tokens of one fragment of raw text (no special tokens in it).
    pub fn tokenize(&self, text: &str, token_to_id: &HashMap<String, u32>, out: &mut Vec<u32>) {
        let mut session = Session::default();
        let mut encoded = String::new();
        for word in self.config.split.split(text) {
            encoded.clear();
            encoded.extend(
                text.as_bytes()[word]
                    .iter()
                    .map(|&b| BYTE_TO_CHAR[b as usize]),
            );
            if self.config.ignore_merges {
                if let Some(&id) = token_to_id.get(encoded.as_str()) {
                    out.push(id);
                    continue;
                }
            }
            session.merge_word(self, &encoded, token_to_id);
            for sym in session.symbols.iter().filter(|s| s.len > 0) {
                if sym.id < self.n_tokens {
                    out.push(sym.id);
                    continue;
                }
                // Not a token: llama.cpp looks each byte of the symbol up as a one-byte token.
                let piece = &encoded[sym.start..sym.start + sym.len];
                for b in piece.bytes().filter(u8::is_ascii) {
                    if let Some(&id) = token_to_id.get(char::from(b).encode_utf8(&mut [0; 4])) {
                        out.push(id);
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    /// Byte span in the encoded word; `len == 0` once merged into its left neighbour.
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
    /// Token id (or merged-symbol id past the vocabulary), [`NO_TOKEN`] if neither.
    id: u32,
}

/// A candidate merge: ordered by rank, then by position (the heap pops the smallest).
type Bigram = Reverse<(u32, usize, usize, usize)>; // (rank, left, right, byte length)

/// Buffers reused from word to word.
#[derive(Default)]
struct Session {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

impl Session {
    fn merge_word(&mut self, bpe: &Bpe, word: &str, token_to_id: &HashMap<String, u32>) {
        self.symbols.clear();
        self.queue.clear();
        let n = word.chars().count();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let text = &word[start..start + c.len_utf8()];
            self.symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
                id: token_to_id.get(text).copied().unwrap_or(NO_TOKEN),
            });
        }
        for i in 1..self.symbols.len() {
            self.add_bigram(bpe, i - 1, i);
        }
        while let Some(Reverse((_, left, right, len))) = self.queue.pop() {
            let (l, r) = (self.symbols[left], self.symbols[right]);
            // Outdated: one side was merged since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != len {
                continue;
            }
            let Some(&(_, merged)) = bpe.ranks.get(&(l.id, r.id)) else {
                continue;
            };
            self.symbols[left].len += r.len;
            self.symbols[left].id = merged;
            self.symbols[left].next = r.next;
            self.symbols[right].len = 0;
            if let Some(next) = r.next {
                self.symbols[next].prev = Some(left);
            }
            if let Some(prev) = l.prev {
                self.add_bigram(bpe, prev, left);
            }
            if let Some(next) = r.next {
                self.add_bigram(bpe, left, next);
            }
        }
    }

    fn add_bigram(&mut self, bpe: &Bpe, left: usize, right: usize) {
        let (l, r) = (&self.symbols[left], &self.symbols[right]);
        if let Some(&(rank, _)) = bpe.ranks.get(&(l.id, r.id)) {
            self.queue.push(Reverse((rank, left, right, l.len + r.len)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_stand_ins_are_gpt2s() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[b'a' as usize], 'a');
        assert_eq!(BYTE_TO_CHAR[0xad], 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(BYTE_TO_CHAR[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('中'), None);
    }
}
