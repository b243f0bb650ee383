//! Prompt lookup: draft by copying what followed the last few tokens the last time they
//! appeared (Saxena 2023, llama.cpp's `lookup` example). No second model, no cost per drafted
//! token: it pays where the output repeats its input — summaries, code edits, quotes.

/// Settings of an n-gram search.
#[derive(Debug, Clone, Copy)]
pub struct PromptLookup {
    /// The shortest suffix matched (a single token matches too often to be worth verifying).
    pub min_ngram: usize,
    /// The longest suffix matched; longer matches are tried first.
    pub max_ngram: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        PromptLookup {
            min_ngram: 2,
            max_ngram: 4,
        }
    }
}

impl PromptLookup {
    /// Up to `k` tokens that followed the most recent earlier occurrence of the longest suffix
    /// of `history` (from `max_ngram` down to `min_ngram` tokens) found again in `history`.
    /// Empty when no suffix recurs.
    pub fn draft(&self, history: &[u32], k: usize) -> Vec<u32> {
        let len = history.len();
        for n in (self.min_ngram.max(1)..=self.max_ngram).rev() {
            if n >= len {
                continue;
            }
            let suffix = &history[len - n..];
            // The most recent match first: the text nearby is the likeliest to repeat.
            for start in (0..len - n).rev() {
                if &history[start..start + n] == suffix {
                    let from = start + n;
                    return history[from..(from + k).min(len)].to_vec();
                }
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_what_followed_the_longest_recent_match() {
        let lookup = PromptLookup::default();
        // "... 1 2 3 4 5 ... 9 2 3 4 7 8 ... 2 3 4" -> the most recent "2 3 4" was followed by 7 8.
        let h = [1, 2, 3, 4, 5, 6, 9, 2, 3, 4, 7, 8, 0, 2, 3, 4];
        assert_eq!(lookup.draft(&h, 3), [7, 8, 0]);
        // "1 2 3 4" (4 tokens) beats the more recent 3-token match.
        let h = [1, 2, 3, 4, 5, 6, 2, 3, 4, 9, 1, 2, 3, 4];
        assert_eq!(lookup.draft(&h, 2), [5, 6]);
        // No suffix of two or more tokens recurs: nothing drafted.
        assert!(lookup.draft(&[1, 2, 3, 4, 5, 1], 4).is_empty());
        assert!(lookup.draft(&[], 4).is_empty());
        // A match near the end drafts what there is.
        assert_eq!(lookup.draft(&[7, 7, 7], 5), [7]);
    }
}
