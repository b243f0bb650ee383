//! `sintra device check TARGET` and `sintra bench --device TARGET MODEL`: deploy the runtime
//! (and model), shake hands, probe, benchmark, print a table or JSON.
//!
//! TARGET is `local` (a runtime process on this machine), `tcp://HOST:PORT` (a runtime started
//! with `sintra-rt serve --listen`), `[user@]host[:port]` or an `~/.ssh/config` alias (ssh), or
//! a hardware profile (YAML) whose `connection` section says the same.

use crate::device::ssh::SshTarget;
use crate::device::{text_for_windows, DeviceSpec, Session, Transport};
use anyhow::{bail, Context};
use formats::wire::{
    BenchRequest, Hello, LogitsMode, MemoryBandwidth, PerplexityRequest, Progress,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach the device: shared by `device check` and `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionOpts {
    /// Runtime binary to deploy (default: the build for the device's target triple, from
    /// `bash cross/build.sh`).
    #[arg(long, value_name = "FILE")]
    pub runtime: Option<PathBuf>,
    /// Target triple of the runtime (default: from `uname -m` on the device).
    #[arg(long, value_name = "TRIPLE")]
    pub runtime_target: Option<String>,
    /// Prefix for the runtime's command line on the device, e.g. "nice -n -5" or
    /// "qemu-aarch64-static".
    #[arg(long, value_name = "CMD")]
    pub exec_prefix: Option<String>,
    /// Directory on the device for the runtime and models (relative: under the home directory).
    #[arg(long, value_name = "DIR", default_value = ".sintra")]
    pub remote_dir: String,
    /// ssh config file (`ssh -F`; default: ~/.ssh/config).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Extra ssh option, as `ssh -o` takes it (repeatable).
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
    /// Seconds of silence from the runtime after which a call fails and the runtime is stopped.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Seconds allowed for the SSH connection to open.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

impl ConnectionOpts {
    /// The options of an optimization run (which has no device flags of its own but these).
    pub fn for_run(ssh_config: Option<PathBuf>, remote_dir: Option<String>, timeout: u64) -> Self {
        ConnectionOpts {
            runtime: None,
            runtime_target: None,
            exec_prefix: None,
            remote_dir: remote_dir.unwrap_or_else(|| ".sintra".into()),
            ssh_config,
            ssh_options: Vec::new(),
            timeout,
            connect_timeout: 10,
            json: false,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Deploy the runtime, shake hands, probe memory bandwidth (and, with --model, load and
    /// benchmark a model briefly).
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// `user@host[:port]`, an ssh alias, `local`, `tcp://HOST:PORT` or a profile YAML (or
    /// --fleet INVENTORY instead).
    #[arg(required_unless_present = "fleet", conflicts_with = "fleet")]
    pub target: Option<String>,
    /// Also deploy this model, load it and run a short benchmark (pp32, tg16).
    #[arg(long, value_name = "GGUF")]
    pub model: Option<PathBuf>,
    /// Size of the memory bandwidth probe's buffer, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub probe_mib: u64,
    #[command(flatten)]
    pub conn: ConnectionOpts,
    #[command(flatten)]
    pub fleet: super::fleet::FleetOpts,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The GGUF model to benchmark.
    pub model: PathBuf,
    /// Where: `user@host[:port]`, an ssh alias, `local`, `tcp://HOST:PORT` or a profile YAML
    /// (or --fleet INVENTORY: every host of an inventory).
    #[arg(
        long,
        value_name = "TARGET",
        default_value = "local",
        conflicts_with = "fleet"
    )]
    pub device: String,
    /// Prompt-processing test length (llama-bench's -p); 0 skips it.
    #[arg(short = 'p', long, default_value_t = 512)]
    pub n_prompt: u32,
    /// Generation test length (llama-bench's -n); 0 skips it.
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: u32,
    /// Threads (0: all cores of the device).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: u32,
    /// Repetitions.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: u32,
    /// Also measure perplexity on this text (sent to the device, tokenized there).
    #[arg(long, value_name = "TEXT")]
    pub ppl_file: Option<PathBuf>,
    /// Perplexity window (context) size.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub ppl_ctx: u32,
    /// Evaluate at most this many windows; the text sent is then cut to what they need (8
    /// bytes per token), so a device does not tokenize a whole book for a short check.
    #[arg(long, value_name = "K")]
    pub ppl_chunks: Option<u32>,
    #[command(flatten)]
    pub conn: ConnectionOpts,
    #[command(flatten)]
    pub fleet: super::fleet::FleetOpts,
}

