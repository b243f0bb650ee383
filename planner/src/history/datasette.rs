//! The history database in [datasette](https://datasette.io) (issue #19): a `metadata.json`
//! that describes every table and column (and a unit test that keeps it in step with the
//! migrations), with canned queries for the questions people ask first.
//! `sintra history --datasette` writes it beside the database.

use serde_json::{json, Value};

/// A table: its name, its description, and each column's name and description.
type Table = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Each table: its description and every column's.
const TABLES: &[Table] = &[
    ("models", "Models a run started from, by content fingerprint.", &[
        ("id", "Row id."),
        ("fingerprint", "SHA-256-based fingerprint of the GGUF's tensors and metadata: the same model under another path is the same row."),
        ("name", "The model's name (general.name or the file name)."),
        ("arch", "Architecture (general.architecture): llama, qwen2, qwen3, gemma3, phi3, ..."),
        ("path", "Where the file was last seen."),
        ("n_params", "Parameters."),
        ("file_size", "File size, bytes."),
    ]),
    ("devices", "Devices (hardware profiles) runs measured speed on; a fleet run's is fleet:INVENTORY.", &[
        ("id", "Row id."),
        ("name", "The profile's name (rpi5, host-vm, fleet:lab, ...)."),
        ("profile_json", "The whole profile: constraints, targets, supported quantizations, connection."),
    ]),
    ("runs", "Optimization runs (sintra [PROFILE] ...): one model on one device (or fleet).", &[
        ("id", "Run id (UTC start time and a random suffix); the output directory's name."),
        ("started_at", "Start, UTC (RFC 3339)."),
        ("finished_at", "End, UTC; empty while running or when interrupted (resumable)."),
        ("status", "running, met (an experiment meets every target) or not met."),
        ("model_id", "The original model (models.id)."),
        ("device_id", "The device or fleet (devices.id)."),
        ("architect", "Who proposed recipes: heuristic, openai:MODEL, anthropic:MODEL, ollama:MODEL."),
        ("targets_json", "The resolved targets, each with where it came from."),
        ("mock", "1 when nothing was written or measured (--mock: a documented formula)."),
        ("output_dir", "Where the best model, recipe.json, report.md and pareto.svg are."),
        ("best_iteration", "The best experiment's iteration (experiments.iteration)."),
    ]),
    ("compared", "Files measured beside a run's candidates (sintra --compare FILE): llama.cpp's presets, say; references, never a run's result.", &[
        ("id", "Row id."),
        ("run_id", "The run (runs.id)."),
        ("path", "The file measured."),
        ("label", "Its llama.cpp file type (general.file_type: Q4_K_M, ...) or its file name."),
        ("size_bytes", "The file's size, bytes."),
        ("tps", "Generation speed on the run's device, tokens/s, measured as a candidate's."),
        ("top1", "Top-1 agreement with the original on held-out text, 0..1."),
        ("kld", "Mean KL divergence from the original's next-token distribution."),
        ("error", "Why it could not be measured."),
        ("json", "Everything measured (speed with its spread, quality with standard errors), JSON."),
        ("created_at", "When it was measured (UTC)."),
    ]),
    ("experiments", "Every recipe tried: written, benchmarked on the device, scored against the original on the host.", &[
        ("id", "Row id."),
        ("run_id", "The run (runs.id)."),
        ("iteration", "1, 2, ... within the run."),
        ("recipe", "The recipe, canonical JSON: default_type, overrides, drop_layers, ffn_prune, imatrix, draft."),
        ("plan_key", "Identity of the file the recipe produces (every tensor's type): equal keys, equal files."),
        ("architect", "Who proposed it."),
        ("status", "ok or failed."),
        ("error", "Why it failed."),
        ("mock", "1 for a mock figure."),
        ("size_bytes", "The written file's size, bytes."),
        ("bytes_per_token", "Weight bytes read per generated token."),
        ("tps", "Generation speed, tokens/s: median of the repetitions after a warm-up (with its draft when the draft is kept; a fleet run: the slowest device's)."),
        ("top1", "Top-1 agreement with the original on held-out text, 0..1 (the accuracy score)."),
        ("kld", "Mean KL divergence from the original's next-token distribution."),
        ("delta_ppl", "Perplexity minus the original's."),
        ("latency_ms", "Time to process the benchmark prompt, ms."),
        ("passes", "1 when every target is met."),
        ("json", "The whole experiment: speed with its spread and the interleaved original, quality with standard errors, verdict, draft, fleet devices."),
        ("created_at", "When it was recorded, UTC."),
        ("tps_min", "Slowest repetition kept, tokens/s."),
        ("tps_max", "Fastest repetition kept, tokens/s."),
        ("tps_samples", "Repetitions kept."),
        ("top1_se", "Standard error of top1."),
        ("kld_se", "Standard error of kld."),
        ("windows", "Held-out windows scored (512 tokens each)."),
        ("load_others", "Share of the CPU other processes used during the measurement (the busiest round)."),
        ("load_avg", "1-minute load average during the measurement."),
    ]),
    ("prompts", "Every exchange with an LLM architect: what was asked, what came back, what the planner made of it.", &[
        ("id", "Row id."),
        ("run_id", "The run (runs.id)."),
        ("iteration", "The iteration the proposal was for."),
        ("provider", "openai:MODEL, anthropic:MODEL, ollama:MODEL."),
        ("system", "The system prompt."),
        ("user", "The context sent: device, targets, model summary, what was tried (JSON)."),
        ("response", "The model's answer."),
        ("error", "The provider's error, if it failed."),
        ("outcome", "accepted, rejected: WHY (asked again, then the heuristic), or failed."),
        ("created_at", "When, UTC."),
    ]),
    ("traces", "The loop's events: proposals, rescoring, stops, unmet targets with their evidence.", &[
        ("id", "Row id."),
        ("run_id", "The run (runs.id)."),
        ("at", "When, UTC."),
        ("event", "proposed, rescored, stopped, targets not met, ..."),
        ("detail", "What happened."),
    ]),
    ("fleet_devices", "Fleet devices (issue #18): an inventory host and its hardware fingerprint; a board replaced under the same name is a new row.", &[
        ("id", "Row id."),
        ("host", "The inventory's name for it."),
        ("fingerprint", "16 hex digits of the SHA-256 of CPU model, cores, RAM (MiB), kernel, runtime target and kernels."),
        ("class", "sintra_class, else its profile, else its runtime target."),
        ("cpu_model", "As the runtime reports it: /proc/cpuinfo's model name, or the board's device-tree model."),
        ("cores", "Cores available to the runtime."),
        ("ram_bytes", "Total RAM, bytes."),
        ("kernel", "uname -r."),
        ("target", "The runtime's target triple."),
        ("isa", "The kernels the runtime chose (avx2, avx512+vnni, neon+dotprod, ...)."),
        ("first_seen", "First handshake, UTC."),
        ("last_seen", "Latest handshake, UTC."),
    ]),
    ("fleet_measurements", "Every figure on a fleet device (sintra bench --fleet, sintra --fleet), or why there is none.", &[
        ("id", "Row id."),
        ("host", "The inventory's name for the device."),
        ("device_id", "The device (fleet_devices.id); empty when it never answered."),
        ("command", "bench or optimize."),
        ("run_id", "The run (runs.id) for optimize."),
        ("iteration", "The experiment (0: the original) for optimize."),
        ("model", "The model's name or file name."),
        ("recipe", "The candidate's label (as is, original, Q4_K ...)."),
        ("status", "ok, unreachable, lost, timed out or failed."),
        ("error", "Why there is no figure."),
        ("tg_tps", "Generation, tokens/s (median)."),
        ("tg_min", "Slowest generation repetition kept."),
        ("tg_max", "Fastest generation repetition kept."),
        ("pp_tps", "Prompt processing, tokens/s (median)."),
        ("ratio", "The candidate's speed over the original's in the same interleaved rounds on this device."),
        ("measured_at", "When, UTC."),
    ]),
];

