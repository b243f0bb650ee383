//! Hugging Face checkpoints — `config.json`, the tokenizer files and the safetensors weights of
//! one repository at one commit — into the model cache (issue #16).
//!
//! `fetch_checkpoint("owner/name", rev, &opts)` works like `huggingface_hub.snapshot_download`
//! restricted to what a conversion needs:
//!
//! 1. `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` (what `model_info(…,
//!    files_metadata=True)` calls) lists the files with their sizes, the sha256 of LFS files,
//!    and the commit `rev` points at now.
//! 2. The files are fetched from `{endpoint}/{repo}/resolve/{commit}/{file}` — pinned to that
//!    commit, so a branch moving during the download never mixes two versions — into
//!    `{cache}/hf/{owner}/{name}/{commit}/`, each through a `.part` file that a later run
//!    resumes, checked against the listed size and sha256, and renamed into place. A file
//!    already there is not fetched again.
//! 3. The small files come first and the weights last (the index before its shards), so a
//!    directory whose weights are all present is complete. Only then is
//!    `{cache}/hf/{owner}/{name}/refs/{rev}` written with the commit: when the hub cannot be
//!    reached, a rerun with the same revision finds the checkpoint there, as `huggingface_hub`
//!    does with its own `refs/`.
//!
//! The hub's answers follow `huggingface_hub.utils.hf_raise_for_status`: the `x-error-code`
//! header (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`) says what a 4xx means, and a 401
//! without one is a missing or private repository.

use super::transfer::{sha_from_etag, Http, Meta};
use super::{
    agent, encode_segment, fetch_verified, io_err, progress_bar, sync_dir, with_suffix,
    DownloadError, DownloadOptions, ModelSpec,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Read when the repository has them, in this order, before the weights.
const SIDE_FILES: &[&str] = &[
    CONFIG,
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// The one file a checkpoint cannot do without.
const CONFIG: &str = "config.json";

/// Unsharded weights.
const SINGLE: &str = "model.safetensors";

/// Sharded weights: `{"weight_map": {tensor: shard}}`.
const INDEX: &str = "model.safetensors.index.json";

/// Largest listing read (a repository of ten thousand files lists about 3 MB).
const MAX_LISTING: u64 = 64 << 20;

/// Largest index read (an index names each tensor once: a few hundred kB).
const MAX_INDEX: u64 = 64 << 20;

/// Longest wait between two tries of the listing.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The message of a 401 that means a bad token rather than a hidden repository.
const INVALID_CREDENTIALS: &str = "Invalid credentials in Authorization header";

/// A checkpoint in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `owner/name`.
    pub repo: String,
    /// The revision asked for (`main` when none was).
    pub revision: String,
    /// The 40-hex commit it resolved to.
    pub commit: String,
    /// `{cache}/hf/{owner}/{name}/{commit}`.
    pub dir: PathBuf,
    /// The files in `dir`, in download order: the side files the repository has, then
    /// `model.safetensors`, or the index and its shards (sorted).
    pub files: Vec<PathBuf>,
}

/// The listing as the hub sends it (only the fields used).
#[derive(Debug, Deserialize)]
struct Listing {
    sha: String,
    siblings: Vec<Sibling>,
}

#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// The listing, checked: the commit and each file's expected size and sha256.
#[derive(Debug)]
struct Files {
    commit: String,
    /// In the hub's order, for messages.
    names: Vec<String>,
    meta: HashMap<String, Meta>,
}

/// What the repository offers as weights.
enum Weights {
    Single,
    Sharded,
}

/// The checkpoint of `repo` (`owner/name`) at `revision` (default `main`), downloaded first
/// where it is not in `opts.cache_dir` yet. See the module documentation.
pub fn fetch_checkpoint(
    repo: &str,
    revision: Option<&str>,
    opts: &DownloadOptions,
) -> Result<Checkpoint, DownloadError> {
    let Start {
        spec,
        repo_dir,
        ref_path,
        agent,
        listed,
    } = start(repo, revision, opts)?;
    let files = match listed {
        Listed::Files(files) => files,
        Listed::Cached(checkpoint) => return Ok(checkpoint),
    };
    let weights = choose_weights(&spec, &files)?;
    if !files.meta.contains_key(CONFIG) {
        return Err(bad_checkpoint(&spec, format!("has no {CONFIG}")));
    }

    let dir = repo_dir.join(&files.commit);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let fetcher = Fetcher::new(&spec, &files, &dir, agent, opts);
    let mut order: Vec<&str> = SIDE_FILES
        .iter()
        .copied()
        .filter(|f| files.meta.contains_key(*f))
        .collect();
    order.push(match weights {
        Weights::Single => SINGLE,
        Weights::Sharded => INDEX,
    });
    fetcher.plan(&order);
    let mut paths = Vec::new();
    for name in &order {
        paths.push(fetcher.fetch(name)?);
    }
    if let Weights::Sharded = weights {
        let shards = shard_names(&dir.join(INDEX)).map_err(|m| bad_checkpoint(&spec, m))?;
        if let Some(missing) = shards.iter().find(|s| !files.meta.contains_key(*s)) {
            return Err(bad_checkpoint(
                &spec,
                format!("shard {missing} named by {INDEX} is not in the repository"),
            ));
        }
        let shards: Vec<&str> = shards.iter().map(String::as_str).collect();
        fetcher.plan(&shards);
        for name in &shards {
            paths.push(fetcher.fetch(name)?);
        }
    }
    fetcher.finish();

    write_ref(&ref_path, &files.commit)?;
    Ok(Checkpoint {
        repo: spec.repo,
        revision: spec.revision,
        commit: files.commit,
        dir,
        files: paths,
    })
}

/// What `--dry-run` learns about a repository without its weights: the commit, `config.json`
/// (downloaded into the checkpoint's cache directory, as [`fetch_checkpoint`] would) and the
/// size of the safetensors weights as the listing gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub config: PathBuf,
    /// Bytes of the safetensors files the repository lists (0 when it has none).
    pub weight_bytes: u64,
}

