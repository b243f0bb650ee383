//! Fleets end to end (issue #18): the real `sintra bench --fleet` over an Ansible inventory of
//! six devices with their own addresses, reached through real OpenSSH servers on loopback
//! addresses: an x86-64 device, the aarch64 runtime under qemu, a device held to one core
//! (`taskset`), one whose sshd is killed while it benchmarks, one that accepts TCP but never
//! speaks ssh, and one where nothing listens. The run must finish, the lost and unreachable
//! hosts must be reported as such, the others must have results, and nothing may wait past
//! its timeout.

use sintra_tests::{dist_runtime, release_bin_path, Sshd};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AARCH64: &str = "aarch64-unknown-linux-musl";
const X86_64: &str = "x86_64-unknown-linux-musl";

#[test]
fn a_fleet_run_finishes_with_lost_and_unreachable_hosts_reported() {
    let _loading = sintra_tests::loading_lock();
    let (arm_rt, x86_rt) = (dist_runtime(AARCH64), dist_runtime(X86_64));
    let model = sintra_tests::qemu_device_model();
    let sintra = release_bin_path("planner", "sintra");
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
        .env("SINTRA_HOME", dir.path().join("home"))
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
    // Issue #18's history: each device that answered, by host and hardware fingerprint (the
    // runtime's handshake: CPU model, cores, RAM, kernel, target, kernels), and a row for
    // every host — figures, or why there are none.
    let out = Command::new(&sintra)
        .args(["history", "--fleet"])
        .env("SINTRA_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{history}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |host: &str| {
        history
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("{host}:\n{history}"))
    };
    assert!(line("qemu-arm").contains(AARCH64), "{history}");
    let fingerprint = |host: &str| line(host).split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(fingerprint("x86-box").len(), 16, "{history}");
    // The same machine held to one core is another device.
    assert_ne!(fingerprint("x86-box"), fingerprint("one-core"), "{history}");
    let cpu = runtime::sysinfo::cpu_model();
    assert!(line("x86-box").contains(&cpu), "{cpu:?}: {history}");
    let (_, comparisons) = history.split_once("comparisons").unwrap();
    assert!(comparisons.contains("(sintra bench --fleet)"), "{history}");
    for ok in ["x86-box", "one-core", "qemu-arm"] {
        assert!(
            comparisons
                .lines()
                .any(|l| l.trim_start().starts_with(ok) && l.contains("tok/s")),
            "{ok}: {history}"
        );
    }
    for (host, status) in [
        ("doomed", "lost"),
        ("silent", "unreachable"),
        ("refused", "unreachable"),
    ] {
        assert!(
            comparisons
                .lines()
                .any(|l| l.trim_start().starts_with(host) && l.contains(status)),
            "{host}: {history}"
        );
    }
    eprintln!(
        "fleet of 6 in {:.1} s (the doomed device killed at {killed_at:?})",
        wall.as_secs_f64()
    );
    drop(silent);
}

