//! The files given with `--compare` (llama.cpp's presets, say), measured once per run before
//! its first iteration, as a candidate is: speed on the device, quality against the original.

use super::Loop;
use crate::compare::{check, Compared};
use crate::measure::Candidate;
use crate::model_info::ModelInfo;
use crate::recipe::bytes_per_token;
use anyhow::Result;
use std::path::Path;

impl Loop<'_> {
    /// Measure every `--compare` file not measured yet, keeping each in the checkpoint and the
    /// history as it is done (a resumed run goes on with the rest).
    pub(super) fn measure_compared(&mut self, out_dir: &Path) -> Result<()> {
        for path in self.cp.config.compare.clone() {
            if self.cp.compared.iter().any(|c| c.path == path) {
                continue;
            }
            let _phase = crate::phase::Phase::begin("measure");
            let mut c = Compared {
                path: path.clone(),
                label: path.display().to_string(),
                size_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                speed: None,
                quality: None,
                error: None,
            };
            let r = (|| -> Result<()> {
                let (_, label) = check(&path, self.model)?;
                c.label = label;
                let info = ModelInfo::load(&path)?;
                let plan = crate::sensitivity::identity_recipe(&info).plan(&info);
                let cand = Candidate {
                    path: Some(&path),
                    plan: &plan,
                    model: &info,
                    bytes_per_token: bytes_per_token(&info, &plan),
                    size_bytes: c.size_bytes,
                };
                c.speed = Some(self.measure.bench(&cand)?);
                c.quality = Some(self.measure.quality(&cand)?);
                Ok(())
            })();
            if let Err(e) = r {
                tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "a --compare file could not be measured");
                c.error = Some(format!("{e:#}"));
            }
            println!("measured beside: {}", c.one_line());
            self.history.record_compared(&self.cp.run_id, &c)?;
            self.cp.compared.push(c);
            self.cp.save()?;
            crate::report::write_with(out_dir, self.cp, &self.model.name, Some(self.model))?;
        }
        Ok(())
    }
}
