//! The planner (`sintra`) end to end through the real binary: a `--mock` run, `--dry-run`,
//! bad profiles, resuming (after `--max-iters` and after a kill), and a real two-iteration run
//! on SmolLM2 measured by the real `sintra-rt` on this host.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn sintra(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(sintra_tests::bin_path("planner", "sintra"))
        .args(args)
        .current_dir(cwd)
        .env("SINTRA_HOME", home)
        .env(
            "SINTRA_MODELS",
            sintra_tests::smollm2_q4_1().parent().unwrap(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "sintra panicked on {args:?}:\n{stderr}"
    );
    out
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sintra failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn checkpoints(home: &Path) -> Vec<Value> {
    let dir = home.join("checkpoints");
    let mut v: Vec<Value> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|c| c["run_id"].as_str().unwrap_or("").to_string());
    v
}

fn experiments(cp: &Value) -> Vec<Value> {
    cp["experiments"].as_array().cloned().unwrap_or_default()
}

fn plan_keys(exps: &[Value]) -> Vec<String> {
    exps.iter()
        .map(|e| e["plan_key"].as_str().unwrap().to_string())
        .collect()
}

fn assert_distinct(keys: &[String]) {
    let set: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(
        set.len(),
        keys.len(),
        "an experiment was repeated: {keys:?}"
    );
}

#[test]
fn mock_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = ok(&sintra(
        &home,
        tmp.path(),
        &["rpi4", "--mock", "--max-iters", "5", "--output-dir", "out"],
    ));
    assert!(out.contains("[MOCK"), "{out}");
    assert!(out.contains("#1 ") && out.contains("stopped:"), "{out}");
    let cps = checkpoints(&home);
    assert_eq!(cps.len(), 1);
    let id = cps[0]["run_id"].as_str().unwrap();
    let exps = experiments(&cps[0]);
    assert!(!exps.is_empty() && exps.len() <= 5);
    assert!(exps
        .iter()
        .all(|e| e["mock"] == true && e["status"] == "ok"));
    assert_distinct(&plan_keys(&exps));
    let run_dir = tmp.path().join("out").join(id);
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        report.contains("MOCK RUN") && report.contains("Pareto front"),
        "{report}"
    );
    let recipe = std::fs::read_to_string(run_dir.join("recipe.json")).unwrap();
    assert!(serde_json::from_str::<Value>(&recipe).unwrap()["default_type"].is_string());
    assert!(std::fs::read_to_string(run_dir.join("pareto.svg"))
        .unwrap()
        .starts_with("<svg"));
    assert!(
        !run_dir.join("model.gguf").exists(),
        "a mock run writes no model"
    );
    let hist = ok(&sintra(&home, tmp.path(), &["history"]));
    assert!(hist.contains(id) && hist.contains("[mock]"), "{hist}");
}

#[test]
fn dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = ok(&sintra(
        &home,
        tmp.path(),
        &["rpi5", "--dry-run", "--output-dir", "out"],
    ));
    for want in [
        "DRY RUN",
        "profile:",
        "targets:",
        "model:",
        "first candidates",
        "pred tok/s",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    assert!(!home.exists(), "dry run created {}", home.display());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "dry run wrote into the directory"
    );
}

