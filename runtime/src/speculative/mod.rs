//! Speculative decoding: a cheap drafter proposes the next few tokens, the target checks them
//! all in one batched pass (the prompt path, [`Llama::forward_batch`]) and keeps the longest
//! prefix it agrees with, plus one token of its own. A decode step of a small model on a CPU
//! is bound by reading the weights, so checking five tokens costs little more than computing
//! one.
//!
//! **The output never depends on the draft.** Greedy: a drafted token is kept only when it is
//! the target's argmax at that position, and the batched logits are bit-identical to
//! token-by-token ones, so the text is the text of plain decoding, token for token (tested).
//! Sampling: [`Sampler::accept_draft`] keeps the target's distribution exactly.
//!
//! The KV cache needs no undo: it is indexed by position, attention reads only positions up to
//! the current one, and the next pass overwrites what a rejected token left behind.
//!
//! Two drafters: [`DraftModel`] (a small model with the same vocabulary, `--draft`) and
//! [`PromptLookup`] (n-grams of the text so far, `--lookup`). The number of drafted tokens
//! adapts to how many were kept ([`DraftLength`]).

mod draft_model;
mod lookup;

pub use draft_model::{DraftModel, Drafted};
pub use lookup::PromptLookup;

use crate::model::{Llama, ModelError};
use crate::sampler::{argmax, Sampler, Verdict};
use crate::threads::Pool;

/// Where drafts come from.
#[derive(Debug)]
pub enum Drafter<'a> {
    Model(Box<DraftModel<'a>>),
    Lookup(PromptLookup),
}

impl Drafter<'_> {
    fn draft(&mut self, history: &[u32], k: usize, pool: &Pool) -> Result<Drafted, ModelError> {
        match self {
            Drafter::Model(m) => m.draft(history, k, pool),
            Drafter::Lookup(l) => Ok(Drafted {
                tokens: l.draft(history, k),
                dists: Vec::new(),
            }),
        }
    }

    /// A new conversation: forget what the draft model cached.
    pub fn reset(&mut self) {
        if let Drafter::Model(m) = self {
            m.reset();
        }
    }

    /// The first guess at how many tokens to draft.
    fn initial_length(&self) -> usize {
        match self {
            Drafter::Model(_) => 4,
            Drafter::Lookup(_) => 6,
        }
    }
}

/// How many tokens to draft next: two more after a draft kept whole, one fewer after a
/// rejection (the schedule of Hugging Face's assisted generation), within `1..=max`.
#[derive(Debug, Clone, Copy)]
pub struct DraftLength {
    pub current: usize,
    pub max: usize,
}

impl DraftLength {
    fn update(&mut self, drafted: usize, kept: usize) {
        self.current = if kept == drafted {
            (self.current + 2).min(self.max)
        } else {
            self.current.saturating_sub(1).max(1)
        };
    }
}

/// Counts of a speculative run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecStats {
    /// Tokens proposed by the drafter and checked by the target.
    pub drafted: u64,
    /// Of those, tokens the target kept.
    pub accepted: u64,
    /// Batched passes of the target that checked a draft.
    pub verify_passes: u64,
    /// Single-token passes of the target (no draft to check).
    pub plain_passes: u64,
}

