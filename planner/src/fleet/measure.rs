//! `sintra --fleet`'s measurer: quality once, on this host; each candidate's speed on every
//! device of the fleet at once (or on one representative per device class), each by the
//! measurement protocol of [`crate::measure::wire`] with its own original interleaved. The
//! figure a candidate is judged on is its slowest device's (its lowest speed-up, when the
//! target is a speed-up): a recipe meets the targets only if it meets them everywhere.
//!
//! A device that cannot be reached, drops out or stops answering is marked with why and left
//! out of the candidates that follow; the run goes on with the others (with `--per-class`, the
//! class's next device takes its place). `--resume` starts with every device again and measures
//! what earlier candidates lack on them ([`FleetMeasurer::bench_missing`]).

use super::hardware::Hardware;
use super::run::{at, for_each_host, Failure, Outcome, Status};
use super::FleetHost;
use crate::measure::wire::{QualitySpec, WireMeasurer};
use crate::measure::{BenchSpec, Candidate, DeviceSpeed, Measurer, Quality, Speed};
use anyhow::{bail, Result};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// One device: its measurer (its own runtime session, original and reference) and whether it
/// dropped out.
#[derive(Debug)]
struct Member {
    host: FleetHost,
    m: Mutex<WireMeasurer>,
    hardware: Option<Hardware>,
    /// Why it left the run: its status and the error.
    dropped: Option<(Status, String)>,
}

#[derive(Debug)]
pub struct FleetMeasurer {
    /// Quality on this host.
    quality: WireMeasurer,
    members: Vec<Member>,
    jobs: usize,
    per_class: bool,
    /// Judge a candidate on its lowest speed-up rather than its lowest speed.
    by_ratio: bool,
    /// The last candidate's per-device figures.
    last: Vec<DeviceSpeed>,
    /// The originals' figures, until the loop records them.
    originals: Vec<DeviceSpeed>,
}

impl FleetMeasurer {
    pub fn new(
        hosts: Vec<FleetHost>,
        bench: BenchSpec,
        quality: QualitySpec,
        timeout: Duration,
        jobs: usize,
        per_class: bool,
        by_ratio: bool,
    ) -> FleetMeasurer {
        let members = hosts
            .into_iter()
            .map(|host| Member {
                m: Mutex::new(
                    WireMeasurer::new(Some(host.spec.clone()), bench, quality.clone(), timeout)
                        .quiet(),
                ),
                host,
                hardware: None,
                dropped: None,
            })
            .collect();
        FleetMeasurer {
            quality: WireMeasurer::new(None, bench, quality, timeout),
            members,
            jobs,
            per_class,
            by_ratio,
            last: Vec::new(),
            originals: Vec::new(),
        }
    }

    /// The devices still in the run (with `--per-class`, the first of each class), minus those
    /// `skip` says are done.
    fn chosen(&self, skip: &dyn Fn(&Member) -> bool) -> Vec<FleetHost> {
        let mut classes: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for m in self.members.iter().filter(|m| m.dropped.is_none()) {
            if self.per_class {
                if classes.contains(&m.host.class.as_str()) {
                    continue;
                }
                classes.push(&m.host.class);
            }
            if !skip(m) {
                out.push(m.host.clone());
            }
        }
        out
    }

    /// Run `work` on `hosts` in parallel, each after its session is open and (with
    /// `original_first`) its original measured; devices that fail are dropped. Returns each
    /// host's figures.
    fn on(
        &mut self,
        hosts: Vec<FleetHost>,
        what: &str,
        original_first: bool,
        work: &(dyn Fn(&mut WireMeasurer) -> Result<Speed> + Sync),
    ) -> Vec<DeviceSpeed> {
        let members = &self.members;
        let find = |name: &str| members.iter().position(|m| m.host.name == name);
        let out: Vec<Outcome<(Speed, Hardware)>> =
            for_each_host(hosts, self.jobs, false, |h, stage| {
                let i = find(&h.name).expect("a member");
                let mut m = members[i].m.lock().unwrap_or_else(|p| p.into_inner());
                stage.set("connecting");
                let hello = at("connect", m.connect())?;
                if original_first && m.reference().is_none() {
                    stage.set("benchmarking the original");
                    at("original", m.measure_original())?;
                }
                stage.set(what);
                let speed = at("bench", work(&mut m))?;
                Ok((speed, Hardware::from_hello(&hello)))
            });
        let mut results = Vec::new();
        for o in out {
            let i = self
                .members
                .iter()
                .position(|m| m.host.name == o.host.name)
                .expect("a member");
            let status = o.status();
            let mut d = DeviceSpeed {
                host: o.host.name.clone(),
                class: o.host.class.clone(),
                status: status.as_str().to_string(),
                speed: None,
                error: None,
                hardware: self.members[i].hardware.clone(),
            };
            match o.result {
                Ok((speed, hw)) => {
                    d.speed = Some(speed);
                    d.hardware = Some(hw.clone());
                    self.members[i].hardware = Some(hw);
                }
                Err(Failure { stage, error }) => {
                    let why = format!("{} at {stage}: {error:#}", status.as_str());
                    println!(
                        "device {} dropped out ({why}); the run goes on without it",
                        o.host.name
                    );
                    d.error = Some(format!("{error:#}"));
                    self.members[i].dropped = Some((status, why));
                }
            }
            results.push(d);
        }
        results
    }

