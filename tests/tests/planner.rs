//! The planner (`sintra`) end to end through the real binary: a `--mock` run, `--dry-run`,
//! bad profiles, resuming (after `--max-iters` and after `kill -9`), an LLM architect whose API
//! key must never be recorded, and issue #6's acceptance run: SmolLM2 in Q8_0 made to fit a
//! speed target it misses, measured by the real `sintra-rt serve` on this host.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn sintra(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
        .args(args)
        .current_dir(cwd)
        .env("SINTRA_HOME", home)
        .env(
            "SINTRA_MODELS",
            sintra_tests::smollm2_q4_1().parent().unwrap(),
        )
        .output()
        .unwrap();
    sintra_tests::unpanicked(out, &format!("sintra {args:?}"))
}

fn ok(out: &Output) -> String {
    sintra_tests::succeeded(out)
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
        ("name: x\nconstraints: {cpu_arch: arm64, ram_gb: 4}\ntargets: {min_speedup: 0}\n", "targets.min_speedup"),
        // A valid relative target that a dry run cannot measure.
        ("name: x\nconstraints: {cpu_arch: arm64, ram_gb: 4}\ntargets: {min_speedup: 1.5}\n", "targets.min_speedup) needs the original model measured"),
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
    let model = sintra_tests::smollm2_q4_1();
    for (json, expected) in [
        (r#"{"default_type":"Q4_K","overides":[]}"#, "overides"),
        (
            r#"{"default_type":"Q4_K","drop_layers":[30]}"#,
            "drop_layers[0]",
        ),
        (
            r#"{"default_type":"Q4_K","ffn_prune":{"ratio":1.5,"per_layer":null}}"#,
            "ffn_prune.ratio",
        ),
    ] {
        std::fs::write(&recipe, json).unwrap();
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
            !out.status.success() && err.contains(expected),
            "{json}: {err}"
        );
    }
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

/// The release `sintra` (with `sintra-rt` built next to it, where it looks first) and an
/// environment for it.
pub(crate) fn release_sintra(home: &Path, cwd: &Path) -> impl Fn(&[&str]) -> Command {
    let bin = sintra_tests::release_bin_path("planner", "sintra");
    let rt = sintra_tests::release_bin_path("runtime", "sintra-rt");
    assert_eq!(rt.parent(), bin.parent(), "sintra-rt is not next to sintra");
    let (home, cwd) = (home.to_path_buf(), cwd.to_path_buf());
    move |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args)
            .current_dir(&cwd)
            .env("SINTRA_HOME", &home)
            .env_remove("SINTRA_RUNTIME_DIR")
            .env("SINTRA_CACHE", sintra_tests::model_cache())
            .env(
                "SINTRA_MODELS",
                sintra_tests::smollm2_q4_1().parent().unwrap(),
            );
        c
    }
}

/// The id of the run whose output is `stdout` (its `run ID: ...` line).
pub(crate) fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split(':').next())
        .unwrap_or_else(|| panic!("no run id in:\n{stdout}"))
        .to_string()
}

