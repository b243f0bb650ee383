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

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temp <= 0.0 {
            return argmax(logits);
        }
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        c.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        if self.cfg.top_k > 0 {
            c.truncate(self.cfg.top_k);
        }
        let max = c[0].0;
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
        let u = self.uniform();
        let c = &self.candidates;
        let mut r = u * total;
        for &(p, id) in c.iter() {
            r -= p;
            if r <= 0.0 {
                return id;
            }
        }
        c.last().map_or(0, |x| x.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
