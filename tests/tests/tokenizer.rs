//! Differential tests of `runtime::tokenizer` against llama.cpp (through llama-cpp-2, the model
//! loaded vocabulary-only): the same GGUF metadata must give the same token ids, pieces,
//! attributes and detokenized text. SmolLM2 covers byte-level BPE (`gpt2`, pre `smollm`),
//! Gemma 3 covers SentencePiece (`llama`, byte fallback, 6,414 special tokens).

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use runtime::tokenizer::{attr, Tokenizer};
use sintra_tests::{data_file, gemma3_270m_q4_k_m, llama, smollm2_q4_1};
use std::path::Path;
use std::sync::OnceLock;

/// Our tokenizer and llama.cpp's, from one file.
struct Pair {
    name: &'static str,
    ours: Tokenizer,
    llama: LlamaModel,
}

fn load(name: &'static str, path: &Path) -> Pair {
    let file = formats::gguf::GgufFile::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let ours = Tokenizer::from_gguf(&file.header)
        .unwrap_or_else(|e| panic!("{name}: our tokenizer refuses the vocabulary: {e}"));
    let params = LlamaModelParams::default().with_vocab_only(true);
    let llama = LlamaModel::load_from_file(llama::backend(), path, &params)
        .unwrap_or_else(|e| panic!("{name}: llama.cpp cannot load the vocabulary: {e}"));
    Pair { name, ours, llama }
}

fn smollm2() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| load("SmolLM2", &smollm2_q4_1()))
}

fn gemma3() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| load("Gemma 3", &gemma3_270m_q4_k_m()))
}

/// SmolLM2's vocabulary under another `tokenizer.ggml.pre` (and without `add_bos_token`, so the
/// pre-tokenizer's default applies): a GGUF of metadata only, which llama.cpp loads
/// vocabulary-only. Tests the Llama 3 and GPT-2 splits, `ignore_merges` and the clean-up of
/// spaces on real merges without a model that uses them.
fn smollm2_as(pre: &'static str) -> Pair {
    let source = formats::gguf::GgufFile::open(smollm2_q4_1()).expect("SmolLM2 GGUF");
    let mut writer = formats::gguf::GgufWriter::new();
    for (key, value) in &source.header.metadata {
        writer.set(key, value.clone());
    }
    writer.set(
        "tokenizer.ggml.pre",
        formats::gguf::Value::String(pre.into()),
    );
    writer.remove("tokenizer.ggml.add_bos_token");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(format!("smollm2-vocab-{pre}.gguf"));
    writer
        .write_to_path(&path, |_, _, _| Ok(()))
        .expect("write vocabulary GGUF");
    let name = match pre {
        "llama-bpe" => "SmolLM2 vocabulary as llama-bpe",
        "gpt-2" => "SmolLM2 vocabulary as gpt-2",
        _ => pre,
    };
    load(name, &path)
}

fn eval_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| std::fs::read_to_string(data_file("eval.txt")).expect("eval.txt"))
}

