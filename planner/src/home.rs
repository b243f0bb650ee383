//! Where the planner keeps its state: `$SINTRA_HOME` (default `~/.sintra`) holds `history.db`,
//! `checkpoints/`, and unless `$SINTRA_CACHE` moves them, the per-model caches `cache/` (the
//! original model's saved logits), `calibration/` and `sensitivity/`.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// `$SINTRA_HOME`, or `~/.sintra`.
pub fn sintra_home() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("SINTRA_HOME") {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").context("neither SINTRA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".sintra"))
}

/// A directory under `$SINTRA_HOME`, created if missing.
pub fn subdir(name: &str) -> Result<PathBuf> {
    let d = sintra_home()?.join(name);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// A directory for what is computed once per model and reused by every run (calibration
/// statistics, the sensitivity pass, the original's saved logits): under `$SINTRA_CACHE` when
/// set, else under `$SINTRA_HOME`. Created if missing.
pub fn cache_subdir(name: &str) -> Result<PathBuf> {
    let d = match std::env::var_os("SINTRA_CACHE") {
        Some(c) => PathBuf::from(c).join(name),
        None => sintra_home()?.join(name),
    };
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Remove the temporaries [`write_atomic`] and the GGUF writer left in `dir` when their process
/// was killed (`.sintra.<pid>.<...>.tmp` of a process that no longer exists; a live writer's
/// are kept).
/// Where processes cannot be looked up (no `/proc`), nothing is removed.
pub fn sweep_stale_temporaries(dir: &std::path::Path) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".sintra.")
            .filter(|_| name.ends_with(".tmp"))
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Write `bytes` to `path` atomically: a temporary file beside it, fsynced, renamed over it.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".sintra.{}.", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_temporaries_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // A pid above the kernel's maximum (4194304) is never alive.
        let names = [
            format!(".sintra.{me}.abc.tmp"),
            ".sintra.4999999.abc.tmp".to_string(),
            ".sintra.x.abc.tmp".to_string(),
            "report.md".to_string(),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        super::write_atomic(&dir.path().join("a.json"), b"{}").unwrap();
        super::sweep_stale_temporaries(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                names[0].clone(),
                ".sintra.x.abc.tmp".into(),
                "a.json".into(),
                "report.md".into()
            ]
        );
    }
}
