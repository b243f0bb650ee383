//! Fleet scale (issue #18): `sintra device check --fleet` over 8, 16, 32 and 64 simulated
//! devices with at most 8 sessions at a time. Each device is the static x86-64 runtime behind
//! the transport real devices use: ssh to an address of its own (127.0.1.N; one real OpenSSH
//! server per 16 of them, as sshd listens on at most 16 addresses), the runtime deployed by scp
//! into a directory of its own, a handshake and a memory-bandwidth probe. Prints the wall time
//! against devices / sessions (it should grow linearly) and the planner's peak resident memory
//! (it should stay flat). `cargo build --release -p planner && cargo run --release -p
//! sintra-benches --bin fleet-scale [-- JOBS]`. Needs openssh-server and root (as the tests do).

use anyhow::{bail, Context, Result};
use sintra_tests::Sshd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map_or(Ok(8), |j| j.parse())
        .context("JOBS")?;
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("the bench's directory")?;
    let sintra = bin_dir.join("sintra");
    if !sintra.is_file() {
        bail!("build sintra first: cargo build --release -p planner");
    }
    let target_dir = bin_dir.parent().context("the target directory")?;
    let triple = "x86_64-unknown-linux-musl";
    sintra_tests::cross_build(&["--no-budget", triple], target_dir).map_err(anyhow::Error::msg)?;
    let runtime = target_dir.join(triple).join("dist").join("sintra-rt");
    println!("machine: {}", sintra_tests::machine());
    let most = 64;
    let addrs: Vec<String> = (1..=most).map(|i| format!("127.0.1.{i}")).collect();
    // sshd listens on at most 16 addresses: one server per 16 devices.
    let sshds: Vec<Sshd> = addrs
        .chunks(16)
        .map(|c| Sshd::start_on(&c.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let dir = tempfile::tempdir()?;
    let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?;
    println!("\n| devices | sessions at once | wall s | wall s per round of {jobs} | planner peak RSS MiB | all ok |");
    println!("| ---: | ---: | ---: | ---: | ---: | --- |");
    for n in [8, 16, 32, 64] {
        let inv = dir.path().join(format!("fleet{n}.ini"));
        let hosts: String = addrs
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, a)| {
                let remote = dir.path().join(format!("dev{n}-{i}"));
                let sshd = &sshds[i / 16];
                format!(
                    "dev{i:02} ansible_host={a} ansible_port={} ansible_ssh_private_key_file={} sintra_remote_dir={}\n",
                    sshd.port,
                    sshd.user_key().display(),
                    remote.display()
                )
            })
            .collect();
        let text = format!(
            "[sim]\n{hosts}\n[sim:vars]\nansible_user={}\n\
             ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes'\n\
             sintra_runtime_target={triple}\nsintra_runtime={}\n",
            user.trim(),
            runtime.display()
        );
        std::fs::write(&inv, text)?;
        let (wall, rss, ok) = run(&sintra, &inv, jobs)?;
        let rounds = n.div_ceil(jobs) as f64;
        println!(
            "| {n} | {jobs} | {wall:.1} | {:.2} | {:.1} | {} |",
            wall / rounds,
            rss as f64 / (1 << 20) as f64,
            if ok { "yes" } else { "NO" }
        );
    }
    Ok(())
}

/// One `sintra device check --fleet`: wall seconds, peak RSS bytes (VmHWM, read while it
/// runs), whether every host answered.
fn run(sintra: &Path, inv: &PathBuf, jobs: usize) -> Result<(f64, u64, bool)> {
    let t = Instant::now();
    let mut child = Command::new(sintra)
        .args(["device", "check", "--fleet"])
        .arg(inv)
        .args(["--jobs", &jobs.to_string(), "--probe-mib", "8", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let mut hwm = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
            {
                hwm = hwm.max(kb * 1024);
            }
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t.elapsed().as_secs_f64();
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let v: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("no JSON: {out}"))?;
    let ok = v["hosts"]
        .as_array()
        .is_some_and(|h| h.iter().all(|h| h["status"] == "ok"));
    Ok((wall, hwm, ok))
}
