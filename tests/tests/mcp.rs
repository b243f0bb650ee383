//! `sintra mcp` (issue #19) with the official MCP Python SDK (PyPI `mcp`, installed by the
//! setup script) as the client: it lists the tools and calls inspect, bench (with progress
//! notifications), optimize (a mock run, progress per iteration) and history on the real
//! server; a missing model is a tool error that names it, bad arguments a protocol error.

use sintra_tests::{python, release_bin_path, repo_root, smollm2_q4_1};

#[test]
fn the_official_mcp_client_lists_and_calls_the_tools() {
    // No lock: the tools it calls hold nothing that depends on speed (a 16-token bench whose
    // figures need only be positive, a mock optimize), and it takes a few seconds; waiting
    // for the measuring lock it kept one of the harness's two slots idle for minutes.
    let sintra = release_bin_path("planner", "sintra");
    // The tools run sintra-rt from beside sintra.
    release_bin_path("runtime", "sintra-rt");
    let dir = tempfile::tempdir().unwrap();
    let model = smollm2_q4_1();
    let out = python()
        .arg(repo_root().join("tests/python/mcp_client.py"))
        .arg(&sintra)
        .arg(&model)
        .arg(dir.path().join("outputs"))
        .current_dir(dir.path())
        .env("SINTRA_HOME", dir.path().join("home"))
        .env("SINTRA_CACHE", sintra_tests::model_cache())
        .env("SINTRA_MODELS", model.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(seen["server"], "sintra");
    let tools = seen["tools"].as_object().unwrap();
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["bench", "compress", "history", "inspect", "optimize"]
    );
    for (name, schema) in tools {
        assert_eq!(schema["type"], "object", "{name}: {schema}");
    }
    assert_eq!(seen["inspect"]["error"], false);
    assert_eq!(
        seen["inspect"]["json"]["architecture"], "llama",
        "{}",
        seen["inspect"]
    );
    assert!(seen["inspect"]["json"]["tensors"].as_array().unwrap().len() > 200);

    let bench = &seen["bench"];
    assert_eq!(bench["error"], false, "{bench}");
    let runs = bench["json"]["bench"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{bench}");
    for r in runs {
        let samples = r["samples_tok_s"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "{r}");
        assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{r}");
    }
    // Each repetition reported as it finished.
    let progress = bench["progress"].as_array().unwrap();
    assert!(progress.len() >= 4, "{bench}");
    assert!(
        progress
            .windows(2)
            .all(|w| w[0]["progress"].as_f64() < w[1]["progress"].as_f64()),
        "{progress:?}"
    );

    assert_eq!(seen["missing"]["error"], true);
    assert!(
        seen["missing"]["text"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/model.gguf"),
        "{}",
        seen["missing"]
    );
    let bad = seen["bad_arguments"].as_str().unwrap();
    assert!(bad.contains("n_gen") && bad.contains("-3"), "{bad}");

    let opt = &seen["optimize"];
    assert_eq!(opt["error"], false, "{opt}");
    let text = opt["text"].as_str().unwrap();
    assert!(text.contains("stopped: reached --max-iters 2"), "{text}");
    let steps: Vec<(f64, f64)> = opt["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["progress"].as_f64().unwrap(),
                p["total"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [(1.0, 2.0), (2.0, 2.0)], "{opt}");
    let run = text
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split(':').next())
        .unwrap();
    let history = seen["history"]["text"].as_str().unwrap();
    assert!(history.contains(run), "{run}: {history}");
}
