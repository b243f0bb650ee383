//! Issue #20, item 5: an open port is a door. The real `sintra-rt serve --listen` and
//! `serve --http`, tried as an intruder would: no token, a wrong one, paths outside the work
//! directory (`..`, absolute, a symbolic link out) for models it loads and files it writes,
//! a second planner, frames past the cap, a flood of idle connections, a silent session; then
//! the real planner with and without the token.

use formats::wire::{self, ErrorKind, LogitsMode, PerplexityRequest, Request, Response};
use sintra_tests::{release_bin_path, smollm2_q4_1};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "open-sesame-7f3a9c";

struct Runtime {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runtime {
    fn start(args: &[&str], root: &Path) -> Runtime {
        let mut child = Command::new(release_bin_path("runtime", "sintra-rt"))
            .arg("serve")
            .args(args)
            .arg("--root")
            .arg(root)
            .env_remove("SINTRA_RT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (sink, err) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start: {}", log.lock().unwrap()));
        let port = addr.rsplit(':').next().unwrap();
        Runtime {
            child,
            addr: format!("127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

/// A wire-protocol client on a TCP connection.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str, auth_line: Option<&str>) -> Client {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        let mut c = Client { w, r };
        if let Some(line) = auth_line {
            c.w.write_all(line.as_bytes()).unwrap();
        }
        c
    }

    fn with_token(addr: &str, token: &str) -> Client {
        Client::connect(addr, Some(&format!("{}{token}\n", wire::AUTH_PREFIX)))
    }

    fn send(&mut self, r: &Request) {
        let _ = self.w.write_all(&wire::encode(r).unwrap());
    }

    /// The next response, or `None` when the runtime closed the connection.
    fn recv(&mut self) -> Option<Response> {
        let mut buf = Vec::new();
        match wire::read_frame(&mut self.r, &mut buf) {
            Ok(true) => Some(wire::decode(&buf).unwrap()),
            _ => None,
        }
    }

    /// Send `r` and return its answer, past any progress messages.
    fn call(&mut self, r: &Request) -> Response {
        self.send(r);
        loop {
            match self.recv().expect("the runtime closed the connection") {
                Response::Progress(_) => continue,
                other => return other,
            }
        }
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }

    fn hello(&mut self) {
        let r = self.call(&Request::Hello {
            protocol_version: wire::PROTOCOL_VERSION,
            planner_version: "test".into(),
        });
        assert!(matches!(r, Response::Hello(_)), "{r:?}");
    }
}

fn refused(r: Option<Response>) -> String {
    match r {
        Some(Response::Error(e)) if e.kind == ErrorKind::Refused => e.message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn hello_req() -> Request {
    Request::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        planner_version: "intruder".into(),
    }
}

#[test]
fn the_wire_listener_lets_in_only_token_holders_and_keeps_them_inside_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(smollm2_q4_1(), root.join("model.gguf")).unwrap();
    std::fs::write(dir.path().join("secret.gguf"), b"not yours").unwrap();
    std::os::unix::fs::symlink(smollm2_q4_1(), root.join("link.gguf")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    // No token, no network.
    let out = Command::new(release_bin_path("runtime", "sintra-rt"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("SINTRA_RT_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("token") && err.contains("0.0.0.0"),
        "{err}"
    );

    let rt = Runtime::start(
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            token_file.to_str().unwrap(),
            "--idle-timeout",
            "3",
        ],
        &root,
    );
    let addr = rt.addr.clone();

    // Without the token line, with a wrong or empty token: refused before any request is read.
    let mut c = Client::connect(&addr, None);
    c.send(&hello_req());
    let m = refused(c.recv());
    assert!(m.contains("SINTRA-AUTH"), "{m}");
    assert!(c.closed());
    let mut c = Client::with_token(&addr, "guess");
    c.send(&hello_req());
    assert_eq!(refused(c.recv()), "wrong token");
    assert!(c.closed());
    let mut c = Client::with_token(&addr, "");
    assert!(refused(c.recv()).contains("requires a token"));

    // With it: served, every path confined to the work directory.
    let mut p = Client::with_token(&addr, TOKEN);
    p.hello();
    let load = |c: &mut Client, path: &str| {
        c.call(&Request::LoadModel {
            path: path.into(),
            sha256: None,
        })
    };
    let secret = dir.path().join("secret.gguf");
    for bad in [
        "../secret.gguf",
        secret.to_str().unwrap(),
        "/etc/passwd",
        "link.gguf",
        "up/secret.gguf",
    ] {
        let m = refused(Some(load(&mut p, bad)));
        assert!(
            m.contains("outside the runtime's work directory"),
            "{bad}: {m}"
        );
    }
    let inside = root.join("model.gguf");
    for good in ["model.gguf", inside.to_str().unwrap()] {
        assert!(
            matches!(load(&mut p, good), Response::ModelLoaded(_)),
            "{good}"
        );
    }
    // Files it would write: outside refused and not created.
    let evil = dir.path().join("evil.logits");
    for bad in [
        "../evil.logits".to_string(),
        evil.to_string_lossy().into_owned(),
        "up/evil.logits".into(),
    ] {
        let r = p.call(&Request::Perplexity(PerplexityRequest {
            text: "hello world ".repeat(50),
            n_ctx: 64,
            max_chunks: Some(1),
            threads: 1,
            logits: LogitsMode::Save { path: bad.clone() },
        }));
        assert!(refused(Some(r)).contains("outside"), "{bad}");
        let r = p.call(&Request::Perplexity(PerplexityRequest {
            text: "hello world ".repeat(50),
            n_ctx: 64,
            max_chunks: Some(1),
            threads: 1,
            logits: LogitsMode::KlDivergence {
                base_path: "../secret.gguf".into(),
            },
        }));
        assert!(refused(Some(r)).contains("outside"));
        let r = p.call(&Request::Calibrate(wire::CalibrateRequest {
            text: "hello world ".repeat(50),
            dataset: "t".into(),
            n_ctx: 64,
            max_chunks: Some(1),
            threads: 1,
            output_path: bad.clone(),
        }));
        assert!(refused(Some(r)).contains("outside"), "{bad}");
    }
    assert!(!evil.exists());
    // Inside, writing works.
    let r = p.call(&Request::Perplexity(PerplexityRequest {
        text: "The quick brown fox jumps over the lazy dog. ".repeat(40),
        n_ctx: 64,
        max_chunks: Some(1),
        threads: 1,
        logits: LogitsMode::Save {
            path: "base.logits".into(),
        },
    }));
    assert!(matches!(r, Response::Perplexity(_)), "{r:?}");
    assert!(root.join("base.logits").is_file());

    // A second planner while the first is served: told so, not queued behind it.
    let mut second = Client::with_token(&addr, TOKEN);
    assert!(refused(second.recv()).contains("busy"));

    // A frame four times the cap is refused without being stored (the reader holds at most
    // the cap), and the session goes on.
    let before = rt.rss_kib();
    let big = vec![7u8; 4 * wire::MAX_FRAME];
    p.w.write_all(&big).unwrap();
    p.w.write_all(&[0]).unwrap();
    match p.recv() {
        Some(Response::Error(e)) if e.kind == ErrorKind::BadFrame => {}
        other => panic!("{other:?}"),
    }
    let grown = rt.rss_kib().saturating_sub(before);
    let cap_kib = (wire::MAX_FRAME >> 10) as u64;
    assert!(
        grown < cap_kib + (8 << 10),
        "a refused frame grew the runtime by {grown} KiB"
    );
    p.hello();

    // A silent session is closed after the idle timeout; then the next planner gets in.
    let t = Instant::now();
    assert!(p.closed(), "the idle session was not closed");
    let idle = t.elapsed();
    assert!(idle < Duration::from_secs(10), "{idle:?}");

    // A flood of idle connections from one address fills that address's quota only: the
    // runtime closes the rest at once, and a planner from another address gets in during it.
    let flood: Vec<Client> = (0..100).map(|_| Client::connect(&addr, None)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = flood
        .into_iter()
        .map(|mut c| {
            c.r.get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut b = [0u8; 1];
            matches!(c.r.read(&mut b), Ok(0))
        })
        .filter(|&x| x)
        .count();
    assert!(
        closed >= 90,
        "only {closed} of 100 idle connections were closed at once"
    );
    let port = addr.rsplit(':').next().unwrap();
    let other = format!("127.0.0.2:{port}");
    let t = Instant::now();
    let mut p = Client::with_token(&other, TOKEN);
    p.hello();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(p);

    // The real planner: without SINTRA_RT_TOKEN a clear refusal; with it, the device checks
    // out (and the check ends with Shutdown, which stops the runtime).
    let sintra = release_bin_path("planner", "sintra");
    std::thread::sleep(Duration::from_millis(200));
    let no = Command::new(&sintra)
        .args(["device", "check", &format!("tcp://{other}")])
        .env_remove("SINTRA_RT_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&no.stderr);
    assert!(
        !no.status.success() && err.contains("requires a token"),
        "{err}"
    );

    let ok = Command::new(&sintra)
        .args(["device", "check", &format!("tcp://{other}")])
        .env("SINTRA_RT_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // The token never reaches the log or the process list.
    let log = rt.log();
    assert!(log.contains("refused") && !log.contains(TOKEN), "{log}");
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(TOKEN));
}

#[test]
fn the_http_server_needs_a_key_off_loopback_and_refuses_before_reading_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sintra_tests::http_runtime())
        .args(["serve", "--http", "0.0.0.0:0", "-m"])
        .arg(smollm2_q4_1())
        .env_remove("SINTRA_API_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("API key") && err.contains("0.0.0.0"),
        "{err}"
    );
    let key = dir.path().join("key");
    std::fs::write(&key, "k-123\n").unwrap();
    let server = sintra_tests::HttpServer::start(
        &smollm2_q4_1(),
        &["-c", "256", "--api-key-file", key.to_str().unwrap()],
    );
    // A huge body announced, none sent: without the key the answer comes at once.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    let t = Instant::now();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("invalid_api_key"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The right key from the file works.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-123\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!server.log().contains("k-123"));
}

/// Issue #20, item 6 (host keys): a real sshd whose client configuration says
/// `StrictHostKeyChecking no` and `UserKnownHostsFile /dev/null` (what many lab setups and
/// inventories carry). `sintra` checks anyway: the first contact records the device's key in
/// `$SINTRA_HOME/known_hosts`; once that record no longer matches (the device "reinstalled"),
/// the check fails within its timeout with an error that says so.
#[test]
fn ssh_host_keys_are_recorded_and_a_changed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sshd = sintra_tests::Sshd::start();
    // The lax configuration, beside the helper's own.
    let lax = dir.path().join("ssh_config");
    let own = std::fs::read_to_string(sshd.ssh_config()).unwrap();
    let loose: String = own
        .lines()
        .map(|l| match l.split_whitespace().next() {
            Some("StrictHostKeyChecking") => "  StrictHostKeyChecking no".to_string(),
            Some("UserKnownHostsFile") => "  UserKnownHostsFile /dev/null".to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&lax, loose + "\n").unwrap();
    let runtime = release_bin_path("runtime", "sintra-rt");
    let check = || {
        let t = Instant::now();
        let out = Command::new(release_bin_path("planner", "sintra"))
            .args(["device", "check", "sintra-test", "--probe-mib", "16"])
            .arg("--ssh-config")
            .arg(&lax)
            .arg("--runtime")
            .arg(&runtime)
            .arg("--remote-dir")
            .arg(dir.path().join("remote"))
            .args(["--timeout", "20"])
            .env("SINTRA_HOME", &home)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            t.elapsed(),
        )
    };
    let (ok, text, _) = check();
    assert!(ok, "{text}");
    let known = home.join("known_hosts");
    let recorded = std::fs::read_to_string(&known).unwrap_or_default();
    assert!(
        recorded.contains("ssh-ed25519"),
        "no key recorded: {recorded:?}\n{text}"
    );
    // The device's key changes: another key in its record.
    let other = dir.path().join("other_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key = other_pub.split_whitespace().nth(1).unwrap();
    let forged: String = recorded
        .lines()
        .map(|l| {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            if w.len() >= 3 && w[1] == "ssh-ed25519" {
                w[2] = other_key;
            }
            w.join(" ") + "\n"
        })
        .collect();
    std::fs::write(&known, forged).unwrap();
    let (ok, text, took) = check();
    assert!(!ok, "a changed host key was accepted: {text}");
    assert!(
        text.contains("host key") && text.contains("ssh-keygen -R"),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The user's private key never shows: not in what sintra printed, not under its home.
    let private = std::fs::read_to_string(sshd.user_key()).unwrap();
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!text.contains(&body[..40]));
    for f in std::fs::read_dir(&home).unwrap().flatten() {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(&body[..40]));
    }
}