/// `config.json` of `repo` at `revision` and the listed size of its weights: a few kilobytes,
/// whatever the model's size. Errors as [`fetch_checkpoint`]'s (a repository without
/// safetensors weights says so).
pub fn fetch_config(
    repo: &str,
    revision: Option<&str>,
    opts: &DownloadOptions,
) -> Result<RemoteConfig, DownloadError> {
    let Start {
        spec,
        repo_dir,
        ref_path: _,
        agent,
        listed,
    } = start(repo, revision, opts)?;
    let files = match listed {
        Listed::Files(files) => files,
        Listed::Cached(c) => {
            let weight_bytes = c
                .files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "safetensors"))
                .filter_map(|f| fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            return Ok(RemoteConfig {
                repo: c.repo,
                revision: c.revision,
                commit: c.commit,
                config: c.dir.join(CONFIG),
                weight_bytes,
            });
        }
    };
    choose_weights(&spec, &files)?;
    if !files.meta.contains_key(CONFIG) {
        return Err(bad_checkpoint(&spec, format!("has no {CONFIG}")));
    }
    let weight_bytes = files
        .meta
        .iter()
        .filter(|(name, _)| name.ends_with(".safetensors"))
        .filter_map(|(_, m)| m.size)
        .sum();
    let dir = repo_dir.join(&files.commit);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let fetcher = Fetcher::new(&spec, &files, &dir, agent, opts);
    fetcher.plan(&[CONFIG]);
    let config = fetcher.fetch(CONFIG)?;
    fetcher.finish();
    Ok(RemoteConfig {
        repo: spec.repo,
        revision: spec.revision,
        commit: files.commit,
        config,
        weight_bytes,
    })
}

/// What both fetches begin with: the checked spec, the repository's cache directory and ref
/// file, the agent, and what the listing (or, offline, the cache) says.
struct Start {
    spec: ModelSpec,
    repo_dir: PathBuf,
    ref_path: PathBuf,
    agent: ureq::Agent,
    listed: Listed,
}

fn start(
    repo: &str,
    revision: Option<&str>,
    opts: &DownloadOptions,
) -> Result<Start, DownloadError> {
    let spec = ModelSpec::new(repo, CONFIG, revision)?;
    let repo_dir = repo_dir(&opts.cache_dir, &spec.repo);
    let ref_path = repo_dir.join("refs").join(encode_segment(&spec.revision));
    let agent = agent(opts);
    let listed = list(&agent, &spec, opts, &repo_dir, &ref_path)?;
    Ok(Start {
        spec,
        repo_dir,
        ref_path,
        agent,
        listed,
    })
}

/// `{cache}/hf/{owner}/{name}` (the repository id was checked by [`ModelSpec::new`]).
fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    repo.split('/')
        .fold(cache.join("hf"), |dir, part| dir.join(part))
}

