//! A repository on disk as the Hub describes it: a revision directory and its commit (a
//! 40-hex directory name, or one derived from a branch's file names and sizes), the files under
//! it, whether each is an LFS file, and its identity — size, sha256 and git blob id (of the
//! content, or of the LFS pointer) — cached per size and mtime. SHA-1 is written out here
//! because git ids need it and nothing else does.

use super::{Blob, State};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The repository directory's revision directory and commit for `rev`.
pub(super) fn resolve_revision(repo_dir: &Path, rev: &str) -> Option<(PathBuf, String)> {
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

pub(super) fn is_commit(s: &str) -> bool {
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
pub(super) fn list_files(dir: &Path) -> Vec<String> {
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
pub(super) fn blob(state: &State, path: &Path, rfilename: &str) -> std::io::Result<Blob> {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// git's object id of a blob: sha1 of `blob <len>\0<content>`.
pub(super) fn git_blob_id(content: &[u8]) -> String {
    let mut data = format!("blob {}\0", content.len()).into_bytes();
    data.extend_from_slice(content);
    hex(&sha1(&data))
}

/// SHA-1 (FIPS 180-4), for git ids only.
pub(super) fn sha1(data: &[u8]) -> [u8; 20] {
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