/// datasette's metadata for the history database (served as database `name`).
pub fn metadata(name: &str) -> Value {
    let mut tables = serde_json::Map::new();
    for (table, description, columns) in TABLES {
        let cols: serde_json::Map<String, Value> = columns
            .iter()
            .map(|(c, d)| (c.to_string(), json!(d)))
            .collect();
        tables.insert(
            table.to_string(),
            json!({"description": description, "columns": cols}),
        );
    }
    json!({
        "title": "Sintra history",
        "description": "Every optimization run, experiment, LLM exchange and fleet measurement Sintra recorded. Speeds are medians of repetitions after a warm-up; quality is measured against the original model on held-out text.",
        "source": "sintra",
        "databases": {
            name: {
                "description": "Sintra's history (SQLite, WAL): written by sintra, read by sintra history and datasette.",
                "tables": tables,
                "queries": {
                    "best_per_model_and_device": {
                        "title": "Best recipe meeting every target, per model and device",
                        "sql": "SELECT m.name AS model, d.name AS device, e.recipe, MAX(e.top1) AS top1, e.tps, e.size_bytes, e.run_id, e.iteration FROM experiments e JOIN runs r ON r.id = e.run_id JOIN models m ON m.id = r.model_id JOIN devices d ON d.id = r.device_id WHERE e.passes = 1 AND e.mock = 0 GROUP BY m.name, d.name ORDER BY m.name, d.name",
                    },
                    "fleet_side_by_side": {
                        "title": "Fleet figures side by side (latest per device, model and recipe)",
                        "sql": "SELECT f.model, f.recipe, f.host, d.fingerprint, d.cpu_model, f.status, f.tg_tps, f.ratio, f.measured_at FROM fleet_measurements f LEFT JOIN fleet_devices d ON d.id = f.device_id WHERE f.id IN (SELECT MAX(id) FROM fleet_measurements GROUP BY model, recipe, host, device_id) ORDER BY f.model, f.recipe, f.tg_tps DESC",
                    },
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;

    /// Every column of every table of a migrated database is described, and nothing else.
    #[test]
    fn every_table_and_column_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        let m = metadata("h");
        let tables = m["databases"]["h"]["tables"].as_object().unwrap();
        let mut st = h
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let names: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names.len(), tables.len(), "{names:?}");
        for t in &names {
            let described = tables[t.as_str()]["columns"].as_object().unwrap();
            let mut st = h.conn.prepare(&format!("PRAGMA table_info({t})")).unwrap();
            let cols: Vec<String> = st
                .query_map([], |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(cols.len(), described.len(), "{t}: {cols:?}");
            for c in cols {
                assert!(described.contains_key(&c), "{t}.{c} has no description");
            }
        }
        // The canned queries run on the schema.
        for q in m["databases"]["h"]["queries"].as_object().unwrap().values() {
            h.conn.prepare(q["sql"].as_str().unwrap()).unwrap();
        }
    }
}
