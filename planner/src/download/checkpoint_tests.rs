//! Checkpoint downloads against the loopback TEST DOUBLE in `crate::http_double`, standing in
//! for the Hugging Face hub's listing API and file endpoint.

use super::tests::{bytes, sha_hex};
use super::*;
use crate::http_double::{Recorded, Reply, TestServer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const REPO: &str = "owner/repo";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const LISTING: &str = "/api/models/owner/repo/revision/main?blobs=true";

/// A repository: file name → (content, stored in LFS).
type Repo = BTreeMap<String, (Vec<u8>, bool)>;

fn repo(files: &[(&str, Vec<u8>, bool)]) -> Repo {
    files
        .iter()
        .map(|(n, d, lfs)| (n.to_string(), (d.clone(), *lfs)))
        .collect()
}

/// The hub's `?blobs=true` listing of `repo` at `COMMIT`.
fn listing(repo: &Repo) -> serde_json::Value {
    let siblings: Vec<serde_json::Value> = repo
        .iter()
        .map(|(name, (data, lfs))| {
            let mut s = json!({"rfilename": name, "blobId": "abc", "size": data.len()});
            if *lfs {
                s["lfs"] = json!({"sha256": sha_hex(data), "size": data.len(), "pointerSize": 134});
            }
            s
        })
        .collect();
    json!({"_id": "x", "id": REPO, "sha": COMMIT, "private": false, "gated": false,
           "siblings": siblings})
}

fn sharded_repo() -> Repo {
    let index = json!({
        "metadata": {"total_size": 1},
        "weight_map": {
            "a.weight": "model-00001-of-00002.safetensors",
            "b.weight": "model-00002-of-00002.safetensors",
            "c.weight": "model-00001-of-00002.safetensors",
        }
    });
    repo(&[
        ("config.json", b"{\"model_type\":\"llama\"}".to_vec(), false),
        ("tokenizer.json", bytes(1, 5_000), false),
        ("tokenizer_config.json", b"{}".to_vec(), false),
        ("README.md", b"# hi".to_vec(), false),
        (
            "model.safetensors.index.json",
            index.to_string().into_bytes(),
            false,
        ),
        ("model-00001-of-00002.safetensors", bytes(2, 300_000), true),
        ("model-00002-of-00002.safetensors", bytes(3, 200_000), true),
        ("pytorch_model.bin", bytes(4, 100), true),
    ])
}

fn single_repo() -> Repo {
    repo(&[
        ("config.json", b"{\"model_type\":\"qwen2\"}".to_vec(), false),
        ("generation_config.json", b"{}".to_vec(), false),
        ("tokenizer.model", bytes(5, 1000), true),
        ("model.safetensors", bytes(6, 400_000), true),
        (".gitattributes", b"*".to_vec(), false),
    ])
}

/// What the hub answers: the listing, the files with Range support, 404 for anything else.
/// `cut` makes the first GET of one file stop after that many bytes.
struct Hub {
    repo: Repo,
    listing: serde_json::Value,
    cut: Mutex<Option<(String, usize)>>,
}

impl Hub {
    fn new(repo: Repo) -> Arc<Hub> {
        Arc::new(Hub {
            listing: listing(&repo),
            repo,
            cut: Mutex::new(None),
        })
    }

    fn with_listing(repo: Repo, listing: serde_json::Value) -> Arc<Hub> {
        Arc::new(Hub {
            listing,
            repo,
            cut: Mutex::new(None),
        })
    }

    fn answer(&self, req: &Recorded) -> Reply {
        if req.path.starts_with("/api/models/") {
            return Reply::json(200, &self.listing);
        }
        let prefix = format!("/{REPO}/resolve/{COMMIT}/");
        let Some((data, _)) = req
            .path
            .strip_prefix(&prefix)
            .and_then(|name| self.repo.get(name))
        else {
            return Reply::text(404, &[("x-error-code", "EntryNotFound")], "");
        };
        let name = &req.path[prefix.len()..];
        let mut cut = self.cut.lock().unwrap();
        if let Some(at) = cut.as_ref().filter(|(f, _)| f == name).map(|c| c.1) {
            *cut = None;
            return Reply::Cut {
                status: 200,
                headers: vec![],
                declared: data.len(),
                body: data[..at].to_vec(),
            };
        }
        let start = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok());
        match start {
            None => Reply::Full {
                status: 200,
                headers: vec![],
                body: data.clone(),
            },
            Some(s) => Reply::Full {
                status: 206,
                headers: vec![(
                    "content-range".into(),
                    format!("bytes {s}-{}/{}", data.len() - 1, data.len()),
                )],
                body: data[s..].to_vec(),
            },
        }
    }

    /// A server answering up to `n` requests.
    fn serve(self: &Arc<Hub>, n: usize) -> TestServer {
        let script = (0..n)
            .map(|_| {
                let hub = self.clone();
                Reply::Dynamic(Arc::new(move |req: &Recorded| hub.answer(req)))
            })
            .collect();
        TestServer::start(script)
    }
}