/// `sintra --fleet` (issue #18): the optimizer with quality scored once on this host and each
/// candidate's speed measured on every device: one reached directly, one over real ssh held to
/// one core, one whose ssh server is not up yet. The run goes on without the missing device
/// and marks it; every candidate is judged on its slowest device and each device class gets
/// its best recipe. Then the device's sshd comes up (a new port: the inventory is edited) and
/// `--resume` measures what the first candidate lacks there before it goes on. Nothing held
/// here depends on the speeds measured (no speed target; which device is slowest decides
/// nothing asserted), so it runs beside the other tests that load the machine.
#[test]
fn a_fleet_optimizer_run_marks_the_missing_device_and_resume_measures_it() {
    let _loading = sintra_tests::loading_lock();
    let x86_rt = dist_runtime(X86_64);
    let sshd = Sshd::start_on(&["127.0.0.12"]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let inventory = |late_port: u16, late_key: &str| {
        format!(
            "[here]
box ansible_connection=local sintra_class=direct

[ssh]
one-core ansible_host=127.0.0.12 ansible_port={port} ansible_ssh_private_key_file={key} sintra_exec_prefix=\"taskset -c 0\" sintra_class=one-core sintra_remote_dir={r1}
late ansible_host=127.0.0.13 ansible_port={late_port} ansible_ssh_private_key_file={late_key} sintra_class=one-core sintra_remote_dir={r2}

[ssh:vars]
ansible_user={user}
ansible_ssh_common_args=\"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes\"
sintra_connect_timeout=3
sintra_runtime_target={X86_64}
sintra_runtime={rt}
",
            user = user.trim(),
            port = sshd.port,
            key = sshd.user_key().display(),
            rt = x86_rt.display(),
            r1 = dir.path().join("one-core").display(),
            r2 = dir.path().join("late").display(),
        )
    };
    let inv = dir.path().join("fleet.ini");
    // Nothing listens on 127.0.0.13 yet.
    std::fs::write(&inv, inventory(9, "/nonexistent-key")).unwrap();
    let t0 = Instant::now();
    let out = sintra(&[
        "--fleet",
        inv.to_str().unwrap(),
        "--max-iters",
        "1",
        "--no-sensitivity",
        "--output-dir",
        "out",
        "--target-accuracy",
        "0.5",
    ])
    .output()
    .unwrap();
    let first = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{first}\n{err}");
    eprintln!("{first}\n(first run: {:.0} s)", t0.elapsed().as_secs_f64());
    assert!(
        first.contains("device late dropped out (unreachable at connect"),
        "{first}"
    );
    assert!(first.contains("on fleet:fleet"), "{first}");
    for host in ["box", "one-core"] {
        assert!(first.contains(&format!("original on {host} (")), "{first}");
    }
    // Judged on the slowest device, and the best of each class named.
    assert!(
        first.contains("the slowest of the fleet's 2 devices"),
        "{first}"
    );
    assert!(first.contains("best per device class"), "{first}");
    for class in ["direct", "one-core"] {
        assert!(
            first
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{class}: #1 "))),
            "{class}: {first}"
        );
    }
    assert!(
        first.contains("devices that dropped out: late (unreachable"),
        "{first}"
    );
    // The checkpoint keeps every device's part, the missing one's reason included.
    let run = first
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split(':').next())
        .unwrap()
        .to_string();
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("checkpoints").join(format!("{run}.json"))).unwrap(),
    )
    .unwrap();
    let fleet = cp["experiments"][0]["fleet"].as_array().unwrap();
    let status = |f: &[serde_json::Value], host: &str| {
        f.iter()
            .find(|d| d["host"] == host)
            .map(|d| d["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status(fleet, "box").as_deref(), Some("ok"), "{fleet:?}");
    assert_eq!(status(fleet, "one-core").as_deref(), Some("ok"));
    assert_eq!(status(fleet, "late").as_deref(), Some("unreachable"));
    let one_core = fleet.iter().find(|d| d["host"] == "one-core").unwrap();
    assert_eq!(one_core["hardware"]["cores"], 1, "{one_core}");

    // The device comes up; the inventory says where.
    let late = Sshd::start_on(&["127.0.0.13"]);
    std::fs::write(
        &inv,
        inventory(late.port, &late.user_key().display().to_string()),
    )
    .unwrap();
    let t1 = Instant::now();
    let out = sintra(&["--resume", &run, "--max-iters", "2"])
        .output()
        .unwrap();
    let second = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{second}\n{err}");
    eprintln!("{second}\n(resumed: {:.0} s)", t1.elapsed().as_secs_f64());
    assert!(
        second.contains("#1 ") && second.contains("measured on 1 more device(s)"),
        "{second}"
    );
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("checkpoints").join(format!("{run}.json"))).unwrap(),
    )
    .unwrap();
    for e in cp["experiments"].as_array().unwrap() {
        let f = e["fleet"].as_array().unwrap();
        for host in ["box", "one-core", "late"] {
            assert_eq!(status(f, host).as_deref(), Some("ok"), "{host}: {e:#}");
        }
    }
    assert!(!second.contains("dropped out"), "{second}");

    // The history holds each device by fingerprint and every figure, the late device's
    // failure and its later figure both.
    let out = sintra(&["history", "--fleet", "--run", &run])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{history}");
    let late_rows: Vec<&str> = history
        .lines()
        .filter(|l| l.trim_start().starts_with("late"))
        .collect();
    assert!(late_rows.iter().any(|l| l.contains("tok/s")), "{history}");
    assert!(
        history.contains("#1 ") && history.contains("#2 ") && history.contains("the original"),
        "{history}"
    );
}
