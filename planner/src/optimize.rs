//! The loop: the Architect proposes a recipe, the Executor writes it, the Measurer measures its
//! speed on the device and its quality on the host, the Critic checks every target, and the
//! state is checkpointed.
//! It stops when the targets are met and `patience` more iterations find nothing better, when
//! the architect has nothing new, or at `--max-iters`; the best recipe (not the last) is
//! reported with the Pareto front of everything tried.

use crate::architect::{plan_key, Architect, Context};
use crate::checkpoint::Checkpoint;
use crate::critic::judge;
use crate::executor;
use crate::experiment::{self, DraftOutcome, Experiment, Status};
use crate::history::History;
use crate::measure::{Candidate, Measurer};
use crate::model_info::ModelInfo;
use crate::recipe::{bytes_per_token, predicted_size};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

mod compared;
mod fleet;
mod record;
pub use fleet::{class_best_text, per_class_best};

/// Everything the loop works with.
pub struct Loop<'a> {
    pub cp: &'a mut Checkpoint,
    pub model: &'a ModelInfo,
    pub history: &'a History,
    pub architect: &'a mut dyn Architect,
    pub measure: &'a mut dyn Measurer,
    /// The model's calibration statistics, computed (or read from the cache) once, the first
    /// time the sensitivity pass or a recipe needs them.
    pub statistics: crate::run::Statistics,
    /// The sensitivity pass (`--sensitivity`), for the architect.
    pub sensitivity: Option<crate::sensitivity::Sensitivity>,
}

impl std::fmt::Debug for Loop<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loop")
            .field("run", &self.cp.run_id)
            .finish()
    }
}

/// Why the loop should stop now, if it should.
pub fn stop_reason(cp: &Checkpoint) -> Option<String> {
    let exps = &cp.experiments;
    if exps.len() as u32 >= cp.config.max_iters {
        return Some(format!("reached --max-iters {}", cp.config.max_iters));
    }
    let b = experiment::best(exps)?;
    if !b.passes() {
        return None;
    }
    let since = exps.iter().filter(|e| e.iteration > b.iteration).count() as u32;
    (since >= cp.config.patience).then(|| {
        format!(
            "targets met at iteration {}; {since} more iterations found nothing better",
            b.iteration
        )
    })
}

