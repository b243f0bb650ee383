//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), as llama.cpp's
//! `llm_tokenizer_spm_session`: start from single characters and keep merging the adjacent pair
//! whose concatenation is the highest-scoring token (ties: leftmost first). Characters left
//! over that are not tokens fall back to `<0xNN>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// A candidate merge of `left` with the symbol after it.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

// Max-heap order of llama.cpp's `llm_bigram_spm::comparator`: higher score first, then the
// smaller `left`. Scores are canonicalised when the tokenizer is built (no -0.0), so `total_cmp`
// orders them as C++'s `<` does, and NaN cannot break the heap.
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    /// Byte length; 0 once merged into the left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Appends the tokens of `text` (whitespace already escaped to `▁`). `score` gives a token's
/// score, `byte_token` the token for a byte with no token of its own.
pub fn tokenize(
    text: &str,
    token_to_id: &HashMap<String, u32>,
    score: impl Fn(u32) -> f32,
    byte_token: impl Fn(u8) -> Option<u32>,
    out: &mut Vec<u32>,
) {
    let n = text.chars().count();
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n).then_some(i + 1),
        })
        .collect();
    let mut queue = BinaryHeap::new();
    let try_add =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
            let (l, r) = (symbols[left], symbols[right]);
            let pair = &text[l.start..l.start + l.len + r.len];
            if let Some(&id) = token_to_id.get(pair) {
                queue.push(Bigram {
                    score: score(id),
                    left,
                    right,
                    len: pair.len(),
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, i - 1, i);
    }
    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // Outdated: one side was merged since the pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
            continue;
        }
        symbols[bigram.left].len += r.len;
        symbols[bigram.left].next = r.next;
        symbols[bigram.right].len = 0;
        if let Some(next) = r.next {
            symbols[next].prev = Some(bigram.left);
        }
        if let Some(prev) = l.prev {
            try_add(&mut queue, &symbols, prev, bigram.left);
        }
        if let Some(next) = r.next {
            try_add(&mut queue, &symbols, bigram.left, next);
        }
    }
    // Every merged symbol is a token; a single character may not be, and then its bytes are
    // emitted (llama.cpp's `resegment`).
    for sym in symbols.iter().filter(|s| s.len > 0) {
        let piece = &text[sym.start..sym.start + sym.len];
        match token_to_id.get(piece) {
            Some(&id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(&byte_token)),
        }
    }
}