impl Pair {
    fn llama_encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let tokens = self
            .llama
            .vocab()
            .tokenize(text.as_bytes(), add_special, parse_special);
        tokens.iter().map(|t| t.0 as u32).collect()
    }

    fn llama_detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        if ids.is_empty() {
            return Vec::new(); // llama-cpp-2 underflows its size estimate on no tokens
        }
        let tokens: Vec<LlamaToken> = ids.iter().map(|&id| LlamaToken(id as i32)).collect();
        self.llama
            .vocab()
            .detokenize(&tokens, remove_special, unparse_special)
    }

    /// Encodes `text` both ways and fails with the first differing token in context.
    fn check_encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let ours = self.ours.encode(text, add_special, parse_special);
        let theirs = self.llama_encode(text, add_special, parse_special);
        if ours != theirs {
            let at = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
            let show = |ids: &[u32]| -> Vec<String> {
                let window = &ids[at.saturating_sub(3)..(at + 4).min(ids.len())];
                let piece =
                    |&id: &u32| String::from_utf8_lossy(self.ours.token_to_piece(id)).into_owned();
                window
                    .iter()
                    .map(|id| format!("{id}:{:?}", piece(id)))
                    .collect()
            };
            let before = String::from_utf8_lossy(&self.ours.detokenize(&ours[..at], false, true))
                .into_owned();
            let context: String = before
                .chars()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{}: tokens differ from llama.cpp (add_special={add_special}, parse_special={parse_special}) \
                 at token {at} of {} (llama.cpp: {}), after {context:?}\n  ours:      {:?}\n  llama.cpp: {:?}",
                self.name,
                ours.len(),
                theirs.len(),
                show(&ours),
                show(&theirs),
            );
        }
        ours
    }

    /// Our detokenization of `ids` equals llama.cpp's for every flag combination.
    fn check_detokenize(&self, ids: &[u32]) {
        for (remove_special, unparse_special) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let ours = self.ours.detokenize(ids, remove_special, unparse_special);
            let theirs = self.llama_detokenize(ids, remove_special, unparse_special);
            if ours != theirs {
                let at = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
                panic!(
                    "{}: detokenized text differs from llama.cpp (remove_special={remove_special}, \
                     unparse_special={unparse_special}) at byte {at}: ours {:?}, llama.cpp {:?}",
                    self.name,
                    String::from_utf8_lossy(&ours[at.saturating_sub(20)..(at + 20).min(ours.len())]),
                    String::from_utf8_lossy(&theirs[at.saturating_sub(20)..(at + 20).min(theirs.len())]),
                );
            }
        }
    }

    fn check_eval_text(&self) {
        let text = eval_text();
        for (add_special, parse_special) in [(true, true), (false, false)] {
            let ids = self.check_encode(text, add_special, parse_special);
            let ours = time(|| self.ours.encode(text, add_special, parse_special));
            let theirs = time(|| self.llama_encode(text, add_special, parse_special));
            eprintln!(
                "{}: eval.txt ({} bytes) -> {} tokens, identical to llama.cpp \
                 (add_special={add_special}, parse_special={parse_special}); \
                 encode {ours:.1} ms, llama.cpp {theirs:.1} ms",
                self.name,
                text.len(),
                ids.len()
            );
            self.check_detokenize(&ids);
        }
    }

    /// `decode(encode(text)) == text`. Holds for vocabularies that do not clean up spaces when
    /// detokenizing (SmolLM2's `smollm`, Gemma 3); for the others llama.cpp's detokenize drops
    /// the space in `" ,"` and the like, and `check_detokenize` holds us to that instead.
    fn check_round_trip(&self) {
        let text = eval_text();
        let ids = self.ours.encode(text, true, true);
        assert!(
            self.ours.decode(&ids) == text,
            "{}: decode(encode(eval.txt)) is not eval.txt",
            self.name
        );
        // A literal `▁` cannot survive SentencePiece, which writes spaces as `▁`.
        for text in TRICKY.iter().filter(|t| !t.contains('▁')) {
            let decoded = self.ours.decode(&self.ours.encode(text, true, true));
            assert_eq!(&decoded, text, "{}: decode(encode(text))", self.name);
        }
    }

    fn check_strings(&self, strings: &[&str]) {
        for text in strings {
            for (add_special, parse_special) in [(true, true), (false, true), (false, false)] {
                let ids = self.check_encode(text, add_special, parse_special);
                self.check_detokenize(&ids);
            }
        }
    }

    /// Every token's piece, attributes and end-of-generation flag, and the special ids.
    fn check_vocab(&self) {
        let vocab = self.llama.vocab();
        assert_eq!(
            self.ours.n_tokens(),
            vocab.n_tokens() as usize,
            "{}: vocabulary size",
            self.name
        );
        let kinds = attr::UNKNOWN | attr::NORMAL | attr::CONTROL | attr::USER_DEFINED | attr::BYTE;
        for id in 0..self.ours.n_tokens() as u32 {
            let token = LlamaToken(id as i32);
            let piece = vocab.token_to_piece(token, true, None);
            assert_eq!(
                self.ours.token_to_piece(id),
                piece,
                "{}: piece of token {id}",
                self.name
            );
            let theirs = vocab.attr(token).0.bits() as u16 & kinds;
            assert_eq!(
                self.ours.token_attr(id) & kinds,
                theirs,
                "{}: attributes of token {id}",
                self.name
            );
            assert_eq!(
                self.ours.is_eog(id),
                vocab.is_eog(token),
                "{}: is_eog({id})",
                self.name
            );
        }
        let special = self.ours.special_ids();
        assert_eq!(
            special.bos.map(|id| id as i32),
            Some(vocab.bos().0),
            "{}: bos",
            self.name
        );
        assert_eq!(
            special.eos.map(|id| id as i32),
            Some(vocab.eos().0),
            "{}: eos",
            self.name
        );
        let eot = Some(vocab.eot().0).filter(|&id| id >= 0);
        assert_eq!(special.eot.map(|id| id as i32), eot, "{}: eot", self.name);
        assert_eq!(
            self.ours.add_bos(),
            vocab.should_add_bos(),
            "{}: add_bos",
            self.name
        );
    }
}

