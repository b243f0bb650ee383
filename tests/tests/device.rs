//! The device channel end to end: a real OpenSSH server on 127.0.0.1 (throwaway host and user
//! keys, its own config and port), the static **aarch64** runtime deployed over scp by the real
//! `sintra` and driven over ssh under `qemu-aarch64-static` (the exec prefix), compared with the
//! x86-64 runtime on this host; then the failure modes: a runtime killed mid-benchmark, a
//! malformed frame, another protocol version, a silent runtime.
//!
//! Needs `/usr/sbin/sshd`, `ssh`, `scp`, `ssh-keygen` (openssh-server) and `qemu-aarch64-static`
//! (scripts/setup.sh installs them), and permission to start sshd (root, as in CI).

use formats::wire::{self, ErrorKind, Request, Response, PROTOCOL_VERSION};
use sintra_tests::sshd::run_ok;
use sintra_tests::Sshd;
use sintra_tests::{data_file, dist_runtime, release_bin_path, smollm2_q4_1};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AARCH64: &str = "aarch64-unknown-linux-musl";
const X86_64: &str = "x86_64-unknown-linux-musl";

/// The flags that reach the test sshd's aarch64 "device".
fn device_args(sshd: &Sshd, remote: &Path, runtime: &Path) -> Vec<String> {
    vec![
        "--ssh-config".into(),
        sshd.ssh_config().display().to_string(),
        "--runtime-target".into(),
        AARCH64.into(),
        "--runtime".into(),
        runtime.display().to_string(),
        "--exec-prefix".into(),
        "qemu-aarch64-static".into(),
        "--remote-dir".into(),
        remote.display().to_string(),
    ]
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "sintra failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sintra printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The ISA the aarch64 binary reports for `--version` under qemu: the handshake must agree.
fn aarch64_version_isa(runtime: &Path) -> String {
    let out = run_ok(
        Command::new("qemu-aarch64-static")
            .arg(runtime)
            .arg("--version")
            .env_remove("SINTRA_KERNELS"),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The first line names the target and kernels; the second the GPU.
    let line = text.lines().next().unwrap_or_default();
    assert!(line.contains(AARCH64), "{text}");
    line.trim()
        .rsplit_once("kernels: ")
        .and_then(|(_, isa)| isa.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no 'kernels: ISA' in {line}"))
        .to_string()
}

/// Perplexity over 1,000 tokens of eval.txt: 4 windows of 250.
const PPL_ARGS: [&str; 6] = ["--ppl-ctx", "250", "--ppl-chunks", "4", "-t", "2"];

#[test]
fn ssh_aarch64_runtime_deploys_benchmarks_and_matches_host_perplexity() {
    let _loading = sintra_tests::loading_lock();
    let t_all = Instant::now();
    let aarch64 = dist_runtime(AARCH64);
    let x86 = dist_runtime(X86_64);
    let model = sintra_tests::qemu_device_model();
    let eval = data_file("eval.txt");
    let isa = aarch64_version_isa(&aarch64);
    let sshd = Sshd::start();
    let remote = sshd.remote_dir("device");
    let args = device_args(&sshd, &remote, &aarch64);
    let sintra = release_bin_path("planner", "sintra");

    // 1. device check: deploys the runtime only, handshake, memory probe.
    let t = Instant::now();
    let out = Command::new(&sintra)
        .args([
            "device",
            "check",
            "sintra-test",
            "--probe-mib",
            "16",
            "--json",
        ])
        .args(&args)
        .output()
        .unwrap();
    let check = json_of(&out);
    eprintln!("device check: {:.1} s", t.elapsed().as_secs_f64());
    let hello = &check["hello"];
    assert_eq!(hello["target"], AARCH64, "{check}");
    assert_eq!(
        hello["isa"],
        isa.as_str(),
        "handshake vs --version: {check}"
    );
    assert_eq!(hello["protocol_version"], PROTOCOL_VERSION);
    assert!(hello["cores"].as_u64().unwrap() >= 1);
    assert!(hello["total_ram_bytes"].as_u64().unwrap() > 0);
    assert!(
        check["memory"]["read_gb_s"].as_f64().unwrap() > 0.0,
        "{check}"
    );
    let runtime_name = format!("sintra-rt-{AARCH64}");
    assert_eq!(
        strings(&check["deploy"]["uploaded"]),
        [runtime_name.as_str()]
    );
    assert!(remote.join(&runtime_name).is_file());

    // 2. bench and perplexity on the device: the model is uploaded, the runtime is not.
    let t = Instant::now();
    let out = Command::new(&sintra)
        .args([
            "bench",
            "--device",
            "sintra-test",
            "-p",
            "8",
            "-n",
            "4",
            "-r",
            "1",
        ])
        .arg("--ppl-file")
        .arg(&eval)
        .args(PPL_ARGS)
        .args(["--timeout", "1800", "--json"])
        .args(&args)
        .arg(&model)
        .output()
        .unwrap();
    let dev = json_of(&out);
    eprintln!(
        "bench + perplexity on aarch64 (qemu): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let model_name = format!("models/{}", model.file_name().unwrap().to_string_lossy());
    assert_eq!(strings(&dev["deploy"]["uploaded"]), [model_name.as_str()]);
    assert_eq!(
        strings(&dev["deploy"]["unchanged"]),
        [runtime_name.as_str()]
    );
    assert_eq!(dev["model"]["architecture"], "llama");
    let runs = dev["bench"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{dev}");
    for r in runs {
        let s = r["samples_tok_s"][0].as_f64().unwrap();
        assert!(s.is_finite() && s > 0.0, "{r}");
    }
    assert_eq!(dev["bench"]["isa"], isa.as_str());
    let ppl_dev = &dev["perplexity"];
    assert_eq!(ppl_dev["n_tokens"], 1000, "{dev}");

    // 3. The same perplexity on this host's x86-64 runtime (local transport).
    let out = Command::new(&sintra)
        .args(["bench", "--device", "local", "-p", "0", "-n", "0"])
        .arg("--ppl-file")
        .arg(&eval)
        .args(PPL_ARGS)
        .args(["--json", "--runtime"])
        .arg(&x86)
        .arg(&model)
        // The exact AVX2 table, llama.cpp's arithmetic: the reference the device is held to.
        .env("SINTRA_KERNELS", "avx2-exact")
        .output()
        .unwrap();
    let host = json_of(&out);
    let (a, h) = (
        ppl_dev["ppl"].as_f64().unwrap(),
        host["perplexity"]["ppl"].as_f64().unwrap(),
    );
    let rel = (a - h).abs() / h;
    eprintln!(
        "PPL over 1000 tokens: aarch64 ({isa}, qemu) {a:.6}, x86-64 ({}) {h:.6}, relative difference {rel:.2e}",
        host["hello"]["isa"]
    );
    assert!(a.is_finite() && a > 1.0);
    // Issue #5's bar: 0.1%. The device runs its default table on the Q4_0 file (packed, summed
    // in its own order by SMMLA under qemu's default CPU), the host the exact AVX2 table; both
    // round the activations to Q8_0 alike and sum each block exactly in integers, so only the
    // f32 arithmetic after those sums differs (measured: PPL 19.764532 on both, as printed).
    // The host side is the static musl build, like the device's: the same libm (`expf`,
    // `cosf`, `sinf` of RoPE).
    const PPL_BOUND: f64 = 0.001;
    assert!(
        rel < PPL_BOUND,
        "aarch64 PPL {a} vs x86-64 PPL {h}: {rel:.2e} apart (more than {PPL_BOUND})"
    );

    // 4. A second deploy of the same files uploads nothing.
    let out = Command::new(&sintra)
        .args([
            "bench",
            "--device",
            "sintra-test",
            "-p",
            "0",
            "-n",
            "0",
            "--json",
        ])
        .args(&args)
        .arg(&model)
        .output()
        .unwrap();
    let again = json_of(&out);
    assert!(strings(&again["deploy"]["uploaded"]).is_empty(), "{again}");
    assert_eq!(
        strings(&again["deploy"]["unchanged"]),
        [runtime_name, model_name]
    );

    // 5. Killing the runtime mid-benchmark: a clear error, well within the timeout.
    let timeout = 120;
    let t = Instant::now();
    let mut planner = Command::new(&sintra)
        .args([
            "bench",
            "--device",
            "sintra-test",
            "-p",
            "4",
            "-n",
            "0",
            "-r",
            "1000",
        ])
        .args(["--timeout", &timeout.to_string()])
        .args(&args)
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = planner.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Wait for the first repetition's progress line: the benchmark is running.
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(timeout))
            .unwrap_or_else(|_| panic!("no progress from the benchmark: {lines:?}"));
        let started = line.contains("[1/1000]");
        lines.push(line);
        if started {
            break;
        }
    }
    let pid = runtime_pid(&remote).expect("the runtime process on the device");
    run_ok(Command::new("kill").args(["-9", &pid.to_string()]));
    let t_kill = Instant::now();
    let status = wait_for(&mut planner, Duration::from_secs(timeout));
    let elapsed = t_kill.elapsed();
    lines.extend(rx.try_iter());
    let mut stdout = String::new();
    planner
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let err = lines.join("\n");
    eprintln!(
        "killed runtime {pid}: planner exited in {:.2} s after the kill ({:.1} s in all):\n{err}",
        elapsed.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    assert!(!status.success(), "{stdout}\n{err}");
    assert!(elapsed < Duration::from_secs(timeout / 2));
    assert!(
        err.contains("the runtime on sintra-test stopped during the benchmark"),
        "{err}"
    );
    // The remote stderr comes along: the runtime's own log of the benchmark it was running.
    assert!(err.contains("sintra-rt serve: bench pp4 tg0"), "{err}");
    eprintln!("end to end: {:.1} s", t_all.elapsed().as_secs_f64());
}

/// The pid of the `sintra-rt ... serve` process whose working directory is `remote`.
fn runtime_pid(remote: &Path) -> Option<u32> {
    let remote = std::fs::canonicalize(remote).ok()?;
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        if cmdline.contains("sintra-rt-")
            && cmdline.contains(" serve")
            && cwd.as_deref() == Some(&remote)
        {
            return Some(pid);
        }
    }
    None
}

fn wait_for(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the planner hung for {timeout:?} after its runtime was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sintra-rt serve` on pipes, spoken to frame by frame.
struct Serve {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Serve {
    fn start() -> Serve {
        let mut child = Command::new(release_bin_path("runtime", "sintra-rt"))
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Serve { child, out }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, r: &Request) {
        self.send_raw(&wire::encode(r).unwrap());
    }

    fn recv(&mut self) -> Response {
        let mut buf = Vec::new();
        assert!(
            wire::read_frame(&mut self.out, &mut buf).unwrap(),
            "serve closed its output"
        );
        wire::decode(&buf).unwrap()
    }

    fn expect_error(&mut self, kind: ErrorKind) -> String {
        match self.recv() {
            Response::Error(e) if e.kind == kind => e.message,
            other => panic!("expected a {kind} error, got {other:?}"),
        }
    }
}

fn hello(version: u32) -> Request {
    Request::Hello {
        protocol_version: version,
        planner_version: "test".into(),
    }
}

#[test]
fn runtime_serve_answers_bad_frames_and_other_protocols_with_typed_errors() {
    let mut s = Serve::start();
    // Before hello.
    s.send(&Request::Shutdown);
    assert_eq!(s.recv(), Response::Bye);
    assert!(s.child.wait().unwrap().success());

    let mut s = Serve::start();
    s.send(&Request::ProbeMemory {
        bytes: 1 << 20,
        threads: 1,
        repetitions: 1,
    });
    s.expect_error(ErrorKind::NoHello);
    // Not COBS; then an unknown variant: each one error, the session goes on.
    s.send_raw(&[0x09, 0x01, 0x00]);
    let m = s.expect_error(ErrorKind::BadFrame);
    assert!(m.contains("malformed frame of 2 bytes"), "{m}");
    s.send_raw(&wire::encode(&(200u8,)).unwrap());
    s.expect_error(ErrorKind::BadFrame);
    // A planner of another protocol: hello still answers (with this runtime's version), every
    // other request is refused naming both versions.
    s.send(&hello(PROTOCOL_VERSION + 41));
    match s.recv() {
        Response::Hello(h) => assert_eq!(h.protocol_version, PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    s.send(&Request::LoadModel {
        path: "x.gguf".into(),
        sha256: None,
    });
    let m = s.expect_error(ErrorKind::ProtocolMismatch);
    let (planner, runtime) = (PROTOCOL_VERSION + 41, PROTOCOL_VERSION);
    assert!(
        m.contains(&format!(
            "the planner speaks wire protocol {planner}, this runtime speaks {runtime}"
        )),
        "{m}"
    );
    // The right version: requests run; a missing model and a bad checksum are typed errors.
    s.send(&hello(PROTOCOL_VERSION));
    assert!(matches!(s.recv(), Response::Hello(_)));
    s.send(&Request::Bench(wire::BenchRequest {
        n_prompt: 1,
        n_gen: 1,
        threads: 1,
        repetitions: 1,
        kv_f32: false,
    }));
    s.expect_error(ErrorKind::NoModel);
    let model = smollm2_q4_1();
    s.send(&Request::LoadModel {
        path: model.display().to_string(),
        sha256: Some([7; 32]),
    });
    let m = s.expect_error(ErrorKind::Checksum);
    assert!(m.contains(&"07".repeat(32)), "{m}");
    s.send(&Request::LoadModel {
        path: "/nonexistent/m.gguf".into(),
        sha256: None,
    });
    let m = s.expect_error(ErrorKind::ModelLoad);
    assert!(m.contains("/nonexistent/m.gguf"), "{m}");
    s.send(&Request::ProbeMemory {
        bytes: 1 << 20,
        threads: 1,
        repetitions: 1,
    });
    assert!(matches!(s.recv(), Response::MemoryBandwidth(m) if m.read_gb_s > 0.0));
    s.send(&Request::Shutdown);
    assert_eq!(s.recv(), Response::Bye);
    assert!(s.child.wait().unwrap().success());
}

/// MOCK: a fake runtime on a TCP port that answers the planner's hello with the bytes `reply`,
/// then keeps the connection open without a word. A real runtime of another protocol version,
/// one that writes garbage or one that hangs does not exist to test the planner against.
fn fake_runtime(reply: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut r = BufReader::new(stream.try_clone().unwrap());
        // The token line first (empty: no SINTRA_RT_TOKEN in the planner's environment).
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("{}\n", wire::AUTH_PREFIX));
        let mut buf = Vec::new();
        assert!(wire::read_frame(&mut r, &mut buf).unwrap());
        assert!(matches!(
            wire::decode::<Request>(&buf).unwrap(),
            Request::Hello { .. }
        ));
        let mut w = stream;
        w.write_all(&reply).unwrap();
        // Hold the connection until the planner gives up.
        let _ = r.read_to_end(&mut Vec::new());
    });
    (port, h)
}

fn sintra_check_tcp(port: u16, timeout: u64) -> (bool, String, Duration) {
    // Built (or waited for) before the clock starts: the bound is on the planner's answer.
    let sintra = release_bin_path("planner", "sintra");
    let t = Instant::now();
    let out = Command::new(sintra)
        .env_remove("SINTRA_RT_TOKEN")
        .args(["device", "check", &format!("tcp://127.0.0.1:{port}")])
        .args(["--timeout", &timeout.to_string()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

#[test]
fn planner_names_both_versions_for_another_protocol_and_a_malformed_frame() {
    // A runtime of protocol PROTOCOL_VERSION + 1, whose Hello has grown a field.
    let future = wire::encode(&(0u8, PROTOCOL_VERSION + 1, "0.9.0", 1.5f64)).unwrap();
    let (port, h) = fake_runtime(future);
    let (ok, err, _) = sintra_check_tcp(port, 10);
    h.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "speaks wire protocol {}, this planner speaks {}",
            PROTOCOL_VERSION + 1,
            PROTOCOL_VERSION
        )),
        "{err}"
    );

    // Garbage where the hello should be.
    let (port, h) = fake_runtime(vec![0x42, 0x13, 0x37, 0x00]);
    let (ok, err, _) = sintra_check_tcp(port, 10);
    h.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains("malformed frame from the runtime on tcp://127.0.0.1"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "this planner speaks wire protocol {PROTOCOL_VERSION}"
        )),
        "{err}"
    );
}

#[test]
fn planner_gives_up_on_a_silent_runtime_at_its_timeout() {
    // Hello, then nothing: the memory probe must time out, not hang.
    let mut hello = sintra_tests_hello();
    hello.cores = 1;
    let (port, h) = fake_runtime(wire::encode(&Response::Hello(hello)).unwrap());
    let (ok, err, took) = sintra_check_tcp(port, 2);
    h.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains("the memory probe on tcp://127.0.0.1") && err.contains("no answer within 2 s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}

fn sintra_tests_hello() -> wire::Hello {
    wire::Hello {
        protocol_version: PROTOCOL_VERSION,
        runtime_version: "0.0.0".into(),
        target: "test".into(),
        isa: "scalar".into(),
        cpu_features: vec![],
        cores: 1,
        total_ram_bytes: 1,
        available_ram_bytes: 1,
        cpu_model: String::new(),
        kernel: String::new(),
        gpu: None,
    }
}
