//! Special tokens: which ids are BOS/EOS/EOG and which tokens are control tokens (llama.cpp's
//! `llama_vocab::impl::load`), and cutting them out of the text before tokenization (its
//! `tokenizer_st_partition`).

use super::{attr, SpecialIds};
use std::collections::HashMap;
use std::ops::Range;

/// Token texts that end a turn or the text: llama.cpp makes them control tokens and
/// end-of-generation tokens whatever the file says.
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

/// End-of-turn texts llama.cpp recognises when the file names no EOT id.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle texts llama.cpp recognises when the file names no id for them:
/// prefix, suffix, middle, pad, repo, file separator.
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

/// The special ids in force and the end-of-generation tokens, given the model's defaults and
/// the file's ids. Adjusts `attrs` where llama.cpp overrides the file's token types.
pub fn resolve(
    defaults: SpecialIds,
    file: SpecialIds,
    token_to_id: &HashMap<String, u32>,
    attrs: &mut [u16],
) -> (SpecialIds, Vec<u32>) {
    let n = attrs.len();
    // The file's ids replace the defaults when in range; defaults out of range are dropped.
    let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
    let mut special = defaults;
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

    // Ids the file does not give are recognised by their text and become control tokens.
    // Where several texts of one kind exist, llama.cpp takes whichever its hash map yields
    // first; this takes the lowest id.
    let find = |names: &[&str]| {
        names
            .iter()
            .filter_map(|t| token_to_id.get(*t).copied())
            .min()
    };
    let by_text = [
        (&mut special.eot, EOT_TEXTS),
        (&mut special.eom, &["<|eom_id|>"][..]),
        (&mut special.fim_pre, FIM_TEXTS[0]),
        (&mut special.fim_suf, FIM_TEXTS[1]),
        (&mut special.fim_mid, FIM_TEXTS[2]),
        (&mut special.fim_pad, FIM_TEXTS[3]),
        (&mut special.fim_rep, FIM_TEXTS[4]),
        (&mut special.fim_sep, FIM_TEXTS[5]),
    ];
    for (slot, names) in by_text {
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
    // o200k_harmony / solar-open: "<|end|>" ends no generation next to these.
    let eog_id = |t: &str| token_to_id.get(t).copied().filter(|id| eog.contains(id));
    let has = |t: &str| eog_id(t).is_some();
    if (has("<|return|>") || has("<|flush|>")) && (has("<|call|>") || has("<|calls|>")) {
        if let Some(end) = eog_id("<|end|>") {
            eog.retain(|&id| id != end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
    }
    eog.sort_unstable();
    eog.dedup();
    (special, eog)
}

/// A stretch of the input: plain text (a byte range) or a special token cut out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

/// The control, user-defined and unknown tokens, in the order they are cut out of a text.
#[derive(Debug)]
pub struct SpecialTokens {
    /// Longest text first. llama.cpp sorts with an unstable sort by length; ties only matter
    /// when equally long special tokens overlap in a text, and then this keeps id order.
    order: Vec<u32>,
    trie: Trie,
}

impl SpecialTokens {
    pub fn new(texts: &[String], attrs: &[u16]) -> SpecialTokens {
        let special = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut order: Vec<u32> = (0..texts.len() as u32)
            .filter(|&id| attrs[id as usize] & special != 0)
            .collect();
        order.sort_by_key(|&id| std::cmp::Reverse(texts[id as usize].len()));
        let mut trie = Trie::default();
        for (rank, &id) in order.iter().enumerate() {
            trie.insert(texts[id as usize].as_bytes(), rank as u32);
        }
        SpecialTokens { order, trie }
    }

    /// Cuts the special tokens out of `text`, longest first, each at its leftmost
    /// non-overlapping occurrences in what is still plain text. Control and unknown tokens only
    /// with `parse_special`; user-defined ones always.
    pub fn partition(
        &self,
        text: &str,
        parse_special: bool,
        texts: &[String],
        attrs: &[u16],
    ) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut fragments = vec![Fragment::Text(0..text.len())];
        // One pass over the text finds which special tokens occur at all; only those need the
        // search below (Gemma 3 has 6,414 special tokens).
        let present = self.trie.occurring(text.as_bytes(), self.order.len());
        for (rank, &id) in self.order.iter().enumerate() {
            if !present[rank]
                || !parse_special && attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0
            {
                continue;
            }
            let needle = texts[id as usize].as_str();
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
    /// Rank (position in `SpecialTokens::order`) of the token ending here.
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