/// Milliseconds `f` takes (one run; the test profile, not a benchmark).
fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let start = std::time::Instant::now();
    std::hint::black_box(f());
    start.elapsed().as_secs_f64() * 1e3
}

/// Hand-picked hard cases: special tokens inline, whitespace runs, digit runs, contractions,
/// scripts with and without letters/numbers in llama.cpp's tables.
const TRICKY: &[&str] = &[
    "",
    " ",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<|im_start|",
    "<<|im_end|>>",
    "<unused0><unused12>",
    "<bos>hello<eos>",
    "multiple   spaces    here     ",
    "   leading and trailing   ",
    "line\nbreaks\n\n\nand\r\nwindows\r\n\r\n \n \n",
    "\t\ttabs\t and \u{b}vertical\u{c}",
    "digits 1 12 123 1234 12345 1234567890 3.14159 1,000,000",
    "fullwidth １２３ arabic ٣٤٥ fractions ½ ¾ superscript ²",
    "contractions: I'm, you're, they've, it's, we'll, he'd, don't, I'M, YOU'RE, 'S",
    "accented: café naïve résumé über Ærø ß Œuvre",
    "combining: e\u{301} a\u{308} n\u{303}",
    "CJK: 你好，世界！日本語のテキスト。한국어 텍스트",
    "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "mixed:\u{a0}nbsp\u{3000}ideographic\u{2009}thin\u{200b}zero-width",
    "code: fn main() { println!(\"{}\", x[0] + 1); } // comment",
    "symbols: $100 +5 <=> ^_^ ~/path | a&&b || c #tag @user 50% ...!!??",
    "Ġ▁ĊĠĠ literal stand-ins",
    "\u{7f}\u{1}\u{0}control",
    "Привет мир. Γειά σου κόσμε. שלום עולם. مرحبا بالعالم. नमस्ते दुनिया",
];

/// Deterministic random strings stitched from pieces that stress the splitters.
fn random_strings(n: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "word",
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\r\n",
        "\t",
        "1",
        "23",
        "4567",
        "'s",
        "'LL",
        "'",
        "!",
        "...",
        ",",
        "é",
        "ß",
        "中文",
        "😀",
        "👨‍👩‍👧",
        "\u{a0}",
        "\u{3000}",
        "٣",
        "½",
        "<|im_start|>",
        "<|im_end|>",
        "<unused0>",
        "<start_of_turn>",
        "<eos>",
        "a\u{301}",
        "–",
        "\u{200b}",
        "Ġ",
        "▁",
        "<",
        "|",
        ">",
        "<0x0A>",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 1 + next() % 24;
            (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect()
        })
        .collect()
}

#[test]
fn smollm2_eval_text_matches_llama_cpp() {
    smollm2().check_eval_text();
    smollm2().check_round_trip();
}

#[test]
fn smollm2_tricky_strings_match_llama_cpp() {
    smollm2().check_strings(TRICKY);
    let random = random_strings(300);
    smollm2().check_strings(&random.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn smollm2_vocabulary_matches_llama_cpp() {
    smollm2().check_vocab();
}

#[test]
fn gemma3_eval_text_matches_llama_cpp() {
    gemma3().check_eval_text();
    gemma3().check_round_trip();
}

#[test]
fn gemma3_tricky_strings_match_llama_cpp() {
    gemma3().check_strings(TRICKY);
    let random = random_strings(300);
    gemma3().check_strings(&random.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn gemma3_vocabulary_matches_llama_cpp() {
    gemma3().check_vocab();
}

#[test]
fn llama3_split_on_smollm2_vocabulary_matches_llama_cpp() {
    let pair = smollm2_as("llama-bpe");
    assert!(pair.ours.add_bos(), "llama-bpe adds BOS by default");
    pair.check_eval_text();
    pair.check_strings(TRICKY);
    let random = random_strings(300);
    pair.check_strings(&random.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn gpt2_split_on_smollm2_vocabulary_matches_llama_cpp() {
    let pair = smollm2_as("gpt-2");
    pair.check_eval_text();
    pair.check_strings(TRICKY);
    let random = random_strings(300);
    pair.check_strings(&random.iter().map(String::as_str).collect::<Vec<_>>());
}
