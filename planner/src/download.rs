//! Hugging Face model downloads into the model cache.
//!
//! Use: `sintra --model-id owner/repo --model-file NAME.gguf [--revision REV]` becomes
//! `download::fetch(&ModelSpec::new(id, file, rev)?, &DownloadOptions::from_env()?)?`, whose
//! `path` is the cached file. The file comes from
//! `{HF_ENDPOINT or https://huggingface.co}/{repo}/resolve/{revision or main}/{file}`, with
//! `HF_TOKEN` as a bearer token when set, and lands in `$SINTRA_HOME/models/` or else
//! `~/.cache/sintra/models/` (both searched by `models::model_dirs`).
//!
//! - A HEAD request first reads the file's size and sha256: for LFS files the hub's
//!   `x-linked-etag` (or `etag`) is the sha256 of the content. The download is checked against it
//!   and discarded on a mismatch; without one, the computed hash is recorded instead.
//! - Bytes go to `NAME.part` and resume from its length with an HTTP Range request, both after a
//!   cut connection (bounded retries with backoff) and in a later run.
//! - The finished file is renamed into place (atomic on one file system), and a record
//!   `NAME.source.json` (repo, revision, url, sha256, size, verified) is written beside it, so a
//!   later run knows where a cached file came from and refuses one from another repository.
//!
//! `--model-id owner/repo` without `--model-file` asks for the safetensors checkpoint instead:
//! [`fetch_checkpoint`] (in `download/checkpoint.rs`) lists the repository, then fetches
//! `config.json`, the tokenizer files and the weights the same way, one file at a time, into
//! `{cache}/hf/{owner}/{name}/{commit}/`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod checkpoint;
mod transfer;

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod tests;

pub use checkpoint::{fetch_checkpoint, fetch_config, Checkpoint, RemoteConfig};
use transfer::{sha_from_etag, Http, Meta};

/// The hub used when `HF_ENDPOINT` is not set.
pub const HF_DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// Bytes per read when hashing a file.
const CHUNK: usize = 256 * 1024;

