//! `sintra device check --fleet INVENTORY` and `sintra bench MODEL --fleet INVENTORY`: the same
//! work as on one device, on every host of an Ansible inventory at once (at most `--jobs`
//! sessions open), with each host's progress live and every host's result — or why it has
//! none — in one table (or `--json`).

use super::device::{BenchArgs, CheckArgs, ConnectionOpts};
use crate::device::ssh::DeployReport;
use crate::device::{find_runtime, Session, Transport};
use crate::fleet::run::{at, for_each_host, Outcome, Status};
use crate::fleet::{FleetHost, Inventory};
use crate::measure::stats::Spread;
use formats::wire::{BenchResult, Hello, MemoryBandwidth, ModelInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which fleet: shared by `device check` and `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetOpts {
    /// An Ansible inventory (INI or YAML): work on every host in it at once. Hosts are reached
    /// with `ansible_host`, `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file` (or
    /// `ansible_connection=local`); Sintra's own host variables: `sintra_profile`,
    /// `sintra_class`, `sintra_exec_prefix`, `sintra_runtime_target`, `sintra_runtime`,
    /// `sintra_remote_dir`, `sintra_timeout`, `sintra_connect_timeout`.
    #[arg(long, value_name = "INVENTORY")]
    pub fleet: Option<PathBuf>,
    /// With --fleet: only the hosts of this Ansible pattern (a group or host, `a:b` for
    /// either, `a:&b` for both, `a:!b` for a but not b, `*` wildcards).
    #[arg(long, value_name = "PATTERN", requires = "fleet")]
    pub limit: Option<String>,
    /// With --fleet: at most this many devices worked on at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
}

/// The inventory's hosts (as `--limit` selects them) as devices, the command line's connection
/// options filling in what a host does not set, each runtime build found once per target.
pub fn fleet_hosts(
    path: &Path,
    limit: Option<&str>,
    o: &ConnectionOpts,
) -> anyhow::Result<Vec<FleetHost>> {
    let inv = Inventory::load(path)?;
    let chosen = match limit {
        Some(p) => inv.select(p)?,
        None => inv.hosts.iter().collect(),
    };
    let mut runtimes: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut out = Vec::with_capacity(chosen.len());
    for h in chosen {
        let mut d = inv.device(h, Duration::from_secs(o.timeout.max(1)))?;
        let own = |k: &str| h.vars.contains_key(k);
        if d.spec.runtime.is_none() {
            d.spec.runtime = o.runtime.clone();
        }
        if d.spec.runtime_target.is_none() {
            d.spec.runtime_target = o.runtime_target.clone();
        }
        match &mut d.spec.transport {
            Transport::Ssh(t) => {
                if t.exec_prefix.is_none() {
                    t.exec_prefix = o.exec_prefix.clone();
                }
                t.config_file = o.ssh_config.clone();
                t.options.extend(o.ssh_options.iter().cloned());
                if !own("sintra_remote_dir") {
                    t.remote_dir = o.remote_dir.clone();
                }
                if !own("sintra_connect_timeout") {
                    t.connect_timeout = Duration::from_secs(o.connect_timeout);
                }
            }
            Transport::Local { exec_prefix } => {
                if exec_prefix.is_none() {
                    *exec_prefix = o.exec_prefix.clone();
                }
            }
            Transport::Tcp { .. } => {}
        }
        // One lookup per target: a missing build is one clear error, not one per host.
        if let (Some(triple), None) = (d.spec.runtime_target.clone(), &d.spec.runtime) {
            let rt = match runtimes.get(&triple) {
                Some(rt) => rt.clone(),
                None => {
                    let rt = find_runtime(&triple, None)?;
                    runtimes.insert(triple, rt.clone());
                    rt
                }
            };
            d.spec.runtime = Some(rt);
        }
        out.push(d);
    }
    Ok(out)
}

/// What `device check` learns from one host.
#[derive(Debug, serde::Serialize)]
struct Checked {
    hello: Hello,
    deploy: Option<DeployReport>,
    memory: MemoryBandwidth,
    model: Option<ModelInfo>,
    bench: Option<BenchResult>,
}

/// `sintra device check --fleet`.
pub fn check(a: &CheckArgs, fleet: &Path) -> anyhow::Result<()> {
    let hosts = fleet_hosts(fleet, a.fleet.limit.as_deref(), &a.conn)?;
    let jobs = a.fleet.jobs as usize;
    let t0 = Instant::now();
    let model = a.model.as_deref();
    let out = for_each_host(hosts, jobs, false, |h, stage| {
        stage.set(match h.spec.transport {
            Transport::Ssh(_) => "connecting, deploying the runtime",
            _ => "starting the runtime",
        });
        let mut s = at("connect", Session::open(&h.spec, model))?;
        stage.set("probing memory bandwidth");
        let memory = at("memory probe", s.probe_memory(a.probe_mib << 20, 0))?;
        let (mut model_info, mut bench) = (None, None);
        if model.is_some() {
            stage.set("loading the model");
            model_info = Some(at("model load", s.load_model())?);

            bench = Some(at(
                "bench",
                s.bench(super::device::check_bench(), |p| stage.set(&p.note)),
            )?);
        }
        let (hello, deploy) = (s.hello.clone(), s.deploy.clone());
        at("shutdown", s.shutdown())?;
        Ok(Checked {
            hello,
            deploy,
            memory,
            model: model_info,
            bench,
        })
    });
    let view = View::new(fleet, &a.fleet, t0, a.conn.json);
    let header = ["target", "kernels", "cores", "RAM", "read GB/s", "tg16 t/s"];
    view.report(&out, &header, |c: &Checked| {
        vec![
            c.hello.target.clone(),
            c.hello.isa.clone(),
            c.hello.cores.to_string(),
            format!(
                "{:.1} GiB",
                c.hello.total_ram_bytes as f64 / (1u64 << 30) as f64
            ),
            format!("{:.2}", c.memory.read_gb_s),
            c.bench.as_ref().map_or("-".into(), tg),
        ]
    })
}

/// What `bench --fleet` learns from one host.
#[derive(Debug, serde::Serialize)]
struct Benched {
    hello: Hello,
    deploy: Option<DeployReport>,
    model: ModelInfo,
    bench: BenchResult,
}

/// `sintra bench MODEL --fleet`.
pub fn bench(a: &BenchArgs, fleet: &Path) -> anyhow::Result<()> {
    if a.ppl_file.is_some() {
        anyhow::bail!("--ppl-file is measured once, on one device: it does not go with --fleet");
    }
    if a.n_prompt == 0 && a.n_gen == 0 {
        anyhow::bail!("-p 0 -n 0 leaves nothing to benchmark");
    }
    let hosts = fleet_hosts(fleet, a.fleet.limit.as_deref(), &a.conn)?;
    let jobs = a.fleet.jobs as usize;
    let t0 = Instant::now();
    let out = for_each_host(hosts, jobs, false, |h, stage| {
        stage.set(match h.spec.transport {
            Transport::Ssh(_) => "connecting, deploying the runtime and the model",
            _ => "starting the runtime",
        });
        let mut s = at("connect", Session::open(&h.spec, Some(&a.model)))?;
        stage.set("loading the model");
        let model = at("model load", s.load_model())?;
        let bench = at("bench", s.bench(a.request(), |p| stage.set(&p.note)))?;
        let (hello, deploy) = (s.hello.clone(), s.deploy.clone());
        at("shutdown", s.shutdown())?;
        Ok(Benched {
            hello,
            deploy,
            model,
            bench,
        })
    });
    if let Err(e) = record_bench(&a.model, &out) {
        eprintln!("warning: the history could not record the fleet's figures: {e:#}");
    }
    let view = View::new(fleet, &a.fleet, t0, a.conn.json);
    let (pp_name, tg_name) = (
        format!("pp{} t/s", a.n_prompt),
        format!("tg{} t/s", a.n_gen),
    );
    let header = ["kernels", "threads", &pp_name, &tg_name, "peak RSS"];
    view.report(&out, &header, |b: &Benched| {
        let run = |prompt: bool| {
            b.bench
                .runs
                .iter()
                .find(|r| (r.n_prompt > 0) == prompt)
                .map_or("-".to_string(), |r| {
                    let (m, s) = r.mean_std();
                    format!("{m:.2} ± {s:.2}")
                })
        };
        vec![
            b.bench.isa.clone(),
            b.bench.threads.to_string(),
            run(true),
            run(false),
            format!(
                "{:.1} MiB",
                b.bench.peak_rss_bytes as f64 / (1 << 20) as f64
            ),
        ]
    })
}

/// Every host's figures (or why it has none) in the history's fleet tables, each device by
/// its host and hardware fingerprint (`sintra history --fleet`).
fn record_bench(model: &Path, out: &[Outcome<Benched>]) -> anyhow::Result<()> {
    let h = crate::history::History::open(&crate::home::sintra_home()?.join("history.db"))?;
    let name = model.file_name().map_or(model.display().to_string(), |n| {
        n.to_string_lossy().into_owned()
    });
    for o in out {
        let mut m = crate::history::FleetMeasurement {
            host: o.host.name.clone(),
            command: "bench".into(),
            model: name.clone(),
            recipe: "as is".into(),
            status: o.status().as_str().into(),
            ..Default::default()
        };
        let device = match &o.result {
            Ok(b) => {
                let hw = crate::fleet::hardware::Hardware::from_hello(&b.hello);
                let spread = |gen: bool| {
                    b.bench
                        .runs
                        .iter()
                        .find(|r| (r.n_prompt > 0) != gen)
                        .and_then(|r| Spread::of(&r.samples_tok_s))
                };
                let tg = spread(true);
                m.tg_tps = tg.map(|t| t.median);
                m.tg_min = tg.map(|t| t.min);
                m.tg_max = tg.map(|t| t.max);
                m.pp_tps = spread(false).map(|p| p.median);
                Some(h.fleet_device(&o.host.name, &o.host.class, &hw)?)
            }
            Err(f) => {
                m.error = Some(format!("at {}: {:#}", f.stage, f.error));
                None
            }
        };
        h.record_fleet(device, &m)?;
    }
    Ok(())
}

/// How a fleet command's results are shown.
struct View<'a> {
    fleet: &'a Path,
    limit: Option<&'a str>,
    jobs: usize,
    wall: f64,
    json: bool,
}

impl<'a> View<'a> {
    /// The view of a run of `opts` on `fleet` that started at `t0`.
    fn new(fleet: &'a Path, opts: &'a FleetOpts, t0: Instant, json: bool) -> Self {
        View {
            fleet,
            limit: opts.limit.as_deref(),
            jobs: opts.jobs as usize,
            wall: t0.elapsed().as_secs_f64(),
            json,
        }
    }

    /// Every host's outcome as JSON, or as a table (host, class, status, the `header`
    /// columns a result fills with `cells`, seconds) followed by each failure in full and a
    /// summary; then an error when any host has no result.
    fn report<R: serde::Serialize>(
        &self,
        out: &[Outcome<R>],
        header: &[&str],
        cells: impl Fn(&R) -> Vec<String>,
    ) -> anyhow::Result<()> {
        if self.json {
            let hosts: Vec<serde_json::Value> = out
                .iter()
                .map(|o| host_json(o, |c| serde_json::to_value(c).unwrap_or_default()))
                .collect();
            print_json(self.fleet, self.limit, self.jobs, self.wall, hosts)?;
        } else {
            let mut head = vec!["host".to_string(), "class".into(), "status".into()];
            head.extend(header.iter().map(|h| h.to_string()));
            head.push("s".into());
            let mut rows = vec![head];
            for o in out {
                let mut r = vec![
                    o.host.name.clone(),
                    o.host.class.clone(),
                    o.status().as_str().into(),
                ];
                match &o.result {
                    Ok(c) => r.extend(cells(c)),
                    Err(_) => r.extend(std::iter::repeat_n("-".to_string(), header.len())),
                }
                r.push(format!("{:.1}", o.seconds));
                rows.push(r);
            }
            print_table(&rows);
            print_failures(out);
            summary(out, self.jobs, self.wall);
        }
        finish(out)
    }
}

/// tg t/s of a short check.
fn tg(b: &BenchResult) -> String {
    b.runs
        .iter()
        .find(|r| r.n_gen > 0)
        .map_or("-".into(), |r| format!("{:.2}", r.mean_std().0))
}

fn host_json<R>(o: &Outcome<R>, ok: impl Fn(&R) -> serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "host": o.host.name,
        "class": o.host.class,
        "profile": o.host.profile,
        "groups": o.host.groups,
        "device": o.host.spec.name(),
        "transport": o.host.spec.transport_name(),
        "status": o.status(),
        "seconds": o.seconds,
    });
    match &o.result {
        Ok(r) => v["result"] = ok(r),
        Err(f) => {
            v["stage"] = f.stage.into();
            v["error"] = format!("{:#}", f.error).into();
        }
    }
    v
}

fn print_json(
    fleet: &Path,
    limit: Option<&str>,
    jobs: usize,
    wall: f64,
    hosts: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let v = serde_json::json!({
        "fleet": fleet.display().to_string(),
        "limit": limit,
        "jobs": jobs,
        "wall_seconds": wall,
        "hosts": hosts,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// A Markdown table, columns padded.
fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = width[c]))
            .collect();
        println!("| {} |", cells.join(" | "));
        if i == 0 {
            let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
            println!("| {} |", rule.join(" | "));
        }
    }
}

fn print_failures<R>(out: &[Outcome<R>]) {
    for o in out {
        if let Err(f) = &o.result {
            println!(
                "\n{} ({} at {}): {:#}",
                o.host.name,
                o.status().as_str(),
                f.stage,
                f.error
            );
        }
    }
}

fn summary<R>(out: &[Outcome<R>], jobs: usize, wall: f64) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in out {
        *counts.entry(o.status().as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "\n{} host{} in {wall:.1} s, at most {} at once: {}",
        out.len(),
        if out.len() == 1 { "" } else { "s" },
        jobs.min(out.len()),
        parts.join(", ")
    );
}

/// An error (after the table) when any host has no result, naming them.
fn finish<R>(out: &[Outcome<R>]) -> anyhow::Result<()> {
    let failed: Vec<String> = out
        .iter()
        .filter(|o| o.status() != Status::Ok)
        .map(|o| format!("{} ({})", o.host.name, o.status().as_str()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} hosts have no result: {}",
            failed.len(),
            out.len(),
            failed.join(", ")
        )
    }
}
