//! The loop's fleet side (issue #18): each device's figures go to the history's fleet tables,
//! a resumed run measures what earlier candidates lack on the devices, and the end of a run
//! names the best recipe of each device class.

use super::{candidate_path, judge_with_draft, Loop};
use crate::executor;
use crate::experiment::{self, Experiment, Status};
use crate::history::FleetMeasurement;
use crate::measure::{Candidate, DeviceSpeed};
use crate::recipe::{bytes_per_token, Recipe};
use anyhow::Result;
use std::path::Path;

impl Loop<'_> {
    /// Record one device's figures (or why it has none) in the history.
    fn record_device(&self, iteration: u32, recipe: &str, d: &DeviceSpeed) -> Result<()> {
        let device = match &d.hardware {
            Some(hw) => Some(self.history.fleet_device(&d.host, &d.class, hw)?),
            None => None,
        };
        let s = d.speed.as_ref();
        self.history.record_fleet(
            device,
            &FleetMeasurement {
                host: d.host.clone(),
                command: "optimize".into(),
                run_id: Some(self.cp.run_id.clone()),
                iteration: Some(iteration),
                model: self.model.name.clone(),
                recipe: recipe.to_string(),
                status: d.status.clone(),
                error: d.error.clone(),
                tg_tps: s.map(|s| s.tg_tps),
                tg_min: s.and_then(|s| s.tg.map(|t| t.min)),
                tg_max: s.and_then(|s| s.tg.map(|t| t.max)),
                pp_tps: s.map(|s| s.pp_tps),
                ratio: s.and_then(|s| s.baseline.map(|b| b.ratio)),
            },
        )
    }

    /// The original on each device, measured when the run started (iteration 0).
    pub(super) fn record_fleet_originals(&mut self) -> Result<()> {
        for d in self.measure.fleet_originals() {
            self.record_device(0, "original", &d)?;
        }
        Ok(())
    }

    /// A candidate's figures on each device.
    pub(super) fn record_fleet(&self, e: &Experiment) -> Result<()> {
        for d in &e.fleet {
            self.record_device(e.iteration, &e.label, d)?;
        }
        Ok(())
    }

    /// `--resume` of a fleet run: every measured candidate that lacks a figure on a device (or
    /// class) of the fleet is written again (recipes are deterministic) and measured there;
    /// its binding speed and verdict follow.
    pub(super) fn fill_fleet_gaps(&mut self, out_dir: &Path) -> Result<()> {
        if self.cp.config.fleet.is_none() || self.cp.config.mock {
            return Ok(());
        }
        for i in 0..self.cp.experiments.len() {
            let e = &self.cp.experiments[i];
            if e.status != Status::Ok || e.fleet.is_empty() {
                continue;
            }
            let recipe = Recipe::from_json(&e.recipe)?;
            let plan = recipe.plan(self.model);
            let path = candidate_path(out_dir, e.iteration);
            let calibration = if recipe.needs_calibration() {
                Some(self.statistics.calibration(self.model, &self.cp.config)?)
            } else {
                None
            };
            let have = e.fleet.clone();
            let w = executor::execute(&recipe, self.model, &path, true, calibration)?;
            let c = Candidate {
                path: Some(&path),
                plan: &plan,
                model: self.model,
                bytes_per_token: bytes_per_token(self.model, &plan),
                size_bytes: w.bytes,
            };
            let got = self.measure.bench_missing(&c, &have);
            let _ = std::fs::remove_file(&path);
            let Some((speed, all)) = got? else { continue };
            let e = &mut self.cp.experiments[i];
            let before = e.fleet.iter().filter(|d| d.speed.is_some()).count();
            let added: Vec<DeviceSpeed> = all
                .iter()
                .filter(|d| !have.iter().any(|h| h.host == d.host && h.speed.is_some()))
                .cloned()
                .collect();
            e.speed = Some(speed);
            e.fleet = all;
            if e.quality.is_some() {
                e.verdict = Some(judge_with_draft(e, &self.cp.targets));
            }
            let e = self.cp.experiments[i].clone();
            for d in &added {
                self.record_device(e.iteration, &e.label, d)?;
            }
            self.history.record_experiment(&self.cp.run_id, &e)?;
            println!(
                "#{} {}: measured on {} more device(s) ({} had figures); {}",
                e.iteration,
                e.label,
                added.iter().filter(|d| d.speed.is_some()).count(),
                before,
                super::one_line(&e)
            );
            self.cp.save()?;
        }
        Ok(())
    }
}

/// `box 267.8 tok/s (1.07x), one-core 201.3 tok/s (0.98x), late: unreachable`.
pub fn devices_text(fleet: &[DeviceSpeed]) -> String {
    fleet
        .iter()
        .map(|d| match &d.speed {
            Some(s) => format!(
                "{} {:.1} tok/s{}",
                d.host,
                s.tg_tps,
                s.baseline
                    .map_or(String::new(), |b| format!(" ({:.2}x)", b.ratio))
            ),
            None => format!("{}: {}", d.host, d.status),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A class's best as the terminal and report.md say it: `#1 Q4_1: 264.83 tok/s on box, top-1
/// 0.8343 ± 0.0082 (meets every target)`.
pub fn class_best_text(best: Option<&Experiment>) -> String {
    let Some(b) = best else {
        return "no candidate was measured there".into();
    };
    format!(
        "#{} {}: {:.2} tok/s on {}, top-1 {} ({})",
        b.iteration,
        b.label,
        b.tps().unwrap_or(0.0),
        b.speed.as_ref().map_or("", |s| &s.measured_on),
        b.quality.as_ref().map_or("-".into(), |q| q.top1_text()),
        if b.passes() {
            "meets every target"
        } else {
            "misses a target"
        }
    )
}

/// The best recipe of each device class of a fleet run, judged on the class's own slowest
/// device: `(class, best)` in the order the classes first appear; `None` when no candidate
/// was measured on that class.
pub fn per_class_best(
    exps: &[Experiment],
    targets: &crate::targets::Targets,
) -> Vec<(String, Option<Experiment>)> {
    let mut classes: Vec<String> = Vec::new();
    for d in exps.iter().flat_map(|e| &e.fleet) {
        if !classes.contains(&d.class) {
            classes.push(d.class.clone());
        }
    }
    classes
        .into_iter()
        .map(|class| {
            let judged: Vec<Experiment> = exps
                .iter()
                .filter(|e| e.status == Status::Ok && e.quality.is_some())
                .filter_map(|e| {
                    let (d, s) = e
                        .fleet
                        .iter()
                        .filter(|d| d.class == class)
                        .filter_map(|d| d.speed.as_ref().map(|s| (d, s)))
                        .min_by(|a, b| a.1.tg_tps.total_cmp(&b.1.tg_tps))?;
                    let mut e = e.clone();
                    let mut s = s.clone();
                    s.measured_on = d.host.clone();
                    e.speed = Some(s);
                    e.verdict = Some(judge_with_draft(&e, targets));
                    Some(e)
                })
                .collect();
            let best = experiment::best(&judged).cloned();
            (class, best)
        })
        .collect()
}