fn options(endpoint: &str, cache: &Path, token: Option<&str>) -> DownloadOptions {
    DownloadOptions {
        endpoint: endpoint.to_string(),
        token: token.map(String::from),
        cache_dir: cache.to_path_buf(),
        progress: false,
        max_attempts: 3,
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_secs(5),
    }
}

/// The paths asked for, in order.
fn paths(seen: &[Recorded]) -> Vec<String> {
    seen.iter().map(|r| r.path.clone()).collect()
}

fn resolve(name: &str) -> String {
    format!("/{REPO}/resolve/{COMMIT}/{name}")
}

fn commit_dir(cache: &Path) -> PathBuf {
    cache.join("hf/owner/repo").join(COMMIT)
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn sharded_checkpoint_then_cached_rerun() {
    let hub = Hub::new(sharded_repo());
    let cache = tempfile::tempdir().unwrap();
    let server = hub.serve(20);
    let opts = options(&server.url(), cache.path(), Some("hf_secret"));
    let got = fetch_checkpoint(REPO, None, &opts).unwrap();
    let seen = server.finish();

    let dir = commit_dir(cache.path());
    let names = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    assert_eq!(
        got,
        Checkpoint {
            repo: REPO.into(),
            revision: "main".into(),
            commit: COMMIT.into(),
            dir: dir.clone(),
            files: names.iter().map(|n| dir.join(n)).collect(),
        }
    );
    for n in names {
        assert_eq!(fs::read(dir.join(n)).unwrap(), hub.repo[n].0, "{n}");
    }
    let mut expected = vec![LISTING.to_string()];
    expected.extend(names.iter().map(|n| resolve(n)));
    assert_eq!(paths(&seen), expected);
    assert!(seen
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer hf_secret")));
    // Only the files: no part files, no records.
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    assert_eq!(dir_names(&dir), sorted);
    assert_eq!(
        fs::read_to_string(cache.path().join("hf/owner/repo/refs/main")).unwrap(),
        format!("{COMMIT}\n")
    );

    // A rerun lists the repository again, but fetches no file.
    let server = hub.serve(20);
    let again = fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap();
    assert_eq!(paths(&server.finish()), [LISTING]);
    assert_eq!(again, got);

    // The hub unreachable: the ref and the files in the cache are enough.
    let offline = options("http://127.0.0.1:9", cache.path(), None);
    assert_eq!(fetch_checkpoint(REPO, None, &offline).unwrap(), got);
    // Also for the commit itself, which needs no ref.
    let pinned = fetch_checkpoint(REPO, Some(COMMIT), &offline).unwrap();
    assert_eq!(
        (pinned.revision.as_str(), &pinned.files),
        (COMMIT, &got.files)
    );
    // But not for a revision never fetched.
    let err = fetch_checkpoint(REPO, Some("v2"), &offline).unwrap_err();
    assert!(matches!(err, DownloadError::Transport { .. }), "{err:?}");
}

#[test]
fn single_file_checkpoint_with_a_pinned_revision() {
    let hub = Hub::new(single_repo());
    let cache = tempfile::tempdir().unwrap();
    let server = hub.serve(10);
    let opts = options(&server.url(), cache.path(), None);
    let got = fetch_checkpoint(REPO, Some("refs/pr/1"), &opts).unwrap();
    let seen = server.finish();
    assert_eq!(
        seen[0].path,
        "/api/models/owner/repo/revision/refs%2Fpr%2F1?blobs=true"
    );
    assert!(seen.iter().all(|r| r.header("authorization").is_none()));
    let names = [
        "config.json",
        "generation_config.json",
        "tokenizer.model",
        "model.safetensors",
    ];
    assert_eq!(paths(&seen)[1..], names.map(resolve));
    assert_eq!(got.revision, "refs/pr/1");
    assert_eq!(got.files, names.map(|n| got.dir.join(n)));
    assert_eq!(
        fs::read(got.dir.join("model.safetensors")).unwrap(),
        hub.repo["model.safetensors"].0
    );
    let ref_file = cache.path().join("hf/owner/repo/refs/refs%2Fpr%2F1");
    assert_eq!(fs::read_to_string(ref_file).unwrap().trim(), COMMIT);
}

#[test]
fn a_cut_connection_is_resumed_in_the_same_run() {
    let hub = Hub::new(single_repo());
    *hub.cut.lock().unwrap() = Some(("model.safetensors".into(), 123_457));
    let cache = tempfile::tempdir().unwrap();
    let server = hub.serve(10);
    let got = fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap();
    let seen = server.finish();
    let last = &seen[seen.len() - 1];
    assert_eq!(last.path, resolve("model.safetensors"));
    assert_eq!(last.header("range"), Some("bytes=123457-"));
    assert_eq!(
        fs::read(got.dir.join("model.safetensors")).unwrap(),
        hub.repo["model.safetensors"].0
    );
}

#[test]
fn a_killed_download_resumes_without_refetching_finished_files() {
    let hub = Hub::new(sharded_repo());
    *hub.cut.lock().unwrap() = Some(("model-00002-of-00002.safetensors".into(), 50_000));
    let cache = tempfile::tempdir().unwrap();
    let server = hub.serve(20);
    let mut opts = options(&server.url(), cache.path(), None);
    opts.max_attempts = 1; // the cut ends this run, as a killed process would
    let err = fetch_checkpoint(REPO, None, &opts).unwrap_err();
    assert_eq!(server.finish().len(), 7);
    assert!(matches!(err, DownloadError::Transport { .. }), "{err:?}");
    let dir = commit_dir(cache.path());
    assert_eq!(
        fs::metadata(dir.join("model-00002-of-00002.safetensors.part"))
            .unwrap()
            .len(),
        50_000
    );
    assert!(
        !cache.path().join("hf/owner/repo/refs/main").exists(),
        "no ref to an incomplete checkpoint"
    );

    let server = hub.serve(20);
    opts.endpoint = server.url();
    let got = fetch_checkpoint(REPO, None, &opts).unwrap();
    let seen = server.finish();
    assert_eq!(
        paths(&seen),
        [
            LISTING.to_string(),
            resolve("model-00002-of-00002.safetensors")
        ]
    );
    assert_eq!(seen[1].header("range"), Some("bytes=50000-"));
    assert_eq!(got.files.len(), 6);
    assert_eq!(
        fs::read(dir.join("model-00002-of-00002.safetensors")).unwrap(),
        hub.repo["model-00002-of-00002.safetensors"].0
    );
}

#[test]
fn a_corrupted_shard_fails_its_checksum_and_is_not_kept() {
    let mut files = sharded_repo();
    let mut listing = listing(&files);
    // The hub announces the sha256 of other content of the same length.
    let shard = "model-00001-of-00002.safetensors";
    let wrong = sha_hex(&bytes(99, 300_000));
    for s in listing["siblings"].as_array_mut().unwrap() {
        if s["rfilename"] == shard {
            s["lfs"]["sha256"] = json!(wrong);
        }
    }
    files.remove("pytorch_model.bin");
    let hub = Hub::with_listing(files, listing);
    let cache = tempfile::tempdir().unwrap();
    let server = hub.serve(20);
    let err =
        fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
    server.finish();
    match &err {
        DownloadError::ShaMismatch { url, expected, .. } => {
            assert!(url.ends_with(&resolve(shard)), "{url}");
            assert_eq!(expected, &wrong);
        }
        other => panic!("expected a sha mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(shard), "{err}");
    let left = dir_names(&commit_dir(cache.path()));
    assert!(
        !left.iter().any(|n| n.starts_with("model-0000")),
        "{left:?}"
    );
}

#[test]
fn a_wrong_length_of_a_small_file_is_refused() {
    let files = single_repo();
    let mut listing = listing(&files);
    for s in listing["siblings"].as_array_mut().unwrap() {
        if s["rfilename"] == "config.json" {
            s["size"] = json!(5);
        }
    }
    let hub = Hub::with_listing(files, listing);
    let cache = tempfile::tempdir().unwrap();
    let server = hub.serve(10);
    let err =
        fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
    server.finish();
    assert!(matches!(err, DownloadError::BadResponse { .. }), "{err:?}");
    assert!(err.to_string().contains(&resolve("config.json")), "{err}");
    assert!(!commit_dir(cache.path()).join("config.json").exists());
}

/// The listing answered with `status` and `headers`.
fn listing_error(status: u16, headers: &[(&str, &str)], token: Option<&str>) -> DownloadError {
    let server = TestServer::start(vec![Reply::text(status, headers, "")]);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch_checkpoint(
        REPO,
        Some("v1.0"),
        &options(&server.url(), cache.path(), token),
    )
    .unwrap_err();
    assert_eq!(server.finish().len(), 1, "{status} is not retried");
    err
}

#[test]
fn hub_errors_name_the_repository() {
    let check = |err: DownloadError, want: &str| {
        let msg = err.to_string();
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        assert!(
            !msg.contains("hf_bad"),
            "the token must not be printed: {msg}"
        );
    };
    let err = listing_error(404, &[("x-error-code", "RepoNotFound")], None);
    assert!(matches!(err, DownloadError::RepoNotFound { .. }), "{err:?}");
    check(
        err,
        "repository owner/repo not found (or private: set HF_TOKEN)",
    );
    // A 401 without a code is how the hub hides private repositories.
    let err = listing_error(401, &[], None);
    assert!(matches!(err, DownloadError::RepoNotFound { .. }), "{err:?}");
    let err = listing_error(
        401,
        &[(
            "x-error-message",
            "Invalid credentials in Authorization header",
        )],
        Some("hf_bad"),
    );
    assert!(
        matches!(err, DownloadError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    check(err, "HF_TOKEN");

    let err = listing_error(404, &[("x-error-code", "RevisionNotFound")], None);
    assert!(
        matches!(err, DownloadError::RevisionNotFound { .. }),
        "{err:?}"
    );
    check(err, "revision 'v1.0' not found in owner/repo");

    for status in [401, 403] {
        let err = listing_error(status, &[("x-error-code", "GatedRepo")], Some("hf_bad"));
        assert!(matches!(err, DownloadError::Gated { .. }), "{err:?}");
        check(
            err,
            &format!("owner/repo is gated or private (http {status})"),
        );
    }
    let err = listing_error(403, &[], Some("hf_bad"));
    check(err, "HF_TOKEN");
}

#[test]
fn a_gated_file_is_a_gated_error() {
    // The hub lists gated repositories to anyone, and refuses their files.
    let hub = Hub::new(single_repo());
    let listing = hub.listing.clone();
    let server = TestServer::start(vec![
        Reply::json(200, &listing),
        Reply::text(401, &[("x-error-code", "GatedRepo")], ""),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
    let url = server.url();
    assert_eq!(server.finish().len(), 2);
    assert!(
        matches!(err, DownloadError::Gated { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("accept its terms at {url}/owner/repo")),
        "{msg}"
    );
}

#[test]
fn server_errors_on_the_listing_are_retried() {
    let hub = Hub::new(single_repo());
    let mut script = vec![Reply::text(503, &[], "")];
    for _ in 0..10 {
        let hub = hub.clone();
        script.push(Reply::Dynamic(Arc::new(move |req: &Recorded| {
            hub.answer(req)
        })));
    }
    let server = TestServer::start(script);
    let cache = tempfile::tempdir().unwrap();
    let got = fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap();
    let seen = server.finish();
    assert_eq!(
        paths(&seen)[..3],
        [LISTING, LISTING, &resolve("config.json")]
    );
    assert_eq!(got.files.len(), 4);
}

/// The error for a repository of these files (nothing is downloaded).
fn choice_error(names: &[&str]) -> DownloadError {
    let files = repo(
        &names
            .iter()
            .map(|n| (*n, b"x".to_vec(), false))
            .collect::<Vec<_>>(),
    );
    let server = TestServer::start(vec![Reply::json(200, &listing(&files))]);
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
    assert_eq!(server.finish().len(), 1, "only the listing");
    assert!(!cache
        .path()
        .join("hf")
        .join("owner/repo")
        .join(COMMIT)
        .exists());
    err
}

#[test]
fn repositories_without_safetensors_say_what_they_have() {
    let err = choice_error(&[
        "README.md",
        "config.json",
        "smol-Q4_K_M.gguf",
        "q8/smol Q8_0.GGUF",
    ]);
    assert!(
        matches!(err, DownloadError::NoSafetensors { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "owner/repo@main has no safetensors weights, only GGUF files; download one of them with \
         --model-file 'q8/smol Q8_0.GGUF', --model-file smol-Q4_K_M.gguf"
    );

    let err = choice_error(&["config.json", "pytorch_model.bin", "training_args.bin"]);
    assert!(matches!(err, DownloadError::PytorchOnly { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "owner/repo@main has only pytorch .bin weights; sintra converts safetensors"
        ),
        "{err}"
    );

    for names in [
        &["README.md", "config.json"][..],
        &["training_args.bin"][..],
    ] {
        let err = choice_error(names);
        assert_eq!(
            err.to_string(),
            "owner/repo@main has neither safetensors nor GGUF weights"
        );
    }

    let err = choice_error(&["model.safetensors", "tokenizer.json"]);
    assert_eq!(err.to_string(), "owner/repo@main: has no config.json");
}

#[test]
fn hostile_listings_are_bad_responses() {
    let sibling = |extra: serde_json::Value| {
        let mut s = json!({"rfilename": "model.safetensors", "size": 3});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({"sha": COMMIT, "siblings": [s]})
    };
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::text(200, &[], "<html>not json</html>"),
            "not what the hub sends",
        ),
        (Reply::json(200, &json!([1, 2])), "not what the hub sends"),
        (Reply::json(200, &json!({"sha": COMMIT})), "siblings"),
        (Reply::json(200, &json!({"sha": 7, "siblings": []})), "sha"),
        (
            Reply::json(200, &json!({"sha": "main", "siblings": []})),
            "not a 40-hex commit",
        ),
        (
            Reply::json(
                200,
                &json!({"sha": "../../../../etc/passwd/0123456789abcdef01", "siblings": []}),
            ),
            "not a 40-hex commit",
        ),
        (
            Reply::json(200, &json!({"sha": COMMIT, "siblings": {"a": 1}})),
            "siblings",
        ),
        (
            Reply::json(200, &sibling(json!({"size": -1}))),
            "siblings[0].size",
        ),
        (
            Reply::json(200, &sibling(json!({"rfilename": null}))),
            "siblings[0].rfilename",
        ),
        (
            Reply::json(200, &sibling(json!({"lfs": {"sha256": "abc", "size": 3}}))),
            "not 64 hex digits",
        ),
        (
            Reply::json(200, &sibling(json!({"lfs": {"size": 3}}))),
            "siblings[0].lfs",
        ),
    ];
    for (reply, want) in cases {
        let server = TestServer::start(vec![reply]);
        let cache = tempfile::tempdir().unwrap();
        let err =
            fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
        server.finish();
        assert!(matches!(err, DownloadError::BadResponse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(LISTING), "{msg}");
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
}

/// A sharded repository whose index names `shard` (which is also listed).
fn index_error(shard: &str) -> DownloadError {
    let index = json!({"weight_map": {"a.weight": shard}}).to_string();
    let files = repo(&[
        ("config.json", b"{}".to_vec(), false),
        ("model.safetensors.index.json", index.into_bytes(), false),
        (shard, b"evil".to_vec(), true),
    ]);
    let hub = Hub::new(files);
    let server = hub.serve(10);
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
    let seen = server.finish();
    assert!(
        !seen
            .iter()
            .any(|r| r.path.ends_with(&encode_segment(shard))),
        "the shard was asked for: {:?}",
        paths(&seen)
    );
    assert!(!cache.path().join("hf/owner/evil").exists());
    err
}

#[test]
fn shard_names_must_stay_in_the_checkpoint_directory() {
    for shard in [
        "../evil.safetensors",
        "/tmp/evil.safetensors",
        "sub/x.safetensors",
        "..",
        "a\\b",
    ] {
        let err = index_error(shard);
        assert!(
            matches!(err, DownloadError::BadCheckpoint { .. }),
            "{shard}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("is not a plain file name"), "{msg}");
        assert!(msg.starts_with("owner/repo@main: "), "{msg}");
    }
}

#[test]
fn index_problems_are_bad_checkpoints() {
    let run = |index: &str, listed: &[&str]| {
        let mut files = vec![
            ("config.json", b"{}".to_vec(), false),
            (
                "model.safetensors.index.json",
                index.as_bytes().to_vec(),
                false,
            ),
        ];
        files.extend(listed.iter().map(|n| (*n, b"w".to_vec(), true)));
        let hub = Hub::new(repo(&files));
        let server = hub.serve(10);
        let cache = tempfile::tempdir().unwrap();
        let err =
            fetch_checkpoint(REPO, None, &options(&server.url(), cache.path(), None)).unwrap_err();
        server.finish();
        assert!(
            matches!(err, DownloadError::BadCheckpoint { .. }),
            "{err:?}"
        );
        err.to_string()
    };
    let msg = run(r#"{"weight_map": {"a": "model-1.safetensors"}}"#, &[]);
    assert!(msg.contains("shard model-1.safetensors named by model.safetensors.index.json is not in the repository"), "{msg}");
    let msg = run("not json", &[]);
    assert!(msg.contains("is not a safetensors index"), "{msg}");
    let msg = run(r#"{"weight_map": {"a": 5}}"#, &[]);
    assert!(msg.contains("weight_map.a"), "{msg}");
    let msg = run(r#"{"weight_map": {}}"#, &[]);
    assert!(msg.contains("names no shards"), "{msg}");
}

#[test]
fn invalid_ids_and_revisions_are_refused_before_any_request() {
    let opts = options("http://127.0.0.1:9", Path::new("/nonexistent"), None);
    for (repo, rev) in [("noslash", None), ("a/../b", None), ("a/b", Some("../x"))] {
        let err = fetch_checkpoint(repo, rev, &opts).unwrap_err();
        assert!(
            matches!(err, DownloadError::InvalidSpec(_)),
            "{repo} {rev:?}: {err:?}"
        );
    }
}
