//! A Hugging Face repository as the optimizer's source model (issue #16).
//!
//! - [`converted`]: the checkpoint downloaded ([`crate::download::fetch_checkpoint`]) and
//!   converted to GGUF once per repository, commit and output type, into
//!   `{model cache}/converted/{owner}/{name}/{commit}/{name}.{TYPE}.gguf`. That file is both the
//!   reference every candidate is scored against and the source every recipe quantizes from.
//! - [`predicted`]: for `--dry-run`, the same model described from `config.json` and the Hub's
//!   file listing alone: the tensors the conversion *will* write (names, shapes, types), so the
//!   cost model predicts sizes and speeds before gigabytes are fetched.

use crate::convert::arch::{self, Hparams};
use crate::convert::{convert, OutType};
use crate::download::{self, DownloadOptions, RemoteConfig};
use crate::model_info::{ModelInfo, TensorMeta};
use anyhow::{Context, Result};
use formats::quant::GgmlType;
use std::path::PathBuf;

/// The GGUF of `repo` at `revision`, converted at `outtype` (downloaded and converted on first
/// use, then found in the cache).
pub fn converted(repo: &str, revision: Option<&str>, outtype: OutType) -> Result<PathBuf> {
    let opts = DownloadOptions::from_env()?;
    let ck = download::fetch_checkpoint(repo, revision, &opts)?;
    let name = repo.rsplit('/').next().unwrap_or(repo);
    let dir = converted_dir(&opts, repo, &ck.commit);
    // The output type is only known for `auto` once the weights are read: look for any
    // conversion of this commit at the asked type first.
    let wanted = |t: OutType| dir.join(format!("{name}.{}.gguf", t.name().to_uppercase()));
    if outtype != OutType::Auto && wanted(outtype).is_file() {
        return Ok(wanted(outtype));
    }
    let marker = dir.join("auto");
    if outtype == OutType::Auto {
        if let Ok(t) = std::fs::read_to_string(&marker) {
            let p = dir.join(t.trim());
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp_name = dir.join(format!("{name}.converting.gguf"));
    let done = convert(&ck.dir, &tmp_name, outtype, Some(name))
        .with_context(|| format!("converting {repo}@{} ({})", ck.revision, ck.dir.display()))?;
    let path = wanted(done.outtype);
    std::fs::rename(&tmp_name, &path)
        .with_context(|| format!("renaming {} to {}", tmp_name.display(), path.display()))?;
    if outtype == OutType::Auto {
        crate::home::write_atomic(
            &marker,
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        )?;
    }
    tracing::info!(repo, commit = %ck.commit, path = %path.display(), outtype = done.outtype.name(), "converted");
    Ok(path)
}

fn converted_dir(opts: &DownloadOptions, repo: &str, commit: &str) -> PathBuf {
    repo.split('/')
        .fold(opts.cache_dir.join("converted"), |d, p| d.join(p))
        .join(commit)
}

/// The model `repo` at `revision` would convert to (at `auto`), from `config.json` and the
/// listing only, with what was fetched.
pub fn predicted(repo: &str, revision: Option<&str>) -> Result<(ModelInfo, RemoteConfig)> {
    let opts = DownloadOptions::from_env()?;
    let remote = download::fetch_config(repo, revision, &opts)?;
    let hp = Hparams::load(remote.config.parent().unwrap_or(&remote.config))?;
    let dtype = hp
        .config()
        .get("torch_dtype")
        .or_else(|| hp.config().get("dtype"))
        .and_then(|v| v.as_str())
        .unwrap_or("bfloat16");
    let ty = match dtype {
        "float32" => GgmlType::F16,
        "float16" => GgmlType::F16,
        _ => GgmlType::BF16,
    };
    let plan = arch::tensors(&hp)?;
    let tensors: Vec<TensorMeta> = plan
        .iter()
        .map(|t| {
            let ty = if t.is_matrix() { ty } else { GgmlType::F32 };
            let n_elements: u64 = t.dims.iter().product();
            let row = ty.row_size(t.row_len() as usize).unwrap_or(0) as u64;
            TensorMeta {
                name: t.name.clone(),
                ty,
                dims: t.dims.clone(),
                n_elements,
                n_bytes: row * t.n_rows(),
            }
        })
        .collect();
    let tensor_bytes: u64 = tensors.iter().map(|t| t.n_bytes).sum();
    // The header is mostly the vocabulary: about 24 bytes a token (text, score, type).
    let header_bytes = hp.n_vocab * 24;
    let name = repo.rsplit('/').next().unwrap_or(repo).to_string();
    let info = ModelInfo {
        path: PathBuf::from(format!("hf://{repo}@{}", remote.commit)),
        name,
        arch: hp.arch.gguf_name().to_string(),
        n_layers: hp.n_layer as u32,
        n_params: tensors.iter().map(|t| t.n_elements).sum(),
        file_len: tensor_bytes + header_bytes,
        tensor_bytes,
        header_bytes,
        tied_embeddings: !tensors.iter().any(|t| t.name == "output.weight"),
        fingerprint: format!("hf:{repo}@{}", remote.commit),
        tensors,
    };
    Ok((info, remote))
}
