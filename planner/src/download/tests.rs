//! Downloads against the loopback TEST DOUBLE in `crate::http_double`, standing in for the
//! Hugging Face hub and its CDN (which tests cannot reach).

use super::transfer::{origin, parse_content_range};
use super::*;
use crate::http_double::{Recorded, Reply, TestServer};
use std::sync::Arc;

const REPO: &str = "owner/repo";
const FILE: &str = "tiny.Q4_0.gguf";
const PATH: &str = "/owner/repo/resolve/main/tiny.Q4_0.gguf";

/// 300 kB of deterministic bytes: more than one read chunk.
fn content() -> Vec<u8> {
    bytes(0, 300_000)
}

/// `n` deterministic bytes, different for each `seed` (shared with `checkpoint_tests`).
pub(super) fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub(super) fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn spec() -> ModelSpec {
    ModelSpec::new(REPO, FILE, None).unwrap()
}

fn options(server: &TestServer, cache: &Path, token: Option<&str>) -> DownloadOptions {
    DownloadOptions {
        endpoint: server.url(),
        token: token.map(String::from),
        cache_dir: cache.to_path_buf(),
        progress: false,
        max_attempts: 3,
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_secs(5),
    }
}

/// The hub's HEAD answer for an LFS file: a redirect carrying the content's sha256 and size.
fn lfs_head(data: &[u8], sha: &str) -> Reply {
    Reply::Full {
        status: 302,
        headers: vec![
            ("x-linked-etag".into(), format!("\"{sha}\"")),
            ("x-linked-size".into(), data.len().to_string()),
            ("location".into(), "/cdn/blob".into()),
        ],
        body: Vec::new(),
    }
}

/// Serves `data`, honouring `range: bytes=N-` as a file server does.
fn ranged(data: &[u8]) -> Reply {
    let data = Arc::new(data.to_vec());
    Reply::Dynamic(Arc::new(move |req: &Recorded| {
        let len = data.len();
        let start = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok());
        match start {
            None => Reply::Full {
                status: 200,
                headers: vec![],
                body: data.to_vec(),
            },
            Some(s) if s >= len => Reply::Full {
                status: 416,
                headers: vec![("content-range".into(), format!("bytes */{len}"))],
                body: Vec::new(),
            },
            Some(s) => Reply::Full {
                status: 206,
                headers: vec![(
                    "content-range".into(),
                    format!("bytes {s}-{}/{len}", len - 1),
                )],
                body: data[s..].to_vec(),
            },
        }
    }))
}

