//! The HTTP/1.1 side of the double: reading a request's line and headers, a keep-alive loop per
//! connection, and writing a [`Reply`] — a JSON body, or a file's bytes (a range of them, perhaps
//! cut short or with a byte changed by a fault) streamed from disk. Every answered request is
//! logged before the client can see the end of its response. What to answer is decided in
//! [`super::routes`].

use super::routes::route;
use super::{Logged, State};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A request's line and headers (names lowercased).
pub(super) struct Request {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: HashMap<String, String>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    // GET and HEAD carry no body; skip one if a client sent it anyway.
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::io::copy(&mut reader.by_ref().take(n), &mut std::io::sink()).ok()?;
    }
    Some(Request {
        method,
        target,
        headers,
    })
}

pub(super) fn serve_connection(state: &State, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut out = write_half;
    while let Some(req) = read_request(&mut reader) {
        let close = req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let keep = respond(state, &req, &mut out);
        if !keep || close {
            break;
        }
    }
    let _ = out.shutdown(Shutdown::Both);
}

/// A response before its body.
pub(super) struct Head {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn new(status: u16) -> Head {
        Head {
            status,
            headers: Vec::new(),
        }
    }

    pub(super) fn with(mut self, k: &str, v: impl Into<String>) -> Head {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn write(&self, out: &mut TcpStream, content_length: u64) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            206 => "Partial Content",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            416 => "Range Not Satisfiable",
            _ => "Error",
        };
        let mut s = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str(&format!("content-length: {content_length}\r\n\r\n"));
        out.write_all(s.as_bytes())
    }
}

/// Answer one request; whether the connection may serve another.
fn respond(state: &State, req: &Request, out: &mut TcpStream) -> bool {
    let mut logged = Logged {
        method: req.method.clone(),
        target: req.target.clone(),
        file: None,
        range: req.headers.get("range").cloned(),
        status: 0,
        body_bytes: 0,
    };
    let reply = route(state, req, &mut logged);
    let head_only = req.method == "HEAD";
    // Logged before the client can see the end of the response, so that a test reading the
    // log right after its request finds it there.
    let log = |mut logged: Logged, status: u16, body: u64| {
        logged.status = status;
        logged.body_bytes = if head_only { 0 } else { body };
        let mut log = state.log.lock().unwrap();
        log.push(logged);
        log.len() - 1
    };
    let keep = match reply {
        Reply::Json(head, body) => {
            let body = body.to_string();
            log(logged, head.status, body.len() as u64);
            head.with("content-type", "application/json")
                .write(out, body.len() as u64)
                .and_then(|()| {
                    if head_only {
                        Ok(())
                    } else {
                        out.write_all(body.as_bytes())
                    }
                })
                .is_ok()
        }
        Reply::File {
            head,
            path,
            start,
            len,
            corrupt_at,
            cut,
        } => {
            let i = log(logged, head.status, len);
            if head.write(out, len).is_err() {
                false
            } else if head_only {
                true
            } else {
                let rate = state.rate.load(std::sync::atomic::Ordering::SeqCst);
                let sent = send_file(out, &path, start, len, corrupt_at, cut, rate);
                if sent < len {
                    // A cut (or a failed write) ends the connection.
                    state.log.lock().unwrap()[i].body_bytes = sent;
                    let _ = out.flush();
                    let _ = out.shutdown(Shutdown::Both);
                    false
                } else {
                    true
                }
            }
        }
    };
    let _ = out.flush();
    keep
}

/// Stream `len` bytes of `path` from `start`; the bytes sent.
fn send_file(
    out: &mut TcpStream,
    path: &Path,
    start: u64,
    len: u64,
    corrupt_at: Option<u64>,
    cut: Option<u64>,
    rate: u64,
) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    if f.seek(SeekFrom::Start(start)).is_err() {
        return 0;
    }
    let limit = cut.map_or(len, |c| c.min(len));
    let mut buf = vec![0u8; 1 << 16];
    let mut sent = 0u64;
    let began = std::time::Instant::now();
    while sent < limit {
        if rate > 0 {
            // Ahead of the rate: wait until the bytes sent so far are due.
            let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let want = ((limit - sent) as usize).min(buf.len());
        let n = match f.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(at) = corrupt_at {
            let pos = start + sent;
            if at >= pos && at < pos + n as u64 {
                buf[(at - pos) as usize] ^= 0x5a;
            }
        }
        if out.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    sent
}

pub(super) enum Reply {
    Json(Head, serde_json::Value),
    File {
        head: Head,
        path: PathBuf,
        start: u64,
        len: u64,
        corrupt_at: Option<u64>,
        cut: Option<u64>,
    },
}

pub(super) fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::Json(
        Head::new(status)
            .with("x-error-code", code)
            .with("x-error-message", message),
        serde_json::json!({ "error": message }),
    )
}

/// `%2F` and friends.
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Reply {
    pub(super) fn with_commit(self, commit: &str) -> Reply {
        match self {
            Reply::Json(h, b) => Reply::Json(h.with("x-repo-commit", commit), b),
            other => other,
        }
    }
}

/// `bytes=N-`, `bytes=N-M` or `bytes=-K` of a `size`-byte file: first and last byte, or `None`
/// when unsatisfiable or malformed.
pub(super) fn parse_range(range: &str, size: u64) -> Option<(u64, u64)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let k: u64 = b.parse().ok()?;
        if k == 0 || size == 0 {
            return None;
        }
        return Some((size.saturating_sub(k), size - 1));
    }
    let s: u64 = a.parse().ok()?;
    if s >= size {
        return None;
    }
    let e = if b.is_empty() {
        size - 1
    } else {
        b.parse::<u64>().ok()?.min(size - 1)
    };
    (e >= s).then_some((s, e))
}
