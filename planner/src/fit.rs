//! Fit before download (issue #16): what a model will cost on a device, predicted before its
//! weights are fetched, and, after a run, how the prediction compared with what was measured.
//!
//! A decoded token reads every weight once, so speed is predicted from bytes read per token and
//! a cost per byte (the [`Prior`]): the median of `seconds / byte` over earlier measurements on
//! this device (any model), or, with none, half of the profile's memory bandwidth — the same
//! first guess the heuristic architect starts from. Peak memory is the file (mapped), the KV cache
//! in f16, and the runtime's own buffers and vocabulary. Tools that predict from parameter counts
//! alone (llmfit) are off by 3x to 30x in their users' reports; ours is checked in every report.

use crate::architect::speed::{per_type_costs, BytesByType};
use crate::experiment::Experiment;
use crate::history::DeviceMeasurement;
use crate::model_info::ModelInfo;
use crate::profile::Profile;
use formats::quant::GgmlType;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Fraction of the memory roofline assumed with no measurement on the device.
const ROOFLINE_EFFICIENCY: f64 = 0.5;

/// Fraction of the device's read bandwidth (as `sintra-rt` probes it, same threads) that
/// decoding reaches: sintra-rt decoded SmolLM2 (Q4_0, Q4_K_M, Q8_0, Q4_1) and gemma-3-270m at
/// 54-97% of it, median 65%, on 1 and 2 threads of an AMD EPYC VM (docs/issue15/decode-bench.md).
const READ_BANDWIDTH_EFFICIENCY: f64 = 0.65;

/// Bytes streamed by the read-bandwidth probe (past the caches of the boards we target).
const PROBE_BYTES: u64 = 256 << 20;

/// Bandwidth assumed when the profile names none, GB/s.
const FALLBACK_BANDWIDTH_GBPS: f64 = 10.0;

/// sintra-rt's resident memory besides the model and the KV cache (measured: 12-16 MiB).
const RUNTIME_BYTES: u64 = 16 << 20;

/// The vocabulary as sintra-rt holds it, per token (text, merges, lookup tables).
const BYTES_PER_VOCAB_ENTRY: u64 = 48;

/// The cost per byte read that predictions start from, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    /// Seconds per byte of a type without a cost of its own.
    pub sec_per_byte: f64,
    /// Seconds per byte of the types earlier measurements on the device priced (`"Q8_0"`,
    /// `"BF16"`, ...): the kernels do not cost the same per byte (16-bit floats are converted,
    /// K-quants unpacked).
    #[serde(default)]
    pub per_type: Vec<(String, f64)>,
    /// "roofline: 50% of 20.0 GB/s" or "12 measurements on rpi5 in earlier runs (any model)".
    pub basis: String,
}