/// A `--mock` run of `iterations` on this host's description into `out/`; its id.
pub(crate) fn mock_run(sintra: &dyn Fn(&[&str]) -> Command, iterations: &str) -> String {
    let out = sintra(&[
        "--auto-detect",
        "--mock",
        "--max-iters",
        iterations,
        "--output-dir",
        "out",
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    run_id(&stdout)
}

/// `PRAGMA integrity_check` of a history database says "ok" (`why` heads the failure).
pub(crate) fn assert_whole(db: &rusqlite::Connection, why: &str) {
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{why}: the history database is damaged");
}

/// Rows of the history database: `SELECT iteration, status FROM experiments` for a run.
pub(crate) fn db_experiments(home: &Path, run: &str) -> Vec<(u32, String)> {
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let mut st = db
        .prepare("SELECT iteration, status FROM experiments WHERE run_id = ?1 ORDER BY iteration")
        .unwrap();
    let rows = st
        .query_map([run], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// Issue #6's acceptance: SmolLM2 in Q8_0 with a speed target the Q8_0 model misses on this
/// host (`--target-speedup 1.1`: 10% above its own one-thread speed, which the planner measures
/// at the start of the run, in the same session as the candidates) and a top-1 target well
/// below what 4-bit types reach. `sintra` must find a recipe meeting both within 5 iterations,
/// record every experiment, and leave a GGUF that llama.cpp loads and generates with, the
/// recipe and a report. The test fails if the measurements, the architect or the loop do not
/// get there.
#[test]
fn optimizer_fits_q8_0_to_a_speed_target() {
    let _one = sintra_tests::measuring_lock();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cmd = release_sintra(&home, tmp.path());
    let q8 = sintra_tests::requant::smollm2_as(formats::quant::GgmlType::Q8_0);
    let eval = sintra_tests::data_file("eval.txt");

    // The speed target is 1.1 x the Q8_0 source's own speed, which the planner measures on
    // the device in the same session just before the loop (so the source misses it by
    // construction, and load on this shared machine moves target and candidates together).
    // One thread, whose speed is shared out fairly under load: Q4_1 and Q4_K measured 1.17x
    // and 1.09x Q8_0 so, Q4_0 more. Two threads on two cores busy with other tests measure
    // mostly waits for descheduled workers, the same for every file (Q4_0 measured 1.11x).
    let t0 = Instant::now();
    let out = cmd(&[
        "--auto-detect",
        "--model-id",
        q8.to_str().unwrap(),
        "--target-speedup",
        "1.1",
        "--threads",
        "1",
        "--target-accuracy",
        "0.7",
        "--no-sensitivity",
        "--max-iters",
        "5",
        "--patience",
        "0",
        "--eval-text",
        eval.to_str().unwrap(),
        "--eval-chunks",
        "1",
        "--output-dir",
        "out",
    ])
    .output()
    .unwrap();
    let stdout = ok(&out);
    eprintln!("{stdout}\n({:.0} s)", t0.elapsed().as_secs_f64());
    assert!(
        stdout.contains("runtime sessions (wire protocol handshakes): 1 on this host"),
        "the run did not keep one runtime session:\n{stdout}"
    );
    let cp = checkpoints(&home).pop().expect("a checkpoint");
    let id = cp["run_id"].as_str().unwrap().to_string();
    let target_tps = cp["targets"]["min_tokens_per_second"]["value"]
        .as_f64()
        .unwrap();
    let target = format!("{target_tps:.2}");
    let source = cp["targets"]["min_tokens_per_second"]["source"]
        .as_str()
        .unwrap();
    assert!(source.starts_with("--target-speedup 1.1"), "{source}");
    let exps = experiments(&cp);
    assert!(
        !exps.is_empty() && exps.len() <= 5,
        "{} experiments",
        exps.len()
    );
    let passing: Vec<&Value> = exps
        .iter()
        .filter(|e| {
            e["verdict"]["checks"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["ok"] == true))
        })
        .collect();
    assert_eq!(cp["targets"]["min_speedup"]["value"].as_f64(), Some(1.1));
    let best = passing.first().unwrap_or_else(|| {
        panic!("no recipe met 1.1x the original ({target} tok/s at its reference) and top-1 >= 0.7 in 5 iterations:\n{stdout}")
    });
    // The speed is judged on the ratio to the original re-measured in the candidate's rounds
    // (drift on this shared machine moves both), and that ratio is what the checkpoint holds.
    let ratio = best["speed"]["baseline"]["ratio"].as_f64().unwrap();
    let check = &best["verdict"]["checks"][0];
    assert_eq!(check["name"], "speedup", "{best:#}");
    assert_eq!(check["value"].as_f64(), Some(ratio), "{best:#}");
    let top1 = best["quality"]["top1"].as_f64().unwrap();
    assert!(ratio >= 1.1 && (0.7..=1.0).contains(&top1), "{best:#}");
    for e in &exps {
        assert_eq!(e["mock"], false);
        assert_eq!(e["speed"]["measured_on"], "host", "{e:#}");
    }
    // Every experiment is in the database, once.
    let rows = db_experiments(&home, &id);
    let want: Vec<(u32, String)> = exps
        .iter()
        .map(|e| {
            (
                e["iteration"].as_u64().unwrap() as u32,
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows, want);
    // The outputs: the GGUF, the recipe, the report.
    let run_dir = tmp.path().join("out").join(&id);
    let recipe: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("recipe.json")).unwrap())
            .unwrap();
    assert!(recipe["default_type"].is_string(), "{recipe}");
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(report.contains("meets all"), "{report}");
    let gguf = run_dir.join("model.gguf");
    let size = std::fs::metadata(&gguf).unwrap().len();
    assert!(
        size < std::fs::metadata(&q8).unwrap().len(),
        "the best model ({size} B) is not smaller than the Q8_0 source"
    );
    let (tokens, text) =
        sintra_tests::llama::generate_greedy(&gguf, "The capital of France is", 8, 2).unwrap();
    assert!(!tokens.is_empty(), "llama.cpp generated nothing");
    eprintln!(
        "best #{} {}: {size} B, {:.2} tok/s, {ratio:.3}x the original (target 1.1x, {target} tok/s at its reference), top-1 {top1:.4}, KLD {:.5}; llama.cpp continues: {text:?}",
        best["iteration"], best["label"], best["speed"]["tg_tps"], best["quality"]["kld"]
    );
}

/// `kill -9` of the planner while an iteration is being measured, then `--resume`: the run
/// finishes with every experiment once, in the checkpoint and in the database.
#[test]
fn real_run_killed_mid_iteration_and_resumed() {
    // What is held does not depend on the speeds measured: it runs beside the other tests
    // that load the machine, never beside a timed one.
    let _loading = sintra_tests::loading_lock();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cmd = release_sintra(&home, tmp.path());
    let eval = sintra_tests::data_file("eval.txt");
    let run_args = [
        "--auto-detect",
        "--no-sensitivity",
        "--max-iters",
        "3",
        "--patience",
        "50",
        "--target-tps",
        "1",
        "--target-accuracy",
        "0.5",
        "--eval-text",
        eval.to_str().unwrap(),
        "--eval-chunks",
        "1",
        "--output-dir",
        "out",
    ];
    let mut child = cmd(&run_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for iteration 1 to be checkpointed and iteration 2's candidate to be written: the
    // planner is then benchmarking or scoring it through its runtime.
    let start = Instant::now();
    let first = loop {
        let cp = checkpoints(&home).pop();
        if let Some(cp) = cp.filter(|c| experiments(c).len() == 1) {
            let out = tmp.path().join("out").join(cp["run_id"].as_str().unwrap());
            if out.join(".candidate-2.gguf").exists() {
                break cp;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sintra exited before its second iteration"
        );
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no second iteration in 600 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // std's Child::kill is SIGKILL on Unix: no handler runs, nothing is flushed.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");
    let id = first["run_id"].as_str().unwrap().to_string();
    let e1 = experiments(&first)[0].clone();
    assert_eq!(e1["status"], "ok", "{e1:#}");
    assert_eq!(db_experiments(&home, &id), vec![(1, "ok".to_string())]);

    let out = cmd(&["--resume", &id]).output().unwrap();
    let stdout = ok(&out);
    assert!(
        stdout.contains("resuming run") && stdout.contains("#2 ") && stdout.contains("#3 "),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("#1 ")),
        "iteration 1 was measured again:\n{stdout}"
    );
    let cp = checkpoints(&home).pop().unwrap();
    let exps = experiments(&cp);
    assert_eq!(exps.len(), 3);
    // The first experiment is not measured again. Its quality may only have been scored again
    // on more windows (when a later candidate came within its noise), and its verdict with it.
    let unscored = |e: &Value| {
        let mut e = e.clone();
        for k in ["quality", "verdict"] {
            e.as_object_mut().unwrap().remove(k);
        }
        e
    };
    assert_eq!(
        unscored(&exps[0]),
        unscored(&e1),
        "the first experiment changed"
    );
    if exps[0]["quality"] != e1["quality"] {
        assert!(
            exps[0]["quality"]["windows"].as_u64() > e1["quality"]["windows"].as_u64(),
            "the first experiment's quality changed without more windows: {:#} -> {:#}",
            e1["quality"],
            exps[0]["quality"]
        );
    }
    assert_distinct(&plan_keys(&exps));
    let iters: Vec<u64> = exps
        .iter()
        .map(|e| e["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(iters, vec![1, 2, 3]);
    assert_eq!(
        db_experiments(&home, &id),
        vec![(1, "ok".into()), (2, "ok".into()), (3, "ok".into())],
        "the database lost or duplicated an experiment"
    );
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

/// A loopback OpenAI-compatible server: the first request gets a 500, every later one a
/// recipe from `recipes` in turn. Returns its base URL and what it received (each request's
/// head and body).
fn fake_openai(recipes: &'static [&'static str]) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head += &line;
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            log.lock()
                .unwrap()
                .push(format!("{head}{}", String::from_utf8_lossy(&body)));
            let (status, text) = if n == 0 {
                (
                    "500 Internal Server Error",
                    r#"{"error":{"message":"try again"}}"#.to_string(),
                )
            } else {
                let recipe = recipes[(n - 1) % recipes.len()];
                let reply = serde_json::json!({
                    "id": "x",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": recipe}, "finish_reason": "stop"}],
                });
                ("200 OK", reply.to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (format!("http://{addr}/v1"), seen)
}

/// Every file under `dir` (the history database with its WAL, checkpoints, reports) as bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

/// An LLM-architect loop (`--provider openai` against a loopback server, `--mock`, trace
/// logging) with a fake API key in the environment: the key reaches the server, and nowhere
/// else: not the database, the checkpoints, the outputs, stdout or the logs.
#[test]
fn api_key_never_reaches_the_database_or_the_logs() {
    const KEY: &str = "sk-sintra-test-0123456789abcdefSECRET";
    static RECIPES: &[&str] = &[
        r#"{"default_type": "Q4_K", "overrides": [], "drop_layers": [], "imatrix": false}"#,
        r#"{"default_type": "Q5_K", "overrides": [{"tensor": "token_embd\\.weight", "type": "Q8_0"}], "drop_layers": [], "imatrix": false}"#,
        r#"{"default_type": "Q4_0", "overrides": [], "drop_layers": [], "imatrix": false}"#,
    ];
    let (base, seen) = fake_openai(RECIPES);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = Command::new(sintra_tests::release_bin_path("planner", "sintra"))
        .args([
            "rpi5",
            "--mock",
            "--provider",
            "openai",
            "--model",
            "test-model",
            "--max-iters",
            "3",
            "--patience",
            "50",
            "--debug",
            "--output-dir",
            "out",
        ])
        .current_dir(tmp.path())
        .env("SINTRA_HOME", &home)
        .env(
            "SINTRA_MODELS",
            sintra_tests::smollm2_q4_1().parent().unwrap(),
        )
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", &base)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests.len() >= 3,
        "the server heard {} requests",
        requests.len()
    );
    assert!(
        requests
            .iter()
            .all(|r| r.contains(&format!("Bearer {KEY}"))),
        "the key was not sent to the server"
    );
    let home_files = all_files(&home);
    assert!(
        home_files.iter().any(|(p, _)| p.ends_with("history.db")),
        "no history database"
    );
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let prompts: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM prompts WHERE provider LIKE '%openai%' AND response IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        prompts >= 2,
        "the language model's answers were not recorded ({prompts})"
    );
    drop(db);
    let mut leaks: Vec<String> = Vec::new();
    for (p, bytes) in home_files
        .iter()
        .chain(all_files(&tmp.path().join("out")).iter())
    {
        if bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()) {
            leaks.push(p.display().to_string());
        }
    }
    if stdout.contains(KEY) {
        leaks.push("stdout".into());
    }
    if stderr.contains(KEY) {
        leaks.push("stderr (logs)".into());
    }
    assert!(leaks.is_empty(), "the API key leaked into {leaks:?}");
    assert!(
        stderr.contains("DEBUG") || stderr.contains("TRACE"),
        "no logs were captured:\n{stderr}"
    );
}

/// A runtime that dies mid-measurement (killed 2 s after each start, while it scores the
/// original) fails the experiment being measured, which is recorded with the runtime's fate;
/// the planner opens a fresh runtime for the next iteration and finishes the run.
#[test]
fn dead_runtime_is_a_failed_experiment_not_a_dead_planner() {
    // What is held does not depend on the speeds measured: it runs beside the other tests
    // that load the machine, never beside a timed one.
    let _loading = sintra_tests::loading_lock();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cmd = release_sintra(&home, tmp.path());
    let real = sintra_tests::release_bin_path("runtime", "sintra-rt");
    let dir = tmp
        .path()
        .join("rt")
        .join(format!("{}-unknown-linux-musl", std::env::consts::ARCH));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("sintra-rt");
    std::fs::write(
        &wrapper,
        format!(
            // Killed a second after it starts: after its handshake (milliseconds), before the
            // original's benchmark ends (the fast kernels of issue #14 finished it within 2 s).
            "#!/bin/sh\n(sleep 1; kill -9 $$) </dev/null >/dev/null 2>&1 &\nexec \"{}\" \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let eval = sintra_tests::data_file("eval.txt");
    let out = cmd(&[
        "--auto-detect",
        "--no-sensitivity",
        "--max-iters",
        "2",
        "--target-tps",
        "1",
        "--eval-text",
        eval.to_str().unwrap(),
        "--eval-chunks",
        "1",
        "--output-dir",
        "out",
    ])
    .env("SINTRA_RUNTIME_DIR", tmp.path().join("rt"))
    .output()
    .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("no experiment succeeded"), "{stdout}");
    // Three runtimes: the one the original's benchmark started (killed, and with a given
    // target the run goes on without the original beside the candidates), then one per
    // experiment, each started afresh after the last died.
    assert!(
        stdout.contains("the original model could not be benchmarked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("runtime sessions (wire protocol handshakes): 3 on this host"),
        "a new runtime was not started after the first died:\n{stdout}"
    );
    let cp = checkpoints(&home).pop().unwrap();
    let exps = experiments(&cp);
    assert_eq!(exps.len(), 2);
    for e in &exps {
        assert_eq!(e["status"], "failed", "{e:#}");
        let err = e["error"].as_str().unwrap();
        assert!(
            err.contains("stopped during") && err.contains("signal 9"),
            "{err}"
        );
    }
    let id = cp["run_id"].as_str().unwrap();
    assert_eq!(
        db_experiments(&home, id),
        vec![(1, "failed".into()), (2, "failed".into())]
    );
}

/// A profile whose `connection` is an ssh device (our own sshd on 127.0.0.1, the static x86-64
/// runtime as the device's build): speed is measured there, over one ssh session that deploys
/// the runtime once and each candidate under one name; quality on this host.
#[test]
fn optimizer_measures_speed_on_the_profile_device_over_ssh() {
    // What is held does not depend on the speeds measured: it runs beside the other tests
    // that load the machine, never beside a timed one.
    let _loading = sintra_tests::loading_lock();
    const TRIPLE: &str = "x86_64-unknown-linux-musl";
    let sshd = sintra_tests::Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cmd = release_sintra(&home, tmp.path());
    let rt_dir = tmp.path().join("rt").join(TRIPLE);
    std::fs::create_dir_all(&rt_dir).unwrap();
    std::fs::copy(sintra_tests::dist_runtime(TRIPLE), rt_dir.join("sintra-rt")).unwrap();
    let remote = sshd.remote_dir("device");
    let profile = tmp.path().join("box.yaml");
    std::fs::write(
        &profile,
        format!(
            "name: ssh-box\nconstraints: {{cpu_arch: x86_64, ram_gb: 4, cores: 2, memory_bandwidth_gbps: 10}}\n\
             targets: {{min_tokens_per_second: 1, min_accuracy_score: 0.5}}\nsupported_quantizations: [GGUF]\n\
             connection: {{host: sintra-test, runtime_target: {TRIPLE}}}\n"
        ),
    )
    .unwrap();
    let eval = sintra_tests::data_file("eval.txt");
    let out = cmd(&[
        profile.to_str().unwrap(),
        "--ssh-config",
        sshd.ssh_config().to_str().unwrap(),
        "--remote-dir",
        remote.to_str().unwrap(),
        "--no-sensitivity",
        "--max-iters",
        "2",
        "--patience",
        "50",
        "--eval-text",
        eval.to_str().unwrap(),
        "--eval-chunks",
        "1",
        "--output-dir",
        "out",
    ])
    .env("SINTRA_RUNTIME_DIR", tmp.path().join("rt"))
    .output()
    .unwrap();
    let stdout = ok(&out);
    assert!(
        stdout.contains("speed is measured on sintra-test (ssh)")
            && stdout.contains("1 on this host, 1 on sintra-test"),
        "{stdout}"
    );
    let cp = checkpoints(&home).pop().unwrap();
    let exps = experiments(&cp);
    assert_eq!(exps.len(), 2);
    for e in &exps {
        assert_eq!(e["status"], "ok", "{e:#}");
        assert_eq!(e["speed"]["measured_on"], "sintra-test", "{e:#}");
        assert!(e["speed"]["tg_tps"].as_f64().unwrap() > 0.0);
        assert!(e["quality"]["top1"].as_f64().unwrap() > 0.5);
        // The original was re-measured on the device in rounds interleaved with the candidate's.
        assert!(
            e["speed"]["baseline"]["ratio"].as_f64().unwrap() > 0.0,
            "{e:#}"
        );
    }
    // On the device: the runtime built for the profile's triple, the original (kept under its
    // own name: it is measured beside every candidate) and one candidate file.
    assert!(remote.join(format!("sintra-rt-{TRIPLE}")).is_file());
    let models: Vec<_> = std::fs::read_dir(remote.join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut models = models;
    models.sort();
    assert_eq!(models, vec!["candidate.gguf", "original.gguf"]);
}
