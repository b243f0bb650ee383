//! Devices: where `sintra-rt serve` runs and how the planner reaches it.
//!
//! - **local**: a child process on this machine (also what host-side quality runs use);
//! - **ssh**: the system `ssh`/`scp` ([`ssh`]), deploying the static runtime and the model
//!   first (only what changed), with an optional exec prefix (`nice -n -5`,
//!   `qemu-aarch64-static`);
//! - **tcp**: a runtime already started with `sintra-rt serve --listen ADDR`; the model path is
//!   a path on the device.
//!
//! Every call has a deadline: a runtime that says nothing for that long is stopped and
//! reported, and one that dies becomes [`DeviceError::RuntimeDied`] with the end of its stderr,
//! never a hang. Progress messages count as signs of life, so a long benchmark only needs a
//! deadline longer than one repetition (or one perplexity window).

pub mod channel;
pub mod error;
pub mod ssh;

pub use error::DeviceError;

use channel::Channel;
use formats::wire::{
    self, BenchRequest, BenchResult, CalibrateRequest, CalibrateResult, Hello, MemoryBandwidth,
    ModelInfo, PerplexityRequest, PerplexityResult, Progress, Request, Response, SpecBenchRequest,
    SpecBenchResult, PROTOCOL_VERSION,
};
use sha2::{Digest, Sha256};
use ssh::{DeployReport, SshTarget, Upload};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach the runtime.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Run the runtime here; `exec_prefix` as for ssh.
    Local {
        exec_prefix: Option<String>,
    },
    Ssh(SshTarget),
    /// `HOST:PORT` of `sintra-rt serve --listen`.
    Tcp {
        addr: String,
    },
}

/// A device and the runtime build it takes.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub transport: Transport,
    /// Target triple of the runtime to deploy (default: from `uname -m`, or this host's).
    pub runtime_target: Option<String>,
    /// The runtime binary to deploy (default: found by target triple, see [`find_runtime`]).
    pub runtime: Option<PathBuf>,
    /// Deadline for each call: the longest silence allowed from the runtime.
    pub timeout: Duration,
}

impl DeviceSpec {
    /// Who the device is, for tables and messages.
    pub fn name(&self) -> String {
        match &self.transport {
            Transport::Local { .. } => "local".into(),
            Transport::Ssh(t) => t.name(),
            Transport::Tcp { addr } => format!("tcp://{addr}"),
        }
    }

    pub fn transport_name(&self) -> &'static str {
        match &self.transport {
            Transport::Local { .. } => "local",
            Transport::Ssh(_) => "ssh",
            Transport::Tcp { .. } => "tcp",
        }
    }
}

/// The SHA-256 of a local file, as lowercase hex.
pub fn sha256_hex(path: &Path) -> Result<String, DeviceError> {
    Ok(hex(&sha256_file(path)?))
}

pub fn sha256_file(path: &Path) -> Result<[u8; 32], DeviceError> {
    let fail = |e: std::io::Error| DeviceError::Setup(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(fail)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The static runtime's target triple for a machine name as `uname -m` prints it.
pub fn triple_for_machine(machine: &str) -> Result<&'static str, DeviceError> {
    match machine {
        "x86_64" | "amd64" => Ok("x86_64-unknown-linux-musl"),
        "aarch64" | "arm64" => Ok("aarch64-unknown-linux-musl"),
        // armv8l: a 64-bit CPU running a 32-bit OS (32-bit Raspberry Pi OS on a Pi 3/4/5).
        "armv7l" | "armv8l" => Ok("armv7-unknown-linux-gnueabihf"),
        other => Err(DeviceError::Setup(format!(
            "no sintra-rt build for machine '{other}' (uname -m): pass --runtime-target and --runtime"
        ))),
    }
}

/// `Orin (cuda, compute capability 8.7, 7.4 GiB; PTX compute_87)`, or why models run on the CPU.
pub fn gpu_summary(g: Option<&formats::wire::Gpu>) -> String {
    match g {
        None => "none (a runtime built without GPU support)".into(),
        Some(g) if g.used => format!(
            "{} ({}, compute capability {}, {:.1} GiB; {})",
            g.name,
            g.backend,
            g.compute_capability,
            g.memory_bytes as f64 / (1u64 << 30) as f64,
            g.note
        ),
        Some(g) => format!("not used ({}): models run on the CPU", g.note),
    }
}

/// This machine's runtime triple.
pub fn host_triple() -> &'static str {
    triple_for_machine(std::env::consts::ARCH).unwrap_or("x86_64-unknown-linux-musl")
}

