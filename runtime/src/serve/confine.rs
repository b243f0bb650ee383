//! Paths a network client names, confined to the runtime's work directory (`serve --listen
//! --root DIR`, default the directory it started in): a model it loads, a draft, logits it
//! saves or compares with, calibration it writes. Relative paths are taken from the root;
//! absolute ones must lie inside it; `..` and symbolic links are resolved before the check, so
//! neither escapes. (A client on stdin/stdout is the user who started the runtime: its paths
//! are not confined.)

use formats::wire::{LogitsMode, Request};
use std::path::{Component, Path, PathBuf};

/// `p` resolved inside `root` (itself canonical). `write`: the file may not exist yet; its
/// directory must, inside the root, and an existing file of that name must resolve inside too
/// (a symbolic link pointing out is refused).
pub fn confine(root: &Path, p: &str, write: bool) -> Result<PathBuf, String> {
    let outside = || {
        format!(
            "{p:?} is outside the runtime's work directory {} (serve --listen confines every path a client names to it: use --root to move it)",
            root.display()
        )
    };
    if p.is_empty() || p.contains('\0') {
        return Err(format!("{p:?} is not a path"));
    }
    let joined = root.join(p);
    if !write {
        let real = joined.canonicalize().map_err(|e| format!("{p}: {e}"))?;
        return if real.starts_with(root) {
            Ok(real)
        } else {
            Err(outside())
        };
    }
    let name = match Path::new(p).components().next_back() {
        Some(Component::Normal(n)) => n.to_owned(),
        _ => return Err(format!("{p:?} does not name a file")),
    };
    let parent = joined.parent().unwrap_or(root);
    let dir = parent
        .canonicalize()
        .map_err(|e| format!("{p}: its directory {}: {e}", parent.display()))?;
    if !dir.starts_with(root) {
        return Err(outside());
    }
    let target = dir.join(name);
    if target.symlink_metadata().is_ok() {
        let real = target.canonicalize().map_err(|e| format!("{p}: {e}"))?;
        if !real.starts_with(root) {
            return Err(outside());
        }
    }
    Ok(target)
}

/// Every path in `req` confined to `root` and rewritten as the resolved path.
pub fn request(root: &Path, req: &mut Request) -> Result<(), String> {
    let fix = |p: &mut String, write: bool| -> Result<(), String> {
        *p = confine(root, p, write)?.to_string_lossy().into_owned();
        Ok(())
    };
    match req {
        Request::LoadModel { path, .. } => fix(path, false),
        Request::SpecBench(r) if !r.draft_path.is_empty() => fix(&mut r.draft_path, false),
        Request::Perplexity(r) => match &mut r.logits {
            LogitsMode::Save { path } => fix(path, true),
            LogitsMode::KlDivergence { base_path } => fix(base_path, false),
            _ => Ok(()),
        },
        Request::Calibrate(r) => fix(&mut r.output_path, true),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when dropped.
    struct Dir(PathBuf);
    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let base = std::env::temp_dir().join(format!("sintra-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = Dir(base);
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("models")).unwrap();
        std::fs::write(root.join("models/m.gguf"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let root = root.canonicalize().unwrap();
        let ok = confine(&root, "models/m.gguf", false).unwrap();
        assert_eq!(ok, root.join("models/m.gguf"));
        let abs = root.join("models/m.gguf").to_string_lossy().into_owned();
        assert_eq!(confine(&root, &abs, false).unwrap(), ok);
        assert!(confine(&root, "models/../models/m.gguf", false).is_ok());
        for bad in [
            "../secret",
            "/etc/passwd",
            "link",
            "up/secret",
            "models/../../secret",
        ] {
            let e = confine(&root, bad, false).unwrap_err();
            assert!(e.contains("outside"), "{bad}: {e}");
        }
        assert!(confine(&root, "", false).is_err());
        assert!(confine(&root, "missing.gguf", false).is_err());
        // Writing: new files inside, nothing outside, no link out, no `..` as the name.
        assert_eq!(
            confine(&root, "out.logits", true).unwrap(),
            root.join("out.logits")
        );
        for bad in ["../x", "/tmp/x", "link", "up/x", "models/..", "nodir/x"] {
            assert!(confine(&root, bad, true).is_err(), "{bad}");
        }
    }
}
