//! The Critic's verdict: every target checked against a candidate's measurements. (The
//! measuring itself is `measure::Measurer::quality`: KL divergence, top-1 agreement and
//! delta-PPL against the original on held-out text.)

use crate::measure::{Quality, Speed};
use crate::targets::Targets;
use serde::{Deserialize, Serialize};

/// One target, checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    pub ok: bool,
}

/// All targets, checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn passes(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
    pub fn n_failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }
    /// `tokens/s 41.2 >= 30 ok; accuracy 0.87 >= 0.9 MISSED; ...`
    pub fn summary(&self) -> String {
        self.checks
            .iter()
            .map(|c| {
                let ok = if c.ok { "ok" } else { "MISSED" };
                match c.name.as_str() {
                    "memory_bytes" => format!(
                        "memory {:.0} <= {:.0} MiB {ok}",
                        c.value / (1 << 20) as f64,
                        c.limit / (1 << 20) as f64
                    ),
                    "latency_ms" => format!("latency {:.0} <= {:.0} ms {ok}", c.value, c.limit),
                    "accuracy" => format!("top-1 {:.4} >= {:.4} {ok}", c.value, c.limit),
                    "speedup" => format!("{:.3}x the original >= {:.2}x {ok}", c.value, c.limit),
                    _ => format!("tok/s {:.2} >= {:.2} {ok}", c.value, c.limit),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The speed target, checked: with a relative target (`min_speedup`) the candidate's ratio to
/// the original in the same interleaved rounds, else (or when the candidate was measured without
/// the original beside it) its median tokens/s.
pub fn speed_check(speed: &Speed, t: &Targets) -> Check {
    match (t.min_speedup(), speed.baseline) {
        (Some(x), Some(b)) => Check {
            name: "speedup".into(),
            value: b.ratio,
            limit: x,
            ok: b.ratio >= x,
        },
        _ => Check {
            name: "tokens_per_second".into(),
            value: speed.tg_tps,
            limit: t.min_tps(),
            ok: speed.tg_tps >= t.min_tps(),
        },
    }
}

/// Check speed ([`speed_check`]), accuracy (top-1 agreement), latency and memory. Memory is the
/// peak RSS the device reported, else the file size plus 10%.
pub fn judge(speed: &Speed, quality: &Quality, size_bytes: u64, t: &Targets) -> Verdict {
    let mut checks = vec![
        speed_check(speed, t),
        Check {
            name: "accuracy".into(),
            value: quality.top1,
            limit: t.min_accuracy(),
            ok: quality.top1 >= t.min_accuracy(),
        },
    ];
    if let Some(max) = t.max_latency() {
        checks.push(Check {
            name: "latency_ms".into(),
            value: speed.latency_ms,
            limit: max,
            ok: speed.latency_ms <= max,
        });
    }
    let mem = speed
        .peak_rss_bytes
        .map_or(size_bytes as f64 * 1.1, |r| r as f64);
    checks.push(Check {
        name: "memory_bytes".into(),
        value: mem,
        limit: t.max_memory_bytes(),
        ok: mem <= t.max_memory_bytes(),
    });
    Verdict { checks }
}
