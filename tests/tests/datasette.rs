//! The history in datasette (issue #19): `sintra history --datasette` writes the metadata, the
//! real datasette (PyPI, installed by the setup script) serves the database with it, and its
//! JSON API returns a run's experiments and the tables' descriptions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `GET path` on 127.0.0.1:`port`: status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Chunk sizes, then chunks.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            rest = tail.get(n + 2..)?;
        }
        out
    } else {
        body.to_string()
    };
    Some((status, body))
}

#[test]
fn datasette_serves_the_history_with_its_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    let run = crate::planner::mock_run(&sintra, "2");
    let out = sintra(&["history", "--datasette"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    let meta = home.join("history.metadata.json");
    assert!(said.contains(&meta.display().to_string()), "{said}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ds = sintra_tests::python()
        .args(["-m", "datasette", "serve"])
        .arg(home.join("history.db"))
        .arg("--metadata")
        .arg(&meta)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while get(port, "/-/versions.json").is_none() {
        if let Ok(Some(status)) = ds.try_wait() {
            let mut err = String::new();
            ds.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("datasette exited ({status}): {err}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "datasette did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = get(
        port,
        &format!("/history/experiments.json?_shape=array&run_id={run}"),
    )
    .unwrap();
    // The metadata says what each column is.
    let served = get(port, "/-/metadata.json");
    let _ = ds.kill();
    let _ = ds.wait();
    assert_eq!(status, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert!(
        rows.iter().all(|r| r["run_id"] == run && r["mock"] == 1),
        "{body}"
    );
    let (status, served) = served.unwrap();
    assert_eq!(status, 200, "{served}");
    let m: serde_json::Value = serde_json::from_str(&served).unwrap();
    let tps = &m["databases"]["history"]["tables"]["experiments"]["columns"]["tps"];
    assert!(tps.as_str().unwrap().contains("tokens/s"), "{m}");
}
