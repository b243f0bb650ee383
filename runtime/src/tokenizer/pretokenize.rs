//! Pre-tokenization of byte-level BPE vocabularies: the regex splits that `tokenizer.ggml.pre`
//! selects, written out by hand as llama.cpp's `src/unicode.cpp` writes them.
//!
//! llama.cpp gives each pre-tokenizer a list of regexes and applies them one after another, each
//! splitting the pieces the previous one produced. Its hand-written splitters (`gpt2`, `llama3`)
//! are not exact regex engines (`\s*[\r\n]+` and the `(?!\S)` look-ahead are approximated), so
//! this file ports their control flow line by line rather than the regexes: matching llama.cpp
//! token for token matters more than matching the regex. Positions count code points, as there.

use super::unicode_tables::{CLASS_RANGES, LETTER, NUMBER, WHITESPACE};
use core::ops::Range;

/// The split rules of one `tokenizer.ggml.pre` family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// `\p{N}` (every digit on its own), then the GPT-2 split: StarCoder, SmolLM, Refact.
    DigitsGpt2,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Llama3,
}

/// What a BPE vocabulary's `tokenizer.ggml.pre` value means in llama.cpp
/// (`llama_vocab::impl::load`): the split, and the flags that come with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreConfig {
    pub split: PreTokenizer,
    /// A word that is itself a token is emitted whole, without running merges.
    pub ignore_merges: bool,
    /// The default of `tokenizer.ggml.add_bos_token` when the file does not set it.
    pub add_bos: bool,
    /// Detokenization removes spaces before punctuation (`" ,"` -> `","`).
    pub clean_spaces: bool,
}

impl PreConfig {
    /// The configuration llama.cpp picks for `pre`, or `None` for a value this tokenizer does
    /// not implement.
    pub fn from_name(pre: &str) -> Option<PreConfig> {
        let (split, ignore_merges, add_bos, clean_spaces) = match pre {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (PreTokenizer::Llama3, true, true, true),
            "dbrx" | "smaug-bpe" => (PreTokenizer::Llama3, false, false, true),
            "smollm" | "command-r" => (PreTokenizer::DigitsGpt2, false, false, false),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (PreTokenizer::DigitsGpt2, false, false, true)
            }
            "gpt-2" | "phi-2" | "mpt" | "olmo" | "exaone4" => {
                (PreTokenizer::Gpt2, false, false, true)
            }
            _ => return None,
        };
        Some(PreConfig {
            split,
            ignore_merges,
            add_bos,
            clean_spaces,
        })
    }
}

// Flags of one code point, as llama.cpp's `unicode_cpt_flags` (only the bits used here).
const F_LETTER: u8 = 1;
const F_NUMBER: u8 = 2;
const F_WHITESPACE: u8 = 4;
/// Set for every code point: llama.cpp's `flags.as_uint() != 0`, which is false only outside
/// the piece being split.
const F_DEFINED: u8 = 8;

