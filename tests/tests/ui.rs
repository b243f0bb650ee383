//! `sintra ui` (issue #19) in a real browser while a real run happens: Debian's headless
//! Chromium, driven over the DevTools protocol by `tests/python/dashboard_watch.py`, opens the
//! runs list before the run exists, sees the run's row appear, opens the run's page and sees
//! its experiments appear and the run finish, all without reloading; then compares two
//! recipes through the page's form. Screenshots go to `target/screenshots/dashboard-*.png`.
//! Also: a non-loopback address is refused without `--allow-remote`; the dashboard answers
//! only GET and HEAD, only for loopback hosts, and never changes the database.

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `sintra ui ARGS` and read the address from its first line.
fn start_ui(sintra: &dyn Fn(&[&str]) -> Command, args: &[&str]) -> (Killed, String, String) {
    let mut c = sintra(args);
    let mut child = Killed(
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (child, url, line)
}

/// One raw HTTP/1.1 request; the status code and the body.
fn raw(url: &str, method: &str, path: &str, host: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (code, text)
}

/// The database file and its write-ahead log, hashed. A reader may create an empty log where
/// there was none (SQLite's WAL readers do): a missing and an empty log hash alike.
fn db_digest(home: &Path) -> Vec<(String, String)> {
    ["history.db", "history.db-wal"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(home.join(f)).unwrap_or_default();
            (f.to_string(), format!("{:x}", Sha256::digest(&bytes)))
        })
        .collect()
}

#[test]
fn the_dashboard_shows_a_run_live_and_serves_only_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());

    // Loopback unless told otherwise.
    let out = sintra(&["ui", "--listen", "0.0.0.0:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--allow-remote") && err.contains("0.0.0.0"),
        "{err}"
    );
    {
        let (_ui, _, line) = start_ui(&sintra, &["ui", "--listen", "0.0.0.0:0", "--allow-remote"]);
        assert!(line.contains("reachable from other machines"), "{line}");
    }

    let (_ui, url, line) = start_ui(&sintra, &["ui", "--listen", "127.0.0.1:0"]);
    assert!(line.contains("this machine only"), "{line}");
    assert!(
        !home.join("history.db").exists(),
        "the dashboard created the database"
    );

    let shots = sintra_tests::target_dir().join("screenshots");
    let mut watch = Killed(
        Command::new("python3")
            .arg(sintra_tests::repo_root().join("tests/python/dashboard_watch.py"))
            .arg(&url)
            .arg(&shots)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut watch_out = BufReader::new(watch.0.stdout.take().unwrap());
    let mut ready = String::new();
    watch_out.read_line(&mut ready).unwrap();
    if ready.trim() != "ready" {
        let mut e = String::new();
        let _ = watch.0.stderr.take().unwrap().read_to_string(&mut e);
        panic!("the browser did not open the dashboard: {ready}{e}");
    }

    let lock = sintra_tests::measuring_lock();
    let out = sintra(&[
        "--auto-detect",
        "--max-iters",
        "3",
        "--no-sensitivity",
        "--target-accuracy",
        "0.5",
        "--output-dir",
        "out",
    ])
    .output()
    .unwrap();
    drop(lock);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = crate::planner::run_id(&stdout);

    let mut rest = String::new();
    watch_out.read_to_string(&mut rest).unwrap();
    let status = watch.0.wait().unwrap();
    let mut e = String::new();
    let _ = watch.0.stderr.take().unwrap().read_to_string(&mut e);
    assert!(status.success(), "the browser side failed: {rest}{e}");
    let seen: serde_json::Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    eprintln!("{seen:#}");

    // The runs list: empty at first, the run's row came without a reload.
    assert_eq!(seen["index_rows_at_open"], 0, "{seen}");
    assert!(
        seen["index_text_at_open"]
            .as_str()
            .unwrap()
            .contains("No history yet"),
        "{seen}"
    );
    assert_eq!(seen["run"], run.as_str(), "{seen}");
    assert_eq!(
        seen["index_mark_kept"], true,
        "the runs page reloaded: {seen}"
    );
    assert!(seen["index_updates"].as_u64().unwrap() >= 1, "{seen}");

    // The run's page: rows appeared while it was open, no reload, every experiment there.
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let (db_status, iterations): (String, Vec<u32>) = (
        db.query_row("SELECT status FROM runs WHERE id = ?1", [&run], |r| {
            r.get(0)
        })
        .unwrap(),
        db.prepare("SELECT iteration FROM experiments WHERE run_id = ?1 ORDER BY iteration")
            .unwrap()
            .query_map([&run], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap(),
    );
    drop(db);
    let rows_seen: Vec<u64> = seen["run_rows_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        rows_seen.len() >= 2 && rows_seen[0] < *rows_seen.last().unwrap(),
        "no row appeared while the page was open: {seen}"
    );
    assert_eq!(seen["run_status_at_open"], "running", "{seen}");
    assert_eq!(
        seen["run_mark_kept"], true,
        "the run's page reloaded: {seen}"
    );
    assert_eq!(seen["run_status_final"], db_status.as_str(), "{seen}");
    let shown: Vec<u32> = seen["run_iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(shown, iterations, "{seen}");
    assert!(iterations.len() >= 2, "{stdout}");
    for p in [
        "plot-speed-accuracy",
        "plot-size-kld",
        "plot-type-map",
        "plot-devices",
    ] {
        assert!(
            seen["run_plots"]
                .as_array()
                .unwrap()
                .contains(&format!("{p}:svg").into()),
            "{p}: {seen}"
        );
    }
    // Two recipes side by side, through the page's form.
    assert_eq!(seen["compare_columns"], 3, "{seen}");
    assert_eq!(
        seen["compare_sides"],
        serde_json::json!(["1:svg", "2:svg"]),
        "{seen}"
    );
    assert!(
        seen["compare_differ"]
            .as_str()
            .unwrap()
            .starts_with("Tensors that differ"),
        "{seen}"
    );
    for f in [
        "dashboard-runs.png",
        "dashboard-run.png",
        "dashboard-compare.png",
    ] {
        let png = std::fs::read(shots.join(f)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{f}");
        eprintln!("screenshot: {}", shots.join(f).display());
    }

    // Read-only, this machine only; serving every page leaves the database as it was.
    let before = db_digest(&home);
    let local = url.trim_start_matches("http://");
    for path in [
        "/".to_string(),
        "/api/runs".into(),
        format!("/runs/{run}"),
        format!("/api/runs/{run}"),
        format!("/compare?e={run}%3A1&e={run}%3A2"),
        "/app.js".into(),
    ] {
        let (code, text) = raw(&url, "GET", &path, local);
        assert_eq!(code, 200, "{path}: {text}");
        let (code, _) = raw(&url, "HEAD", &path, "localhost");
        assert_eq!(code, 200, "HEAD {path}");
    }
    for (method, path, host, want) in [
        ("POST", "/", local, 405),
        ("DELETE", &*format!("/runs/{run}"), local, 405),
        ("GET", "/", "attacker.example", 403),
        ("GET", "/runs/no-such-run", local, 404),
        ("GET", "/api/runs/no-such-run", local, 404),
        ("GET", "/compare?e=x", local, 400),
        ("GET", "/../../etc/passwd", local, 404),
    ] {
        let (code, text) = raw(&url, method, path, host);
        assert_eq!(code, want, "{method} {path} Host {host}: {text}");
        assert!(!text.contains("root:x:0"), "{method} {path}: {text}");
    }
    assert_eq!(
        before,
        db_digest(&home),
        "the dashboard changed the database"
    );
}
