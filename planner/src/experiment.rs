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
    /// `bytes_per_token` split by weight type (`[["Q4_K", n], ...]`): what a device's cost per
    /// byte of each type is learnt from, across models (the fit-before-download prior).
    #[serde(default)]
    pub bytes_by_type: Vec<(String, u64)>,
    pub bpw: f64,
    pub status: Status,
    pub error: Option<String>,
    pub speed: Option<Speed>,
    pub quality: Option<Quality>,
    pub verdict: Option<Verdict>,
    pub mock: bool,
    pub seconds: f64,
    /// The candidate's draft and what it did for generation speed (issue #17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<DraftOutcome>,
    /// A fleet run (issue #18): the candidate on each device, or why a device has no figure.
    /// `speed` is then the binding device's (the slowest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleet: Vec<crate::measure::DeviceSpeed>,
}

/// Speculative decoding pays when it makes generation at least this much faster: below, the
/// draft's file and memory are not worth it.
pub const DRAFT_KEEP_RATIO: f64 = 1.05;

/// A candidate's draft: its recipe and size, its measurement, and whether it is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DraftOutcome {
    /// The draft's recipe, canonical JSON, and its label.
    pub recipe: String,
    pub label: String,
    pub size_bytes: u64,
    pub speed: Option<crate::measure::DraftSpeed>,
    /// Whether the draft pays ([`DRAFT_KEEP_RATIO`]): then the candidate's speed is its speed
    /// with the draft, and the draft ships beside it.
    pub kept: bool,
    pub error: Option<String>,
}

impl DraftOutcome {
    /// `draft Q4_0 drop[..]: 61% kept, 0.62x (not kept)`.
    pub fn text(&self) -> String {
        match (&self.speed, &self.error) {
            (Some(s), _) => format!(
                "draft {} ({:.1} MiB): {:.0}% of drafted tokens kept, {:.2} -> {:.2} tok/s = {:.2}x ({})",
                self.label,
                self.size_bytes as f64 / (1 << 20) as f64,
                100.0 * s.acceptance(),
                s.plain_tps,
                s.spec_tps,
                s.ratio,
                if self.kept { "kept" } else { "not kept: it does not pay" }
            ),
            (None, Some(e)) => format!("draft {}: failed: {e}", self.label),
            (None, None) => format!("draft {}: not measured", self.label),
        }
    }
}

impl Experiment {
    pub fn passes(&self) -> bool {
        self.status == Status::Ok && self.verdict.as_ref().is_some_and(Verdict::passes)
    }
    /// Generation speed: with the draft when it is kept.
    pub fn tps(&self) -> Option<f64> {
        let s = self.speed.as_ref()?;
        Some(match &self.draft {
            Some(DraftOutcome {
                kept: true,
                speed: Some(d),
                ..
            }) => s.tg_tps * d.ratio,
            _ => s.tg_tps,
        })
    }
    pub fn top1(&self) -> Option<f64> {
        self.quality.as_ref().map(|q| q.top1)
    }
}

/// Whether two top-1 agreements are within two standard errors of their difference: neither
/// can be called more accurate.
pub fn within_noise(a: &Quality, b: &Quality) -> bool {
    (a.top1 - b.top1).abs() < 2.0 * (a.top1_se.powi(2) + b.top1_se.powi(2)).sqrt()
}

/// `Greater` when `a` is better: passing beats failing; among passing, higher accuracy, then
/// higher speed (accuracies within each other's noise count as equal); among failing, fewer
/// missed targets, then higher accuracy.
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
        let tie = matches!((&a.quality, &b.quality), (Some(qa), Some(qb)) if within_noise(qa, qb));
        let accuracy = if tie {
            Ordering::Equal
        } else {
            f(a.top1()).total_cmp(&f(b.top1()))
        };
        accuracy.then(f(a.tps()).total_cmp(&f(b.tps())))
    })
}

/// The best experiment (not the last).
pub fn best(exps: &[Experiment]) -> Option<&Experiment> {
    exps.iter()
        .filter(|e| e.status == Status::Ok)
        .max_by(|a, b| compare(a, b))
}

