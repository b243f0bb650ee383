//! A TEST DOUBLE of the Hugging Face Hub: a loopback HTTP/1.1 server that speaks the part of the
//! Hub's file API that a downloader uses (issue #16), so that downloads are tested without a
//! network. It is not the Hub: only these endpoints, as `huggingface_hub` calls them.
//!
//! Repositories are directories: `root/{owner}/{name}/{revision}/files...`, where `{revision}`
//! is a branch (`main`: its commit is derived from the names and sizes of its files) or a
//! 40-hex commit (which is then also `main` when it is the only revision).
//!
//! - `GET /api/models/{owner}/{name}[/revision/{rev}][?blobs=true]`: `id`, `sha` (the commit),
//!   `siblings` (`rfilename`; with `blobs=true` also `size`, `blobId` and, for LFS files,
//!   `lfs: {sha256, size, pointerSize}`), `gated`, `private`.
//! - `HEAD` / `GET /{owner}/{name}/resolve/{rev}/{path}`: `x-repo-commit`, `etag` (the git blob
//!   id, or for LFS files the sha256), for LFS files `x-linked-etag` and `x-linked-size`;
//!   `Range: bytes=N-` / `bytes=N-M` answered with 206 and `content-range`.
//! - errors as the Hub sends them: 404 with `x-error-code` `RepoNotFound`, `RevisionNotFound` or
//!   `EntryNotFound`; a gated repository answers 401 (no token) or 403 (another token) with
//!   `GatedRepo` unless `authorization: Bearer <token>` carries the configured token.
//!
//! Faults for tests: [`HubServer::cut_after`] closes the connection after some bytes of a file's
//! body, [`HubServer::corrupt`] serves a file with one byte changed while announcing its true
//! sha256, and [`HubServer::requests`] / [`HubServer::downloads`] tell what was asked for.
//! Files are LFS files when their extension is a weight or model format or they hold 10 MiB or
//! more (the Hub decides by `.gitattributes`; its defaults amount to the same here).

use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How often a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// On the next matching download only.
    Once,
    /// On every matching download until [`HubServer::clear_faults`].
    Always,
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `GET` or `HEAD` (or whatever else came).
    pub method: String,
    /// The request target as sent, query included.
    pub target: String,
    /// For `resolve` requests, the file's path in the repository.
    pub file: Option<String>,
    /// The `Range` header, if any.
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes sent (fewer than announced when a fault cut the connection).
    pub body_bytes: u64,
}

#[derive(Debug, Clone)]
enum FaultKind {
    Cut(u64),
    Corrupt,
}

#[derive(Debug, Clone)]
struct Fault {
    file: String,
    kind: FaultKind,
    times: Times,
}

/// A file's identity as the Hub announces it.
#[derive(Debug, Clone)]
struct Blob {
    size: u64,
    sha256: String,
    /// The git blob id: of the content, or for an LFS file of its pointer.
    blob_id: String,
    /// The LFS pointer's size, for LFS files.
    lfs_pointer_size: Option<u64>,
}

/// A file's [`Blob`] with the size and mtime it was computed for.
type Hashed = (u64, Option<SystemTime>, Blob);

#[derive(Debug, Default)]
struct State {
    root: PathBuf,
    token: Mutex<Option<String>>,
    gated: Mutex<HashSet<String>>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<Logged>>,
    /// sha256 and git ids by path, with the size and mtime they were computed for.
    blobs: Mutex<HashMap<PathBuf, Hashed>>,
    stop: AtomicBool,
}