impl Loop<'_> {
    pub fn run(&mut self) -> Result<()> {
        let out_dir = self.cp.config.output_dir.clone();
        std::fs::create_dir_all(&out_dir)?;
        // Before the candidates go: an experiment recorded by a run killed before it saved its
        // checkpoint is finished from the history (its candidate may still be waiting).
        self.adopt_recorded(&out_dir)?;
        // A run killed mid-iteration leaves its candidate (or the writer's temporary) behind;
        // that iteration is redone, so they go.
        for e in std::fs::read_dir(&out_dir)?.flatten() {
            if e.file_name().to_string_lossy().contains(".candidate-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // So do the atomic writes' temporaries of killed processes, here and beside the
        // checkpoints (shared with other runs: only those of processes that are gone).
        crate::home::sweep_stale_temporaries(&out_dir);
        if let Ok(d) = crate::home::subdir("checkpoints") {
            crate::home::sweep_stale_temporaries(&d);
        }
        let past = self
            .history
            .past_measurements(self.model, &self.cp.profile, &self.cp.run_id)?;
        let allowed = self.cp.profile.allowed_types();
        self.cp.stop_reason = None;
        self.measure_compared(&out_dir)?;
        self.record_fleet_originals()?;
        self.fill_fleet_gaps(&out_dir)?;
        loop {
            if let Some(why) = stop_reason(self.cp) {
                crate::run::finish(self, &why)?;
                return Ok(());
            }
            let iteration = self.cp.experiments.len() as u32 + 1;
            let ctx = Context {
                model: self.model,
                profile: &self.cp.profile,
                targets: &self.cp.targets,
                allowed: &allowed,
                experiments: &self.cp.experiments,
                past: &past,
                mock: self.cp.config.mock,
                sensitivity: self.sensitivity.as_ref(),
                reference_tps: self.cp.reference_tps,
            };
            let proposal = self.architect.propose(&ctx)?;
            let Some(mut p) = proposal else {
                crate::run::finish(self, "the architect has no untried recipe left")?;
                return Ok(());
            };
            if self.cp.config.drafts && p.recipe.draft.is_none() {
                p.recipe.draft = Some(Box::new(self.auto_draft(&p.recipe, &allowed)?));
            }
            for x in &p.exchanges {
                self.history
                    .record_exchange(&self.cp.run_id, iteration, x)?;
            }
            self.history.trace(
                &self.cp.run_id,
                "proposed",
                &format!(
                    "#{iteration} {} by {}: {}",
                    p.recipe.to_json(),
                    p.by,
                    p.rationale
                ),
            )?;
            let mut e = self.try_one(iteration, &p, &out_dir)?;
            {
                let _phase = crate::phase::Phase::begin("measure");
                self.settle_quality(&mut e, &out_dir)?;
            }
            self.keep(e, &out_dir, false)?;
        }
    }

    fn try_one(
        &mut self,
        iteration: u32,
        p: &crate::architect::Proposal,
        out_dir: &Path,
    ) -> Result<Experiment> {
        let start = Instant::now();
        let model = self.model;
        let plan = p.recipe.plan(model);
        let bpt = bytes_per_token(model, &plan);
        let size = predicted_size(model, &plan);
        let mut e = Experiment {
            iteration,
            recipe: p.recipe.to_json(),
            label: p.recipe.label(),
            architect: p.by.clone(),
            rationale: p.rationale.clone(),
            plan_key: plan_key(&p.recipe, model),
            predicted_tps: p.predicted_tps,
            predicted_size: p.predicted_size,
            size_bytes: size,
            bytes_per_token: bpt,
            bytes_by_type: crate::architect::speed::bytes_by_type(model, &plan)
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
            bpw: plan.iter().map(|x| x.n_bytes).sum::<u64>() as f64 * 8.0
                / model.n_params.max(1) as f64,
            status: Status::Ok,
            error: None,
            speed: None,
            quality: None,
            verdict: None,
            mock: self.cp.config.mock,
            seconds: 0.0,
            draft: None,
            fleet: Vec::new(),
        };
        let path = candidate_path(out_dir, iteration);
        let result = (|| -> Result<()> {
            let written = if self.cp.config.mock {
                None
            } else {
                let calibration = if p.recipe.needs_calibration() {
                    Some(self.statistics.calibration(model, &self.cp.config)?)
                } else {
                    None
                };
                let _phase = crate::phase::Phase::begin("candidate");
                let w = executor::execute(&p.recipe, model, &path, true, calibration)?;
                e.size_bytes = w.bytes;
                Some(path.as_path())
            };
            let _phase = crate::phase::Phase::begin("measure");
            let c = Candidate {
                path: written,
                plan: &plan,
                model,
                bytes_per_token: bpt,
                size_bytes: e.size_bytes,
            };
            let speed = self.measure.bench(&c)?;
            let quality = self.measure.quality(&c)?;
            e.speed = Some(speed);
            e.quality = Some(quality);
            if let (Some(d), Some(_)) = (&p.recipe.draft, written) {
                e.draft = Some(self.try_draft(d, &c, &path));
            }
            e.verdict = Some(judge_with_draft(&e, &self.cp.targets));
            Ok(())
        })();
        e.fleet = self.measure.fleet_results();
        if let Err(err) = result {
            if disk_full(&err) {
                // Not the recipe's fault: stop, record nothing, and let --resume try it again.
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(executor::draft_path(&path));
                return Err(err.context(format!(
                    "the disk is full: free some space, then `sintra --resume {}` goes on with iteration {iteration}",
                    self.cp.run_id
                )));
            }
            tracing::warn!(iteration, error = %format!("{err:#}"), "experiment failed");
            e.status = Status::Failed;
            e.error = Some(format!("{err:#}"));
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(executor::draft_path(&path));
        }
        e.seconds = start.elapsed().as_secs_f64();
        Ok(e)
    }

    /// Write the candidate's draft beside it and measure generation with and without it on
    /// the device; a draft that fails to write or measure is recorded, and the candidate
    /// stands on its own speed.
    fn try_draft(
        &mut self,
        d: &crate::recipe::Recipe,
        c: &Candidate<'_>,
        path: &Path,
    ) -> DraftOutcome {
        let draft_path = executor::draft_path(path);
        let mut out = DraftOutcome {
            recipe: d.to_json(),
            label: d.label(),
            size_bytes: predicted_size(self.model, &d.plan(self.model)),
            speed: None,
            kept: false,
            error: None,
        };
        let r = (|| -> Result<()> {
            let calibration = if d.needs_calibration() {
                Some(self.statistics.calibration(self.model, &self.cp.config)?)
            } else {
                None
            };
            let w = executor::execute(d, self.model, &draft_path, true, calibration)?;
            out.size_bytes = w.bytes;
            let s = self.measure.bench_draft(c, &draft_path)?;
            out.kept = s.ratio >= experiment::DRAFT_KEEP_RATIO;
            out.speed = Some(s);
            Ok(())
        })();
        if let Err(err) = r {
            tracing::warn!(error = %format!("{err:#}"), "draft failed");
            out.error = Some(format!("{err:#}"));
        }
        if !out.kept {
            let _ = std::fs::remove_file(&draft_path);
        }
        out
    }

    /// When a candidate's top-1 is within the noise of the accuracy target, or of the best
    /// experiment so far, score it (and that best) over more windows before either is judged or
    /// called better: two standard errors decide, not the luck of two windows.
    fn settle_quality(&mut self, e: &mut Experiment, out_dir: &Path) -> Result<()> {
        let Some(q) = e.quality.clone() else {
            return Ok(());
        };
        let default_windows = self.cp.config.eval_chunks;
        let target = self.cp.targets.min_accuracy();
        let near_target = (q.top1 - target).abs() < 2.0 * q.top1_se;
        // The best so far, when this candidate is within the noise of it and one of the two
        // was scored on the run's default windows only.
        let best = experiment::best(&self.cp.experiments)
            .filter(|b| {
                b.quality
                    .as_ref()
                    .is_some_and(|bq| experiment::within_noise(&q, bq))
            })
            .map(|b| (b.iteration, b.quality.as_ref().map_or(0, |bq| bq.windows)));
        if !near_target && best.is_none() {
            return Ok(());
        }
        if q.windows > default_windows && best.is_none_or(|(_, w)| w > default_windows) {
            return Ok(());
        }
        let path = candidate_path(out_dir, e.iteration);
        if q.windows == default_windows && path.is_file() {
            if let Some(more) = self.measure.quality_more(&path)? {
                self.history.trace(
                    &self.cp.run_id,
                    "rescored",
                    &format!(
                        "#{}: top-1 {} on {} windows -> {} on {} (within the noise of {})",
                        e.iteration,
                        q.top1_text(),
                        q.windows,
                        more.top1_text(),
                        more.windows,
                        if near_target {
                            "the target"
                        } else {
                            "the best"
                        }
                    ),
                )?;
                let judged = e.speed.is_some() && e.verdict.is_some();
                e.quality = Some(more);
                if judged {
                    e.verdict = Some(judge_with_draft(e, &self.cp.targets));
                }
            }
        }
        let best_file = out_dir.join("model.gguf");
        if let (Some((i, windows)), true) = (best, best_file.is_file()) {
            if windows > default_windows {
                return Ok(());
            }
            if let Some(more) = self.measure.quality_more(&best_file)? {
                if let Some(b) = self.cp.experiments.iter_mut().find(|b| b.iteration == i) {
                    b.quality = Some(more);
                    if b.speed.is_some() {
                        b.verdict = Some(judge_with_draft(b, &self.cp.targets));
                    }
                    self.history.record_experiment(&self.cp.run_id, b)?;
                    self.history.trace(
                        &self.cp.run_id,
                        "rescored",
                        &format!("#{i} (the best so far) beside #{}", e.iteration),
                    )?;
                }
            }
        }
        Ok(())
    }
}

impl Loop<'_> {
    /// `--draft auto`'s draft for a candidate: the same source in Q4_0 (the candidate's type
    /// when the device lacks Q4_0), the candidate's dropped layers and a quarter more of the
    /// blocks — those with the least influence on the calibration text.
    fn auto_draft(
        &mut self,
        recipe: &crate::recipe::Recipe,
        allowed: &[formats::quant::GgmlType],
    ) -> Result<crate::recipe::Recipe> {
        let q4_0 = formats::quant::GgmlType::Q4_0;
        let ty = if allowed.contains(&q4_0) {
            q4_0
        } else {
            recipe.default_type
        };
        let cal = self.statistics.calibration(self.model, &self.cp.config)?;
        let mut drop = recipe.drop_layers.clone();
        let more = (self.model.n_layers / 4) as usize;
        drop.extend(
            cal.least_influential()
                .into_iter()
                .filter(|l| !recipe.drop_layers.contains(l))
                .take(more),
        );
        drop.sort_unstable();
        let mut d = crate::recipe::Recipe::uniform(ty);
        d.drop_layers = drop;
        Ok(d)
    }
}

