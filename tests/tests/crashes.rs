//! Issue #20, item 2 (in part): crashes at any moment. An optimizer run (`--mock`: the loop,
//! the architect, the history, checkpoints and reports as in a real run; the measurements from
//! the documented formula) is killed with SIGKILL at 20 random moments, resumed each time, and
//! finally resumed to its end. Then no experiment may be lost or recorded twice (the history
//! holds exactly the checkpoint's iterations, 1..n), no temporary or half-written file may be
//! left in the outputs or `$SINTRA_HOME`, and the database must pass `PRAGMA integrity_check`.
//! The kill moments come from a seed printed on failure.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Every file under `dir` whose name marks it as temporary or half-written.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                todo.push(p);
            } else if name.ends_with(".tmp")
                || name.ends_with(".part")
                || name.contains(".candidate-")
            {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn twenty_kills_lose_nothing_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64: the kill moments, reproducible from the seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let iters = ["--max-iters", "40", "--patience", "40"];
    let mut kills = 0;
    let mut killed_after = Vec::new();
    for round in 0..=20 {
        let mut cmd = if round == 0 {
            let mut a = vec!["--auto-detect", "--mock", "--output-dir", "out"];
            a.extend(iters);
            sintra(&a)
        } else {
            let mut a = vec!["--resume"];
            a.extend(&iters[..2]);
            sintra(&a)
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(5 + next() % 150);
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        killed_after.push(wait.as_millis());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked"),
            "seed {seed}, round {round}: {err}"
        );
    }
    let out = sintra(&["--resume", "--max-iters", "40"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "seed {seed} (kills after {killed_after:?} ms): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        kills >= 10,
        "only {kills} of 21 runs were still going when killed"
    );
    let run = crate::planner::run_id(&stdout);
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("checkpoints").join(format!("{run}.json"))).unwrap(),
    )
    .unwrap();
    let want: Vec<u64> = cp["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(
        want,
        (1..=want.len() as u64).collect::<Vec<_>>(),
        "seed {seed}"
    );
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let got: Vec<u64> = db
        .prepare("SELECT iteration FROM experiments WHERE run_id = ?1 ORDER BY iteration")
        .unwrap()
        .query_map([&run], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got, want,
        "seed {seed}: the history and the checkpoint disagree"
    );
    let left = [leftovers(&home), leftovers(&dir.path().join("out"))].concat();
    assert!(left.is_empty(), "seed {seed}: left behind: {left:?}");
    let report =
        std::fs::read_to_string(dir.path().join("out").join(&run).join("report.md")).unwrap();
    assert!(report.contains(&format!("| {} ", want.len())), "{report}");
    eprintln!(
        "seed {seed}: {kills} kills (after {killed_after:?} ms), {} experiments",
        want.len()
    );
}