impl BenchArgs {
    /// The benchmark the flags ask for.
    pub(super) fn request(&self) -> BenchRequest {
        BenchRequest {
            n_prompt: self.n_prompt,
            n_gen: self.n_gen,
            threads: self.threads,
            repetitions: self.repetitions.max(1),
            kv_f32: false,
        }
    }
}

/// Where a device is and how to start its runtime: from the command line's TARGET, or from a
/// hardware profile's `connection` (parsed once, with the rest of the profile, by
/// [`crate::profile::Profile`]).
#[derive(Debug, Clone, Default)]
struct ConnectionSection {
    /// Host name, ssh alias, `local` or `tcp://HOST:PORT`.
    host: String,
    user: Option<String>,
    port: Option<u16>,
    exec_prefix: Option<String>,
    runtime_target: Option<String>,
}

impl From<&crate::profile::Connection> for ConnectionSection {
    fn from(c: &crate::profile::Connection) -> Self {
        ConnectionSection {
            host: c.host.clone(),
            user: c.user.clone(),
            // 22 is the profile's default and ssh's: leave it to ssh, so that an ssh config's
            // `Port` for the host applies.
            port: (c.port != 22).then_some(c.port),
            exec_prefix: c.exec_prefix.clone(),
            runtime_target: Some(c.runtime_target.clone()),
        }
    }
}

/// Split `[user@]host[:port]`.
fn parse_host(s: &str) -> anyhow::Result<(Option<String>, String, Option<u16>)> {
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, s),
    };
    let (host, port) = match rest.rsplit_once(':') {
        // One colon: host:port. More: an IPv6 address (use an ssh alias to give it a port).
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse::<u16>()
                .with_context(|| format!("port '{p}' in device '{s}' is not a number 0-65535"))?;
            (h.to_string(), Some(port))
        }
        _ => (rest.to_string(), None),
    };
    if host.is_empty() || user.as_deref() == Some("") {
        bail!("device '{s}' is not [user@]host[:port]");
    }
    if host.starts_with('-') {
        bail!("device '{s}' starts with '-': not a host name");
    }
    Ok((user, host, port))
}

/// Turn TARGET and the options into a device.
pub fn device_spec(target: &str, o: &ConnectionOpts) -> anyhow::Result<DeviceSpec> {
    let path = Path::new(target);
    let is_profile = path.is_file()
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
    let section = if is_profile {
        let p = crate::profile::Profile::load(target)?;
        let c = p.connection.as_ref().with_context(|| {
            format!(
                "{target}: no `connection` section (host, user, port, exec_prefix, runtime_target)"
            )
        })?;
        ConnectionSection::from(c)
    } else {
        let (user, host, port) = if target == "local" || target.starts_with("tcp://") {
            (None, target.to_string(), None)
        } else {
            parse_host(target)?
        };
        ConnectionSection {
            host,
            user,
            port,
            ..Default::default()
        }
    };
    spec_from_section(section, o)
}