/// Where a runtime build for `triple` is looked for, in order: `$SINTRA_RUNTIME_DIR/<triple>/`,
/// next to this executable as `sintra-rt-<triple>` (and `sintra-rt` for this host's triple),
/// then cargo's output (`$CARGO_TARGET_DIR` or `./target`) under `<triple>/dist` and
/// `<triple>/release`, where `bash cross/build.sh` puts them.
pub fn runtime_candidates(triple: &str) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(d) = std::env::var_os("SINTRA_RUNTIME_DIR") {
        c.push(PathBuf::from(d).join(triple).join("sintra-rt"));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        c.push(dir.join(format!("sintra-rt-{triple}")));
        if triple == host_triple() {
            c.push(dir.join("sintra-rt"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    for profile in ["dist", "release"] {
        c.push(target.join(triple).join(profile).join("sintra-rt"));
    }
    c
}

/// The runtime binary for `triple`: `explicit` if given, else the first of
/// [`runtime_candidates`] that exists.
pub fn find_runtime(triple: &str, explicit: Option<&Path>) -> Result<PathBuf, DeviceError> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(DeviceError::Setup(format!(
            "runtime {} does not exist",
            p.display()
        )));
    }
    let c = runtime_candidates(triple);
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let list: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        DeviceError::Setup(format!(
            "no sintra-rt for {triple}: looked at {}; build it with `bash cross/build.sh {triple}` or pass --runtime FILE",
            list.join(", ")
        ))
    })
}

