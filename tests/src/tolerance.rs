//! sintra-rt's forward pass held to llama.cpp's by tolerance, on the kernel table a test selects
//! (issues #14 and #15): teacher-forced top-1 agreement and perplexity over windows of text, and
//! greedy generation from prompts, on the same file and tokens in both.

use crate::llama;
use formats::gguf::GgufFile;
use runtime::model::{KvType, Llama};
use runtime::perplexity::{perplexity, PplOptions};
use runtime::threads::Pool;
use runtime::tokenizer::Tokenizer;
use std::path::Path;

/// Teacher-forced evaluation of `path` on `tokens`: `n_chunks` windows of `n_ctx` tokens (the
/// first replaced by `bos`), the second half of each scored, as llama.cpp's perplexity tool
/// does. Top-1 agreement is taken against llama.cpp's token-by-token path, perplexity against
/// its batched path (as its perplexity tool computes it).
///
/// **The bars are llama.cpp's own consistency, where that is worse than 99% and 0.3%.** Every
/// activation is quantized to 8 bits before each product, so a change of float order anywhere
/// (an ulp in one sum) moves some activation across a rounding boundary, and the difference
/// grows layer by layer up to the activation-quantization noise: llama.cpp's own batched and
/// token-by-token paths, which sum in different orders, agree on 95-98% of top-1 tokens on
/// SmolLM2's files, and so does our scalar oracle with our AVX2 table. A fast path can do no
/// better than that without reproducing one of them bit for bit; it must do no worse.
/// Perplexity likewise: llama.cpp's two paths differ by up to 0.52% on SmolLM2's files, and a
/// change of order moves ours by 0.1-0.4% either way. So: top-1 agreement at least
/// min(99%, llama.cpp's batch-vs-sequential agreement - 1 point), and our perplexity within
/// 0.5% of llama.cpp's by at least one of its two paths; whether 0.3% holds is printed.
///
/// With `strict` (the exact tables, which keep llama.cpp's arithmetic), the bars are the flat
/// 99% and 0.5% from llama.cpp's token-by-token path.
pub fn teacher_forced(
    label: &str,
    path: &Path,
    tokens: &[u32],
    bos: Option<u32>,
    (n_ctx, n_chunks): (usize, usize),
    strict: bool,
) {
    Reference::new(path, tokens, bos, (n_ctx, n_chunks)).check(label, strict);
}

/// llama.cpp's side of [`teacher_forced`], computed once for checks on several kernel tables.
#[derive(Debug)]
pub struct Reference<'a> {
    path: &'a Path,
    tokens: &'a [u32],
    bos: Option<u32>,
    n_ctx: usize,
    n_chunks: usize,
    /// Per scored position: llama.cpp's batched NLL and top-1, its token-by-token ones.
    nll: Vec<f64>,
    top1_batch: Vec<u32>,
    nll_seq: Vec<f64>,
    top1_seq: Vec<u32>,
}

/// Panics unless `tokens` fill `n_chunks` windows of `n_ctx`.
fn enough_tokens(path: &Path, tokens: &[u32], (n_ctx, n_chunks): (usize, usize)) {
    assert!(
        tokens.len() >= n_ctx * n_chunks,
        "{}: only {} tokens for {n_chunks} windows of {n_ctx}",
        path.display(),
        tokens.len()
    );
}

impl<'a> Reference<'a> {
    pub fn new(
        path: &'a Path,
        tokens: &'a [u32],
        bos: Option<u32>,
        (n_ctx, n_chunks): (usize, usize),
    ) -> Self {
        enough_tokens(path, tokens, (n_ctx, n_chunks));
        let sequential =
            llama::teacher_forced_sequential(path, tokens, bos, n_ctx, n_chunks).unwrap();
        Self::with_sequential(path, tokens, bos, (n_ctx, n_chunks), sequential)
    }

    /// [`Self::new`] with llama.cpp's token-by-token side already computed (per scored
    /// position, its NLL and top-1: what [`llama::teacher_forced_sequential`] gives, as
    /// [`llama::greedy_windows`] gives it for the windows it makes).
    pub fn with_sequential(
        path: &'a Path,
        tokens: &'a [u32],
        bos: Option<u32>,
        (n_ctx, n_chunks): (usize, usize),
        (nll_seq, top1_seq): llama::Scored,
    ) -> Self {
        enough_tokens(path, tokens, (n_ctx, n_chunks));
        let (nll, top1_batch) =
            llama::teacher_forced(path, tokens, bos, n_ctx, n_chunks, 2).unwrap();
        Reference {
            path,
            tokens,
            bos,
            n_ctx,
            n_chunks,
            nll,
            top1_batch,
            nll_seq,
            top1_seq,
        }
    }