/// Why a download failed. Each message names the URL or path involved.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The model id, file name or revision cannot be used.
    #[error("{0}")]
    InvalidSpec(String),
    /// A setting (`HF_ENDPOINT`) cannot be used.
    #[error("{0}")]
    Config(String),
    /// No cache directory: neither `SINTRA_HOME` nor `HOME` is set.
    #[error("no model cache directory: set SINTRA_HOME or HOME")]
    NoCacheDir,
    /// 401 or 403: no token, a wrong token, or a gated model whose terms were not accepted.
    #[error("access denied (http {status}) for {url}: set HF_TOKEN to a token that can read the repository, and accept the model's terms on its page if it is gated")]
    Unauthorized { url: String, status: u16 },
    /// 404: no such repository, revision or file.
    #[error("not found (http 404): {url}: check --model-id, --model-file and the revision")]
    NotFound { url: String },
    /// Another unexpected status.
    #[error("http {status} for {url}")]
    Http { url: String, status: u16 },
    /// The connection failed, stalled or broke after all retries.
    #[error("download of {url} failed: {message}")]
    Transport { url: String, message: String },
    /// The server answered in a way that cannot be resumed or trusted.
    #[error("bad response from {url}: {message}")]
    BadResponse { url: String, message: String },
    /// The content does not hash to what the server announced; nothing was kept.
    #[error("sha256 of {url} is {actual} but the server announced {expected}; the download was discarded")]
    ShaMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    /// The content is not as long as the server announced; nothing was kept.
    #[error(
        "{url} gave {actual} bytes but the server announced {expected}; the download was discarded"
    )]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    /// A cached file with this name came from another repository, file or revision.
    #[error("{path} in the model cache came from {recorded}, not {wanted}; remove it and its .source.json to download this one")]
    CacheConflict {
        path: PathBuf,
        recorded: String,
        wanted: String,
    },
    /// The hub does not know the repository, or it is private and no token can read it.
    #[error("repository {repo} not found (or private: set HF_TOKEN)")]
    RepoNotFound { repo: String },
    /// The repository exists but has no such branch, tag or commit.
    #[error(
        "revision '{revision}' not found in {repo}: check --revision (a branch, tag or commit)"
    )]
    RevisionNotFound { repo: String, revision: String },
    /// The repository is gated (or private) and the token, if any, may not read it.
    #[error("{repo} is gated or private (http {status}): accept its terms at {page} while logged in, then set HF_TOKEN to a read token of that account")]
    Gated {
        repo: String,
        status: u16,
        page: String,
    },
    /// A checkpoint was asked for, but the repository publishes GGUF files only.
    #[error("{repo}@{revision} has no safetensors weights, only GGUF files; download one of them with {}", model_file_options(.gguf))]
    NoSafetensors {
        repo: String,
        revision: String,
        /// The GGUF files of the repository, as paths inside it.
        gguf: Vec<String>,
    },
    /// The repository has pytorch pickles (`.bin`, `.pt`, `.pth`) but no safetensors.
    #[error("{repo}@{revision} has only pytorch .bin weights; sintra converts safetensors (look for a safetensors or GGUF version of the model)")]
    PytorchOnly { repo: String, revision: String },
    /// The repository has no weights sintra can use at all.
    #[error("{repo}@{revision} has neither safetensors nor GGUF weights")]
    NoWeights { repo: String, revision: String },
    /// The checkpoint is incomplete or inconsistent: no `config.json`, a shard the index names
    /// is missing from the repository or would land outside the cache directory, an index that
    /// is not JSON.
    #[error("{repo}@{revision}: {message}")]
    BadCheckpoint {
        repo: String,
        revision: String,
        message: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `--model-file A, --model-file B` for the [`DownloadError::NoSafetensors`] message.
fn model_file_options(files: &[String]) -> String {
    let quote = |f: &str| {
        let plain = f
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./+".contains(&b));
        if plain {
            f.to_string()
        } else {
            format!("'{}'", f.replace('\'', "'\\''"))
        }
    };
    let options: Vec<String> = files
        .iter()
        .map(|f| format!("--model-file {}", quote(f)))
        .collect();
    options.join(", ")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which file of which repository at which revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// `owner/name`.
    pub repo: String,
    /// Path of the file in the repository, e.g. `model.Q4_K_M.gguf` or `gguf/model.gguf`.
    pub file: String,
    /// Branch, tag or commit.
    pub revision: String,
}

impl ModelSpec {
    /// Checks `--model-id`, `--model-file` and the revision (default `main`).
    pub fn new(
        model_id: &str,
        model_file: &str,
        revision: Option<&str>,
    ) -> Result<ModelSpec, DownloadError> {
        let bad = |what: &str, value: &str, why: &str| {
            Err(DownloadError::InvalidSpec(format!(
                "{what} '{value}' {why}"
            )))
        };
        let parts: Vec<&str> = model_id.split('/').collect();
        let name_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if parts.len() != 2 || !parts.iter().all(|p| name_ok(p)) {
            return bad(
                "model id",
                model_id,
                "is not owner/name (letters, digits, '-', '_', '.')",
            );
        }
        if !path_ok(model_file) {
            return bad(
                "model file",
                model_file,
                "is not a relative path inside the repository",
            );
        }
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        if !path_ok(revision) {
            return bad("revision", revision, "is not a branch, tag or commit name");
        }
        Ok(ModelSpec {
            repo: model_id.to_string(),
            file: model_file.to_string(),
            revision: revision.to_string(),
        })
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`, percent-encoded (a revision such as
    /// `refs/pr/1` is one path segment, as the hub expects).
    pub fn url(&self, endpoint: &str) -> String {
        let file: Vec<String> = self.file.split('/').map(encode_segment).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            self.repo,
            encode_segment(&self.revision),
            file.join("/")
        )
    }

    /// The name the file gets in the cache: the last component of its path.
    pub fn cache_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    fn describe(&self) -> String {
        format!("{}/{}@{}", self.repo, self.file, self.revision)
    }
}

/// Non-empty `/`-separated components, none `.` or `..`, no control characters or backslashes.
fn path_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 1024
        && !p.chars().any(|c| c.is_control() || c == '\\')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.trim() == c)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where and how to download.
#[derive(Clone)]
pub struct DownloadOptions {
    /// The hub, without a trailing slash.
    pub endpoint: String,
    /// Sent as `authorization: Bearer …` to the hub (not to the CDN it redirects to).
    pub token: Option<String>,
    /// The model cache directory.
    pub cache_dir: PathBuf,
    /// Draw a progress bar on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
    /// Tries of each request before giving up (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each.
    pub retry_delay: Duration,
    /// Longest silence on the connection before it counts as cut (and is resumed).
    pub read_timeout: Duration,
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cache_dir", &self.cache_dir)
            .field("progress", &self.progress)
            .field("max_attempts", &self.max_attempts)
            .field("retry_delay", &self.retry_delay)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl DownloadOptions {
    /// From `HF_ENDPOINT`, `HF_TOKEN`, and the cache directory ([`cache_dir`]).
    pub fn from_env() -> Result<DownloadOptions, DownloadError> {
        let endpoint = match std::env::var("HF_ENDPOINT") {
            Ok(e) if !e.trim().is_empty() => e,
            _ => HF_DEFAULT_ENDPOINT.to_string(),
        };
        let trimmed = endpoint.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return Err(DownloadError::Config(format!(
                "HF_ENDPOINT '{endpoint}' is not an http:// or https:// url"
            )));
        }
        let token = std::env::var("HF_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Ok(DownloadOptions {
            endpoint: trimmed.to_string(),
            token,
            cache_dir: cache_dir()?,
            progress: true,
            max_attempts: 5,
            retry_delay: Duration::from_secs(1),
            read_timeout: Duration::from_secs(60),
        })
    }
}

/// The model cache: `$SINTRA_HOME/models` when `SINTRA_HOME` is set, else
/// `~/.cache/sintra/models` (the order of `models::model_dirs`).
pub fn cache_dir() -> Result<PathBuf, DownloadError> {
    if let Some(home) = std::env::var_os("SINTRA_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home).join("models"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache/sintra/models")),
        None => Err(DownloadError::NoCacheDir),
    }
}

/// A model file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    pub size: u64,
    /// The hash matched one announced by the server (otherwise it was only computed).
    pub verified: bool,
    /// Found in the cache; nothing was downloaded.
    pub from_cache: bool,
}

/// The cached file for `spec`, downloaded first if it is not in `opts.cache_dir` yet.
pub fn fetch(spec: &ModelSpec, opts: &DownloadOptions) -> Result<Downloaded, DownloadError> {
    let dest = opts.cache_dir.join(spec.cache_name());
    let record = with_suffix(&dest, ".source.json");
    if dest.is_file() {
        return from_cache(spec, &dest, &record);
    }
    fs::create_dir_all(&opts.cache_dir).map_err(io_err(&opts.cache_dir))?;
    let url = spec.url(&opts.endpoint);
    let http = Http {
        agent: agent(opts),
        url: &url,
        opts,
    };
    let meta = http.probe()?;
    let bar = progress_bar(opts.progress, spec.cache_name());
    let fetched = fetch_verified(&http, &dest, &meta, &bar);
    bar.finish_and_clear();
    let (sha256, size) = fetched?;
    let done = Downloaded {
        path: dest,
        sha256,
        size,
        verified: meta.sha256.is_some(),
        from_cache: false,
    };
    write_record(&record, spec, &url, &done)?;
    Ok(done)
}

/// The HTTP agent of every download: no error for HTTP statuses (they are mapped to
/// [`DownloadError`]s), timeouts from `opts`, no compression (Range requests count bytes of the
/// file), and the token kept only on same-host redirects.
fn agent(opts: &DownloadOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(opts.read_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        // Ranges count bytes of the file, not of a compressed stream.
        .accept_encoding("identity")
        // The hub may redirect a renamed repository to itself (keep the token) or the file to
        // its CDN (the signed URL needs no token, and must not get it).
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .user_agent(concat!("sintra/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Downloads `http.url` into `dest` (whose directory exists) through `dest.part`, resuming
/// what an earlier run left there, checks the result against `meta`, and renames it into place.
/// Returns its sha256 and size. On a mismatch nothing is kept, not even the part file.
fn fetch_verified(
    http: &Http<'_>,
    dest: &Path,
    meta: &Meta,
    bar: &ProgressBar,
) -> Result<(String, u64), DownloadError> {
    let part = with_suffix(dest, ".part");
    let _phase = crate::phase::Phase::begin("download");
    http.transfer(&part, meta, bar)?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
    bar.set_message(format!("verifying {}", name.unwrap_or_default()));
    let (sha256, size) = hash_file(&part)?;
    if let Some(expected) = meta.size.filter(|&s| s != size) {
        let _ = fs::remove_file(&part);
        return Err(DownloadError::SizeMismatch {
            url: http.url.to_string(),
            expected,
            actual: size,
        });
    }
    if let Some(expected) = meta.sha256.as_ref().filter(|&e| *e != sha256) {
        let _ = fs::remove_file(&part);
        return Err(DownloadError::ShaMismatch {
            url: http.url.to_string(),
            expected: expected.clone(),
            actual: sha256,
        });
    }
    fs::rename(&part, dest).map_err(io_err(dest))?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir);
    }
    Ok((sha256, size))
}

/// Sha256 (lowercase hex) and length of a file.
fn hash_file(path: &Path) -> Result<(String, u64), DownloadError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, len))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Makes the rename durable where the platform allows (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn progress_bar(enabled: bool, name: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(name.to_string());
    bar
}

/// Writes the provenance record beside the model, atomically.
fn write_record(
    record: &Path,
    spec: &ModelSpec,
    url: &str,
    done: &Downloaded,
) -> Result<(), DownloadError> {
    let text = serde_json::to_string_pretty(&json!({
        "repo": spec.repo,
        "file": spec.file,
        "revision": spec.revision,
        "url": url,
        "sha256": done.sha256,
        "size": done.size,
        "verified": done.verified,
    }))
    .map_err(|e| io_err(record)(std::io::Error::other(e)))?;
    let tmp = with_suffix(record, ".tmp");
    fs::write(&tmp, text + "\n").map_err(io_err(&tmp))?;
    fs::rename(&tmp, record).map_err(io_err(record))
}

/// A cache hit: trusts the record beside the file when there is one (after checking it is the
/// same repository, file and revision, and the same length); hashes the file when there is none
/// (a file put there by hand).
fn from_cache(spec: &ModelSpec, path: &Path, record: &Path) -> Result<Downloaded, DownloadError> {
    let size = fs::metadata(path).map_err(io_err(path))?.len();
    let text = match fs::read_to_string(record) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let (sha256, size) = hash_file(path)?;
            return Ok(Downloaded {
                path: path.to_path_buf(),
                sha256,
                size,
                verified: false,
                from_cache: true,
            });
        }
        Err(e) => return Err(io_err(record)(e)),
    };
    let bad = |why: String| DownloadError::Io {
        path: record.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidData, why),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not json: {e}")))?;
    let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    let recorded = format!("{}/{}@{}", field("repo"), field("file"), field("revision"));
    if recorded != spec.describe() {
        return Err(DownloadError::CacheConflict {
            path: path.to_path_buf(),
            recorded,
            wanted: spec.describe(),
        });
    }
    let sha256 = v["sha256"]
        .as_str()
        .and_then(sha_from_etag)
        .ok_or_else(|| bad("no sha256 of 64 hex digits".into()))?;
    if v["size"].as_u64() != Some(size) {
        return Err(bad(format!(
            "records size {} but {} is {size} bytes; remove both to download again",
            v["size"],
            path.display()
        )));
    }
    Ok(Downloaded {
        path: path.to_path_buf(),
        sha256,
        size,
        verified: v["verified"].as_bool().unwrap_or(false),
        from_cache: true,
    })
}
