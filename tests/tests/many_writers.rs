//! Issue #20, item 4: many writers. Three optimizer runs (`--mock`: the loop, the history and
//! the reports as in a real run, the measurements from the documented formula) write one
//! history database at once while `sintra history` and `sintra ui`'s read-only queries read it
//! in a loop. No process may fail or print a lock error, and every experiment each run kept in
//! its checkpoint must be in the database, once.

use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn three_runs_and_readers_share_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    // The database exists before the writers race to create its tables.
    let first = sintra(&["history"]).output().unwrap();
    assert!(first.status.success());
    let writers: Vec<_> = (0..3)
        .map(|i| {
            sintra(&[
                "--auto-detect",
                "--mock",
                "--max-iters",
                "25",
                "--patience",
                "25",
                "--output-dir",
                &format!("out{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let t = Instant::now();
    let mut reads = 0;
    let mut reader_errors = Vec::new();
    let mut ui = sintra(&["ui", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(ui.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .trim_end_matches('/')
            .to_string()
    };
    let mut done = [false; 3];
    let mut writers: Vec<_> = writers.into_iter().map(Some).collect();
    let mut outputs = Vec::new();
    while outputs.len() < 3 {
        let h = sintra(&["history"]).output().unwrap();
        reads += 1;
        if !h.status.success() {
            reader_errors.push(String::from_utf8_lossy(&h.stderr).into_owned());
        }
        match ureq::get(&format!("{url}/api/runs")).call() {
            Ok(r) if r.status() == 200 => reads += 1,
            Ok(r) => reader_errors.push(format!("ui: {}", r.status())),
            Err(e) => reader_errors.push(format!("ui: {e}")),
        }
        for (i, w) in writers.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if w.as_mut().unwrap().try_wait().unwrap().is_some() {
                done[i] = true;
                outputs.push(w.take().unwrap().wait_with_output().unwrap());
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the runs did not end"
        );
    }
    let _ = ui.kill();
    let _ = ui.wait();
    assert!(reader_errors.is_empty(), "{reader_errors:?}");
    eprintln!(
        "3 runs of 25 iterations with {reads} reads beside them in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    for out in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        for bad in ["locked", "busy"] {
            assert!(!stderr.contains(bad), "{stderr}");
        }
        runs.push(crate::planner::run_id(&stdout));
    }
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    crate::planner::assert_whole(&db, "after the runs");
    for run in &runs {
        let cp: serde_json::Value = serde_json::from_slice(
            &std::fs::read(home.join("checkpoints").join(format!("{run}.json"))).unwrap(),
        )
        .unwrap();
        let mut want: Vec<u64> = cp["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["iteration"].as_u64().unwrap())
            .collect();
        want.sort_unstable();
        let got: Vec<u64> = db
            .prepare("SELECT iteration FROM experiments WHERE run_id = ?1 ORDER BY iteration")
            .unwrap()
            .query_map([run], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, want, "run {run}");
        assert!(
            got.len() >= 10,
            "run {run} kept only {} experiments",
            got.len()
        );
    }
}