/// A connection section (from a profile or the command line) and the options, as a device.
/// Command-line options win over the section.
fn spec_from_section(section: ConnectionSection, o: &ConnectionOpts) -> anyhow::Result<DeviceSpec> {
    let exec_prefix = o.exec_prefix.clone().or(section.exec_prefix);
    let runtime_target = o.runtime_target.clone().or(section.runtime_target);
    let transport = if section.host == "local" {
        Transport::Local { exec_prefix }
    } else if let Some(addr) = section.host.strip_prefix("tcp://") {
        Transport::Tcp {
            addr: addr.to_string(),
        }
    } else {
        Transport::Ssh(SshTarget {
            host: section.host,
            user: section.user,
            port: section.port,
            exec_prefix,
            config_file: o.ssh_config.clone(),
            options: o.ssh_options.clone(),
            remote_dir: o.remote_dir.clone(),
            connect_timeout: Duration::from_secs(o.connect_timeout),
        })
    };
    Ok(DeviceSpec {
        transport,
        runtime_target,
        runtime: o.runtime.clone(),
        timeout: Duration::from_secs(o.timeout.max(1)),
    })
}

/// The device a hardware profile's `connection` names (what the optimizer benchmarks on), with
/// the command line's defaults, an ssh config file and remote directory if given, and
/// `timeout` seconds of silence allowed per call.
pub fn spec_for_profile(
    c: &crate::profile::Connection,
    ssh_config: Option<PathBuf>,
    remote_dir: Option<String>,
    timeout: u64,
) -> anyhow::Result<DeviceSpec> {
    let section = ConnectionSection::from(c);
    let opts = ConnectionOpts::for_run(ssh_config, remote_dir, timeout);
    spec_from_section(section, &opts)
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn hello_rows(spec: &DeviceSpec, h: &Hello) -> Vec<(&'static str, String)> {
    vec![
        (
            "device",
            format!("{} ({})", spec.name(), spec.transport_name()),
        ),
        (
            "runtime",
            format!(
                "sintra-rt {}, wire protocol {}",
                h.runtime_version, h.protocol_version
            ),
        ),
        ("target", h.target.clone()),
        ("cpu", or_unknown(&h.cpu_model)),
        ("kernel", or_unknown(&h.kernel)),
        ("kernels", h.isa.clone()),
        ("gpu", crate::device::gpu_summary(h.gpu.as_ref())),
        ("cpu features", h.cpu_features.join(" ")),
        ("cores", h.cores.to_string()),
        (
            "ram",
            format!(
                "{} total, {} available",
                gib(h.total_ram_bytes),
                gib(h.available_ram_bytes)
            ),
        ),
    ]
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "(not reported)".into()
    } else {
        s.to_string()
    }
}

fn deploy_row(s: &Session) -> Option<(&'static str, String)> {
    let d = s.deploy.as_ref()?;
    let text = if d.uploaded.is_empty() {
        format!("up to date ({})", d.unchanged.join(", "))
    } else {
        format!(
            "uploaded {} ({:.1} MiB in {:.1} s){}",
            d.uploaded.join(", "),
            d.bytes_uploaded as f64 / (1 << 20) as f64,
            d.seconds,
            if d.unchanged.is_empty() {
                String::new()
            } else {
                format!("; up to date: {}", d.unchanged.join(", "))
            }
        )
    };
    Some(("deploy", text))
}

fn memory_row(m: &MemoryBandwidth) -> (&'static str, String) {
    (
        "memory bandwidth",
        format!(
            "read {:.2} GB/s, write {:.2} GB/s ({} MiB, {} threads)",
            m.read_gb_s,
            m.write_gb_s,
            m.bytes >> 20,
            m.threads
        ),
    )
}

fn print_rows(rows: &[(&str, String)]) {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$}  {v}");
    }
}

/// The runtime's progress on stderr (with `--json` too: stdout holds only the result, and an
/// MCP client or a log still sees each repetition go by).
fn progress_printer() -> impl FnMut(&Progress) {
    move |p: &Progress| eprintln!("  [{}/{}] {}", p.done, p.total, p.note)
}