fn bad_checkpoint(spec: &ModelSpec, message: String) -> DownloadError {
    DownloadError::BadCheckpoint {
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        message,
    }
}

/// `model.safetensors` when there is one, else the sharded index; an error naming what the
/// repository has instead when it has neither.
fn choose_weights(spec: &ModelSpec, files: &Files) -> Result<Weights, DownloadError> {
    if files.meta.contains_key(SINGLE) {
        return Ok(Weights::Single);
    }
    if files.meta.contains_key(INDEX) {
        return Ok(Weights::Sharded);
    }
    let (repo, revision) = (spec.repo.clone(), spec.revision.clone());
    let gguf: Vec<String> = files
        .names
        .iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .cloned()
        .collect();
    if !gguf.is_empty() {
        return Err(DownloadError::NoSafetensors {
            repo,
            revision,
            gguf,
        });
    }
    let pytorch = files.names.iter().any(|n| {
        let base = n.rsplit('/').next().unwrap_or(n).to_ascii_lowercase();
        !base.starts_with("training_args")
            && [".bin", ".pt", ".pth"]
                .iter()
                .any(|ext| base.ends_with(ext))
    });
    if pytorch {
        return Err(DownloadError::PytorchOnly { repo, revision });
    }
    Err(DownloadError::NoWeights { repo, revision })
}

/// What the listing step found.
enum Listed {
    Files(Files),
    /// The hub could not be reached, and the cache holds the checkpoint.
    Cached(Checkpoint),
}

/// How one failed try of the listing should be handled.
enum Attempt {
    Retry(DownloadError),
    Fatal(DownloadError),
}

/// Lists the repository at the revision, with bounded retries. When the hub cannot be reached
/// at all (a transport error) and the cache already holds the checkpoint of this revision, that
/// is used at once: an offline rerun does not sit through the retries.
fn list(
    agent: &ureq::Agent,
    spec: &ModelSpec,
    opts: &DownloadOptions,
    repo_dir: &Path,
    ref_path: &Path,
) -> Result<Listed, DownloadError> {
    let url = format!(
        "{}/api/models/{}/revision/{}?blobs=true",
        opts.endpoint.trim_end_matches('/'),
        spec.repo,
        encode_segment(&spec.revision)
    );
    let attempts = opts.max_attempts.max(1);
    let mut delay = opts.retry_delay;
    let mut attempt = 1;
    loop {
        let err = match list_once(agent, &url, spec, opts) {
            Ok(files) => return Ok(Listed::Files(files)),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(e)) => e,
        };
        if matches!(err, DownloadError::Transport { .. }) {
            if let Some(cached) = cached_checkpoint(spec, repo_dir, ref_path)? {
                tracing::warn!(
                    "{err}; using the cached checkpoint {}",
                    cached.dir.display()
                );
                return Ok(Listed::Cached(cached));
            }
        }
        if attempt >= attempts {
            return Err(err);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_RETRY_DELAY);
        attempt += 1;
    }
}

fn list_once(
    agent: &ureq::Agent,
    url: &str,
    spec: &ModelSpec,
    opts: &DownloadOptions,
) -> Result<Files, Attempt> {
    let mut req = agent.get(url);
    if let Some(t) = &opts.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let transport = |e: ureq::Error| {
        Attempt::Retry(DownloadError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        })
    };
    let mut resp = req.call().map_err(transport)?;
    let status = resp.status().as_u16();
    if status != 200 {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        return Err(status_error(
            spec,
            url,
            &opts.endpoint,
            status,
            header("x-error-code").as_deref(),
            header("x-error-message").as_deref(),
        ));
    }
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_LISTING)
        .read_to_string()
        .map_err(transport)?;
    parse_listing(&text).map_err(|message| {
        Attempt::Fatal(DownloadError::BadResponse {
            url: url.to_string(),
            message,
        })
    })
}

