//! Fleets end to end (issue #18): the real `sintra bench --fleet` over an Ansible inventory of
//! six devices with their own addresses, reached through real OpenSSH servers on loopback
//! addresses: an x86-64 device, the aarch64 runtime under qemu, a device held to one core
//! (`taskset`), one whose sshd is killed while it benchmarks, one that accepts TCP but never
//! speaks ssh, and one where nothing listens. The run must finish, the lost and unreachable
//! hosts must be reported as such, the others must have results, and nothing may wait past
//! its timeout.

use sintra_tests::{bin_path, dist_runtime, smollm2_q4_1, Sshd};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AARCH64: &str = "aarch64-unknown-linux-musl";
const X86_64: &str = "x86_64-unknown-linux-musl";

#[test]
fn a_fleet_run_finishes_with_lost_and_unreachable_hosts_reported() {
    let _alone = sintra_tests::measuring_lock();
    let (arm_rt, x86_rt) = (dist_runtime(AARCH64), dist_runtime(X86_64));
    let model = smollm2_q4_1();
    let sintra = bin_path("planner", "sintra");
    // Three devices behind one sshd (each its own address), one behind an sshd of its own.
    let sshd = Sshd::start_on(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let mut doomed = Sshd::start_on(&["127.0.0.5"]);
    // Accepts TCP connections (the kernel's backlog) and never says a word.
    let silent = TcpListener::bind("127.0.0.6:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let remote = |name: &str| dir.path().join(name).display().to_string();
    let ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes";
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let inventory = format!(
        "all:
  vars:
    ansible_user: {user}
    ansible_ssh_common_args: {ssh_args}
    sintra_connect_timeout: 3
  children:
    x86:
      vars:
        ansible_ssh_private_key_file: {key}
        ansible_port: {port}
        sintra_runtime_target: {X86_64}
        sintra_runtime: {x86_rt}
      hosts:
        x86-box:
          ansible_host: 127.0.0.2
          sintra_remote_dir: {r1}
        one-core:
          ansible_host: 127.0.0.4
          sintra_exec_prefix: taskset -c 0
          sintra_remote_dir: {r3}
          sintra_class: one-core
        doomed:
          ansible_host: 127.0.0.5
          ansible_port: {doomed_port}
          ansible_ssh_private_key_file: {doomed_key}
          sintra_remote_dir: {r4}
    arm:
      hosts:
        qemu-arm:
          ansible_host: 127.0.0.3
          ansible_port: {port}
          ansible_ssh_private_key_file: {key}
          sintra_runtime_target: {AARCH64}
          sintra_runtime: {arm_rt}
          sintra_exec_prefix: qemu-aarch64-static
          sintra_remote_dir: {r2}
    gone:
      vars:
        sintra_runtime_target: {X86_64}
        sintra_runtime: {x86_rt}
      hosts:
        silent:
          ansible_host: 127.0.0.6
          ansible_port: {silent_port}
        refused:
          ansible_host: 127.0.0.7
          ansible_port: 9
",
        user = user.trim(),
        key = sshd.user_key().display(),
        port = sshd.port,
        doomed_key = doomed.user_key().display(),
        doomed_port = doomed.port,
        x86_rt = x86_rt.display(),
        arm_rt = arm_rt.display(),
        r1 = remote("x86-box"),
        r2 = remote("qemu-arm"),
        r3 = remote("one-core"),
        r4 = remote("doomed"),
    );
    let inv = dir.path().join("fleet.yml");
    std::fs::write(&inv, inventory).unwrap();

    let t0 = Instant::now();
    let mut child = Command::new(&sintra)
        .arg("bench")
        .arg(&model)
        .arg("--fleet")
        .arg(&inv)
        .args([
            "--jobs", "4", "-p", "32", "-n", "16", "-r", "3", "-t", "1", "--json",
        ])
        .args(["--timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Live progress: one line per stage and host (stderr is not a terminal here). The doomed
    // device's sshd and sessions are killed at its first benchmark repetition.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut killed_at = None;
    let limit = Duration::from_secs(900);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if killed_at.is_none()
                    && line.starts_with("  doomed: ")
                    && line.contains("repetition")
                {
                    doomed.kill_all();
                    killed_at = Some(t0.elapsed());
                }
                log.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "the fleet run did not finish in {limit:?}:\n{}",
                log.join("\n")
            );
        }
    }
    reader.join().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let wall = t0.elapsed();
    let log = log.join("\n");
    assert!(
        killed_at.is_some(),
        "the doomed device never reached its benchmark:\n{log}"
    );
    // Some hosts have no result: the exit status says so, after the whole report.
    assert!(!status.success(), "{log}");
    assert!(log.contains("3 of 6 hosts have no result"), "{log}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}\n{log}"));
    let hosts = v["hosts"].as_array().unwrap();
    let host = |name: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("{name}: {v:#}"))
    };
    let status_of = |name: &str| host(name)["status"].as_str().unwrap().to_string();
    for ok in ["x86-box", "one-core", "qemu-arm"] {
        assert_eq!(status_of(ok), "ok", "{ok}: {:#}\n{log}", host(ok));
        let runs = host(ok)["result"]["bench"]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{ok}");
        for r in runs {
            let samples = r["samples_tok_s"].as_array().unwrap();
            assert_eq!(samples.len(), 3);
            assert!(
                samples.iter().all(|s| s.as_f64().unwrap() > 0.0),
                "{ok}: {r}"
            );
        }
    }
    let arm = &host("qemu-arm")["result"]["hello"];
    assert_eq!(arm["target"], AARCH64, "{arm}");
    assert_eq!(host("one-core")["result"]["hello"]["cores"], 1);
    assert_eq!(host("one-core")["class"], "one-core");
    assert_eq!(host("x86-box")["class"], X86_64);
    assert_eq!(status_of("doomed"), "lost", "{:#}\n{log}", host("doomed"));
    assert_eq!(host("doomed")["stage"], "bench");
    for gone in ["silent", "refused"] {
        assert_eq!(status_of(gone), "unreachable", "{gone}: {:#}", host(gone));
        assert_eq!(host(gone)["stage"], "connect");
        // ssh's connect timeout (3 s) bounds both, with room for a loaded machine.
        let s = host(gone)["seconds"].as_f64().unwrap();
        assert!(s < 30.0, "{gone} took {s:.1} s");
    }
    assert!(
        host("refused")["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{:#}",
        host("refused")
    );
    eprintln!(
        "fleet of 6 in {:.1} s (the doomed device killed at {killed_at:?})",
        wall.as_secs_f64()
    );
    drop(silent);
}