    /// Measure `work` on the chosen devices; with `--per-class`, a class whose device dropped
    /// out is tried again on its next device.
    fn on_every_class(
        &mut self,
        what: &str,
        original_first: bool,
        have: &[DeviceSpeed],
        work: &(dyn Fn(&mut WireMeasurer) -> Result<Speed> + Sync),
    ) -> Vec<DeviceSpeed> {
        let mut results: Vec<DeviceSpeed> = Vec::new();
        loop {
            let done = |m: &Member| {
                have.iter().chain(&results).any(|d| {
                    d.speed.is_some()
                        && (d.host == m.host.name || (self.per_class && d.class == m.host.class))
                })
            };
            let hosts = self.chosen(&done);
            if hosts.is_empty() {
                return results;
            }
            let got = self.on(hosts, what, original_first, work);
            let all_ok = got.iter().all(|d| d.speed.is_some());
            results.extend(got);
            if all_ok || !self.per_class {
                return results;
            }
        }
    }

    /// Measure the original on every device (each keeps it as its reference); returns each
    /// device's figures.
    pub fn measure_originals(&mut self) -> Result<Vec<DeviceSpeed>> {
        let got = self.on_every_class("benchmarking the original", false, &[], &|m| {
            m.measure_original()
        });
        if got.iter().all(|d| d.speed.is_none()) {
            bail!(
                "no device of the fleet could measure the original:\n{}",
                failures(&got)
            );
        }
        self.originals = got.clone();
        Ok(got)
    }

    /// The host's measurer for the original's quality baseline.
    pub fn host(&mut self) -> &mut WireMeasurer {
        &mut self.quality
    }

    /// The binding figure among a candidate's devices: the lowest speed (or speed-up), with
    /// `measured_on` naming its device.
    fn binding(&self, results: &[DeviceSpeed]) -> Option<Speed> {
        let key = |s: &Speed| match (self.by_ratio, &s.baseline) {
            (true, Some(b)) => b.ratio,
            _ => s.tg_tps,
        };
        let ok: Vec<(&DeviceSpeed, &Speed)> = results
            .iter()
            .filter_map(|d| d.speed.as_ref().map(|s| (d, s)))
            .collect();
        let n = ok.len();
        let (d, s) = ok
            .into_iter()
            .min_by(|a, b| key(a.1).total_cmp(&key(b.1)))?;
        let mut s = s.clone();
        s.measured_on = format!("{}, the slowest of {n} devices", d.host);
        Some(s)
    }

    /// `results` with every device that dropped out earlier and has no entry marked as such
    /// (with `--per-class`, only when its class has no figure: another device stood in).
    fn with_dropped(&self, mut results: Vec<DeviceSpeed>) -> Vec<DeviceSpeed> {
        for m in &self.members {
            let Some((status, why)) = &m.dropped else {
                continue;
            };
            let covered = results.iter().any(|d| {
                d.host == m.host.name
                    || (self.per_class && d.class == m.host.class && d.speed.is_some())
            });
            if !covered {
                results.push(DeviceSpeed {
                    host: m.host.name.clone(),
                    class: m.host.class.clone(),
                    status: status.as_str().to_string(),
                    speed: None,
                    error: Some(format!("dropped out earlier: {why}")),
                    hardware: m.hardware.clone(),
                });
            }
        }
        results
    }
}