/// The running double; it stops when dropped.
#[derive(Debug)]
pub struct HubServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl HubServer {
    /// Serve the repositories under `root` on 127.0.0.1 (a free port), a thread per connection.
    pub fn start(root: impl Into<PathBuf>) -> std::io::Result<HubServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            root: root.into(),
            ..State::default()
        });
        let st = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve_connection(&st, stream));
            }
        });
        Ok(HubServer {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// The endpoint, `http://127.0.0.1:PORT` (what `HF_ENDPOINT` is set to).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token that opens gated repositories.
    pub fn set_token(&self, token: &str) {
        *self.state.token.lock().unwrap() = Some(token.to_string());
    }

    /// Mark `owner/name` gated.
    pub fn gate(&self, repo: &str) {
        self.state.gated.lock().unwrap().insert(repo.to_string());
    }

    /// Close the connection after `bytes` bytes of the body of a download of `file` (its path
    /// in the repository, any repository), counted from the first byte this response sends.
    pub fn cut_after(&self, file: &str, bytes: u64, times: Times) {
        self.add_fault(file, FaultKind::Cut(bytes), times);
    }

    /// Serve `file` with its middle byte changed, while announcing its true size and sha256.
    pub fn corrupt(&self, file: &str, times: Times) {
        self.add_fault(file, FaultKind::Corrupt, times);
    }

    fn add_fault(&self, file: &str, kind: FaultKind, times: Times) {
        self.state.faults.lock().unwrap().push(Fault {
            file: file.to_string(),
            kind,
            times,
        });
    }

    /// Remove every fault.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many `GET`s of `file` (its path in the repository) were answered with its bytes
    /// (200 or 206): a finished file that is not fetched again keeps its count.
    pub fn downloads(&self, file: &str) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l.method == "GET"
                    && l.file.as_deref() == Some(file)
                    && matches!(l.status, 200 | 206)
            })
            .count()
    }

    /// The commit that `revision` of `owner/name` resolves to.
    pub fn commit(&self, repo: &str, revision: &str) -> Option<String> {
        let (owner, name) = repo.split_once('/')?;
        resolve_revision(&self.state.root.join(owner).join(name), revision).map(|(_, c)| c)
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// A request's line and headers (names lowercased).
struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
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

fn serve_connection(state: &State, stream: TcpStream) {
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
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn new(status: u16) -> Head {
        Head {
            status,
            headers: Vec::new(),
        }
    }

    fn with(mut self, k: &str, v: impl Into<String>) -> Head {
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
                let sent = send_file(out, &path, start, len, corrupt_at, cut);
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
    while sent < limit {
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

enum Reply {
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

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::Json(
        Head::new(status)
            .with("x-error-code", code)
            .with("x-error-message", message),
        serde_json::json!({ "error": message }),
    )
}

/// `%2F` and friends.
fn percent_decode(s: &str) -> String {
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

fn route(state: &State, req: &Request, logged: &mut Logged) -> Reply {
    let (path, query) = req
        .target
        .split_once('?')
        .unwrap_or((req.target.as_str(), ""));
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    if req.method != "GET" && req.method != "HEAD" {
        return error(405, "MethodNotAllowed", "only GET and HEAD are served");
    }
    let seg = |i: usize| segs.get(i).map(String::as_str);
    match (seg(0), seg(1), seg(2)) {
        (Some("api"), Some("models"), Some(_)) => {
            let (owner, name) = (&segs[2], seg(3).unwrap_or(""));
            let rev = match (seg(4), seg(5)) {
                (None, _) => "main".to_string(),
                (Some("revision"), Some(_)) => segs[5..].join("/"),
                _ => return error(404, "EntryNotFound", "no such endpoint"),
            };
            let blobs = query
                .split('&')
                .any(|q| q == "blobs=true" || q == "blobs=1");
            api_model(state, req, owner, name, &rev, blobs)
        }
        (Some(owner), Some(name), Some("resolve")) if segs.len() >= 5 => {
            let file = segs[4..].join("/");
            logged.file = Some(file.clone());
            resolve(state, req, owner, name, &segs[3], &file)
        }
        _ => error(404, "EntryNotFound", "no such endpoint"),
    }
}

/// The repository directory's revision directory and commit for `rev`.
fn resolve_revision(repo_dir: &Path, rev: &str) -> Option<(PathBuf, String)> {
    let mut revs: Vec<(PathBuf, String, String)> = std::fs::read_dir(repo_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let dir_name = e.file_name().to_string_lossy().into_owned();
            let commit = if is_commit(&dir_name) {
                dir_name.clone()
            } else {
                derived_commit(&e.path(), &dir_name)
            };
            (e.path(), dir_name, commit)
        })
        .collect();
    revs.sort();
    let found = revs
        .iter()
        .find(|(_, d, c)| d == rev || c == rev)
        .or_else(|| {
            (rev == "main" && revs.len() == 1 && is_commit(&revs[0].1)).then(|| &revs[0])
        })?;
    Some((found.0.clone(), found.2.clone()))
}

fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A branch's commit: the sha1 of its name and its files' names and sizes.
fn derived_commit(dir: &Path, branch: &str) -> String {
    let mut text = format!("{branch}\n");
    for f in list_files(dir) {
        let size = std::fs::metadata(dir.join(&f)).map_or(0, |m| m.len());
        text.push_str(&format!("{f} {size}\n"));
    }
    hex(&sha1(text.as_bytes()))
}

/// Every file under `dir`, as `/`-separated relative paths, sorted.
fn list_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Whether the Hub would store `rfilename` in LFS.
fn is_lfs(rfilename: &str, size: u64) -> bool {
    const EXT: [&str; 12] = [
        "safetensors",
        "model",
        "gguf",
        "bin",
        "pt",
        "pth",
        "ckpt",
        "h5",
        "onnx",
        "msgpack",
        "npz",
        "zip",
    ];
    let ext = rfilename.rsplit('.').next().unwrap_or("");
    EXT.contains(&ext) || size >= 10 << 20
}

/// The file's sizes and hashes, computed once per size and mtime.
fn blob(state: &State, path: &Path, rfilename: &str) -> std::io::Result<Blob> {
    let meta = std::fs::metadata(path)?;
    let (size, mtime) = (meta.len(), meta.modified().ok());
    if let Some((s, m, b)) = state.blobs.lock().unwrap().get(path) {
        if *s == size && *m == mtime {
            return Ok(b.clone());
        }
    }
    let mut f = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let lfs = is_lfs(rfilename, size);
    let mut content = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        if !lfs {
            content.extend_from_slice(&buf[..n]);
        }
    }
    let sha256 = hex(&sha.finalize());
    let (blob_id, lfs_pointer_size) = if lfs {
        let pointer = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
        );
        (git_blob_id(pointer.as_bytes()), Some(pointer.len() as u64))
    } else {
        (git_blob_id(&content), None)
    };
    let b = Blob {
        size,
        sha256,
        blob_id,
        lfs_pointer_size,
    };
    state
        .blobs
        .lock()
        .unwrap()
        .insert(path.to_path_buf(), (size, mtime, b.clone()));
    Ok(b)
}

/// The repository's directory, or the Hub's error for it (missing, or gated for this request).
fn repo_dir(state: &State, req: &Request, owner: &str, name: &str) -> Result<PathBuf, Reply> {
    let bad = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('\\');
    let dir = state.root.join(owner).join(name);
    if bad(owner) || bad(name) || !dir.is_dir() {
        return Err(error(
            404,
            "RepoNotFound",
            &format!("Repository Not Found for url: /{owner}/{name}"),
        ));
    }
    let repo = format!("{owner}/{name}");
    if state.gated.lock().unwrap().contains(&repo) {
        let expected = state.token.lock().unwrap().clone();
        let given = req
            .headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let msg = format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.");
        match given {
            None => return Err(error(401, "GatedRepo", &msg)),
            Some(t) if Some(t) != expected.as_deref() => return Err(error(403, "GatedRepo", &msg)),
            Some(_) => {}
        }
    }
    Ok(dir)
}

fn api_model(
    state: &State,
    req: &Request,
    owner: &str,
    name: &str,
    rev: &str,
    blobs: bool,
) -> Reply {
    let dir = match repo_dir(state, req, owner, name) {
        Ok(d) => d,
        Err(reply) => return reply,
    };
    let Some((rev_dir, commit)) = resolve_revision(&dir, rev) else {
        return error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let mut siblings = Vec::new();
    for f in list_files(&rev_dir) {
        if !blobs {
            siblings.push(serde_json::json!({ "rfilename": f }));
            continue;
        }
        let b = match blob(state, &rev_dir.join(&f), &f) {
            Ok(b) => b,
            Err(e) => return error(500, "InternalError", &e.to_string()),
        };
        let mut s = serde_json::json!({"rfilename": f, "size": b.size, "blobId": b.blob_id});
        if let Some(p) = b.lfs_pointer_size {
            s["lfs"] = serde_json::json!({"sha256": b.sha256, "size": b.size, "pointerSize": p});
        }
        siblings.push(s);
    }
    let gated = state
        .gated
        .lock()
        .unwrap()
        .contains(&format!("{owner}/{name}"));
    let body = serde_json::json!({
        "_id": commit[..24],
        "id": format!("{owner}/{name}"),
        "modelId": format!("{owner}/{name}"),
        "sha": commit,
        "private": false,
        "gated": if gated { serde_json::json!("manual") } else { serde_json::json!(false) },
        "disabled": false,
        "tags": [],
        "siblings": siblings,
    });
    Reply::Json(Head::new(200), body)
}

fn resolve(state: &State, req: &Request, owner: &str, name: &str, rev: &str, file: &str) -> Reply {
    let dir = match repo_dir(state, req, owner, name) {
        Ok(d) => d,
        Err(reply) => return reply,
    };
    let Some((rev_dir, commit)) = resolve_revision(&dir, rev) else {
        return error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let path = rev_dir.join(file);
    let inside = !file
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..");
    if !inside || !path.is_file() {
        return error(
            404,
            "EntryNotFound",
            &format!("{file} does not exist on \"{rev}\""),
        )
        .with_commit(&commit);
    }
    let b = match blob(state, &path, file) {
        Ok(b) => b,
        Err(e) => return error(500, "InternalError", &e.to_string()),
    };
    let mut head = Head::new(200)
        .with("content-type", "application/octet-stream")
        .with("accept-ranges", "bytes")
        .with("x-repo-commit", commit.as_str());
    if b.lfs_pointer_size.is_some() {
        head = head
            .with("etag", format!("\"{}\"", b.sha256))
            .with("x-linked-etag", format!("\"{}\"", b.sha256))
            .with("x-linked-size", b.size.to_string());
    } else {
        head = head.with("etag", format!("\"{}\"", b.blob_id));
    }
    let (mut start, mut len) = (0, b.size);
    if let Some(range) = req.headers.get("range") {
        match parse_range(range, b.size) {
            Some((s, e)) => {
                start = s;
                len = e + 1 - s;
                head.status = 206;
                head = head.with("content-range", format!("bytes {s}-{e}/{}", b.size));
            }
            None => {
                return Reply::Json(
                    Head::new(416).with("content-range", format!("bytes */{}", b.size)),
                    serde_json::json!({"error": "Requested Range Not Satisfiable"}),
                )
            }
        }
    }
    // Faults apply to downloads (GET) only.
    let (mut corrupt_at, mut cut) = (None, None);
    if req.method == "GET" {
        let mut faults = state.faults.lock().unwrap();
        faults.retain(|f| {
            if f.file != file {
                return true;
            }
            match f.kind {
                FaultKind::Cut(n) => cut = Some(n),
                FaultKind::Corrupt => corrupt_at = Some(b.size / 2),
            }
            f.times == Times::Always
        });
    }
    Reply::File {
        head,
        path,
        start,
        len,
        corrupt_at,
        cut,
    }
}

impl Reply {
    fn with_commit(self, commit: &str) -> Reply {
        match self {
            Reply::Json(h, b) => Reply::Json(h.with("x-repo-commit", commit), b),
            other => other,
        }
    }
}

/// `bytes=N-`, `bytes=N-M` or `bytes=-K` of a `size`-byte file: first and last byte, or `None`
/// when unsatisfiable or malformed.
fn parse_range(range: &str, size: u64) -> Option<(u64, u64)> {
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// git's object id of a blob: sha1 of `blob <len>\0<content>`.
fn git_blob_id(content: &[u8]) -> String {
    let mut data = format!("blob {}\0", content.len()).into_bytes();
    data.extend_from_slice(content);
    hex(&sha1(&data))
}

/// SHA-1 (FIPS 180-4), for git ids only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A hub with `acme/tiny` at `main` (config.json, a 100 kB model.safetensors) and
    /// `acme/pinned` at a commit.
    fn hub() -> (tempfile::TempDir, HubServer) {
        let root = tempfile::tempdir().unwrap();
        let main = root.path().join("acme/tiny/main");
        std::fs::create_dir_all(main.join("sub")).unwrap();
        std::fs::write(main.join("config.json"), b"{}\n").unwrap();
        std::fs::write(main.join("sub/a.txt"), b"a").unwrap();
        let weights: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(main.join("model.safetensors"), &weights).unwrap();
        let pinned = root.path().join("acme/pinned").join(COMMIT);
        std::fs::create_dir_all(&pinned).unwrap();
        std::fs::write(pinned.join("config.json"), b"{\"a\":1}").unwrap();
        let server = HubServer::start(root.path()).unwrap();
        (root, server)
    }

    fn weights() -> Vec<u8> {
        (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn sha1_matches_git() {
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn model_info_lists_siblings_with_blobs() {
        let (_root, hub) = hub();
        let url = format!(
            "{}/api/models/acme/tiny/revision/main?blobs=true",
            hub.url()
        );
        let mut r = agent().get(&url).call().unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = serde_json::from_reader(r.body_mut().as_reader()).unwrap();
        assert_eq!(v["id"], "acme/tiny");
        let sha = v["sha"].as_str().unwrap();
        assert!(is_commit(sha), "{sha}");
        assert_eq!(hub.commit("acme/tiny", "main").as_deref(), Some(sha));
        let s = v["siblings"].as_array().unwrap();
        let names: Vec<&str> = s.iter().map(|s| s["rfilename"].as_str().unwrap()).collect();
        assert_eq!(names, ["config.json", "model.safetensors", "sub/a.txt"]);
        assert_eq!(s[0]["size"], 3);
        assert!(s[0].get("lfs").is_none());
        assert_eq!(s[0]["blobId"], git_blob_id(b"{}\n"));
        let sha256 = hex(&Sha256::digest(weights()));
        assert_eq!(s[1]["lfs"]["sha256"], sha256.as_str());
        assert_eq!(s[1]["lfs"]["size"], 100_000);
        assert_eq!(s[1]["size"], 100_000);
        // The commit resolves too, and so does the bare model endpoint.
        let by_commit = format!("{}/api/models/acme/tiny/revision/{sha}", hub.url());
        assert_eq!(agent().get(&by_commit).call().unwrap().status(), 200);
        let mut bare = agent()
            .get(&format!("{}/api/models/acme/tiny", hub.url()))
            .call()
            .unwrap();
        let v: serde_json::Value = serde_json::from_reader(bare.body_mut().as_reader()).unwrap();
        assert_eq!(v["sha"], sha);
        assert!(v["siblings"][0].get("size").is_none());
        // A repository stored by commit is also its main.
        assert_eq!(hub.commit("acme/pinned", "main").as_deref(), Some(COMMIT));
    }

    #[test]
    fn resolve_sends_the_hub_headers_and_ranges() {
        let (_root, hub) = hub();
        let commit = hub.commit("acme/tiny", "main").unwrap();
        let url = format!("{}/acme/tiny/resolve/main/model.safetensors", hub.url());
        let r = agent().head(&url).call().unwrap();
        assert_eq!(r.status(), 200);
        let sha256 = hex(&Sha256::digest(weights()));
        assert_eq!(header(&r, "x-repo-commit").unwrap(), commit);
        assert_eq!(
            header(&r, "x-linked-etag").unwrap(),
            format!("\"{sha256}\"")
        );
        assert_eq!(header(&r, "x-linked-size").unwrap(), "100000");
        assert_eq!(header(&r, "content-length").unwrap(), "100000");

        let mut r = agent().get(&url).call().unwrap();
        assert_eq!(r.body_mut().read_to_vec().unwrap(), weights());

        let mut r = agent()
            .get(&url)
            .header("range", "bytes=99990-")
            .call()
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            header(&r, "content-range").unwrap(),
            "bytes 99990-99999/100000"
        );
        assert_eq!(r.body_mut().read_to_vec().unwrap(), &weights()[99_990..]);
        let r = agent()
            .get(&url)
            .header("range", "bytes=100000-")
            .call()
            .unwrap();
        assert_eq!(r.status(), 416);

        let small = format!("{}/acme/tiny/resolve/{commit}/sub/a.txt", hub.url());
        let mut r = agent().get(&small).call().unwrap();
        assert_eq!(
            header(&r, "etag").unwrap(),
            format!("\"{}\"", git_blob_id(b"a"))
        );
        assert!(header(&r, "x-linked-etag").is_none());
        assert_eq!(r.body_mut().read_to_string().unwrap(), "a");
        assert_eq!(
            hub.downloads("model.safetensors"),
            2,
            "the 416 is no download"
        );
        assert_eq!(hub.downloads("sub/a.txt"), 1);
        assert!(hub.requests().iter().any(|l| l.method == "HEAD"));
    }

    #[test]
    fn errors_name_the_hub_error_codes() {
        let (_root, hub) = hub();
        let code = |url: String| {
            let r = agent().get(&url).call().unwrap();
            (
                r.status().as_u16(),
                header(&r, "x-error-code").unwrap_or_default(),
            )
        };
        let u = hub.url();
        assert_eq!(
            code(format!("{u}/api/models/acme/nope")),
            (404, "RepoNotFound".into())
        );
        assert_eq!(
            code(format!("{u}/acme/nope/resolve/main/config.json")),
            (404, "RepoNotFound".into())
        );
        assert_eq!(
            code(format!("{u}/api/models/acme/tiny/revision/v9")),
            (404, "RevisionNotFound".into())
        );
        assert_eq!(
            code(format!("{u}/acme/tiny/resolve/v9/config.json")),
            (404, "RevisionNotFound".into())
        );
        assert_eq!(
            code(format!("{u}/acme/tiny/resolve/main/missing.json")),
            (404, "EntryNotFound".into())
        );
        assert_eq!(
            code(format!("{u}/acme/tiny/resolve/main/../pinned/x")),
            (404, "EntryNotFound".into())
        );
    }

    #[test]
    fn gated_repositories_need_the_token() {
        let (_root, hub) = hub();
        hub.gate("acme/tiny");
        hub.set_token("hf_secret");
        let url = format!("{}/acme/tiny/resolve/main/config.json", hub.url());
        let r = agent().get(&url).call().unwrap();
        assert_eq!(
            (r.status().as_u16(), header(&r, "x-error-code")),
            (401, Some("GatedRepo".into()))
        );
        let r = agent()
            .get(&url)
            .header("authorization", "Bearer hf_wrong")
            .call()
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), header(&r, "x-error-code")),
            (403, Some("GatedRepo".into()))
        );
        let r = agent()
            .get(&url)
            .header("authorization", "Bearer hf_secret")
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let api = format!("{}/api/models/acme/tiny", hub.url());
        assert_eq!(agent().get(&api).call().unwrap().status(), 401);
    }

    #[test]
    fn a_cut_download_resumes_with_a_range() {
        let (_root, hub) = hub();
        let url = format!("{}/acme/tiny/resolve/main/model.safetensors", hub.url());
        hub.cut_after("model.safetensors", 1000, Times::Once);
        let mut r = agent().get(&url).call().unwrap();
        assert_eq!(r.status(), 200);
        let mut got = Vec::new();
        let err = r.body_mut().as_reader().read_to_end(&mut got);
        assert!(err.is_err() || got.len() < 100_000, "the body was not cut");
        assert_eq!(got.len(), 1000);
        let mut r = agent()
            .get(&url)
            .header("range", "bytes=1000-")
            .call()
            .unwrap();
        assert_eq!(r.status(), 206);
        got.extend(r.body_mut().read_to_vec().unwrap());
        assert_eq!(got, weights());
        let log = hub.requests();
        assert_eq!(log[0].body_bytes, 1000);
        assert_eq!(log[1].range.as_deref(), Some("bytes=1000-"));

        hub.cut_after("model.safetensors", 10, Times::Always);
        for _ in 0..2 {
            let mut r = agent().get(&url).call().unwrap();
            let mut got = Vec::new();
            let _ = r.body_mut().as_reader().read_to_end(&mut got);
            assert_eq!(got.len(), 10);
        }
        hub.clear_faults();
        let mut r = agent().get(&url).call().unwrap();
        assert_eq!(r.body_mut().read_to_vec().unwrap().len(), 100_000);
    }

    #[test]
    fn a_corrupt_file_keeps_its_announced_sha256() {
        let (_root, hub) = hub();
        let url = format!("{}/acme/tiny/resolve/main/model.safetensors", hub.url());
        hub.corrupt("model.safetensors", Times::Once);
        let mut r = agent().get(&url).call().unwrap();
        let sha256 = hex(&Sha256::digest(weights()));
        assert_eq!(
            header(&r, "x-linked-etag").unwrap(),
            format!("\"{sha256}\"")
        );
        let got = r.body_mut().read_to_vec().unwrap();
        assert_eq!(got.len(), 100_000);
        assert_ne!(hex(&Sha256::digest(&got)), sha256);
        let mut r = agent().get(&url).call().unwrap();
        assert_eq!(r.body_mut().read_to_vec().unwrap(), weights());
    }

    #[test]
    fn parse_range_cases() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=3-5", 10), Some((3, 5)));
        assert_eq!(parse_range("bytes=3-50", 10), Some((3, 9)));
        assert_eq!(parse_range("bytes=-4", 10), Some((6, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-3", 10), None);
        assert_eq!(parse_range("items=0-", 10), None);
    }
}
