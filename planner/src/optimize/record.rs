//! The end of each iteration, and its repair after a kill: an experiment is recorded in the
//! history, the outputs follow (the best candidate becomes `model.gguf`), then the checkpoint.
//! A run killed between the history and the checkpoint is finished on resume from the history.

use super::{candidate_path, one_line, Loop};
use crate::executor;
use crate::experiment::{self, Experiment};
use crate::report;
use anyhow::Result;
use std::path::Path;

impl Loop<'_> {
    /// Record a measured experiment (unless `recorded`: adopted from the history) and bring
    /// the outputs in line: a new best's candidate becomes `model.gguf` (its kept draft
    /// `model.draft.gguf`), any other candidate goes, then the checkpoint and the report.
    /// Every step may have happened already when a killed run's experiment is adopted.
    pub(super) fn keep(&mut self, e: Experiment, out_dir: &Path, recorded: bool) -> Result<()> {
        let _phase = crate::phase::Phase::begin("record");
        if !recorded {
            // The experiment and its figures per device land together or not at all.
            self.history.atomically(|h| {
                h.record_experiment(&self.cp.run_id, &e)?;
                self.record_fleet(&e)
            })?;
        }
        println!("{}", one_line(&e));
        let iteration = e.iteration;
        let kept_draft = e.draft.as_ref().is_some_and(|d| d.kept);
        let was_best = experiment::best(&self.cp.experiments).map(|b| b.iteration);
        self.cp.experiments.push(e);
        let now_best = experiment::best(&self.cp.experiments).map(|b| b.iteration);
        let candidate = candidate_path(out_dir, iteration);
        let draft = executor::draft_path(&candidate);
        if now_best == Some(iteration) && now_best != was_best {
            if candidate.exists() {
                std::fs::rename(&candidate, out_dir.join("model.gguf"))?;
            }
            // A kept draft ships beside the best model; a best without one leaves none.
            let best_draft = out_dir.join("model.draft.gguf");
            if kept_draft && draft.exists() {
                std::fs::rename(&draft, &best_draft)?;
            } else if !kept_draft && best_draft.exists() {
                std::fs::remove_file(&best_draft)?;
            }
        } else if candidate.exists() {
            std::fs::remove_file(&candidate)?;
        }
        if draft.exists() {
            std::fs::remove_file(&draft)?;
        }
        self.cp.save()?;
        report::write_with(out_dir, self.cp, &self.model.name, Some(self.model))?;
        Ok(())
    }

    /// A run killed after recording an experiment and before saving its checkpoint left the
    /// history ahead of the checkpoint: that experiment (and an earlier best re-scored beside
    /// it) is taken from the history, not measured again.
    pub(super) fn adopt_recorded(&mut self, out_dir: &Path) -> Result<()> {
        let recorded = self.history.recorded_experiments(&self.cp.run_id)?;
        let mut rescored = false;
        for r in recorded {
            let next = self.cp.experiments.len() as u32 + 1;
            if let Some(e) = self
                .cp
                .experiments
                .iter_mut()
                .find(|e| e.iteration == r.iteration)
            {
                if *e != r {
                    *e = r;
                    rescored = true;
                }
            } else if r.iteration == next {
                println!(
                    "iteration {next} was recorded before the run stopped: taken from the history"
                );
                self.keep(r, out_dir, true)?;
            } else {
                anyhow::bail!(
                    "run {}: the history holds iteration {} but the checkpoint ends at {}: the history is not this run's",
                    self.cp.run_id,
                    r.iteration,
                    next - 1
                );
            }
        }
        if rescored {
            self.cp.save()?;
        }
        Ok(())
    }
}