const fn class_flags(cp: u32) -> u8 {
    // Binary search: the last range whose start is <= cp (the first range starts at 0).
    let (mut lo, mut hi) = (0usize, CLASS_RANGES.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if CLASS_RANGES[mid] >> 2 <= cp {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut flags = F_DEFINED;
    match CLASS_RANGES[lo] & 3 {
        LETTER => flags |= F_LETTER,
        NUMBER => flags |= F_NUMBER,
        _ => {}
    }
    let mut i = 0;
    while i < WHITESPACE.len() {
        if WHITESPACE[i] == cp {
            flags |= F_WHITESPACE;
        }
        i += 1;
    }
    flags
}

const ASCII_FLAGS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut cp = 0;
    while cp < 128 {
        table[cp] = class_flags(cp as u32);
        cp += 1;
    }
    table
};

fn flags_of(c: char) -> u8 {
    match ASCII_FLAGS.get(c as usize) {
        Some(&f) => f,
        None => class_flags(c as u32),
    }
}

/// Whether llama.cpp counts `c` as a number (`\p{N}`).
fn is_number(c: char) -> bool {
    flags_of(c) & F_NUMBER != 0
}

impl PreTokenizer {
    /// Splits `text` into words, returned as byte ranges of `text` that cover it in order.
    pub fn split(self, text: &str) -> Vec<Range<usize>> {
        let cps: Vec<char> = text.chars().collect();
        let whole = [cps.len()];
        let lens = match self {
            PreTokenizer::Gpt2 => split_gpt2(&cps, &whole),
            PreTokenizer::DigitsGpt2 => split_gpt2(&cps, &split_numbers(&cps, &whole)),
            PreTokenizer::Llama3 => split_llama3(&cps, &whole),
        };
        let mut words = Vec::with_capacity(lens.len());
        let mut chars = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(core::iter::once(text.len()));
        let mut start = chars.next().unwrap_or(0);
        for len in lens {
            let end = chars.nth(len - 1).unwrap_or(text.len());
            words.push(start..end);
            start = end;
        }
        words
    }
}

/// The code points of one piece (`ini..end`) of the text being split, with llama.cpp's
/// out-of-piece conventions: code point `None` (`OUT_OF_RANGE`) and flags 0.
struct Piece<'a> {
    cps: &'a [char],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Piece<'_> {
    fn cpt(&self, pos: usize) -> Option<char> {
        (self.ini <= pos && pos < self.end).then(|| self.cps[pos])
    }

    fn flags(&self, pos: usize) -> u8 {
        self.cpt(pos).map_or(0, flags_of)
    }

    /// Ends the current word at `end`; returns its length (llama.cpp's `_add_token`).
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

/// Runs `split_piece` over each piece named by `lens` (lengths in code points).
fn for_each_piece(cps: &[char], lens: &[usize], split_piece: fn(&mut Piece<'_>)) -> Vec<usize> {
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &len in lens {
        let mut piece = Piece {
            cps,
            ini: start,
            end: start + len,
            prev_end: start,
            out: &mut out,
        };
        split_piece(&mut piece);
        start += len;
    }
    out
}

/// `\p{N}`, which llama.cpp runs through `std::regex`: each number is a word of its own, and
/// each run between numbers is one word.
fn split_numbers(cps: &[char], lens: &[usize]) -> Vec<usize> {
    for_each_piece(cps, lens, |p| {
        for pos in p.ini..p.end {
            if is_number(p.cps[pos]) {
                p.add(pos);
                p.add(pos + 1);
            }
        }
        p.add(p.end);
    })
}

/// Port of `unicode_regex_split_custom_gpt2`.
fn split_gpt2(cps: &[char], lens: &[usize]) -> Vec<usize> {
    for_each_piece(cps, lens, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let cpt = p.cps[pos];
            let flags = p.flags(pos);

            // 's|'t|'re|'ve|'m|'ll|'d
            if cpt == '\'' && pos + 1 < p.end {
                let next = p.cps[pos + 1];
                if matches!(next, 's' | 't' | 'm' | 'd') {
                    pos += p.add(pos + 2);
                    continue;
                }
                if pos + 2 < p.end {
                    let next_next = p.cps[pos + 2];
                    if matches!((next, next_next), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        pos += p.add(pos + 3);
                        continue;
                    }
                }
            }

            let mut flags2 = if cpt == ' ' { p.flags(pos + 1) } else { flags };
            // <space>?\p{L}+
            if flags2 & F_LETTER != 0 {
                pos += usize::from(cpt == ' ');
                while flags2 & F_LETTER != 0 {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            // <space>?\p{N}+
            if flags2 & F_NUMBER != 0 {
                pos += usize::from(cpt == ' ');
                while flags2 & F_NUMBER != 0 {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+
            let other = |f: u8| f & (F_WHITESPACE | F_LETTER | F_NUMBER) == 0 && f != 0;
            if other(flags2) {
                pos += usize::from(cpt == ' ');
                while other(flags2) {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }

            let mut num_whitespaces = 0;
            while p.flags(pos + num_whitespaces) & F_WHITESPACE != 0 {
                num_whitespaces += 1;
            }
            // \s+(?!\S)
            if num_whitespaces > 1 && p.cpt(pos + num_whitespaces).is_some() {
                pos += num_whitespaces - 1;
                p.add(pos);
                continue;
            }
            // \s+
            if num_whitespaces > 0 {
                pos += num_whitespaces;
                p.add(pos);
                continue;
            }
            // no match
            pos += 1;
            p.add(pos);
        }
    })
}

/// Port of `unicode_regex_split_custom_llama3`.
fn split_llama3(cps: &[char], lens: &[usize]) -> Vec<usize> {
    for_each_piece(cps, lens, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let cpt = p.cps[pos];
            let flags = p.flags(pos);

            // (?i:'s|'t|'re|'ve|'m|'ll|'d). llama.cpp lowercases with its Unicode table; the
            // only non-ASCII code points it maps into ASCII (U+0130, U+212A) map to 'i' and
            // 'k', which no contraction uses, so ASCII lowercasing is the same here.
            if cpt == '\'' && pos + 1 < p.end {
                let next = p.cps[pos + 1].to_ascii_lowercase();
                if matches!(next, 's' | 't' | 'm' | 'd') {
                    pos += p.add(pos + 2);
                    continue;
                }
                if pos + 2 < p.end {
                    let next_next = p.cps[pos + 2].to_ascii_lowercase();
                    if matches!((next, next_next), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        pos += p.add(pos + 3);
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(cpt == '\r' || cpt == '\n' || flags & F_NUMBER != 0)
                && (flags & F_LETTER != 0 || p.flags(pos + 1) & F_LETTER != 0)
            {
                pos += 1;
                while p.flags(pos) & F_LETTER != 0 {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }

            // \p{N}{1,3}
            if flags & F_NUMBER != 0 {
                let mut ini = pos;
                while p.flags(pos) & F_NUMBER != 0 {
                    pos += 1;
                    if pos - ini >= 3 {
                        p.add(pos);
                        ini = pos;
                    }
                }
                p.add(pos);
                continue;
            }

            // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the flags of `cpt` itself, not
            // of the code point after the space, for being defined; kept as it is)
            let mut flags2 = if cpt == ' ' { p.flags(pos + 1) } else { flags };
            if flags2 & (F_WHITESPACE | F_LETTER | F_NUMBER) == 0 && flags != 0 {
                pos += usize::from(cpt == ' ');
                while flags2 & (F_WHITESPACE | F_LETTER | F_NUMBER) == 0 && flags2 != 0 {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                while matches!(p.cpt(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }

            let mut num_whitespaces = 0;
            let mut last_end_r_or_n = 0;
            while p.flags(pos + num_whitespaces) & F_WHITESPACE != 0 {
                if matches!(p.cpt(pos + num_whitespaces), Some('\r' | '\n')) {
                    last_end_r_or_n = pos + num_whitespaces + 1;
                }
                num_whitespaces += 1;
            }
            // \s*[\r\n]+
            if last_end_r_or_n > 0 {
                pos = last_end_r_or_n;
                p.add(pos);
                continue;
            }
            // \s+(?!\S)
            if num_whitespaces > 1 && p.cpt(pos + num_whitespaces).is_some() {
                pos += num_whitespaces - 1;
                p.add(pos);
                continue;
            }
            // \s+
            if num_whitespaces > 0 {
                pos += num_whitespaces;
                p.add(pos);
                continue;
            }
            // no match
            pos += 1;
            p.add(pos);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pre: PreTokenizer, text: &str, expect: &[&str]) {
        let words: Vec<&str> = pre.split(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(words, expect, "{pre:?} split of {text:?}");
    }

    #[test]
    fn unicode_classes_follow_llama_cpp() {
        let is = |c: char, flag: u8| flags_of(c) & flag != 0;
        assert!(is('a', F_LETTER) && is('é', F_LETTER) && is('中', F_LETTER) && !is('1', F_LETTER));
        assert!(is('7', F_NUMBER) && is('٣', F_NUMBER) && is('½', F_NUMBER) && !is('x', F_NUMBER));
        assert!(
            is(' ', F_WHITESPACE) && is('\u{3000}', F_WHITESPACE) && is('\u{a0}', F_WHITESPACE)
        );
        assert!(!is('\u{200b}', F_WHITESPACE) && !is('😀', F_LETTER | F_NUMBER));
        assert!(is('😀', F_DEFINED) && is('\u{10ffff}', F_DEFINED));
    }

    #[test]
    fn gpt2_words() {
        use PreTokenizer::Gpt2;
        check(Gpt2, "Hello world", &["Hello", " world"]);
        check(
            Gpt2,
            "I'm here, don't",
            &["I", "'m", " here", ",", " don", "'t"],
        );
        check(Gpt2, "a   b", &["a", "  ", " b"]);
        check(Gpt2, "end  ", &["end", "  "]);
        check(Gpt2, "x\n\ny", &["x", "\n", "\n", "y"]);
        check(Gpt2, "1234 ab12", &["1234", " ab", "12"]);
        check(Gpt2, " ...!? 😀", &[" ...!?", " 😀"]);
        check(Gpt2, "", &[]);
    }

    #[test]
    fn smollm_isolates_every_digit() {
        use PreTokenizer::DigitsGpt2;
        check(
            DigitsGpt2,
            "in 2024, x",
            &["in", " ", "2", "0", "2", "4", ",", " x"],
        );
        check(DigitsGpt2, "a1b", &["a", "1", "b"]);
    }

    #[test]
    fn llama3_words() {
        use PreTokenizer::Llama3;
        check(Llama3, "Hello world", &["Hello", " world"]);
        check(Llama3, "I'M here", &["I", "'M", " here"]);
        check(Llama3, "1234567", &["123", "456", "7"]);
        check(Llama3, "x  \n\n y", &["x", "  \n\n", " y"]);
        check(Llama3, "(hello)", &["(hello", ")"]);
        check(Llama3, "a ...\n\nb", &["a", " ...\n\n", "b"]);
        check(Llama3, "a   b", &["a", "  ", " b"]);
    }
}