    /// Issue #15's check of a model on both kinds of kernel table: on the exact tables
    /// (llama.cpp's arithmetic) [`Self::check`] and [`greedy`] with their strict bars, then on
    /// the default table with issue #14's tolerance and the greedy tokens shown.
    pub fn check_both_tables(&self, label: &str) {
        // llama.cpp's generations do not depend on our table: made once for both.
        let theirs = llama_greedy(self.path, &PROMPTS, 64);
        for strict in [true, false] {
            let _exact = strict.then(crate::exact_kernels);
            let _selected = (!strict).then(crate::kernels_as_selected);
            self.check(label, strict);
            let agreed = greedy_against(label, self.path, &theirs, strict);
            eprintln!("{label} greedy on {}: {agreed:?}", kernels::isa_name());
        }
    }

    /// sintra-rt on the active kernel table against this reference, with [`teacher_forced`]'s
    /// bars.
    pub fn check(&self, label: &str, strict: bool) {
        let Reference {
            path,
            tokens,
            bos,
            n_ctx,
            n_chunks,
            ..
        } = *self;
        let (nll, nll_seq) = (&self.nll, &self.nll_seq);
        let (top1_batch, top1_seq) = (&self.top1_batch, &self.top1_seq);
        let ppl = |nll: &[f64]| (nll.iter().sum::<f64>() / nll.len() as f64).exp();
        let (ppl_ref, ppl_seq) = (ppl(nll), ppl(nll_seq));
        let file = GgufFile::open(path).unwrap();
        let mut model = Llama::new(&file, n_ctx, KvType::F16).unwrap();
        let opts = PplOptions {
            n_ctx,
            max_chunks: Some(n_chunks),
        };
        let ours = perplexity(
            &mut model,
            tokens,
            bos,
            &opts,
            None,
            None,
            &Pool::new(2),
            |_, _, _| {},
        )
        .unwrap();

        assert_eq!(ours.top1.len(), top1_seq.len(), "{label}: scored positions");
        let rate = |a: &[u32], b: &[u32]| {
            a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / b.len() as f64
        };
        let (agree, own) = (rate(&ours.top1, top1_seq), rate(top1_batch, top1_seq));
        let first_diff = ours.top1.iter().zip(top1_seq).position(|(a, b)| a != b);
        let rel = ours.ppl / ppl_ref - 1.0;
        let own_rel = ppl_seq / ppl_ref - 1.0;
        let nearest = rel.abs().min((ours.ppl / ppl_seq - 1.0).abs());
        eprintln!(
            "{label} on {}: {} positions, top-1 agreement {:.2}% (first scored position with another \
             top-1: {first_diff:?}; llama.cpp batch vs token-by-token {:.2}%), PPL ours {:.4} \
             llama.cpp {:.4} ({:+.3}%; llama.cpp token-by-token {:.4}, {:+.3}%); {:.3}% from the \
             nearer of llama.cpp's two paths (0.3%: {})",
            kernels::isa_name(),
            ours.n_scored,
            agree * 100.0,
            own * 100.0,
            ours.ppl,
            ppl_ref,
            rel * 100.0,
            ppl_seq,
            own_rel * 100.0,
            nearest * 100.0,
            if nearest <= 0.003 { "met" } else { "NOT met" }
        );
        assert!(
            ours.n_scored >= 2000,
            "{label}: {} positions",
            ours.n_scored
        );
        let top1_bar = if strict { 0.99 } else { (own - 0.01).min(0.99) };
        let nearest = if strict {
            (ours.ppl / ppl_seq - 1.0).abs()
        } else {
            nearest
        };
        assert!(
            agree >= top1_bar,
            "{label}: top-1 agreement {:.2}% < {:.2}% (llama.cpp's own {:.2}%)",
            agree * 100.0,
            top1_bar * 100.0,
            own * 100.0
        );
        assert!(
            nearest <= 0.005,
            "{label}: PPL {:.4} vs llama.cpp {:.4} batched ({:+.3}%) and {:.4} token by token: more \
             than 0.5% from both (strict: from the latter)",
            ours.ppl,
            ppl_ref,
            rel * 100.0,
            ppl_seq
        );
    }
}

/// The prompts greedy generation is compared on.
pub const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
];

/// What a tie is: two logits this close are ordered by rounding alone.
pub const NEAR_TIE: f32 = 1e-3;

