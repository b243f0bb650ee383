//! Checkpoints: after every iteration the whole state of a run (its configuration, resolved
//! profile and targets, every experiment) is written atomically to
//! `$SINTRA_HOME/checkpoints/<run>.json`. `--resume [ID]` reloads it and goes on from the next
//! iteration: nothing measured is lost or measured again.

use crate::experiment::Experiment;
use crate::home::{subdir, write_atomic};
use crate::measure::BenchSpec;
use crate::profile::Profile;
use crate::targets::Targets;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// 2: one `Targets` type (each target `{value, source}`), the original's reference speed
/// beside it.
pub const FORMAT_VERSION: u32 = 2;

/// What a run was asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub model_path: PathBuf,
    /// The model's fingerprint when the run started (a resumed run refuses a changed model).
    pub model_fingerprint: String,
    pub provider: String,
    pub llm_model: Option<String>,
    pub max_iters: u32,
    /// Iterations without a better result after the targets are met before stopping.
    pub patience: u32,
    pub mock: bool,
    pub output_dir: PathBuf,
    pub eval_text: Option<PathBuf>,
    pub eval_chunks: u32,
    /// The calibration text (importance matrix, pruning statistics); never the held-out text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calib_text: Option<PathBuf>,
    /// Run (or reuse) the sensitivity pass and let the heuristic propose the allocator's mixes
    /// (the default; off with `--no-sensitivity` and under `--mock`).
    #[serde(default)]
    pub sensitivity: bool,
    /// `--draft auto`: every candidate gets a draft, measured with speculative decoding.
    #[serde(default)]
    pub drafts: bool,
    pub bench: BenchSpec,
    /// `--ssh-config` for a profile with a `connection` (`ssh -F`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
    /// `--remote-dir`: where the runtime and candidates go on that device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_dir: Option<String>,
    /// `--fleet` (issue #18): speed on every device of an inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetConfig>,
    /// `--compare`: files measured beside the candidates (checked when the run started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<PathBuf>,
}

/// Which fleet a run measures on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FleetConfig {
    /// The Ansible inventory (absolute).
    pub inventory: PathBuf,
    /// `--limit`.
    pub limit: Option<String>,
    /// `--jobs`: devices measured at once.
    pub jobs: u32,
    /// `--per-class`: one representative per device class.
    pub per_class: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub format_version: u32,
    pub run_id: String,
    pub updated_at: String,
    pub config: RunConfig,
    pub profile: Profile,
    pub targets: Targets,
    /// The original's generation speed measured on the device before the loop (median), the
    /// reference each candidate's interleaved measurement is scaled to. `None` under `--mock`.
    #[serde(default)]
    pub reference_tps: Option<f64>,
    pub experiments: Vec<Experiment>,
    /// The `--compare` files measured so far (references, never the run's result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<crate::compare::Compared>,
    /// The cost per byte fixed before the loop (earlier runs on the device, else the
    /// roofline): the "fit before download" prediction the report holds against the
    /// measurements.
    #[serde(default)]
    pub prior: Option<crate::fit::Prior>,
    /// Set when the loop stopped on its own (targets met and no progress, nothing left, or
    /// `--max-iters`); a finished run can still be resumed with a larger `--max-iters`.
    pub stop_reason: Option<String>,
}

fn dir() -> Result<PathBuf> {
    subdir("checkpoints")
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("'{id}' is not a run id (letters, digits, '-' and '_')");
    }
    Ok(())
}

impl Checkpoint {
    pub fn path(id: &str) -> Result<PathBuf> {
        check_id(id)?;
        Ok(dir()?.join(format!("{id}.json")))
    }

    pub fn save(&mut self) -> Result<()> {
        self.updated_at = crate::history::now();
        let path = Self::path(&self.run_id)?;
        write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn load(id: &str) -> Result<Checkpoint> {
        let path = Self::path(id)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no checkpoint for run '{id}' ({})", path.display()))?;
        // The version first: an older format is named as such, not as a parse error.
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a sintra checkpoint", path.display()))?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(FORMAT_VERSION as u64) {
            bail!(
                "{}: checkpoint format {} (this sintra reads {FORMAT_VERSION}; start the run again)",
                path.display(),
                version.map_or("missing".to_string(), |v| v.to_string())
            );
        }
        serde_json::from_value(value)
            .with_context(|| format!("{}: not a sintra checkpoint", path.display()))
    }

    /// Every checkpoint, most recently updated first. Unreadable files are reported, not fatal.
    pub fn list() -> Result<Vec<Result<Checkpoint, String>>> {
        let mut out = Vec::new();
        let d = dir()?;
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let id = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push(Self::load(&id).map_err(|e| format!("{e:#}")));
            }
        }
        out.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => b
                .updated_at
                .cmp(&a.updated_at)
                .then(b.run_id.cmp(&a.run_id)),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(a), Err(b)) => a.cmp(b),
        });
        Ok(out)
    }

    /// The most recently updated checkpoint.
    pub fn latest() -> Result<Checkpoint> {
        Self::list()?
            .into_iter()
            .find_map(Result::ok)
            .context("no checkpoint to resume (none in $SINTRA_HOME/checkpoints)")
    }
}

/// A new run id: UTC time plus a few random-ish hex digits.
pub fn new_run_id() -> String {
    let t = crate::history::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!(
        "{}-{salt:04x}",
        t.replace(['-', ':'], "")
            .trim_end_matches('Z')
            .replace('T', "-")
    )
}
