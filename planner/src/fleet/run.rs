//! Work on every host of a fleet at once: at most `jobs` sessions open at a time, each host's
//! own stages shown live, and every host's outcome kept — a host that cannot be reached, that
//! drops out mid-run or that stops answering is marked as such and the others go on. Nothing
//! waits forever: every call to a device has its deadline ([`crate::device`]), so a host's
//! work ends in at most its connect timeout plus its silence deadline per call.

use super::FleetHost;
use crate::device::DeviceError;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a host's work ended, when it did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// No connection could be made (ssh could not connect, or the runtime did not start).
    Unreachable,
    /// The connection or the runtime went away in the middle of the work.
    Lost,
    /// The device stopped answering within its deadline.
    TimedOut,
    /// Anything else: the runtime refused, a local file is missing, ...
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unreachable => "unreachable",
            Status::Lost => "lost",
            Status::TimedOut => "timed out",
            Status::Failed => "failed",
        }
    }
}

/// A host's work failed at `stage`.
#[derive(Debug)]
pub struct Failure {
    pub stage: &'static str,
    pub error: anyhow::Error,
}

impl Failure {
    /// What the failure says about the host: a connection that never opened is `Unreachable`,
    /// one that closed under the work `Lost`, silence `TimedOut`.
    pub fn status(&self) -> Status {
        match self.error.downcast_ref::<DeviceError>() {
            Some(DeviceError::Timeout { .. }) if self.stage == "connect" => Status::Unreachable,
            Some(DeviceError::Timeout { .. }) => Status::TimedOut,
            Some(DeviceError::Command { .. } | DeviceError::Spawn { .. })
                if self.stage == "connect" =>
            {
                Status::Unreachable
            }
            Some(DeviceError::RuntimeDied { .. } | DeviceError::Send { .. })
                if self.stage == "connect" =>
            {
                Status::Unreachable
            }
            Some(
                DeviceError::RuntimeDied { .. }
                | DeviceError::Send { .. }
                | DeviceError::Command { .. },
            ) => Status::Lost,
            _ => Status::Failed,
        }
    }
}

/// Attach a stage to an error: `stage("bench", s.bench(...))`.
pub fn at<T, E: Into<anyhow::Error>>(stage: &'static str, r: Result<T, E>) -> Result<T, Failure> {
    r.map_err(|e| Failure {
        stage,
        error: e.into(),
    })
}

/// One host's outcome.
#[derive(Debug)]
pub struct Outcome<R> {
    pub host: FleetHost,
    pub result: Result<R, Failure>,
    pub seconds: f64,
}

impl<R> Outcome<R> {
    pub fn status(&self) -> Status {
        match &self.result {
            Ok(_) => Status::Ok,
            Err(f) => f.status(),
        }
    }
}

/// Tells the user what one host is doing.
#[derive(Debug)]
pub struct Stage<'a> {
    name: &'a str,
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Stage<'_> {
    /// The host's current stage (`deploying`, `pp32 1/1: 812 tok/s`, ...).
    pub fn set(&self, what: &str) {
        match &self.bar {
            Some(b) => b.set_message(what.to_string()),
            None if !self.quiet => eprintln!("  {}: {what}", self.name),
            None => {}
        }
    }
}

/// Run `work` on every host, at most `jobs` at a time (hosts in inventory order; outcomes in
/// the same order). Live progress goes to stderr: a line per host on a terminal, a line per
/// stage otherwise; `quiet` shows nothing.
pub fn for_each_host<R: Send>(
    hosts: Vec<FleetHost>,
    jobs: usize,
    quiet: bool,
    work: impl Fn(&FleetHost, &Stage<'_>) -> Result<R, Failure> + Sync,
) -> Vec<Outcome<R>> {
    let n = hosts.len();
    let jobs = jobs.clamp(1, n.max(1));
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Outcome<R>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let live = !quiet && std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if live {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(host) = hosts.get(i) else {
                    return;
                };
                let bar = live.then(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b.set_prefix(format!("{:<width$}", host.name));
                    b.enable_steady_tick(Duration::from_millis(200));
                    b
                });
                let stage = Stage {
                    name: &host.name,
                    bar,
                    quiet,
                };
                let t = Instant::now();
                let result = work(host, &stage);
                let seconds = t.elapsed().as_secs_f64();
                let outcome = Outcome {
                    host: host.clone(),
                    result,
                    seconds,
                };
                let done = match &outcome.result {
                    Ok(_) => format!("ok in {seconds:.1} s"),
                    Err(f) => format!(
                        "{} at {} after {seconds:.1} s",
                        outcome.status().as_str(),
                        f.stage
                    ),
                };
                match &stage.bar {
                    Some(b) => b.finish_with_message(done),
                    None if !quiet => eprintln!("  {}: {done}", host.name),
                    None => {}
                }
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn host(i: usize) -> FleetHost {
        crate::fleet::tests::local_host(&format!("h{i}"), "c")
    }

    /// Every host gets an outcome in inventory order, no more than `jobs` run at once, and a
    /// failing host fails alone with its stage and status.
    #[test]
    fn bounded_parallel_outcomes_in_order() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let hosts: Vec<FleetHost> = (0..20).map(host).collect();
        let out = for_each_host(hosts, 4, true, |h, stage| {
            stage.set("working");
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            running.fetch_sub(1, Ordering::SeqCst);
            if h.name == "h7" {
                let e = DeviceError::Command {
                    device: "h7".into(),
                    what: "ssh".into(),
                    status: "exit status: 255".into(),
                    stderr: "ssh: connect to host h7 port 22: Connection refused".into(),
                };
                return at("connect", Err::<(), _>(e));
            }
            if h.name == "h9" {
                let e = DeviceError::RuntimeDied {
                    device: "h9".into(),
                    during: "bench".into(),
                    status: "signal 9".into(),
                    stderr: String::new(),
                };
                return at("bench", Err::<(), _>(e));
            }
            Ok(())
        });
        assert_eq!(out.len(), 20);
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, o)| o.host.name == format!("h{i}")));
        assert!(most.load(Ordering::SeqCst) <= 4);
        assert!(most.load(Ordering::SeqCst) >= 2, "ran one at a time");
        assert_eq!(out[7].status(), Status::Unreachable);
        assert_eq!(out[9].status(), Status::Lost);
        assert_eq!(out.iter().filter(|o| o.status() == Status::Ok).count(), 18);
    }
}