/// `n` greedy tokens after each of `prompts`, by llama.cpp (token by token on 2 threads) and by
/// sintra-rt on the active kernel table. With `strict` (the exact tables): identical, or
/// diverging only at a near-tie, where the two candidates' logits are within [`NEAR_TIE`] of
/// each other in llama.cpp's logits or in ours. Otherwise (the default tables, which sum in
/// their own order and accumulate attention in f32, not in llama.cpp's f16) where and how they
/// diverge is printed: the two candidates' margins in our logits, in llama.cpp's token-by-token
/// ones and in its batched ones (the same tokens as one batch, another order of sums: a choice
/// llama.cpp's own two paths disagree on is a tie at its own precision). Returns, per prompt,
/// how many tokens agreed and how many llama.cpp generated.
pub fn greedy(
    label: &str,
    path: &Path,
    prompts: &[&str],
    n: usize,
    strict: bool,
) -> Vec<(usize, usize)> {
    greedy_against(label, path, &llama_greedy(path, prompts, n), strict)
}

/// llama.cpp's side of [`greedy`]: per prompt, the prompt, how many tokens were asked and what
/// [`llama::generate_greedy_gaps`] gave (tokens, each one's margin over the runner-up, text).
#[derive(Debug)]
struct LlamaGreedy<'p> {
    prompt: &'p str,
    /// How many tokens were asked for.
    n: usize,
    tokens: Vec<i32>,
    gaps: Vec<f32>,
    text: String,
}

/// `n` greedy tokens after each of `prompts` by llama.cpp (token by token on 2 threads).
fn llama_greedy<'p>(path: &Path, prompts: &[&'p str], n: usize) -> Vec<LlamaGreedy<'p>> {
    prompts
        .iter()
        .map(|&prompt| {
            let (tokens, gaps, text) = llama::generate_greedy_gaps(path, prompt, n, 2).unwrap();
            LlamaGreedy {
                prompt,
                n,
                tokens,
                gaps,
                text,
            }
        })
        .collect()
}

/// [`greedy`] against llama.cpp's generations made beforehand.
fn greedy_against(
    label: &str,
    path: &Path,
    theirs: &[LlamaGreedy<'_>],
    strict: bool,
) -> Vec<(usize, usize)> {
    let file = GgufFile::open(path).unwrap();
    let tok = Tokenizer::from_gguf(&file.header).unwrap();
    let pool = Pool::new(2);
    let mut agreed = Vec::new();
    for reference in theirs {
        let LlamaGreedy {
            prompt,
            n,
            tokens: want,
            gaps,
            text: want_text,
        } = reference;
        let tokens = tok.encode(prompt, tok.add_bos(), true);
        // llama.cpp's context (`generate_greedy`'s 512 cells: it picks LongRoPE's factors).
        let mut model = Llama::new(&file, 512.max(tokens.len() + n + 1), KvType::F16).unwrap();
        let mut logits = Vec::new();
        for (pos, &t) in tokens.iter().enumerate() {
            logits = model.forward(t, pos, &pool).unwrap().to_vec();
        }
        let mut got = Vec::new();
        for (i, &theirs) in want.iter().enumerate() {
            let theirs = theirs as u32;
            let next = runtime::sampler::argmax(&logits);
            if next != theirs {
                let ours_gap = logits[next as usize] - logits[theirs as usize];
                let their_gap = gaps[i];
                let mut seq = tokens.clone();
                seq.extend(want[..i].iter().map(|&t| t as u32));
                let batched = llama::batch_logits(path, &seq, 2).unwrap();
                let last = batched.last().unwrap();
                let batch_gap = last[theirs as usize] - last[next as usize];
                let text = tok.decode(&got);
                eprintln!(
                    "{label} {prompt:?}: token {i}: sintra-rt {next}, llama.cpp {theirs}; margin \
                     {ours_gap:.2e} in our logits, {their_gap:.2e} in llama.cpp's token-by-token \
                     ones, {batch_gap:.2e} in its batched ones"
                );
                assert!(
                    !strict || ours_gap.min(their_gap) <= NEAR_TIE,
                    "{label} {prompt:?}: token {i} is {next}, llama.cpp's {theirs}: no near-tie \
                     (margins {ours_gap:.2e} ours, {their_gap:.2e} llama.cpp's token by token, \
                     {batch_gap:.2e} batched). So far: {text:?}, llama.cpp: {want_text:?}"
                );
                break;
            }
            got.push(next);
            if tok.is_eog(next) {
                break;
            }
            logits = model
                .forward(next, tokens.len() + i, &pool)
                .unwrap()
                .to_vec();
        }
        eprintln!(
            "{label} on {}: {prompt:?} -> {:?} ({} of {} tokens as llama.cpp's)",
            kernels::isa_name(),
            tok.decode(&got),
            got.len(),
            want.len()
        );
        agreed.push((got.len(), want.len()));
    }
    agreed
}
