//! `--mock`: no file is written and nothing runs; speed and quality come from a formula, and
//! every result says so (`measured_on: "mock"`, the `mock` column of the history database).
//!
//! The formula, per candidate:
//! - generation: `tg = 0.5 * bandwidth / bytes_per_token` (half the memory roofline),
//!   prompt processing `pp = 8 * tg`, latency `n_prompt / pp`, peak memory `size + 64 MiB`;
//! - quality: each requantized tensor of `b` bits per weight adds `2 * 2^(-2 (b - 2))` KL
//!   divergence in proportion to its share of the parameters (tensors left as they were add
//!   none); `top1 = exp(-0.5 sqrt(kld))`; `ppl = 10 e^kld` against a base of 10.

use super::{BenchSpec, Candidate, Measurer, Quality, Speed};
use anyhow::Result;

/// The mock measurer: speed from the roofline at half efficiency, quality from bits per
/// weight.
#[derive(Debug)]
pub struct MockMeasurer {
    pub bandwidth_gbps: f64,
    pub spec: BenchSpec,
}

impl Measurer for MockMeasurer {
    fn bench(&mut self, c: &Candidate<'_>) -> Result<Speed> {
        let tg = 0.5 * self.bandwidth_gbps * 1e9 / c.bytes_per_token.max(1) as f64;
        let pp = 8.0 * tg;
        Ok(Speed {
            tg_tps: tg,
            tg_sd: 0.0,
            pp_tps: pp,
            latency_ms: 1000.0 * self.spec.n_prompt as f64 / pp,
            peak_rss_bytes: Some(c.size_bytes + (64 << 20)),
            measured_on: "mock".into(),
            tg: None,
            load: None,
            baseline: None,
        })
    }

    fn quality(&mut self, c: &Candidate<'_>) -> Result<Quality> {
        let total: f64 = c.model.n_params.max(1) as f64;
        let mut kld = 0.0;
        for (p, t) in c.plan.iter().zip(&c.model.tensors) {
            if p.to == p.from {
                continue;
            }
            let bpw = p.to.bits_per_weight();
            kld += t.n_elements as f64 / total * 2.0 * (2f64).powf(-2.0 * (bpw - 2.0));
        }
        let ppl_base = 10.0;
        let ppl = ppl_base * kld.exp();
        Ok(Quality {
            kld,
            kld_se: 0.0,
            top1: (-0.5 * kld.sqrt()).exp(),
            top1_se: 0.0,
            ppl,
            ppl_base,
            delta_ppl: ppl - ppl_base,
            windows: 0,
        })
    }
}