fn bench_table(model: &formats::wire::ModelInfo, b: &formats::wire::BenchResult) {
    let name = Path::new(&model.path)
        .file_name()
        .map_or(model.path.clone(), |n| n.to_string_lossy().into_owned());
    println!("| model | size | params | isa | threads | test | t/s |");
    println!("| ----- | ---: | -----: | --- | ------: | ---: | --: |");
    for run in &b.runs {
        let (m, s) = run.mean_std();
        let test = if run.n_prompt > 0 {
            format!("pp{}", run.n_prompt)
        } else {
            format!("tg{}", run.n_gen)
        };
        println!(
            "| {name} | {:.2} MiB | {:.2} M | {} | {} | {test} | {m:.2} ± {s:.2} |",
            model.tensor_bytes as f64 / (1 << 20) as f64,
            model.n_params as f64 / 1e6,
            b.isa,
            b.threads
        );
    }
    println!(
        "\nload {:.1} ms, peak RSS {:.1} MiB",
        model.load_ms,
        b.peak_rss_bytes as f64 / (1 << 20) as f64
    );
}

/// The short benchmark of `device check --model`: pp32 and tg16, once, on every core.
pub(super) fn check_bench() -> BenchRequest {
    BenchRequest {
        n_prompt: 32,
        n_gen: 16,
        threads: 0,
        repetitions: 1,
        kv_f32: false,
    }
}