fn cache_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn full_download_through_cdn_redirect() {
    let data = content();
    let sha = sha_hex(&data);
    let server = TestServer::start(vec![
        lfs_head(&data, &sha),
        Reply::text(302, &[("location", "/cdn/blob")], ""),
        ranged(&data),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let got = fetch(&spec(), &options(&server, cache.path(), Some("hf_secret"))).unwrap();
    let seen = server.finish();

    assert_eq!(got.path, cache.path().join(FILE));
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert_eq!(got.sha256, sha);
    assert_eq!(got.size, data.len() as u64);
    assert!(got.verified && !got.from_cache);
    assert_eq!(
        cache_files(cache.path()),
        [FILE.to_string(), format!("{FILE}.source.json")]
    );
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(cache.path().join(format!("{FILE}.source.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["repo"], REPO);
    assert_eq!(record["sha256"], sha.as_str());
    assert_eq!(record["verified"], true);

    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(calls, [("HEAD", PATH), ("GET", PATH), ("GET", "/cdn/blob")]);
    // The token goes to the hub, and stays on same-host redirects.
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer hf_secret"),
            "{}",
            r.path
        );
        assert_eq!(r.header("range"), None);
    }
}

#[test]
fn no_token_no_authorization_header() {
    let data = b"small file".to_vec();
    let server = TestServer::start(vec![
        Reply::text(200, &[("etag", "\"0123abcd\"")], "small file"),
        ranged(&data),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let got = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    let seen = server.finish();
    assert!(seen.iter().all(|r| r.header("authorization").is_none()));
    // A git etag (not 64 hex digits) is no sha256: the hash is computed and recorded.
    assert!(!got.verified);
    assert_eq!(got.sha256, sha_hex(&data));
    assert_eq!(got.size, data.len() as u64);
}

#[test]
fn resumes_after_a_cut_connection() {
    let data = content();
    let sha = sha_hex(&data);
    let cut_at = 123_457;
    let server = TestServer::start(vec![
        // A plain 200 to HEAD: the content-length is the file's, the etag its sha256.
        Reply::Full {
            status: 200,
            headers: vec![("etag".into(), format!("\"{sha}\""))],
            body: data.clone(),
        },
        Reply::Cut {
            status: 200,
            headers: vec![],
            declared: data.len(),
            body: data[..cut_at].to_vec(),
        },
        ranged(&data),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let got = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    let seen = server.finish();
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert!(got.verified);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("range"), None);
    assert_eq!(
        seen[2].header("range"),
        Some(format!("bytes={cut_at}-").as_str())
    );
    assert!(!cache.path().join(format!("{FILE}.part")).exists());
}

#[test]
fn resumes_a_part_file_left_by_an_earlier_run() {
    let data = content();
    let sha = sha_hex(&data);
    let cache = tempfile::tempdir().unwrap();
    fs::write(cache.path().join(format!("{FILE}.part")), &data[..5000]).unwrap();
    let server = TestServer::start(vec![lfs_head(&data, &sha), ranged(&data)]);
    let got = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    let seen = server.finish();
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert_eq!(seen[1].header("range"), Some("bytes=5000-"));
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let data = content();
    let sha = sha_hex(&data);
    let cache = tempfile::tempdir().unwrap();
    // Not even a prefix of the file: a 200 answer must replace it, not be appended to it.
    fs::write(cache.path().join(format!("{FILE}.part")), b"stale bytes").unwrap();
    let server = TestServer::start(vec![
        lfs_head(&data, &sha),
        Reply::Full {
            status: 200,
            headers: vec![],
            body: data.clone(),
        },
    ]);
    let got = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert_eq!(server.finish()[1].header("range"), Some("bytes=11-"));
}

#[test]
fn complete_part_file_without_head_metadata() {
    let data = content();
    let cache = tempfile::tempdir().unwrap();
    fs::write(cache.path().join(format!("{FILE}.part")), &data).unwrap();
    // A mirror that does not answer HEAD: no size, no sha256; the Range request past the end
    // gets 416 with the total, which says the part file is complete.
    let server = TestServer::start(vec![Reply::text(405, &[], ""), ranged(&data)]);
    let got = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    let seen = server.finish();
    assert_eq!(
        seen[1].header("range"),
        Some(format!("bytes={}-", data.len()).as_str())
    );
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert!(!got.verified, "nothing to verify against");
    assert_eq!(got.sha256, sha_hex(&data));
}

#[test]
fn head_follows_a_renamed_repository() {
    let data = content();
    let sha = sha_hex(&data);
    let server = TestServer::start(vec![
        Reply::text(
            307,
            &[("location", "/new-owner/repo/resolve/main/tiny.Q4_0.gguf")],
            "",
        ),
        lfs_head(&data, &sha),
        ranged(&data),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let got = fetch(&spec(), &options(&server, cache.path(), Some("hf_x"))).unwrap();
    let seen = server.finish();
    assert_eq!(seen[1].method, "HEAD");
    assert_eq!(seen[1].path, "/new-owner/repo/resolve/main/tiny.Q4_0.gguf");
    assert_eq!(seen[1].header("authorization"), Some("Bearer hf_x"));
    assert!(got.verified);
}

#[test]
fn sha_mismatch_is_rejected_and_nothing_is_kept() {
    let data = content();
    let wrong = sha_hex(b"some other file");
    let server = TestServer::start(vec![lfs_head(&data, &wrong), ranged(&data)]);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&spec(), &options(&server, cache.path(), None)).unwrap_err();
    server.finish();
    match &err {
        DownloadError::ShaMismatch {
            url,
            expected,
            actual,
        } => {
            assert!(url.ends_with(PATH), "{url}");
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha_hex(&data));
        }
        other => panic!("expected a sha mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("discarded"), "{err}");
    assert_eq!(cache_files(cache.path()), Vec::<String>::new());
}

#[test]
fn not_found_names_the_url() {
    let server = TestServer::start(vec![Reply::text(404, &[], "Entry not found")]);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&spec(), &options(&server, cache.path(), None)).unwrap_err();
    let url = format!("{}{PATH}", server.url());
    assert_eq!(server.finish().len(), 1, "a 404 is not retried");
    assert!(matches!(err, DownloadError::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("http 404): {url}:")), "{msg}");
    assert!(msg.contains("--model-id"), "{msg}");
    assert!(!cache.path().join(format!("{FILE}.part")).exists());
}

#[test]
fn unauthorized_says_how_to_fix_it() {
    for status in [401, 403] {
        let server = TestServer::start(vec![Reply::text(status, &[], "")]);
        let cache = tempfile::tempdir().unwrap();
        let err = fetch(&spec(), &options(&server, cache.path(), Some("hf_bad"))).unwrap_err();
        server.finish();
        let msg = err.to_string();
        assert!(msg.contains(&format!("http {status}")), "{msg}");
        assert!(msg.contains(PATH) && msg.contains("HF_TOKEN"), "{msg}");
        assert!(
            !msg.contains("hf_bad"),
            "the token must not be printed: {msg}"
        );
    }
}

#[test]
fn server_errors_are_retried_then_reported() {
    let data = content();
    let sha = sha_hex(&data);
    let server = TestServer::start(vec![
        Reply::text(503, &[], ""),
        lfs_head(&data, &sha),
        Reply::text(500, &[], ""),
        ranged(&data),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let got = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    assert_eq!(server.finish().len(), 4);
    assert!(got.verified);

    let server = TestServer::start(vec![
        lfs_head(&data, &sha),
        Reply::text(502, &[], ""),
        Reply::text(502, &[], ""),
        Reply::text(502, &[], ""),
        ranged(&data),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&spec(), &options(&server, cache.path(), None)).unwrap_err();
    assert_eq!(server.finish().len(), 4, "three tries of the GET, no more");
    assert!(
        matches!(err, DownloadError::Http { status: 502, .. }),
        "{err:?}"
    );
}

#[test]
fn stalled_server_times_out() {
    let server = TestServer::start(vec![Reply::Hang(Duration::from_secs(10))]);
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(&server, cache.path(), None);
    opts.read_timeout = Duration::from_millis(300);
    opts.max_attempts = 1;
    let start = std::time::Instant::now();
    let err = fetch(&spec(), &opts).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, DownloadError::Transport { .. }), "{err:?}");
    server.finish();
}

#[test]
fn cached_file_needs_no_network_and_conflicts_are_refused() {
    let data = content();
    let sha = sha_hex(&data);
    let cache = tempfile::tempdir().unwrap();
    let server = TestServer::start(vec![lfs_head(&data, &sha), ranged(&data)]);
    let first = fetch(&spec(), &options(&server, cache.path(), None)).unwrap();
    server.finish();

    // Nothing is listening any more: a cache hit must not touch the network.
    let offline = DownloadOptions {
        endpoint: "http://127.0.0.1:9".into(),
        ..options(&TestServer::start(vec![]), cache.path(), None)
    };
    let again = fetch(&spec(), &offline).unwrap();
    assert!(again.from_cache && again.verified);
    assert_eq!(
        (again.sha256.as_str(), again.size),
        (first.sha256.as_str(), first.size)
    );

    let other = ModelSpec::new("someone/else", FILE, None).unwrap();
    match fetch(&other, &offline) {
        Err(DownloadError::CacheConflict {
            recorded, wanted, ..
        }) => {
            assert_eq!(recorded, format!("{REPO}/{FILE}@main"));
            assert_eq!(wanted, format!("someone/else/{FILE}@main"));
        }
        other => panic!("expected a cache conflict, got {other:?}"),
    }

    // A file put there by hand (no record) is hashed, not trusted.
    let hand = ModelSpec::new(REPO, "by-hand.gguf", None).unwrap();
    fs::write(cache.path().join("by-hand.gguf"), b"hand made").unwrap();
    let got = fetch(&hand, &offline).unwrap();
    assert_eq!(got.sha256, sha_hex(b"hand made"));
    assert!(!got.verified && got.from_cache);
}

#[test]
fn spec_validation_and_urls() {
    let s = ModelSpec::new(
        "bartowski/SmolLM2-135M-Instruct-GGUF",
        "q/SmolLM2 Q4.gguf",
        Some("refs/pr/1"),
    )
    .unwrap();
    assert_eq!(
        s.url("https://hf-mirror.example/"),
        "https://hf-mirror.example/bartowski/SmolLM2-135M-Instruct-GGUF/resolve/refs%2Fpr%2F1/q/SmolLM2%20Q4.gguf"
    );
    assert_eq!(s.cache_name(), "SmolLM2 Q4.gguf");
    for (id, file, rev) in [
        ("noslash", "a.gguf", None),
        ("a/b/c", "a.gguf", None),
        ("../x", "a.gguf", None),
        ("a/b c", "a.gguf", None),
        ("a/b", "", None),
        ("a/b", "../../etc/passwd", None),
        ("a/b", "/abs.gguf", None),
        ("a/b", "dir/./x.gguf", None),
        ("a/b", "back\\slash.gguf", None),
        ("a/b", "nl\n.gguf", None),
        ("a/b", "x.gguf", Some("")),
        ("a/b", "x.gguf", Some("../main")),
    ] {
        let err = ModelSpec::new(id, file, rev).unwrap_err();
        assert!(
            matches!(err, DownloadError::InvalidSpec(_)),
            "{id} {file:?} {rev:?}"
        );
    }
    let msg = ModelSpec::new("noslash", "a.gguf", None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'noslash'"), "{msg}");
}

#[test]
fn header_parsing() {
    let sha = "A".repeat(64);
    assert_eq!(sha_from_etag(&format!("\"{sha}\"")), Some("a".repeat(64)));
    assert_eq!(sha_from_etag(&format!("W/\"{sha}\"")), Some("a".repeat(64)));
    assert_eq!(sha_from_etag("\"abc\""), None);
    assert_eq!(sha_from_etag(&format!("\"{}g\"", "a".repeat(63))), None);
    assert_eq!(sha_from_etag("\"ü\""), None);
    assert_eq!(
        parse_content_range("bytes 10-99/100"),
        Some((10, Some(100)))
    );
    assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
    for bad in [
        "",
        "bytes",
        "bytes 9-1/100",
        "bytes a-b/c",
        "items 1-2/3",
        "bytes 1-2/x",
    ] {
        assert_eq!(parse_content_range(bad), None, "{bad}");
    }
    assert_eq!(origin("http://127.0.0.1:80/a/b"), "http://127.0.0.1:80");
    assert_eq!(origin("https://h"), "https://h");
}

/// Environment-driven options in one test: the variables are process-wide.
#[test]
fn options_from_environment() {
    std::env::set_var("HF_ENDPOINT", "https://mirror.example/");
    std::env::set_var("HF_TOKEN", " hf_abc ");
    std::env::set_var("SINTRA_HOME", "/tmp/sintra-home");
    let o = DownloadOptions::from_env().unwrap();
    assert_eq!(o.endpoint, "https://mirror.example");
    assert_eq!(o.token.as_deref(), Some("hf_abc"));
    assert_eq!(o.cache_dir, PathBuf::from("/tmp/sintra-home/models"));
    assert!(!format!("{o:?}").contains("hf_abc"));

    std::env::set_var("HF_ENDPOINT", "mirror.example");
    let err = DownloadOptions::from_env().unwrap_err().to_string();
    assert!(err.contains("'mirror.example'"), "{err}");

    std::env::remove_var("HF_ENDPOINT");
    std::env::remove_var("HF_TOKEN");
    std::env::remove_var("SINTRA_HOME");
    let o = DownloadOptions::from_env().unwrap();
    assert_eq!(o.endpoint, HF_DEFAULT_ENDPOINT);
    assert_eq!(o.token, None);
    if let Some(home) = std::env::var_os("HOME") {
        assert_eq!(
            o.cache_dir,
            PathBuf::from(home).join(".cache/sintra/models")
        );
    }
}
