//! Tests of the double through a real HTTP client (ureq): listings with blob ids, the Hub's
//! headers and ranges, its error codes, gated repositories, and the faults a downloader must
//! survive (a cut connection resumed with a range, a corrupt body under a true sha256), plus
//! SHA-1 against git and range parsing.

use super::http::parse_range;
use super::repo::{git_blob_id, hex, is_commit, sha1};
use super::*;
use sha2::{Digest, Sha256};
use std::io::Read;

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
