//! Next-token choice: greedy, or temperature with top-k and top-p (nucleus) filtering, seeded.

/// Sampling settings; `temp <= 0` means greedy.
#[derive(Debug, Clone, Copy)]
pub struct SamplerConfig {
    pub temp: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1.0 = all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 0x5eed,
        }
    }
}

#[derive(Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: u64,
    candidates: Vec<(f32, u32)>,
}

/// Index of the largest logit; the first on ties (as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        Sampler {
            cfg,
            rng: cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
            candidates: Vec::new(),
        }
    }

    fn uniform(&mut self) -> f32 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Whether this sampler always takes the most likely token.
    pub fn is_greedy(&self) -> bool {
        self.cfg.temp <= 0.0
    }

    /// The next token: the most likely one when greedy, else drawn from [`Self::distribution`].
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() {
            return argmax(logits);
        }
        self.distribution(logits);
        self.draw()
    }

    /// The distribution sampling draws from (temperature, then top-k, then top-p), as
    /// `(probability, token)` pairs, most likely first, summing to 1. Kept in the sampler until
    /// the next call. Greedy sampling's distribution is the argmax with probability 1.
    pub fn distribution(&mut self, logits: &[f32]) -> &[(f32, u32)] {
        let c = &mut self.candidates;
        c.clear();
        if self.cfg.temp <= 0.0 {
            c.push((1.0, argmax(logits)));
            return c;
        }
        c.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        if self.cfg.top_k > 0 && self.cfg.top_k < c.len() {
            // Only the k best need sorting.
            c.select_nth_unstable_by(self.cfg.top_k - 1, |a, b| b.0.total_cmp(&a.0));
            c.truncate(self.cfg.top_k);
        }
        c.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let Some(&(max, _)) = c.first() else {
            return c;
        };
        let mut sum = 0.0;
        for x in c.iter_mut() {
            x.0 = ((x.0 - max) / self.cfg.temp).exp();
            sum += x.0;
        }
        let mut cum = 0.0;
        let n = c.len();
        let mut keep = n;
        for (i, x) in c.iter_mut().enumerate() {
            x.0 /= sum;
            cum += x.0;
            if cum >= self.cfg.top_p && keep == n {
                keep = i + 1;
            }
        }
        c.truncate(keep);
        let total: f32 = c.iter().map(|x| x.0).sum();
        for x in c.iter_mut() {
            x.0 /= total;
        }
        c
    }

    /// A token drawn from the distribution the last [`Self::distribution`] computed.
    pub fn sample_from_last(&mut self) -> u32 {
        self.draw()
    }

    /// A token drawn from `dist` (`(weight, token)` pairs; weights need not sum to 1).
    pub fn draw_from(&mut self, dist: &[(f32, u32)]) -> u32 {
        let total: f32 = dist.iter().map(|x| x.0).sum();
        let u = self.uniform() * total;
        draw_from_unnormalized(dist, u)
    }

    fn draw(&mut self) -> u32 {
        let u = self.uniform();
        draw_from(&self.candidates, u)
    }

    /// Speculative sampling's test of a drafted token `d` against the target's distribution
    /// `p` (from [`Self::distribution`] on the target's logits), the draft having drawn `d`
    /// from `q` (`None`: a deterministic draft, such as prompt lookup, that proposed `d` with
    /// certainty). Keeps `d` with probability `min(1, p(d)/q(d))`; otherwise returns a token
    /// drawn from the residual `max(0, p - q)`, renormalized. Either way the token that results
    /// is distributed exactly as `p` (Leviathan et al. 2023, Chen et al. 2023), so a draft
    /// changes the speed and never the output distribution.
    pub fn accept_draft(&mut self, p: &[(f32, u32)], d: u32, q: Option<&[(f32, u32)]>) -> Verdict {
        let prob =
            |dist: &[(f32, u32)], t: u32| dist.iter().find(|x| x.1 == t).map_or(0.0, |x| x.0);
        let p_d = prob(p, d);
        let q_d = q.map_or(1.0, |q| prob(q, d));
        if q_d > 0.0 && self.uniform() < p_d / q_d {
            return Verdict::Accept;
        }
        // The residual: p less q, clamped at zero. A deterministic draft's q is all on `d`.
        let mut residual: Vec<(f32, u32)> = p
            .iter()
            .map(|&(pp, t)| {
                let qq = match q {
                    Some(q) => prob(q, t),
                    None if t == d => 1.0,
                    None => 0.0,
                };
                ((pp - qq).max(0.0), t)
            })
            .filter(|x| x.0 > 0.0)
            .collect();
        if residual.is_empty() {
            // p <= q everywhere means p == q (both sum to 1), so d was kept with probability
            // 1 and this is rounding: draw from p itself.
            residual = p.to_vec();
        }
        let total: f32 = residual.iter().map(|x| x.0).sum();
        let u = self.uniform() * total;
        Verdict::Replace(draw_from_unnormalized(&residual, u))
    }
}

