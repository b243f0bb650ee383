//! `sintra convert DIR|owner/repo -o model.gguf [--outtype ...] [--revision REV]`: a Hugging
//! Face checkpoint to GGUF, as llama.cpp's `convert_hf_to_gguf.py` writes it.

use crate::convert::{convert, OutType};
use crate::download::{self, DownloadOptions};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub fn run(source: &str, output: &Path, outtype: OutType, revision: Option<&str>) -> Result<()> {
    let local = Path::new(source);
    let (dir, name) = if local.is_dir() {
        let name = std::fs::canonicalize(local)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        (local.to_path_buf(), name)
    } else if source.contains('/') && !local.exists() {
        let ck = download::fetch_checkpoint(source, revision, &DownloadOptions::from_env()?)?;
        eprintln!(
            "{}@{} is commit {} in {}",
            ck.repo,
            ck.revision,
            ck.commit,
            ck.dir.display()
        );
        (ck.dir, source.rsplit('/').next().map(str::to_string))
    } else {
        bail!(
            "'{source}' is neither a checkpoint directory nor a Hugging Face repository owner/name"
        );
    };
    if output.is_dir() {
        bail!(
            "-o {} is a directory: name the GGUF file to write",
            output.display()
        );
    }
    let done = convert(&dir, output, outtype, name.as_deref())
        .with_context(|| format!("converting {}", dir.display()))?;
    println!(
        "wrote {} ({}, {} tensors, {}, {:.1} MiB){}",
        done.path.display(),
        done.arch.gguf_name(),
        done.n_tensors,
        done.outtype.name(),
        done.n_bytes as f64 / (1 << 20) as f64,
        peak_memory().map_or(String::new(), |b| format!(
            "; peak memory {:.1} MiB",
            b as f64 / (1 << 20) as f64
        ))
    );
    Ok(())
}

/// This process's peak resident memory (the kernel's high-water mark, Linux only).
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