/// Why the targets were not met, with the evidence of this run's measurements: the best
/// accuracy measured at the speed target, the fastest speed measured at the accuracy target,
/// and the nearest targets those measurements meet. `None` when an experiment meets every
/// target (or none was measured).
pub fn infeasibility(exps: &[Experiment], t: &crate::targets::Targets) -> Option<String> {
    let measured: Vec<&Experiment> = exps
        .iter()
        .filter(|e| e.status == Status::Ok && e.tps().is_some() && e.top1().is_some())
        .collect();
    if measured.is_empty() || exps.iter().any(Experiment::passes) {
        return None;
    }
    let tps = |e: &Experiment| e.tps().unwrap_or(0.0);
    let top1 = |e: &Experiment| e.top1().unwrap_or(0.0);
    // "Fastest" in the target's terms: the ratio to the original for a relative target.
    let pace = |e: &Experiment| match (t.min_speedup(), e.speed.as_ref().and_then(|s| s.baseline)) {
        (Some(_), Some(b)) => b.ratio,
        _ => tps(e),
    };
    let mut lines = Vec::new();
    let fast: Vec<&Experiment> = measured
        .iter()
        .copied()
        .filter(|e| {
            e.speed
                .as_ref()
                .is_some_and(|s| crate::critic::speed_check(s, t).ok)
        })
        .collect();
    match most(&fast, &top1) {
        Some(e) => lines.push(format!(
            "at the speed target ({}) the best top-1 measured is {} (#{} {}, {:.2} tok/s): `--target-accuracy {:.3}` keeps the speed target and is met",
            t.speed_text(),
            e.quality.as_ref().map_or(String::new(), |q| q.top1_text()),
            e.iteration,
            e.label,
            tps(e),
            (top1(e) * 1000.0).floor() / 1000.0
        )),
        None => {
            let f = most(&measured, &pace).expect("not empty");
            lines.push(format!(
                "no recipe reached the speed target ({}): the fastest measured is #{} {} at {:.2} tok/s{} (top-1 {:.4})",
                t.speed_text(),
                f.iteration,
                f.label,
                tps(f),
                ratio_text(f),
                top1(f)
            ));
        }
    }
    let accurate: Vec<&Experiment> = measured
        .iter()
        .copied()
        .filter(|e| top1(e) >= t.min_accuracy())
        .collect();
    match most(&accurate, &pace) {
        Some(e) => lines.push(format!(
            "at the accuracy target (top-1 >= {:.4}) the fastest measured is {:.2} tok/s{} (#{} {}, top-1 {:.4}): {} keeps the accuracy target and is met",
            t.min_accuracy(),
            tps(e),
            ratio_text(e),
            e.iteration,
            e.label,
            top1(e),
            match (t.min_speedup(), e.speed.as_ref().and_then(|s| s.baseline)) {
                (Some(_), Some(b)) =>
                    format!("`--target-speedup {:.2}`", (b.ratio * 100.0).floor() / 100.0),
                _ => format!("`--target-tps {:.2}`", (tps(e) * 100.0).floor() / 100.0),
            }
        )),
        None => {
            let a = most(&measured, &top1).expect("not empty");
            lines.push(format!(
                "no recipe reached the accuracy target (top-1 >= {:.4}): the most accurate measured is #{} {} at top-1 {} ({:.2} tok/s)",
                t.min_accuracy(),
                a.iteration,
                a.label,
                a.quality.as_ref().map_or(String::new(), |q| q.top1_text()),
                tps(a)
            ));
        }
    }
    Some(lines.join("\n"))
}

/// ` (1.06x the original in the same rounds)` when the original was measured beside it.
fn ratio_text(e: &Experiment) -> String {
    e.speed
        .as_ref()
        .and_then(|s| s.baseline)
        .map_or(String::new(), |b| {
            format!(" ({:.3}x the original in the same rounds)", b.ratio)
        })
}