#[test]
fn bad_profiles_and_recipes_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cases = [
        ("name: x\nconstraints: {cpu_arch: arm64, ram_gb: 4, colour: red}\n", "colour"),
        ("name: x\nconstraints: {cpu_arch: arm64, ram_gb: 4}\ntargets: {min_accuracy_score: 2}\n", "targets.min_accuracy_score"),
        ("name: x\nconstraints: {cpu_arch: z80, ram_gb: 4}\n", "constraints.cpu_arch"),
    ];
    for (yaml, field) in cases {
        let p = tmp.path().join("p.yaml");
        std::fs::write(&p, yaml).unwrap();
        let out = sintra(&home, tmp.path(), &[p.to_str().unwrap(), "--dry-run"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(field),
            "{yaml}: {err}"
        );
    }
    let recipe = tmp.path().join("r.json");
    std::fs::write(&recipe, r#"{"default_type":"Q4_K","overides":[]}"#).unwrap();
    let model = sintra_tests::smollm2_q4_1();
    let out = sintra(
        &home,
        tmp.path(),
        &[
            "compress",
            model.to_str().unwrap(),
            "--recipe",
            recipe.to_str().unwrap(),
            "-o",
            "x.gguf",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("overides"), "{err}");
    std::fs::write(&recipe, r#"{"default_type":"Q4_K","drop_layers":[2]}"#).unwrap();
    let out = sintra(
        &home,
        tmp.path(),
        &[
            "compress",
            model.to_str().unwrap(),
            "--recipe",
            recipe.to_str().unwrap(),
            "-o",
            "x.gguf",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not supported yet (issue #7)"),
        "{err}"
    );
    assert!(!tmp.path().join("x.gguf").exists());
}

#[test]
fn mock_resume_continues_without_repeating() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let args = [
        "x86-laptop",
        "--mock",
        "--max-iters",
        "2",
        "--patience",
        "50",
        "--output-dir",
        "out",
    ];
    ok(&sintra(&home, tmp.path(), &args));
    let before = checkpoints(&home).remove(0);
    assert_eq!(experiments(&before).len(), 2);
    let id = before["run_id"].as_str().unwrap().to_string();
    let list = ok(&sintra(&home, tmp.path(), &["--list-checkpoints"]));
    assert!(list.contains(&id), "{list}");
    ok(&sintra(
        &home,
        tmp.path(),
        &["--resume", &id, "--max-iters", "5"],
    ));
    let after = checkpoints(&home).remove(0);
    let exps = experiments(&after);
    assert_eq!(exps.len(), 5, "{after:#}");
    assert_eq!(
        exps[..2],
        experiments(&before)[..],
        "resuming changed earlier experiments"
    );
    let iters: Vec<u64> = exps
        .iter()
        .map(|e| e["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(iters, vec![1, 2, 3, 4, 5]);
    assert_distinct(&plan_keys(&exps));
}

/// A real run on SmolLM2 with the real sintra-rt: killed after its first iteration, resumed,
/// finished at `--max-iters 2`. Nothing is lost or measured twice.
#[test]
fn real_run_killed_and_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let sintra_bin = sintra_tests::release_bin_path("planner", "sintra");
    let rt = sintra_tests::release_bin_path("runtime", "sintra-rt");
    let eval = sintra_tests::shared_data("eval.txt");
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&sintra_bin);
        c.args(args)
            .current_dir(tmp.path())
            .env("SINTRA_HOME", &home)
            .env("SINTRA_RT", &rt)
            .env(
                "SINTRA_MODELS",
                sintra_tests::smollm2_q4_1().parent().unwrap(),
            );
        c
    };
    let run_args = [
        "--auto-detect",
        "--max-iters",
        "2",
        "--target-tps",
        "1",
        "--target-accuracy",
        "0.5",
        "--eval-text",
        eval.to_str().unwrap(),
        "--eval-chunks",
        "2",
        "--output-dir",
        "out",
    ];
    let mut child = cmd(&run_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let first = loop {
        if let Some(cp) = checkpoints(&home).pop() {
            if !experiments(&cp).is_empty() {
                break cp;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sintra exited before its first checkpoint"
        );
        assert!(
            start.elapsed() < Duration::from_secs(400),
            "no first iteration in 400 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let id = first["run_id"].as_str().unwrap().to_string();
    let e1 = &experiments(&first)[0];
    assert_eq!(e1["status"], "ok", "{e1:#}");

    let out = cmd(&["--resume", &id]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("resuming run") && stdout.contains("#2 "),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("#1 ")),
        "iteration 1 was measured again:\n{stdout}"
    );
    let cp = checkpoints(&home).pop().unwrap();
    let exps = experiments(&cp);
    assert_eq!(exps.len(), 2);
    assert_eq!(&exps[0], e1, "the first experiment changed");
    assert_distinct(&plan_keys(&exps));
    for e in &exps {
        assert_eq!(e["status"], "ok", "{e:#}");
        assert_eq!(e["mock"], false);
        let q = &e["quality"];
        let (top1, kld) = (q["top1"].as_f64().unwrap(), q["kld"].as_f64().unwrap());
        assert!(
            top1 > 0.5 && top1 <= 1.0 && (0.0..1.0).contains(&kld),
            "{q}"
        );
        assert!(e["speed"]["tg_tps"].as_f64().unwrap() > 0.0);
        eprintln!(
            "real run #{}: {} size {} B, {:.2} tok/s, top-1 {top1:.4}, KLD {kld:.5}",
            e["iteration"],
            e["label"],
            e["size_bytes"],
            e["speed"]["tg_tps"].as_f64().unwrap()
        );
    }
    let run_dir = tmp.path().join("out").join(&id);
    let model = formats::gguf::GgufFile::open(run_dir.join("model.gguf")).unwrap();
    assert!(model.header.get("sintra.recipe").is_some());
    assert!(std::fs::read_to_string(run_dir.join("report.md"))
        .unwrap()
        .contains("Best recipe"));
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".candidate-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "candidates left behind: {leftovers:?}"
    );
}