/// What [`Sampler::accept_draft`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the drafted token.
    Accept,
    /// Reject it; this token takes its place.
    Replace(u32),
}

/// The token where the cumulative probability of `dist` (summing to 1) passes `u` in [0, 1).
fn draw_from(dist: &[(f32, u32)], u: f32) -> u32 {
    draw_from_unnormalized(dist, u * dist.iter().map(|x| x.0).sum::<f32>())
}

/// The token where the cumulative weight of `dist` passes `r` (in [0, total weight)).
fn draw_from_unnormalized(dist: &[(f32, u32)], mut r: f32) -> u32 {
    for &(p, id) in dist {
        r -= p;
        if r <= 0.0 {
            return id;
        }
    }
    dist.last().map_or(0, |x| x.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speculative sampling keeps the target's distribution: draft `x ~ q`, keep or replace it
    /// with [`Sampler::accept_draft`], and the tokens that result are distributed as `p` (a
    /// chi-square test over 200,000 draws, for a model-like draft, a poor one, and a
    /// deterministic draft as prompt lookup makes). Seeded: the test cannot flake.
    #[test]
    fn speculative_sampling_keeps_the_target_distribution() {
        let cfg = |seed| SamplerConfig {
            temp: 0.9,
            top_k: 0,
            top_p: 1.0,
            seed,
        };
        let target_logits = [2.0, 1.5, 1.0, 0.2, -0.5, -1.0, 0.7, 1.2];
        let drafts: [(&str, Option<[f32; 8]>); 3] = [
            (
                "close draft",
                Some([1.8, 1.6, 0.9, 0.1, -0.3, -1.2, 0.5, 1.0]),
            ),
            (
                "poor draft",
                Some([-1.0, 0.0, 2.5, 1.0, 0.3, 1.5, -2.0, 0.0]),
            ),
            ("deterministic draft", None),
        ];
        let mut target = Sampler::new(cfg(7));
        let p = target.distribution(&target_logits).to_vec();
        for (name, draft_logits) in drafts {
            let mut draft = Sampler::new(cfg(11));
            let mut judge = Sampler::new(cfg(13));
            let n = 200_000;
            let mut counts = [0u32; 8];
            let mut kept = 0;
            for i in 0..n {
                let (d, q) = match draft_logits {
                    Some(l) => {
                        let q = draft.distribution(&l).to_vec();
                        (draft.draw(), Some(q))
                    }
                    // A lookup proposes the same token whatever the target thinks.
                    None => ((i % 8) as u32, None),
                };
                let t = match judge.accept_draft(&p, d, q.as_deref()) {
                    Verdict::Accept => {
                        kept += 1;
                        d
                    }
                    Verdict::Replace(t) => t,
                };
                counts[t as usize] += 1;
            }
            let chi2: f64 = p
                .iter()
                .map(|&(prob, t)| {
                    let e = prob as f64 * n as f64;
                    (counts[t as usize] as f64 - e).powi(2) / e
                })
                .sum();
            // 7 degrees of freedom: P(chi2 > 24.3) = 0.001.
            eprintln!("{name}: chi2 {chi2:.2}, kept {kept} of {n}");
            assert!(
                chi2 < 24.3,
                "{name}: chi2 {chi2:.2}, counts {counts:?}, p {p:?}"
            );
        }
    }

    #[test]
    fn distribution_applies_top_k_and_top_p_and_sums_to_one() {
        let logits = [0.0, 3.0, 1.0, 2.0, -1.0];
        let mut s = Sampler::new(SamplerConfig {
            temp: 1.0,
            top_k: 3,
            top_p: 0.8,
            seed: 1,
        });
        let d = s.distribution(&logits).to_vec();
        let ids: Vec<u32> = d.iter().map(|x| x.1).collect();
        assert_eq!(ids, [1, 3]);
        assert!((d.iter().map(|x| x.0).sum::<f32>() - 1.0).abs() < 1e-6);
        let mut g = Sampler::new(SamplerConfig::default());
        assert_eq!(g.distribution(&logits), &[(1.0, 1)]);
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_sampling_is_seeded() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                temp: 0.8,
                top_k: 10,
                top_p: 0.9,
                seed,
            });
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let top10: Vec<u32> = {
            let mut v: Vec<(f32, u32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l, i as u32))
                .collect();
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            v[..10].iter().map(|x| x.1).collect()
        };
        assert!(run(3).iter().all(|t| top10.contains(t)));
    }
}
