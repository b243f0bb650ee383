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

mod http;
mod repo;
mod routes;
#[cfg(test)]
mod tests;

use http::serve_connection;
use repo::resolve_revision;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

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
    /// File bodies are sent at most this fast (bytes per second); 0: as fast as possible.
    rate: std::sync::atomic::AtomicU64,
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

    /// Send file bodies at no more than `bytes_per_second` (a slow link, so that a download
    /// lasts long enough to be interrupted); 0 lifts the limit.
    pub fn limit_rate(&self, bytes_per_second: u64) {
        self.state.rate.store(bytes_per_second, Ordering::SeqCst);
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