/// The verdict on an experiment, judged on its speed with the draft when the draft is kept.
pub(crate) fn judge_with_draft(
    e: &Experiment,
    targets: &crate::targets::Targets,
) -> crate::critic::Verdict {
    let (Some(speed), Some(quality)) = (&e.speed, &e.quality) else {
        unreachable!("judged after both measurements")
    };
    let mut s = speed.clone();
    s.tg_tps = e.tps().unwrap_or(s.tg_tps);
    judge(&s, quality, e.size_bytes, targets)
}

/// Whether `err` comes from a full disk (or quota): an I/O error `ENOSPC`/`EDQUOT` anywhere in
/// its chain, SQLite's "database or disk is full", or a message that says so.
pub fn disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(28) | Some(122));
        }
        if let Some(q) = c.downcast_ref::<rusqlite::Error>() {
            return q.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        }
        let text = c.to_string();
        text.contains("No space left on device") || text.contains("Disk quota exceeded")
    })
}

pub fn candidate_path(out_dir: &Path, iteration: u32) -> std::path::PathBuf {
    out_dir.join(format!(".candidate-{iteration}.gguf"))
}

/// `#3 Q4_K: 84.2 MiB, 41.3 tok/s, top-1 0.9120, KLD 0.04512 | tokens_per_second ... ok; ...`
pub fn one_line(e: &Experiment) -> String {
    let mut line = one_line_alone(e);
    if let Some(d) = &e.draft {
        line += &format!("\n    {}", d.text());
    }
    if !e.fleet.is_empty() {
        line += &format!("\n    on each device: {}", fleet::devices_text(&e.fleet));
    }
    line
}

fn one_line_alone(e: &Experiment) -> String {
    let mock = if e.mock { " [mock]" } else { "" };
    match (&e.error, &e.speed, &e.quality, &e.verdict) {
        (Some(err), ..) => format!("#{} {}{mock}: FAILED: {err}", e.iteration, e.label),
        (None, Some(s), Some(q), Some(v)) => format!(
            "#{} {}{mock}: {:.1} MiB, {:.2} tok/s{}, top-1 {}, KLD {}, dPPL {:+.3} | {}",
            e.iteration,
            e.label,
            e.size_bytes as f64 / (1 << 20) as f64,
            s.tg_tps,
            s.baseline.map_or(String::new(), |b| format!(
                " ({:.3}x the original in the same rounds{})",
                b.ratio,
                if b.drift().abs() > crate::measure::DRIFT_NOTE {
                    format!(
                        ", which ran {:+.0}% from its reference: the machine's speed changed",
                        100.0 * b.drift()
                    )
                } else {
                    String::new()
                }
            )),
            q.top1_text(),
            q.kld_text(),
            q.delta_ppl,
            v.summary()
        ),
        _ => format!("#{} {}{mock}: (incomplete)", e.iteration, e.label),
    }
}