/// The start of `text` that `windows` perplexity windows of `n_ctx` tokens need (8 bytes per
/// token, cut at a character boundary), so a device does not tokenize a whole book for a short
/// check.
pub fn text_for_windows(text: &str, n_ctx: u32, windows: u32) -> &str {
    let max_bytes = (n_ctx as usize) * (windows as usize) * 8;
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A handshaken session with a runtime.
#[derive(Debug)]
pub struct Session {
    ch: Channel,
    pub hello: Hello,
    pub deploy: Option<DeployReport>,
    /// The runtime binary deployed or started (local path).
    pub runtime: Option<PathBuf>,
    /// How the runtime names the model file, if one was deployed.
    model_path: Option<String>,
    model_sha256: Option<[u8; 32]>,
    timeout: Duration,
    transport: Transport,
}

/// Time for the runtime to start and answer hello (qemu and a cold disk are slow).
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

impl Session {
    /// Deploy (ssh: the runtime and `model`, if any, when they differ), start the runtime and
    /// shake hands.
    pub fn open(spec: &DeviceSpec, model: Option<&Path>) -> Result<Session, DeviceError> {
        let model_sha = model.map(sha256_file).transpose()?;
        let (ch, deploy, runtime, model_path) = match &spec.transport {
            Transport::Local { exec_prefix } => {
                let triple = spec.runtime_target.as_deref().unwrap_or(host_triple());
                let rt = find_runtime(triple, spec.runtime.as_deref())?;
                let mut words = exec_prefix
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                words.push(rt.display().to_string());
                let mut cmd = std::process::Command::new(&words[0]);
                cmd.args(&words[1..]).arg("serve");
                let model_path = model.map(|m| {
                    std::path::absolute(m)
                        .unwrap_or_else(|_| m.to_path_buf())
                        .display()
                        .to_string()
                });
                (
                    Channel::spawn("local".into(), cmd)?,
                    None,
                    Some(rt),
                    model_path,
                )
            }
            Transport::Ssh(t) => {
                let triple = match &spec.runtime_target {
                    Some(tr) => tr.clone(),
                    None => triple_for_machine(&t.machine()?)?.to_string(),
                };
                let rt = find_runtime(&triple, spec.runtime.as_deref())?;
                let rt_remote = format!("sintra-rt-{triple}");
                let mut uploads = vec![Upload {
                    local: rt.clone(),
                    remote: rt_remote.clone(),
                    executable: true,
                }];
                let mut model_path = None;
                if let Some(m) = model {
                    let name = m
                        .file_name()
                        .ok_or_else(|| {
                            DeviceError::Setup(format!("{} is not a file", m.display()))
                        })?
                        .to_string_lossy()
                        .into_owned();
                    let remote = format!("models/{name}");
                    uploads.push(Upload {
                        local: m.to_path_buf(),
                        remote: remote.clone(),
                        executable: false,
                    });
                    model_path = Some(remote);
                }
                let report = t.deploy(&uploads)?;
                (t.start(&rt_remote)?, Some(report), Some(rt), model_path)
            }
            Transport::Tcp { addr } => {
                let ch = Channel::connect(addr, Duration::from_secs(10))?;
                (ch, None, None, model.map(|m| m.display().to_string()))
            }
        };
        let mut ch = ch;
        ch.send(
            &Request::Hello {
                protocol_version: PROTOCOL_VERSION,
                planner_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            "the handshake",
        )?;
        let frame = ch.recv(
            HELLO_TIMEOUT.max(spec.timeout.min(Duration::from_secs(300))),
            "the handshake",
        )?;
        let hello = match wire::hello_protocol_version(&frame) {
            Some(v) if v != PROTOCOL_VERSION => {
                return Err(DeviceError::ProtocolMismatch {
                    device: ch.device.clone(),
                    runtime: v,
                    planner: PROTOCOL_VERSION,
                })
            }
            _ => match wire::decode::<Response>(&frame) {
                Ok(Response::Hello(h)) => h,
                Ok(Response::Error(e)) => {
                    return Err(DeviceError::Runtime {
                        device: ch.device.clone(),
                        during: "the handshake".into(),
                        kind: e.kind,
                        message: e.message,
                    })
                }
                Ok(other) => {
                    return Err(DeviceError::Unexpected {
                        device: ch.device.clone(),
                        during: "the handshake".into(),
                        got: variant_name(&other),
                    })
                }
                Err(e) => {
                    return Err(DeviceError::BadFrame {
                        device: ch.device.clone(),
                        during: "the handshake".into(),
                        problem: e.to_string(),
                        runtime_protocol: None,
                    })
                }
            },
        };
        Ok(Session {
            ch,
            hello,
            deploy,
            runtime,
            model_path,
            model_sha256: model_sha,
            timeout: spec.timeout,
            transport: spec.transport.clone(),
        })
    }

    /// Send `req`, pass progress to `on_progress` (and generated text to `on_token`), return
    /// the final response.
    fn call(
        &mut self,
        req: &Request,
        during: &str,
        timeout: Duration,
        mut on_progress: impl FnMut(&Progress),
        mut on_token: impl FnMut(&str),
    ) -> Result<Response, DeviceError> {
        self.ch.send(req, during)?;
        loop {
            let frame = self.ch.recv(timeout, during)?;
            let resp = wire::decode::<Response>(&frame).map_err(|e| DeviceError::BadFrame {
                device: self.ch.device.clone(),
                during: during.to_string(),
                problem: e.to_string(),
                runtime_protocol: Some(self.hello.protocol_version),
            })?;
            match resp {
                Response::Progress(p) => on_progress(&p),
                Response::Token { text } => on_token(&text),
                Response::Error(e) => {
                    return Err(DeviceError::Runtime {
                        device: self.ch.device.clone(),
                        during: during.to_string(),
                        kind: e.kind,
                        message: e.message,
                    })
                }
                other => return Ok(other),
            }
        }
    }

    fn unexpected(&self, during: &str, got: &Response) -> DeviceError {
        // An error where an answer was due (the handshake refused for a missing token, ...)
        // says what the runtime said.
        if let Response::Error(e) = got {
            return DeviceError::Runtime {
                device: self.ch.device.clone(),
                during: during.to_string(),
                kind: e.kind,
                message: e.message.clone(),
            };
        }
        DeviceError::Unexpected {
            device: self.ch.device.clone(),
            during: during.to_string(),
            got: variant_name(got),
        }
    }

    /// Measure memory bandwidth over `bytes`.
    pub fn probe_memory(
        &mut self,
        bytes: u64,
        threads: u32,
    ) -> Result<MemoryBandwidth, DeviceError> {
        let during = "the memory probe";
        let req = Request::ProbeMemory {
            bytes,
            threads,
            repetitions: 3,
        };
        match self.call(&req, during, self.timeout, |_| {}, |_| {})? {
            Response::MemoryBandwidth(m) => Ok(m),
            other => Err(self.unexpected(during, &other)),
        }
    }

    /// Map the deployed model (checked against its SHA-256 on the device).
    pub fn load_model(&mut self) -> Result<ModelInfo, DeviceError> {
        let during = "loading the model";
        let path = self
            .model_path
            .clone()
            .ok_or_else(|| DeviceError::Setup("no model was deployed to this session".into()))?;
        let req = Request::LoadModel {
            path,
            sha256: self.model_sha256,
        };
        match self.call(&req, during, self.timeout, |_| {}, |_| {})? {
            Response::ModelLoaded(m) => Ok(m),
            other => Err(self.unexpected(during, &other)),
        }
    }

    /// Put `local` on the device and load it, in this session (no new handshake): over ssh it
    /// is copied to `models/<remote_name>` when its SHA-256 there differs (so one name reused
    /// for every candidate keeps one file on the device); a local or tcp runtime reads the
    /// file where it is. The runtime checks the SHA-256 before mapping it.
    pub fn load_file(&mut self, local: &Path, remote_name: &str) -> Result<ModelInfo, DeviceError> {
        let (path, sha) = self.put_file(local, remote_name)?;
        self.model_path = Some(path);
        self.model_sha256 = Some(sha);
        self.load_model()
    }

    /// Put `local` on the device without loading it (a draft model, issue #17): over ssh it is
    /// copied to `models/<remote_name>` when its SHA-256 there differs. Returns the path the
    /// runtime reads it from, and its SHA-256.
    pub fn put_file(
        &mut self,
        local: &Path,
        remote_name: &str,
    ) -> Result<(String, [u8; 32]), DeviceError> {
        let sha = sha256_file(local)?;
        let path = match &self.transport {
            Transport::Ssh(t) => {
                let remote = format!("models/{remote_name}");
                t.deploy(&[Upload {
                    local: local.to_path_buf(),
                    remote: remote.clone(),
                    executable: false,
                }])?;
                remote
            }
            Transport::Local { .. } | Transport::Tcp { .. } => std::path::absolute(local)
                .unwrap_or_else(|_| local.to_path_buf())
                .display()
                .to_string(),
        };
        Ok((path, sha))
    }

    /// Greedy generation with and without speculative decoding on the loaded model.
    pub fn spec_bench(
        &mut self,
        req: SpecBenchRequest,
        on_progress: impl FnMut(&Progress),
    ) -> Result<SpecBenchResult, DeviceError> {
        let during = "the speculative benchmark";
        match self.call(
            &Request::SpecBench(req),
            during,
            self.timeout,
            on_progress,
            |_| {},
        )? {
            Response::SpecBench(b) => Ok(b),
            other => Err(self.unexpected(during, &other)),
        }
    }

    pub fn bench(
        &mut self,
        req: BenchRequest,
        on_progress: impl FnMut(&Progress),
    ) -> Result<BenchResult, DeviceError> {
        let during = "the benchmark";
        match self.call(
            &Request::Bench(req),
            during,
            self.timeout,
            on_progress,
            |_| {},
        )? {
            Response::Bench(b) => Ok(b),
            other => Err(self.unexpected(during, &other)),
        }
    }

    pub fn perplexity(
        &mut self,
        req: PerplexityRequest,
        on_progress: impl FnMut(&Progress),
    ) -> Result<PerplexityResult, DeviceError> {
        let during = "the perplexity run";
        match self.call(
            &Request::Perplexity(req),
            during,
            self.timeout,
            on_progress,
            |_| {},
        )? {
            Response::Perplexity(p) => Ok(p),
            other => Err(self.unexpected(during, &other)),
        }
    }

    /// Collect calibration statistics for the loaded model (saved on the device).
    pub fn calibrate(
        &mut self,
        req: CalibrateRequest,
        on_progress: impl FnMut(&Progress),
    ) -> Result<CalibrateResult, DeviceError> {
        let during = "the calibration run";
        match self.call(
            &Request::Calibrate(req),
            during,
            self.timeout,
            on_progress,
            |_| {},
        )? {
            Response::Calibrated(c) => Ok(c),
            other => Err(self.unexpected(during, &other)),
        }
    }

    /// End the session politely; the runtime exits.
    pub fn shutdown(mut self) -> Result<(), DeviceError> {
        let during = "shutdown";
        let r = self.call(
            &Request::Shutdown,
            during,
            Duration::from_secs(30),
            |_| {},
            |_| {},
        )?;
        if r != Response::Bye {
            return Err(self.unexpected(during, &r));
        }
        self.ch.finish(Duration::from_secs(5));
        Ok(())
    }
}

fn variant_name(r: &Response) -> String {
    let s = format!("{r:?}");
    let end = s.find(['(', ' ', '{']).unwrap_or(s.len());
    format!("{} response", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_for_windows_keeps_characters_whole() {
        // 8 bytes per token: one window of one token is 8 bytes.
        assert_eq!(
            super::text_for_windows("h\u{e9}llo world", 1, 1),
            "h\u{e9}llo w"
        );
        assert_eq!(super::text_for_windows("abcdefg\u{e9}x", 1, 1), "abcdefg");
        assert_eq!(super::text_for_windows("hi", 1, 1), "hi");
    }
}