impl SpecStats {
    /// The share of drafted tokens kept (0 when nothing was drafted).
    pub fn acceptance(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

/// Which tokens may come next (structured output, `crate::json_constraint`). The decode loop
/// asks before it takes a token and tells the filter every token it takes, in order.
pub trait TokenFilter {
    /// Whether `token` may come next.
    fn allows(&self, token: u32) -> bool;
    /// `token` was taken.
    fn accept(&mut self, token: u32);
}

/// The next token from `logits`: the sampler's choice, among the tokens `filter` allows when
/// there is one (greedy: the likeliest allowed token; sampling: the sampler's distribution
/// restricted to allowed tokens, else the likeliest allowed one). `None` when no token is
/// allowed.
pub fn choose(
    sampler: &mut Sampler,
    logits: &[f32],
    filter: Option<&dyn TokenFilter>,
) -> Option<u32> {
    let Some(filter) = filter else {
        return Some(sampler.sample(logits));
    };
    if !sampler.is_greedy() {
        let allowed: Vec<(f32, u32)> = sampler
            .distribution(logits)
            .iter()
            .copied()
            .filter(|&(_, t)| filter.allows(t))
            .collect();
        if !allowed.is_empty() {
            return Some(sampler.draw_from(&allowed));
        }
    }
    likeliest_allowed(logits, filter)
}

/// The filtered distribution `choose` draws from (for speculative sampling's test): the
/// sampler's, restricted to allowed tokens and renormalized; the likeliest allowed token with
/// certainty when none of the sampler's candidates is allowed.
fn filtered_distribution(
    sampler: &mut Sampler,
    logits: &[f32],
    filter: Option<&dyn TokenFilter>,
) -> Vec<(f32, u32)> {
    let dist = sampler.distribution(logits).to_vec();
    let Some(filter) = filter else {
        return dist;
    };
    let mut allowed: Vec<(f32, u32)> = dist
        .into_iter()
        .filter(|&(_, t)| filter.allows(t))
        .collect();
    let total: f32 = allowed.iter().map(|x| x.0).sum();
    if allowed.is_empty() || total <= 0.0 {
        return likeliest_allowed(logits, filter).map_or_else(Vec::new, |t| vec![(1.0, t)]);
    }
    for x in &mut allowed {
        x.0 /= total;
    }
    allowed
}

/// The allowed token with the largest logit: the argmax first (usually allowed), then the rest
/// in order of their logits.
fn likeliest_allowed(logits: &[f32], filter: &dyn TokenFilter) -> Option<u32> {
    let best = argmax(logits);
    if filter.allows(best) {
        return Some(best);
    }
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    order.into_iter().find(|&t| filter.allows(t))
}

/// What the caller says after each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The generation loop, with or without a drafter. The prompt's logits (`first_logits`) are
/// computed and every token of `history` is in the target's cache; tokens are appended to
/// `history` as they are generated and each is handed to `on_token`, which may stop the run
/// (a stop string, a client gone). Ends at an end-of-generation token (`is_eog`, not handed
/// on), after `n_predict` tokens, when the context is full, or when `filter` allows no token.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    target: &mut Llama<'_>,
    pool: &Pool,
    sampler: &mut Sampler,
    mut drafter: Option<&mut Drafter<'_>>,
    mut filter: Option<&mut dyn TokenFilter>,
    history: &mut Vec<u32>,
    first_logits: &[f32],
    n_predict: usize,
    is_eog: impl Fn(u32) -> bool,
    mut on_token: impl FnMut(u32) -> Flow,
) -> Result<SpecStats, ModelError> {
    let n_ctx = target.state.n_ctx;
    let n_vocab = target.config.n_vocab;
    let mut stats = SpecStats::default();
    if first_logits.is_empty() || n_predict == 0 {
        return Ok(stats);
    }
    let mut length = DraftLength {
        current: drafter.as_ref().map_or(0, |d| d.initial_length()),
        max: 16,
    };
    let mut n_gen = 0;
    // The next token, chosen but not yet in the target's cache.
    let Some(mut next) = choose(sampler, first_logits, filter.as_deref()) else {
        return Ok(stats);
    };
    let mut verify_logits: Vec<f32> = Vec::new();
    loop {
        if is_eog(next) {
            return Ok(stats);
        }
        if let Some(f) = filter.as_deref_mut() {
            f.accept(next);
        }
        n_gen += 1;
        history.push(next);
        if on_token(next) == Flow::Stop || n_gen == n_predict {
            return Ok(stats);
        }
        let pos = history.len() - 1;
        if pos >= n_ctx {
            return Ok(stats);
        }
        // Draft no further than the tokens still wanted and the context allow.
        let room = (n_predict - n_gen).min(n_ctx - pos - 1);
        let drafted = match drafter.as_deref_mut() {
            Some(d) if room > 0 => d.draft(history, length.current.min(room), pool)?,
            _ => Drafted::default(),
        };
        if drafted.tokens.is_empty() {
            stats.plain_passes += 1;
            let logits = target.forward(next, pos, pool)?;
            match choose(sampler, logits, filter.as_deref()) {
                Some(t) => next = t,
                None => return Ok(stats),
            }
            continue;
        }
        // One pass over `next` and the draft: row i holds the logits after token i.
        let k = drafted.tokens.len();
        let mut batch = Vec::with_capacity(k + 1);
        batch.push(next);
        batch.extend_from_slice(&drafted.tokens);
        verify_logits.clear();
        verify_logits.reserve((k + 1) * n_vocab);
        target.forward_batch(&batch, pos, pool, 0, |_, l| {
            verify_logits.extend_from_slice(l);
            Ok::<(), ModelError>(())
        })?;
        stats.verify_passes += 1;
        stats.drafted += k as u64;
        let rows: Vec<&[f32]> = verify_logits.chunks_exact(n_vocab).collect();
        let mut kept = 0;
        let mut replacement = None;
        for (i, &d) in drafted.tokens.iter().enumerate() {
            let verdict = if sampler.is_greedy() {
                let best = match filter.as_deref() {
                    None => Some(argmax(rows[i])),
                    Some(f) => likeliest_allowed(rows[i], f),
                };
                match best {
                    Some(best) if best == d => Verdict::Accept,
                    Some(best) => Verdict::Replace(best),
                    None => return Ok(stats),
                }
            } else {
                let p = filtered_distribution(sampler, rows[i], filter.as_deref());
                if p.is_empty() {
                    return Ok(stats);
                }
                let q = drafted.dists.get(i).map(Vec::as_slice);
                sampler.accept_draft(&p, d, q)
            };
            match verdict {
                Verdict::Accept => {
                    kept += 1;
                    stats.accepted += 1;
                    if is_eog(d) {
                        return Ok(stats);
                    }
                    if let Some(f) = filter.as_deref_mut() {
                        f.accept(d);
                    }
                    n_gen += 1;
                    history.push(d);
                    if on_token(d) == Flow::Stop || n_gen == n_predict {
                        return Ok(stats);
                    }
                }
                Verdict::Replace(t) => {
                    replacement = Some(t);
                    break;
                }
            }
        }
        length.update(k, kept);
        // Every drafted token kept: the last row gives one more token for free.
        next = match replacement {
            Some(t) => t,
            None => match choose(sampler, rows[k], filter.as_deref()) {
                Some(t) => t,
                None => return Ok(stats),
            },
        };
    }
}