/// Every failure of `results`, a line each.
fn failures(results: &[DeviceSpeed]) -> String {
    results
        .iter()
        .filter_map(|d| {
            d.error
                .as_ref()
                .map(|e| format!("  {}: {}: {e}", d.host, d.status))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Measurer for FleetMeasurer {
    fn bench(&mut self, c: &Candidate<'_>) -> Result<Speed> {
        c.path
            .ok_or_else(|| anyhow::anyhow!("a benchmark needs a written model"))?;
        let results = self.on_every_class("benchmarking the candidate", true, &[], &|m| m.bench(c));
        let results = self.with_dropped(results);
        let speed = self.binding(&results);
        self.last = results;
        match speed {
            Some(s) => Ok(s),
            None => bail!(
                "no device of the fleet measured the candidate:\n{}",
                failures(&self.last)
            ),
        }
    }

    fn quality(&mut self, c: &Candidate<'_>) -> Result<Quality> {
        self.quality.quality(c)
    }

    fn quality_more(&mut self, path: &Path) -> Result<Option<Quality>> {
        self.quality.quality_more(path)
    }

    fn bench_draft(
        &mut self,
        _c: &Candidate<'_>,
        _draft: &Path,
    ) -> Result<crate::measure::DraftSpeed> {
        bail!("speculative decoding is not measured across a fleet: run without --draft (and without a recipe's draft)")
    }

    fn fleet_results(&mut self) -> Vec<DeviceSpeed> {
        std::mem::take(&mut self.last)
    }

    fn fleet_originals(&mut self) -> Vec<DeviceSpeed> {
        std::mem::take(&mut self.originals)
    }

    fn bench_missing(
        &mut self,
        c: &Candidate<'_>,
        have: &[DeviceSpeed],
    ) -> Result<Option<(Speed, Vec<DeviceSpeed>)>> {
        c.path
            .ok_or_else(|| anyhow::anyhow!("a benchmark needs a written model"))?;
        let got = self.on_every_class("benchmarking an earlier candidate", true, have, &|m| {
            m.bench(c)
        });
        if got.is_empty() {
            return Ok(None);
        }
        // What was measured now replaces the same device's earlier failure.
        let mut all: Vec<DeviceSpeed> = have
            .iter()
            .filter(|d| d.speed.is_some() || !got.iter().any(|g| g.host == d.host))
            .cloned()
            .collect();
        all.extend(got);
        let all = self.with_dropped(all);
        Ok(self.binding(&all).map(|s| (s, all)))
    }

    fn shutdown(&mut self) -> Option<String> {
        let host = self.quality.shutdown().unwrap_or_default();
        let mut opened = 0;
        for m in &mut self.members {
            let m = m.m.get_mut().unwrap_or_else(|p| p.into_inner());
            opened += m.opened_on_device();
            m.shutdown();
        }
        let dropped: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| {
                m.dropped
                    .as_ref()
                    .map(|(_, why)| format!("{} ({why})", m.host.name))
            })
            .collect();
        let mut line = format!("{host}; {opened} on {} fleet devices", self.members.len());
        if !dropped.is_empty() {
            line += &format!("\ndevices that dropped out: {}", dropped.join("; "));
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(per_class: bool) -> FleetMeasurer {
        let host = crate::fleet::tests::local_host;
        let quality = QualitySpec {
            original: "original.gguf".into(),
            text: String::new(),
            n_ctx: 512,
            chunks: 1,
            threads: 0,
            base_logits_prefix: "base".into(),
        };
        let bench = BenchSpec {
            n_prompt: 8,
            n_gen: 8,
            reps: 1,
            threads: 0,
        };
        let hosts = vec![
            host("pi-1", "rpi5"),
            host("pi-2", "rpi5"),
            host("nano", "jetson"),
        ];
        let t = Duration::from_secs(1);
        FleetMeasurer::new(hosts, bench, quality, t, 2, per_class, false)
    }

    fn names(hosts: &[FleetHost]) -> Vec<&str> {
        hosts.iter().map(|h| h.name.as_str()).collect()
    }

    fn speed(tps: f64) -> Speed {
        Speed {
            tg_tps: tps,
            tg_sd: 0.0,
            tg: None,
            pp_tps: 0.0,
            latency_ms: 0.0,
            peak_rss_bytes: None,
            measured_on: String::new(),
            load: None,
            baseline: None,
        }
    }

    fn ok(host: &str, class: &str, tps: f64) -> DeviceSpeed {
        DeviceSpeed {
            host: host.into(),
            class: class.into(),
            status: "ok".into(),
            speed: Some(speed(tps)),
            error: None,
            hardware: None,
        }
    }

    /// Every device, or one per class with the class's next device standing in for one that
    /// dropped out; dropped devices are marked in the results unless another stood in.
    #[test]
    fn representatives_stand_in_and_dropped_devices_are_marked() {
        let mut all = fleet(false);
        assert_eq!(names(&all.chosen(&|_| false)), ["pi-1", "pi-2", "nano"]);
        let mut one = fleet(true);
        assert_eq!(names(&one.chosen(&|_| false)), ["pi-1", "nano"]);
        one.members[0].dropped = Some((Status::Lost, "lost at bench: gone".into()));
        assert_eq!(names(&one.chosen(&|_| false)), ["pi-2", "nano"]);
        // pi-2 stood in for the class: pi-1 needs no mark.
        let r = one.with_dropped(vec![ok("pi-2", "rpi5", 9.0), ok("nano", "jetson", 20.0)]);
        assert_eq!(r.len(), 2);

        all.members[0].dropped = Some((Status::Unreachable, "unreachable at connect".into()));
        let r = all.with_dropped(vec![ok("pi-2", "rpi5", 9.0), ok("nano", "jetson", 20.0)]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].host, "pi-1");
        assert_eq!(r[2].status, "unreachable");
        assert!(r[2].speed.is_none());
        // The binding figure is the slowest device's, named.
        let b = all.binding(&r).unwrap();
        assert_eq!(b.tg_tps, 9.0);
        assert_eq!(b.measured_on, "pi-2, the slowest of 2 devices");
    }
}
