//! Where the evaluation and calibration texts live: the setup script's cache beside the models.
//! `scripts/setup.sh` writes them from a pinned rustup `rust-docs` component (The Rust
//! Programming Language: chapters 1-11 calibrate, 12-21 are held out; they never overlap).

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The held-out text, for quality (KL divergence, top-1, ΔPPL).
pub const EVAL_FILE: &str = "eval.txt";
/// The calibration text, for importance matrices and the sensitivity pass.
pub const CALIB_FILE: &str = "calibration.txt";

/// Directories searched for the texts, in order: `$SINTRA_DATA`, `./.cache/data` (the setup
/// script's cache when run from a checkout), the cache of the checkout this binary was built
/// from (so `sintra` finds it from any directory), `$SINTRA_HOME/data`, `~/.cache/sintra/data`.
pub fn data_dirs() -> Vec<PathBuf> {
    crate::models::cache_dirs("SINTRA_DATA", "data")
}

/// The held-out text: `--eval-text`, `$SINTRA_EVAL_TEXT`, or `eval.txt` in [`data_dirs`].
pub fn eval_text(flag: Option<&Path>) -> Result<PathBuf> {
    resolve(
        flag,
        "--eval-text",
        "SINTRA_EVAL_TEXT",
        EVAL_FILE,
        "held-out text for quality",
    )
}

/// The calibration text: `--calib-text`, `$SINTRA_CALIB_TEXT`, or `calibration.txt` in
/// [`data_dirs`].
pub fn calib_text(flag: Option<&Path>) -> Result<PathBuf> {
    resolve(
        flag,
        "--calib-text",
        "SINTRA_CALIB_TEXT",
        CALIB_FILE,
        "calibration text",
    )
}

fn resolve(
    flag: Option<&Path>,
    flag_name: &str,
    env: &str,
    file: &str,
    what: &str,
) -> Result<PathBuf> {
    if let Some(p) = flag {
        if !p.is_file() {
            bail!("{flag_name} {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("${env} {}: no such file", p.display());
        }
        return Ok(p);
    }
    let dirs = data_dirs();
    for d in &dirs {
        let c = d.join(file);
        if c.is_file() {
            return Ok(std::fs::canonicalize(&c).unwrap_or(c));
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "no {what}: {file} not found (looked in {}); run `bash scripts/setup.sh` or pass {flag_name} FILE",
        looked.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_come_from_the_setup_cache_and_never_overlap() {
        let eval = eval_text(None).unwrap();
        let calib = calib_text(None).unwrap();
        assert!(
            !eval.ends_with("shared/data/eval.txt"),
            "{}",
            eval.display()
        );
        let e = std::fs::read_to_string(&eval).unwrap();
        let c = std::fs::read_to_string(&calib).unwrap();
        assert!(
            e.len() > 300_000 && c.len() > 300_000,
            "{} / {} bytes",
            e.len(),
            c.len()
        );
        let calib_paras: std::collections::HashSet<&str> = c.split("\n\n").map(str::trim).collect();
        let shared: Vec<&str> = e
            .split("\n\n")
            .map(str::trim)
            .filter(|p| calib_paras.contains(p))
            .collect();
        assert!(shared.is_empty(), "paragraphs in both texts: {shared:?}");
        let missing = eval_text(Some(Path::new("/nonexistent/eval.txt"))).unwrap_err();
        assert!(
            format!("{missing}").contains("/nonexistent/eval.txt"),
            "{missing}"
        );
    }
}