/// What a non-200 answer to the listing means, the way `hf_raise_for_status` reads it.
fn status_error(
    spec: &ModelSpec,
    url: &str,
    endpoint: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> Attempt {
    let repo = spec.repo.clone();
    let gated = || DownloadError::Gated {
        repo: repo.clone(),
        status,
        page: format!("{}/{}", endpoint.trim_end_matches('/'), repo),
    };
    Attempt::Fatal(match (code, status) {
        (Some("RevisionNotFound"), _) => DownloadError::RevisionNotFound {
            repo,
            revision: spec.revision.clone(),
        },
        (Some("GatedRepo"), _) => gated(),
        (Some("RepoNotFound"), _) => DownloadError::RepoNotFound { repo },
        (_, 401) if message == Some(INVALID_CREDENTIALS) => DownloadError::Unauthorized {
            url: url.to_string(),
            status,
        },
        (_, 401 | 404) => DownloadError::RepoNotFound { repo },
        (_, 403) => gated(),
        (_, 429 | 500..=599) => {
            return Attempt::Retry(DownloadError::Http {
                url: url.to_string(),
                status,
            })
        }
        _ => DownloadError::Http {
            url: url.to_string(),
            status,
        },
    })
}

/// Parses and checks the listing; the error says what is wrong with it.
fn parse_listing(text: &str) -> Result<Files, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let listing: Listing = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        format!(
            "the file listing is not what the hub sends ({path}: {})",
            e.inner()
        )
    })?;
    let commit = listing.sha.to_ascii_lowercase();
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the file listing's sha '{}' is not a 40-hex commit",
            listing.sha.escape_debug()
        ));
    }
    let mut names = Vec::with_capacity(listing.siblings.len());
    let mut meta = HashMap::with_capacity(listing.siblings.len());
    for s in listing.siblings {
        let (sha256, size) = match s.lfs {
            Some(lfs) => {
                let sha = sha_from_etag(&lfs.sha256).ok_or_else(|| {
                    format!(
                        "the lfs sha256 '{}' of {} is not 64 hex digits",
                        lfs.sha256.escape_debug(),
                        s.rfilename.escape_debug()
                    )
                })?;
                (Some(sha), Some(lfs.size))
            }
            None => (None, s.size),
        };
        names.push(s.rfilename.clone());
        meta.insert(s.rfilename, Meta { sha256, size });
    }
    Ok(Files {
        commit,
        names,
        meta,
    })
}

/// The shards an index names, sorted and without repeats; each must be a plain file name, so
/// that it lands in the checkpoint directory and nowhere else.
fn shard_names(index: &Path) -> Result<Vec<String>, String> {
    let len = fs::metadata(index).map_err(|e| format!("{}: {e}", index.display()))?;
    if len.len() > MAX_INDEX {
        return Err(format!("{INDEX} is {} bytes, over {MAX_INDEX}", len.len()));
    }
    let text = fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let parsed: Index = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        format!("{INDEX} is not a safetensors index ({path}: {})", e.inner())
    })?;
    let shards: BTreeSet<String> = parsed.weight_map.into_values().collect();
    if shards.is_empty() {
        return Err(format!("{INDEX} names no shards"));
    }
    for s in &shards {
        let plain = !s.is_empty()
            && s.len() <= 255
            && s != "."
            && s != ".."
            && !s.chars().any(|c| c.is_control() || "/\\:".contains(c));
        if !plain {
            return Err(format!(
                "shard '{}' named by {INDEX} is not a plain file name in the repository's top folder",
                s.escape_debug()
            ));
        }
    }
    Ok(shards.into_iter().collect())
}

/// Downloads the files of one checkpoint into its directory, with one progress bar for the
/// whole checkpoint and one for the file under way.
struct Fetcher<'a> {
    spec: &'a ModelSpec,
    files: &'a Files,
    dir: &'a Path,
    agent: ureq::Agent,
    opts: &'a DownloadOptions,
    multi: MultiProgress,
    overall: ProgressBar,
}

impl<'a> Fetcher<'a> {
    fn new(
        spec: &'a ModelSpec,
        files: &'a Files,
        dir: &'a Path,
        agent: ureq::Agent,
        opts: &'a DownloadOptions,
    ) -> Fetcher<'a> {
        let multi = MultiProgress::with_draw_target(if opts.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let short = &files.commit[..files.commit.len().min(8)];
        let overall = multi.add(progress_bar(
            opts.progress,
            &format!("{}@{short}", spec.repo),
        ));
        overall.set_length(0);
        Fetcher {
            spec,
            files,
            dir,
            agent,
            opts,
            multi,
            overall,
        }
    }

    /// Adds the files still to fetch to the overall bar's length.
    fn plan(&self, names: &[&str]) {
        let todo: u64 = names
            .iter()
            .filter(|n| self.complete(n).is_none())
            .filter_map(|n| self.files.meta.get(*n).and_then(|m| m.size))
            .sum();
        self.overall.inc_length(todo);
    }

