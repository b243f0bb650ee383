//! A draft model: a smaller, faster model with the target's vocabulary (the planner makes one
//! from the target itself by dropping layers and lowering bits) that proposes the next few
//! tokens, one cheap forward pass each.

use crate::model::{Llama, ModelError};
use crate::sampler::{Sampler, SamplerConfig};
use crate::threads::Pool;
use crate::tokenizer::Tokenizer;

/// A draft model and what its KV cache holds.
#[derive(Debug)]
pub struct DraftModel<'a> {
    model: Llama<'a>,
    /// The tokens whose keys and values the draft's cache holds, position by position.
    cached: Vec<u32>,
    sampler: Sampler,
    /// Stop drafting when the draft's own probability of its greedy choice falls below this
    /// (llama.cpp's `--draft-p-min`): an unsure draft is usually a rejected one.
    pub p_min: f32,
    scratch: Vec<f32>,
}

/// What a draft proposes: tokens and, when sampling, the distribution each was drawn from.
#[derive(Debug, Default)]
pub struct Drafted {
    pub tokens: Vec<u32>,
    /// `dists[i]` is the draft's distribution for `tokens[i]` (empty when greedy).
    pub dists: Vec<Vec<(f32, u32)>>,
}

impl<'a> DraftModel<'a> {
    /// `model` drafts for a target using `target_vocab`; refused unless both vocabularies are the
    /// same token for token (a draft's token ids must mean the target's).
    pub fn new(
        model: Llama<'a>,
        draft_vocab: &Tokenizer,
        target_vocab: &Tokenizer,
        sampling: SamplerConfig,
    ) -> Result<Self, String> {
        let (nd, nt) = (draft_vocab.n_tokens(), target_vocab.n_tokens());
        if nd != nt {
            return Err(format!(
                "the draft's vocabulary has {nd} tokens, the target's {nt}: a draft must share the target's vocabulary"
            ));
        }
        if let Some(id) =
            (0..nt as u32).find(|&i| draft_vocab.token_text(i) != target_vocab.token_text(i))
        {
            return Err(format!(
                "the draft's token {id} is {:?}, the target's {:?}: a draft must share the target's vocabulary",
                draft_vocab.token_text(id).unwrap_or(""),
                target_vocab.token_text(id).unwrap_or("")
            ));
        }
        Ok(DraftModel {
            model,
            cached: Vec::new(),
            // The draft draws with the target's settings from its own stream of numbers.
            sampler: Sampler::new(SamplerConfig {
                seed: sampling.seed ^ 0xd4af_7000,
                ..sampling
            }),
            p_min: 0.5,
            scratch: Vec::new(),
        })
    }

    /// The context the draft's cache was made for.
    pub fn n_ctx(&self) -> usize {
        self.model.state.n_ctx
    }

    /// Forget the cache (a new prompt).
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// Up to `k` tokens continuing `history`. The cache keeps the longest prefix it shares
    /// with `history` (what the target rejected last time is rolled back), the rest of
    /// `history` is fed as one batch, then one pass per drafted token.
    pub fn draft(&mut self, history: &[u32], k: usize, pool: &Pool) -> Result<Drafted, ModelError> {
        let mut out = Drafted::default();
        if k == 0 || history.is_empty() {
            return Ok(out);
        }
        let keep = self
            .cached
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            .min(history.len() - 1);
        self.cached.truncate(keep);
        let fresh = &history[keep..];
        let last = fresh.len() - 1;
        let scratch = &mut self.scratch;
        self.model.forward_batch(fresh, keep, pool, last, |_, l| {
            scratch.clear();
            scratch.extend_from_slice(l);
            Ok::<(), ModelError>(())
        })?;
        self.cached.extend_from_slice(fresh);
        let n_ctx = self.model.state.n_ctx;
        loop {
            let greedy = self.sampler.is_greedy();
            let token = if greedy {
                let (token, p) = top_probability(&self.scratch);
                // Always propose one token: the target checks it in the same pass as its own.
                if p < self.p_min && !out.tokens.is_empty() {
                    break;
                }
                token
            } else {
                let dist = self.sampler.distribution(&self.scratch).to_vec();
                let token = self.sampler.sample_from_last();
                out.dists.push(dist);
                token
            };
            out.tokens.push(token);
            let pos = self.cached.len();
            if out.tokens.len() == k || pos >= n_ctx {
                break;
            }
            let logits = self.model.forward(token, pos, pool)?;
            self.scratch.clear();
            self.scratch.extend_from_slice(logits);
            self.cached.push(token);
        }
        Ok(out)
    }
}

/// The most likely token and its softmax probability.
fn top_probability(logits: &[f32]) -> (u32, f32) {
    let best = crate::sampler::argmax(logits);
    let max = logits.get(best as usize).copied().unwrap_or(0.0);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (best, 1.0 / sum.max(1.0))
}