/// The experiment of `v` with the largest `f`.
fn most<'a>(v: &[&'a Experiment], f: &dyn Fn(&Experiment) -> f64) -> Option<&'a Experiment> {
    v.iter().copied().max_by(|a, b| f(a).total_cmp(&f(b)))
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
            bytes_by_type: Vec::new(),
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
                tg: None,
                load: None,
                baseline: None,
            }),
            quality: Some(Quality {
                kld: 0.1,
                kld_se: 0.0,
                top1,
                top1_se: 0.0,
                ppl: 10.0,
                ppl_base: 10.0,
                delta_ppl: 0.0,
                windows: 2,
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
            draft: None,
            fleet: Vec::new(),
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

    #[test]
    fn infeasibility_names_the_best_at_each_target_and_the_nearest_feasible_ones() {
        let targets = crate::targets::Targets {
            min_tokens_per_second: Some(crate::targets::Target::new(25.0, "test")),
            min_accuracy_score: Some(crate::targets::Target::new(0.97, "test")),
            max_latency_ms: None,
            max_memory_mib: None,
            min_speedup: None,
        };
        let exps = vec![
            exp(1, 10.0, 0.99, false),
            exp(2, 30.0, 0.95, false),
            exp(3, 40.0, 0.90, false),
        ];
        let why = infeasibility(&exps, &targets).unwrap();
        assert!(
            why.contains("best top-1 measured is 0.9500")
                && why.contains("--target-accuracy 0.950"),
            "{why}"
        );
        assert!(
            why.contains("fastest measured is 10.00 tok/s") && why.contains("--target-tps 10.00"),
            "{why}"
        );
        let slow = vec![exp(1, 10.0, 0.5, false)];
        let why = infeasibility(&slow, &targets).unwrap();
        assert!(
            why.contains("no recipe reached the speed target")
                && why.contains("no recipe reached the accuracy target"),
            "{why}"
        );
        assert!(infeasibility(&[exp(1, 30.0, 0.99, true)], &targets).is_none());
    }

    /// A relative target is judged on the ratio to the original in the same rounds, not on
    /// tokens/s against a reference the machine has since drifted from.
    #[test]
    fn a_speedup_target_is_judged_on_the_interleaved_ratio() {
        use crate::critic::{judge, speed_check};
        use crate::measure::{stats::Spread, Baseline};
        let targets = crate::targets::Targets {
            min_tokens_per_second: Some(crate::targets::Target::new(110.0, "test")),
            min_accuracy_score: Some(crate::targets::Target::new(0.7, "test")),
            max_latency_ms: None,
            max_memory_mib: None,
            min_speedup: Some(crate::targets::Target::new(1.1, "test")),
        };
        // The machine ran 15% slower during these rounds: 98 tok/s is 1.2x the original's 82.
        let mut e = exp(1, 98.0, 0.9, false);
        let spread = |median: f64| Spread::of(&[median; 6]).unwrap();
        let speed = e.speed.as_mut().unwrap();
        speed.baseline = Some(Baseline {
            tg: spread(82.0),
            reference_tps: 100.0,
            ratio: 98.0 / 82.0,
        });
        let c = speed_check(speed, &targets);
        assert_eq!((c.name.as_str(), c.ok), ("speedup", true), "{c:?}");
        assert!(
            (c.value - 98.0 / 82.0).abs() < 1e-12 && c.limit == 1.1,
            "{c:?}"
        );
        // Without the original beside it the absolute figure is all there is.
        let mut alone = speed.clone();
        alone.baseline = None;
        let c = speed_check(&alone, &targets);
        assert_eq!(
            (c.name.as_str(), c.ok),
            ("tokens_per_second", false),
            "{c:?}"
        );
        let v = judge(speed, e.quality.as_ref().unwrap(), 1, &targets);
        assert!(v.passes(), "{}", v.summary());
        assert!(
            v.summary().contains("1.195x the original >= 1.10x ok"),
            "{}",
            v.summary()
        );
        // Evidence in the target's terms.
        let mut slow = exp(2, 120.0, 0.9, false);
        slow.speed.as_mut().unwrap().baseline = Some(Baseline {
            tg: spread(115.0),
            reference_tps: 100.0,
            ratio: 120.0 / 115.0,
        });
        let why = infeasibility(&[slow], &targets).unwrap();
        assert!(
            why.contains("no recipe reached the speed target (>= 1.10x the original")
                && why.contains("--target-speedup 1.04"),
            "{why}"
        );
    }
}