/// `sintra device check`.
pub fn check(a: &CheckArgs) -> anyhow::Result<()> {
    let target = match (&a.fleet.fleet, &a.target) {
        (Some(inventory), _) => return super::fleet::check(a, inventory),
        (None, Some(t)) => t,
        (None, None) => bail!("name a device (TARGET) or a fleet (--fleet INVENTORY)"),
    };
    let spec = device_spec(target, &a.conn)?;
    let json = a.conn.json;
    let mut s = Session::open(&spec, a.model.as_deref())?;
    let mem = s.probe_memory(a.probe_mib << 20, 0)?;
    let mut model = None;
    let mut bench = None;
    if a.model.is_some() {
        let m = s.load_model()?;
        bench = Some(s.bench(check_bench(), progress_printer())?);
        model = Some(m);
    }
    if json {
        let v = serde_json::json!({
            "device": spec.name(),
            "transport": spec.transport_name(),
            "hello": s.hello,
            "runtime": s.runtime,
            "deploy": s.deploy,
            "memory": mem,
            "model": model,
            "bench": bench,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut rows = hello_rows(&spec, &s.hello);
        rows.extend(deploy_row(&s));
        rows.push(memory_row(&mem));
        print_rows(&rows);
        if let (Some(m), Some(b)) = (&model, &bench) {
            println!();
            bench_table(m, b);
        }
    }
    s.shutdown()?;
    Ok(())
}

/// `sintra bench --device`.
pub fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    if let Some(inventory) = &a.fleet.fleet {
        return super::fleet::bench(a, inventory);
    }
    let spec = device_spec(&a.device, &a.conn)?;
    let json = a.conn.json;
    let text = match &a.ppl_file {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            Some(match a.ppl_chunks {
                Some(k) => text_for_windows(&t, a.ppl_ctx, k).to_string(),
                None => t,
            })
        }
        None => None,
    };
    let mut s = Session::open(&spec, Some(&a.model))?;
    let model = s.load_model()?;
    let mut bench = None;
    if a.n_prompt > 0 || a.n_gen > 0 {
        bench = Some(s.bench(a.request(), progress_printer())?);
    }
    let mut ppl = None;
    if let Some(text) = text {
        let req = PerplexityRequest {
            text,
            n_ctx: a.ppl_ctx,
            max_chunks: a.ppl_chunks,
            threads: a.threads,
            logits: LogitsMode::None,
        };
        let r = s.perplexity(req, progress_printer())?;
        if let Some(k) = a.ppl_chunks {
            if r.n_chunks < k {
                bail!(
                    "the text gave {} windows of {} tokens, fewer than the {k} asked for",
                    r.n_chunks,
                    a.ppl_ctx
                );
            }
        }
        ppl = Some(r);
    }
    if json {
        let v = serde_json::json!({
            "device": spec.name(),
            "transport": spec.transport_name(),
            "hello": s.hello,
            "runtime": s.runtime,
            "deploy": s.deploy,
            "model": model,
            "bench": bench,
            "perplexity": ppl,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut rows = hello_rows(&spec, &s.hello);
        rows.extend(deploy_row(&s));
        print_rows(&rows);
        println!();
        if let Some(b) = &bench {
            bench_table(&model, b);
        }
        if let Some(p) = &ppl {
            println!(
                "perplexity: PPL = {:.4} +/- {:.5} over {} tokens ({} windows of {}, {} scored) in {:.1} s",
                p.ppl, p.ppl_err, p.n_tokens, p.n_chunks, a.ppl_ctx, p.n_scored, p.seconds
            );
        }
    }
    s.shutdown()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_row_names_the_gpu_or_why_it_is_not_used() {
        assert_eq!(
            crate::device::gpu_summary(None),
            "none (a runtime built without GPU support)"
        );
        let mut g = formats::wire::Gpu {
            backend: "cuda".into(),
            name: "Orin".into(),
            compute_capability: "8.7".into(),
            memory_bytes: 7 << 30,
            used: true,
            note: "PTX compute_87".into(),
        };
        assert_eq!(
            crate::device::gpu_summary(Some(&g)),
            "Orin (cuda, compute capability 8.7, 7.0 GiB; PTX compute_87)"
        );
        g.used = false;
        g.note = "no NVIDIA driver (libcuda.so.1 could not be loaded)".into();
        assert_eq!(
            crate::device::gpu_summary(Some(&g)),
            "not used (no NVIDIA driver (libcuda.so.1 could not be loaded)): models run on the CPU"
        );
    }

    #[test]
    fn hosts_parse() {
        let p = |s| parse_host(s).unwrap();
        assert_eq!(
            p("pi@raspberrypi.local"),
            (Some("pi".into()), "raspberrypi.local".into(), None)
        );
        assert_eq!(p("box:2222"), (None, "box".into(), Some(2222)));
        assert_eq!(
            p("u@10.0.0.2:22"),
            (Some("u".into()), "10.0.0.2".into(), Some(22))
        );
        assert_eq!(p("fe80::1"), (None, "fe80::1".into(), None));
        for bad in ["", "@host", "host:99999", "host:x", "-oProxyCommand=x"] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_connection_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pi.yaml");
        let target = path.to_str().unwrap();
        let opts = || ConnectionOpts {
            runtime: None,
            runtime_target: None,
            exec_prefix: None,
            remote_dir: ".sintra".into(),
            ssh_config: None,
            ssh_options: Vec::new(),
            timeout: 30,
            connect_timeout: 10,
            json: false,
        };
        std::fs::write(
            &path,
            "name: pi4\nconstraints: {cpu_arch: arm64, ram_gb: 4}\nconnection:\n  host: raspberrypi.local\n  user: pi\n  port: 2222\n  exec_prefix: nice -n -5\n  runtime_target: aarch64-unknown-linux-musl\n",
        )
        .unwrap();
        let spec = device_spec(target, &opts()).unwrap();
        let Transport::Ssh(ssh) = &spec.transport else {
            panic!("not ssh: {spec:?}")
        };
        assert_eq!(ssh.host, "raspberrypi.local");
        assert_eq!(ssh.user.as_deref(), Some("pi"));
        assert_eq!(ssh.port, Some(2222));
        assert_eq!(ssh.exec_prefix.as_deref(), Some("nice -n -5"));
        assert_eq!(
            spec.runtime_target.as_deref(),
            Some("aarch64-unknown-linux-musl")
        );
        std::fs::write(
            &path,
            "name: x\nconstraints: {cpu_arch: arm64, ram_gb: 4}\nconnection:\n  host: x\n  prot: 22\n",
        )
        .unwrap();
        let e = device_spec(target, &opts()).unwrap_err();
        assert!(format!("{e:#}").contains("prot"), "{e:#}");
        std::fs::write(
            &path,
            "name: x\nconstraints: {cpu_arch: arm64, ram_gb: 4}\n",
        )
        .unwrap();
        let e = device_spec(target, &opts()).unwrap_err();
        assert!(
            format!("{e:#}").contains("no `connection` section"),
            "{e:#}"
        );
    }
}