    /// The path of `name` when it is already in the directory at its listed size.
    fn complete(&self, name: &str) -> Option<PathBuf> {
        let dest = self.dir.join(name);
        let len = fs::metadata(&dest).ok().filter(|m| m.is_file())?.len();
        let listed = self.files.meta.get(name).and_then(|m| m.size);
        listed.is_none_or(|s| s == len).then_some(dest)
    }

    /// `name` in the directory, downloaded first unless it is there already.
    fn fetch(&self, name: &str) -> Result<PathBuf, DownloadError> {
        if let Some(done) = self.complete(name) {
            return Ok(done);
        }
        let dest = self.dir.join(name);
        // Files are renamed into place only once verified, so one of the wrong length was
        // changed by hand: fetch it again.
        if dest.is_file() {
            fs::remove_file(&dest).map_err(io_err(&dest))?;
        }
        let empty = Meta::default();
        let meta = self.files.meta.get(name).unwrap_or(&empty);
        let segments: Vec<String> = name.split('/').map(encode_segment).collect();
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.opts.endpoint.trim_end_matches('/'),
            self.spec.repo,
            self.files.commit,
            segments.join("/")
        );
        let http = Http {
            agent: self.agent.clone(),
            url: &url,
            opts: self.opts,
        };
        let bar = self.multi.add(progress_bar(self.opts.progress, name));
        let fetched = fetch_verified(&http, &dest, meta, &bar);
        bar.finish_and_clear();
        self.multi.remove(&bar);
        let (_, size) = fetched.map_err(|e| self.file_error(name, e))?;
        self.overall.inc(size);
        Ok(dest)
    }

    /// A 401 or 403 on a listed file means a gated repository (the hub lists those freely);
    /// a 404 on a listed file means the listing and the files disagree.
    fn file_error(&self, name: &str, e: DownloadError) -> DownloadError {
        match e {
            DownloadError::Unauthorized { status, .. } => DownloadError::Gated {
                repo: self.spec.repo.clone(),
                status,
                page: format!(
                    "{}/{}",
                    self.opts.endpoint.trim_end_matches('/'),
                    self.spec.repo
                ),
            },
            DownloadError::NotFound { url } => bad_checkpoint(
                self.spec,
                format!("{name} is in the file listing but {url} is not found (http 404)"),
            ),
            other => other,
        }
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Records which commit `revision` resolved to, atomically.
fn write_ref(ref_path: &Path, commit: &str) -> Result<(), DownloadError> {
    if let Some(dir) = ref_path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = with_suffix(ref_path, ".tmp");
    fs::write(&tmp, format!("{commit}\n")).map_err(io_err(&tmp))?;
    fs::rename(&tmp, ref_path).map_err(io_err(ref_path))?;
    if let Some(dir) = ref_path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// The cached checkpoint of `spec`'s revision, if it is complete: the commit comes from the
/// ref file (or is the revision itself when that is a full commit), and the directory must
/// hold `config.json` and all the weights. The weights are fetched last, so with them present
/// the side files the repository has are present too.
fn cached_checkpoint(
    spec: &ModelSpec,
    repo_dir: &Path,
    ref_path: &Path,
) -> Result<Option<Checkpoint>, DownloadError> {
    let commit = match fs::read_to_string(ref_path) {
        Ok(text) => text.trim().to_ascii_lowercase(),
        Err(e) if e.kind() == ErrorKind::NotFound => spec.revision.to_ascii_lowercase(),
        Err(e) => return Err(io_err(ref_path)(e)),
    };
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let dir = repo_dir.join(&commit);
    let present = |name: &str| dir.join(name).is_file();
    if !present(CONFIG) {
        return Ok(None);
    }
    let mut files: Vec<PathBuf> = SIDE_FILES
        .iter()
        .filter(|f| present(f))
        .map(|f| dir.join(f))
        .collect();
    if present(SINGLE) {
        files.push(dir.join(SINGLE));
    } else if present(INDEX) {
        let Ok(shards) = shard_names(&dir.join(INDEX)) else {
            return Ok(None);
        };
        if !shards.iter().all(|s| present(s)) {
            return Ok(None);
        }
        files.push(dir.join(INDEX));
        files.extend(shards.iter().map(|s| dir.join(s)));
    } else {
        return Ok(None);
    }
    Ok(Some(Checkpoint {
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        commit,
        dir,
        files,
    }))
}