impl Prior {
    /// From the device's earlier measurements (`past`, any model: the same fit as the heuristic
    /// architect's speed model), else the device's read bandwidth as sintra-rt measured it
    /// (`read`: GB/s and threads), else the profile's bandwidth.
    pub fn new(
        profile: &Profile,
        past: &[DeviceMeasurement],
        mock: bool,
        read: Option<(f64, u32)>,
    ) -> Prior {
        let measured: Vec<&DeviceMeasurement> = past
            .iter()
            .filter(|p| p.mock == mock && p.tps > 0.0)
            .collect();
        // Every measurement prices the default byte; those whose bytes are all of known types
        // (recorded since types were) also price the types that dominate them.
        let mut k: Vec<f64> = measured
            .iter()
            .map(|p| {
                1.0 / (p.tps * p.bytes_by_type.iter().map(|(_, n)| *n).sum::<u64>().max(1) as f64)
            })
            .collect();
        let typed: Vec<(BytesByType, f64)> = measured
            .iter()
            .filter_map(|p| {
                let b: Option<BytesByType> = p
                    .bytes_by_type
                    .iter()
                    .map(|(t, n)| Some((GgmlType::from_name(t)?, *n)))
                    .collect();
                Some((b?, 1.0 / p.tps))
            })
            .collect();
        if let Some(default) = crate::architect::heuristic::median(&mut k) {
            let per_type: Vec<(String, f64)> = per_type_costs(&typed, default)
                .into_iter()
                .map(|(t, c)| (t.to_string(), c))
                .collect();
            let own = match per_type.is_empty() {
                true => String::new(),
                false => format!(
                    "; own costs for {}",
                    per_type
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Prior {
                sec_per_byte: default,
                basis: format!(
                    "{} measurements on {} in earlier runs, any model{own}",
                    measured.len(),
                    profile.name
                ),
                per_type,
            };
        }
        if let Some((gbps, threads)) = read.filter(|(g, _)| *g > 0.0 && !mock) {
            return Prior {
                sec_per_byte: 1.0 / (READ_BANDWIDTH_EFFICIENCY * gbps * 1e9),
                per_type: Vec::new(),
                basis: format!(
                    "{:.0}% of the {gbps:.1} GB/s read bandwidth sintra-rt measured on {} with {threads} threads (no earlier run there)",
                    READ_BANDWIDTH_EFFICIENCY * 100.0,
                    profile.name
                ),
            };
        }
        let bw = profile
            .constraints
            .memory_bandwidth_gbps
            .filter(|b| *b > 0.0)
            .unwrap_or(FALLBACK_BANDWIDTH_GBPS);
        Prior {
            sec_per_byte: 1.0 / (ROOFLINE_EFFICIENCY * bw * 1e9),
            per_type: Vec::new(),
            basis: format!(
                "roofline: {:.0}% of {bw:.1} GB/s (no earlier measurement on {})",
                ROOFLINE_EFFICIENCY * 100.0,
                profile.name
            ),
        }
    }

    /// Predicted decode tokens/s of a file reading `bytes` per token (by type name; `"?"` for
    /// bytes of unknown type).
    pub fn tps(&self, bytes: &[(String, u64)]) -> f64 {
        let secs: f64 = bytes
            .iter()
            .map(|(t, n)| {
                let k = self
                    .per_type
                    .iter()
                    .find(|(u, _)| u == t)
                    .map_or(self.sec_per_byte, |(_, k)| *k);
                *n as f64 * k
            })
            .sum();
        if secs > 0.0 {
            1.0 / secs
        } else {
            0.0
        }
    }
}

/// `bytes_by_type` as the report and the prior key it.
pub fn named(b: &BytesByType) -> Vec<(String, u64)> {
    b.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

/// An experiment's bytes per token by type (its total as `"?"` when not recorded).
fn experiment_bytes(e: &Experiment) -> Vec<(String, u64)> {
    match e.bytes_by_type.is_empty() {
        true => vec![("?".into(), e.bytes_per_token)],
        false => e.bytes_by_type.clone(),
    }
}

/// The device's read bandwidth with `threads` threads, probed by sintra-rt on it (this host
/// without a `connection`); `None`, with a warning, when the runtime cannot be reached.
pub fn probe_read_bandwidth(
    profile: &Profile,
    ssh_config: Option<std::path::PathBuf>,
    remote_dir: Option<String>,
    threads: u32,
) -> Option<(f64, u32)> {
    use crate::device::{DeviceSpec, Session, Transport};
    let timeout = std::time::Duration::from_secs(120);
    let spec = match &profile.connection {
        None => DeviceSpec {
            transport: Transport::Local { exec_prefix: None },
            runtime_target: None,
            runtime: None,
            timeout,
        },
        Some(c) => {
            crate::cli::device::spec_for_profile(c, ssh_config, remote_dir, timeout.as_secs())
                .ok()?
        }
    };
    let probe = Session::open(&spec, None).and_then(|mut s| s.probe_memory(PROBE_BYTES, threads));
    match probe {
        Ok(m) => Some((m.read_gb_s, m.threads.max(1))),
        Err(e) => {
            tracing::warn!(
                "memory probe on {} failed ({e}); predicting from the profile's bandwidth",
                spec.name()
            );
            None
        }
    }
}

/// Predicted peak resident memory of sintra-rt running a `size`-byte version of `model` with a
/// context of `n_ctx` tokens.
pub fn peak_bytes(model: &ModelInfo, size: u64, n_ctx: u64) -> u64 {
    size + kv_bytes(model, n_ctx) + RUNTIME_BYTES + vocab_len(model) * BYTES_PER_VOCAB_ENTRY
}

fn vocab_len(model: &ModelInfo) -> u64 {
    model
        .tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .and_then(|t| t.dims.get(1).copied())
        .unwrap_or(0)
}

/// The f16 KV cache: keys and values of every layer for `n_ctx` positions.
fn kv_bytes(model: &ModelInfo, n_ctx: u64) -> u64 {
    let width = |name: &str| {
        model
            .tensors
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.dims.get(1).copied())
    };
    let kv_dim = width("blk.0.attn_k.weight").unwrap_or_else(|| {
        // Fused QKV (phi3): the rows past the queries, split between K and V; the queries are
        // as wide as the model.
        let embd = model
            .tensors
            .iter()
            .find(|t| t.name == "blk.0.attn_qkv.weight")
            .map_or(0, |t| t.dims[0]);
        width("blk.0.attn_qkv.weight").map_or(0, |r| r.saturating_sub(embd) / 2)
    });
    model.n_layers as u64 * 2 * kv_dim * n_ctx * 2
}

/// Median of |predicted / measured - 1| over the measured experiments, with their count.
pub fn median_error(prior: &Prior, exps: &[Experiment]) -> Option<(f64, usize)> {
    let mut errs: Vec<f64> = exps
        .iter()
        .filter(|e| !e.mock)
        .filter_map(|e| {
            let m = e.tps()?;
            (m > 0.0).then(|| (prior.tps(&experiment_bytes(e)) / m - 1.0).abs())
        })
        .collect();
    // Not the heuristic's median: an exact prediction (error 0) counts.
    errs.retain(|e| e.is_finite());
    errs.sort_by(f64::total_cmp);
    let n = errs.len();
    (n > 0).then(|| (errs[n / 2], n))
}

/// The report's section: predicted beside measured, per experiment.
pub fn report_section(
    prior: &Prior,
    model: Option<&ModelInfo>,
    exps: &[Experiment],
    n_ctx: u64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Fit before download: predicted against measured\n\nPredicted from the model's shape and a cost per byte fixed before the run ({}), as `sintra --dry-run --model-id owner/repo` predicts before fetching the weights. Error: predicted / measured - 1. Peak memory is predicted for the candidate running alone; the measured figure is the `sintra-rt serve` process's during the candidate's rounds, with the original interleaved in the same process, so it can only be higher (`sintra-rt bench` measures a file alone).\n",
        prior.basis
    );
    let _ = writeln!(
        s,
        "| # | size MiB | predicted tok/s | measured tok/s | error | predicted peak MiB | measured peak MiB (serve) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for e in exps.iter().filter(|e| !e.mock) {
        let pred = prior.tps(&experiment_bytes(e));
        let (meas, err) = match e.tps() {
            Some(m) if m > 0.0 => (
                format!("{m:.1}"),
                format!("{:+.0}%", (pred / m - 1.0) * 100.0),
            ),
            _ => ("-".into(), "-".into()),
        };
        let peak_pred = model.map_or("-".into(), |m| {
            format!("{:.0}", mib(peak_bytes(m, e.size_bytes, n_ctx)))
        });
        let peak_meas = e
            .speed
            .as_ref()
            .and_then(|s| s.peak_rss_bytes)
            .map_or("-".into(), |b| format!("{:.0}", mib(b)));
        let _ = writeln!(
            s,
            "| {} | {:.1} | {pred:.1} | {meas} | {err} | {peak_pred} | {peak_meas} |",
            e.iteration,
            mib(e.size_bytes)
        );
    }
    if let Some((m, n)) = median_error(prior, exps) {
        let _ = writeln!(
            s,
            "\nMedian |error| of the decode speed over {n} measured candidates: {:.0}%.",
            m * 100.0
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::exp;

    fn measured(tps: f64, bytes: &[(&str, u64)]) -> DeviceMeasurement {
        DeviceMeasurement {
            bytes_by_type: bytes.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            tps,
            mock: false,
        }
    }

    fn b(t: &str, n: u64) -> Vec<(String, u64)> {
        vec![(t.to_string(), n)]
    }

    #[test]
    fn the_prior_learns_from_the_device_else_its_bandwidth() {
        let profile = Profile::load("rpi5").unwrap();
        let bw = profile.constraints.memory_bandwidth_gbps.unwrap();
        let roof = Prior::new(&profile, &[], false, None);
        assert!(roof.basis.starts_with("roofline"), "{}", roof.basis);
        assert!((roof.tps(&b("Q8_0", 1_000_000_000)) - 0.5 * bw).abs() < 1e-9);
        let probed = Prior::new(&profile, &[], false, Some((20.0, 2)));
        assert!(probed.basis.contains("20.0 GB/s"), "{}", probed.basis);
        let want = READ_BANDWIDTH_EFFICIENCY * 20.0;
        assert!((probed.tps(&b("Q8_0", 1_000_000_000)) - want).abs() < 1e-9);

        // Q8_0 at 1 ns a byte, BF16 at 2.5: each type keeps its own cost, a type never measured
        // gets the median (1 ns), and an untyped old record counts for the default only.
        let past = [
            measured(100.0, &[("Q8_0", 10_000_000)]),
            measured(50.0, &[("Q8_0", 20_000_000)]),
            measured(40.0, &[("BF16", 10_000_000)]),
            measured(100.0, &[("?", 10_000_000)]),
        ];
        let learnt = Prior::new(&profile, &past, false, Some((20.0, 2)));
        assert!(
            learnt.basis.contains("4 measurements") && learnt.basis.contains("BF16"),
            "{}",
            learnt.basis
        );
        assert!((learnt.tps(&b("Q8_0", 10_000_000)) - 100.0).abs() < 1e-6);
        assert!((learnt.tps(&b("BF16", 10_000_000)) - 40.0).abs() < 1e-6);
        assert!((learnt.tps(&b("Q4_K", 10_000_000)) - 100.0).abs() < 1e-6);
        // Mock measurements never calibrate a real run.
        let mock = DeviceMeasurement {
            mock: true,
            ..measured(1.0, &[("Q8_0", 1)])
        };
        assert!(Prior::new(&profile, &[mock], false, None)
            .basis
            .starts_with("roofline"));
    }

    #[test]
    fn the_median_error_is_over_measured_candidates() {
        let prior = Prior {
            sec_per_byte: 1e-8,
            per_type: Vec::new(),
            basis: "test".into(),
        };
        // bytes_per_token 1 (the test experiments): predicted 1e8 tok/s.
        let exps: Vec<Experiment> = [(1, 1e8), (2, 2e8), (3, 0.8e8)]
            .into_iter()
            .map(|(i, tps)| Experiment {
                mock: false,
                ..exp(i, tps, 0.9, true)
            })
            .collect();
        let (m, n) = median_error(&prior, &exps).unwrap();
        assert_eq!(n, 3);
        assert!((m - 0.25).abs() < 1e-9, "{m}");
        let text = report_section(&prior, None, &exps, 96);
        assert!(text.contains("over 3 measured candidates: 25%"), "{text}");
    }
}
