//! The HTTP side of a download: a HEAD request for the file's size and sha256, then GETs that
//! fill the `.part` file, resuming with Range requests, with bounded retries and backoff.

use super::{io_err, DownloadError, DownloadOptions};
use indicatif::ProgressBar;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;

/// Bytes read from the network per write to the `.part` file.
const CHUNK: usize = 256 * 1024;

/// Relative redirects (renamed repositories) followed by the HEAD request.
const MAX_HEAD_REDIRECTS: usize = 5;

/// Longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What the HEAD request learnt about the file.
#[derive(Debug, Default)]
pub(super) struct Meta {
    pub(super) sha256: Option<String>,
    pub(super) size: Option<u64>,
}

/// How one failed request should be handled.
enum Step {
    Retry(DownloadError),
    Fatal(DownloadError),
}

pub(super) struct Http<'a> {
    pub(super) agent: ureq::Agent,
    pub(super) url: &'a str,
    pub(super) opts: &'a DownloadOptions,
}

impl Http<'_> {
    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.opts.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// Runs `once` up to `max_attempts` times, with backoff between tries.
    fn retrying<T>(&self, mut once: impl FnMut() -> Result<T, Step>) -> Result<T, DownloadError> {
        let attempts = self.opts.max_attempts.max(1);
        let mut delay = self.opts.retry_delay;
        let mut attempt = 1;
        loop {
            match once() {
                Ok(v) => return Ok(v),
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Retry(e)) if attempt >= attempts => return Err(e),
                Err(Step::Retry(_)) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    attempt += 1;
                }
            }
        }
    }

    /// HEAD without following redirects to the CDN: the hub's own answer carries the sha256
    /// (`x-linked-etag`) and size (`x-linked-size`) of LFS files.
    pub(super) fn probe(&self) -> Result<Meta, DownloadError> {
        self.retrying(|| {
            let mut current = self.url.to_string();
            for _ in 0..=MAX_HEAD_REDIRECTS {
                let req = self
                    .with_auth(self.agent.head(&current))
                    .config()
                    .max_redirects(0)
                    .build();
                let resp = req.call().map_err(|e| self.transport(e, None))?;
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                };
                let linked_sha = header("x-linked-etag").and_then(sha_from_etag);
                let sha = linked_sha
                    .clone()
                    .or_else(|| header("etag").and_then(sha_from_etag));
                let size = header("x-linked-size").and_then(|v| v.parse().ok());
                match status {
                    200..=299 => {
                        let length = header("content-length").and_then(|v| v.parse().ok());
                        return Ok(Meta {
                            sha256: sha,
                            size: size.or(length),
                        });
                    }
                    300..=399 => {
                        let location = header("location").unwrap_or("");
                        // A relative redirect without file metadata is the hub moving us within
                        // itself (a renamed repository): follow it.
                        if linked_sha.is_none() && location.starts_with('/') {
                            current = format!("{}{location}", origin(&current));
                            continue;
                        }
                        return Ok(Meta { sha256: sha, size });
                    }
                    status => self.status_step(status)?,
                }
                // Other answers (405 from a mirror without HEAD): go on without metadata.
                return Ok(Meta::default());
            }
            Err(Step::Fatal(DownloadError::BadResponse {
                url: self.url.to_string(),
                message: format!("more than {MAX_HEAD_REDIRECTS} redirects"),
            }))
        })
    }

    /// Errors for 401, 403, 404 (fatal) and 429, 5xx (retried); `Ok` for anything else.
    fn status_step(&self, status: u16) -> Result<(), Step> {
        let url = self.url.to_string();
        match status {
            401 | 403 => Err(Step::Fatal(DownloadError::Unauthorized { url, status })),
            404 => Err(Step::Fatal(DownloadError::NotFound { url })),
            429 | 500..=599 => Err(Step::Retry(DownloadError::Http { url, status })),
            _ => Ok(()),
        }
    }

    fn transport(&self, e: impl std::fmt::Display, at: Option<u64>) -> Step {
        let message = match at {
            Some(n) => format!("{e} (after {n} bytes; run again to resume)"),
            None => e.to_string(),
        };
        Step::Retry(DownloadError::Transport {
            url: self.url.to_string(),
            message,
        })
    }

    /// Fills `part` until it holds the whole file, resuming from its length.
    pub(super) fn transfer(
        &self,
        part: &Path,
        meta: &Meta,
        bar: &ProgressBar,
    ) -> Result<(), DownloadError> {
        self.retrying(|| {
            let mut have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            if meta.size.is_some_and(|s| have > s) {
                have = 0; // longer than the file: not a prefix of it
            }
            if have > 0 && meta.size == Some(have) {
                return Ok(()); // finished by an earlier run
            }
            self.get_from(part, have, meta.size, bar)
        })
    }

    /// One GET, from byte `have` on when the part file already holds that much.
    fn get_from(
        &self,
        part: &Path,
        have: u64,
        size: Option<u64>,
        bar: &ProgressBar,
    ) -> Result<(), Step> {
        let mut req = self.with_auth(self.agent.get(self.url));
        if have > 0 {
            req = req.header("range", format!("bytes={have}-"));
        }
        let resp = req.call().map_err(|e| self.transport(e, None))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(String::from)
        };
        let content_length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
        let (start, total) = match status {
            200 => (0, size.or(content_length)),
            206 => {
                let range = header("content-range").unwrap_or_default();
                match parse_content_range(&range) {
                    Some((s, t)) if s == have => (s, size.or(t)),
                    _ => {
                        return Err(Step::Fatal(self.bad(format!(
                            "asked for bytes from {have}, got content-range '{range}'"
                        ))))
                    }
                }
            }
            416 => {
                // The part file is as long as (or longer than) the file: start over unless the
                // server confirms it is exactly complete.
                let range = header("content-range").unwrap_or_default();
                let total = range.strip_prefix("bytes */").and_then(|t| t.parse().ok());
                if have > 0 && total == Some(have) {
                    return Ok(());
                }
                let _ = fs::remove_file(part);
                return Err(self.transport("range not satisfiable; starting over", None));
            }
            s => {
                self.status_step(s)?;
                return Err(Step::Fatal(DownloadError::Http {
                    url: self.url.to_string(),
                    status: s,
                }));
            }
        };
        let mut file = if start == 0 {
            File::create(part)
        } else {
            OpenOptions::new().append(true).open(part)
        }
        .map_err(|e| Step::Fatal(io_err(part)(e)))?;
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(start);

        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; CHUNK];
        let mut pos = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = file.sync_all();
                    return Err(self.transport(e, Some(pos)));
                }
            };
            if total.is_some_and(|t| pos + n as u64 > t) {
                drop(file);
                let _ = fs::remove_file(part);
                return Err(Step::Fatal(self.bad(format!(
                    "sent more than the announced {} bytes",
                    total.unwrap_or(0)
                ))));
            }
            file.write_all(&buf[..n])
                .map_err(|e| Step::Fatal(io_err(part)(e)))?;
            pos += n as u64;
            bar.set_position(pos);
        }
        file.sync_all().map_err(|e| Step::Fatal(io_err(part)(e)))?;
        match total {
            Some(t) if pos < t => {
                Err(self.transport(format!("connection closed at byte {pos} of {t}"), Some(pos)))
            }
            _ => Ok(()),
        }
    }

    fn bad(&self, message: String) -> DownloadError {
        DownloadError::BadResponse {
            url: self.url.to_string(),
            message,
        }
    }
}

/// `scheme://host[:port]` of an absolute URL.
pub(super) fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The sha256 in an ETag value (`"…"` or `W/"…"`), if it is 64 hex digits.
pub(super) fn sha_from_etag(etag: &str) -> Option<String> {
    let v = etag.trim().trim_start_matches("W/").trim_matches('"');
    (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_ascii_lowercase())
}

/// `bytes START-END/TOTAL` → (START, TOTAL if known).
pub(super) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}
