//! One tried recipe and everything measured about it; the ranking that picks the best, and
//! the Pareto front of speed against accuracy.

use crate::critic::Verdict;
use crate::measure::{Quality, Speed};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// How an experiment ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Written, benchmarked and evaluated.
    Ok,
    /// Something failed; `error` says what.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Experiment {
    pub iteration: u32,
    /// The recipe, canonical JSON.
    pub recipe: String,
    pub label: String,
    /// Which architect proposed it (`heuristic`, `openai:gpt-4o-mini`, ...).
    pub architect: String,
    pub rationale: String,
    /// Identity of the file the recipe produces (tensor types), so equal files are not re-measured.
    pub plan_key: String,
    pub predicted_tps: f64,
    pub predicted_size: u64,
    pub size_bytes: u64,
    pub bytes_per_token: u64,
    pub bpw: f64,
    pub status: Status,
    pub error: Option<String>,
    pub speed: Option<Speed>,
    pub quality: Option<Quality>,
    pub verdict: Option<Verdict>,
    pub mock: bool,
    pub seconds: f64,
}

impl Experiment {
    pub fn passes(&self) -> bool {
        self.status == Status::Ok && self.verdict.as_ref().is_some_and(Verdict::passes)
    }
    pub fn tps(&self) -> Option<f64> {
        self.speed.as_ref().map(|s| s.tg_tps)
    }
    pub fn top1(&self) -> Option<f64> {
        self.quality.as_ref().map(|q| q.top1)
    }
}

/// `Greater` when `a` is better: passing beats failing; among passing, higher accuracy, then
/// higher speed; among failing, fewer missed targets, then higher accuracy.
pub fn compare(a: &Experiment, b: &Experiment) -> Ordering {
    let measured = |e: &Experiment| e.status == Status::Ok;
    let key = |e: &Experiment| {
        (
            measured(e),
            e.passes(),
            -(e.verdict.as_ref().map_or(99, |v| v.n_failed()) as i64),
        )
    };
    key(a).cmp(&key(b)).then_with(|| {
        let f = |x: Option<f64>| x.unwrap_or(f64::NEG_INFINITY);
        f(a.top1())
            .total_cmp(&f(b.top1()))
            .then(f(a.tps()).total_cmp(&f(b.tps())))
    })
}

/// The best experiment (not the last).
pub fn best(exps: &[Experiment]) -> Option<&Experiment> {
    exps.iter()
        .filter(|e| e.status == Status::Ok)
        .max_by(|a, b| compare(a, b))
}

/// Measured experiments no other beats on both tokens/s and accuracy, fastest first.
pub fn pareto(exps: &[Experiment]) -> Vec<&Experiment> {
    let ok: Vec<&Experiment> = exps
        .iter()
        .filter(|e| e.tps().is_some() && e.top1().is_some())
        .collect();
    let mut front: Vec<&Experiment> = ok
        .iter()
        .copied()
        .filter(|e| {
            let (t, a) = (e.tps().unwrap_or(0.0), e.top1().unwrap_or(0.0));
            !ok.iter().any(|o| {
                let (ot, oa) = (o.tps().unwrap_or(0.0), o.top1().unwrap_or(0.0));
                ot >= t && oa >= a && (ot > t || oa > a)
            })
        })
        .collect();
    front.sort_by(|a, b| b.tps().unwrap_or(0.0).total_cmp(&a.tps().unwrap_or(0.0)));
    front
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::critic::Check;

    pub fn exp(i: u32, tps: f64, top1: f64, pass: bool) -> Experiment {
        Experiment {
            iteration: i,
            recipe: format!("{{\"default_type\":\"Q{i}\"}}"),
            label: format!("r{i}"),
            architect: "heuristic".into(),
            rationale: String::new(),
            plan_key: format!("k{i}"),
            predicted_tps: tps,
            predicted_size: 1,
            size_bytes: 1,
            bytes_per_token: 1,
            bpw: 4.0,
            status: Status::Ok,
            error: None,
            speed: Some(Speed {
                tg_tps: tps,
                tg_sd: 0.0,
                pp_tps: tps * 8.0,
                latency_ms: 1.0,
                peak_rss_bytes: None,
                measured_on: "mock".into(),
            }),
            quality: Some(Quality {
                kld: 0.1,
                top1,
                ppl: 10.0,
                ppl_base: 10.0,
                delta_ppl: 0.0,
            }),
            verdict: Some(Verdict {
                checks: vec![Check {
                    name: "x".into(),
                    value: 0.0,
                    limit: 0.0,
                    ok: pass,
                }],
            }),
            mock: true,
            seconds: 0.0,
        }
    }

    #[test]
    fn best_is_the_most_accurate_passing_one_and_the_front_is_non_dominated() {
        let exps = vec![
            exp(1, 10.0, 0.99, false),
            exp(2, 30.0, 0.95, true),
            exp(3, 40.0, 0.90, true),
            exp(4, 20.0, 0.90, false),
        ];
        assert_eq!(best(&exps).unwrap().iteration, 2);
        let front: Vec<u32> = pareto(&exps).iter().map(|e| e.iteration).collect();
        assert_eq!(front, vec![3, 2, 1]);
    }
}
