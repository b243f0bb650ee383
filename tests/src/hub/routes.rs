//! The Hub's endpoints as the double answers them: `route` splits the target into
//! `api/models/...` (the repository's listing JSON: commit, siblings, blob ids and LFS sizes) and
//! `.../resolve/{rev}/{path}` (a file with the Hub's headers, ranges and any armed fault), after
//! `repo_dir` has answered missing and gated repositories with the Hub's error codes.

use super::http::{error, parse_range, percent_decode, Head, Reply, Request};
use super::repo::{blob, list_files, resolve_revision};
use super::{FaultKind, Logged, State, Times};
use std::path::PathBuf;

pub(super) fn route(state: &State, req: &Request, logged: &mut Logged) -> Reply {
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
