//! A byte channel to a running `sintra-rt serve`: a child process's pipes (local or `ssh`) or a
//! TCP socket. A reader thread cuts the runtime's output into frames and hands them over a
//! queue, so every wait has a deadline; a second thread keeps the end of the child's stderr to
//! explain a death.

use super::error::DeviceError;
use formats::wire;
use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of stderr kept (the end of it).
const STDERR_KEEP: usize = 8 << 10;

enum Event {
    Frame(Vec<u8>),
    /// The output ended; the string says how (clean end, error).
    Closed(String),
}

/// A running runtime's pipes (or socket).
pub struct Channel {
    /// Who is at the other end, for messages (`pi@raspberrypi.local`, `local`, `tcp://...`).
    pub device: String,
    writer: Box<dyn Write + Send>,
    frames: Receiver<Event>,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

fn spawn_reader(input: impl Read + Send + 'static) -> Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 16, input);
        let mut buf = Vec::new();
        loop {
            match wire::read_frame(&mut r, &mut buf) {
                Ok(true) => {
                    if tx.send(Event::Frame(std::mem::take(&mut buf))).is_err() {
                        return;
                    }
                }
                Ok(false) => {
                    let _ = tx.send(Event::Closed("its output ended".into()));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Event::Closed(format!("reading its output failed: {e}")));
                    return;
                }
            }
        }
    });
    rx
}

/// Keep the last [`STDERR_KEEP`] bytes of `input` in `keep`.
pub fn spawn_tail(
    mut input: impl Read + Send + 'static,
    keep: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
                    k.extend_from_slice(&buf[..n]);
                    if k.len() > STDERR_KEEP {
                        let cut = k.len() - STDERR_KEEP;
                        k.drain(..cut);
                    }
                }
            }
        }
    })
}

/// Wait for `handle` at most `timeout` (a pipe held open by a grandchild, such as an ssh
/// control master, must not hang the planner).
pub fn join_for(handle: std::thread::JoinHandle<()>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
}

impl Channel {
    /// Start `cmd` (a runtime in serve mode, directly or through ssh) with piped stdio.
    pub fn spawn(device: String, mut cmd: Command) -> Result<Channel, DeviceError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DeviceError::Spawn { program, source })?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr_pipe = child.stderr.take().expect("stderr was piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        spawn_tail(stderr_pipe, stderr.clone());
        Ok(Channel {
            device,
            writer: Box::new(stdin),
            frames: spawn_reader(stdout),
            child: Some(child),
            stderr,
        })
    }

    /// Connect to `sintra-rt serve --listen` at `addr` (`HOST:PORT`), presenting the token in
    /// `SINTRA_RT_TOKEN` (a runtime off loopback requires one).
    pub fn connect(addr: &str, timeout: Duration) -> Result<Channel, DeviceError> {
        let device = format!("tcp://{addr}");
        let fail = |e: std::io::Error| DeviceError::Command {
            device: device.clone(),
            what: "connecting".into(),
            status: e.to_string(),
            stderr: String::new(),
        };
        let sock = addr
            .to_socket_addrs()
            .map_err(fail)?
            .next()
            .ok_or_else(|| DeviceError::Setup(format!("{addr} resolves to no address")))?;
        let mut stream = TcpStream::connect_timeout(&sock, timeout).map_err(fail)?;
        let _ = stream.set_nodelay(true);
        // The runtime reads nothing before this line (protocol 5): the token, or nothing for
        // a loopback runtime started without one. The token itself is never logged.
        let token = std::env::var("SINTRA_RT_TOKEN").unwrap_or_default();
        stream
            .write_all(format!("{}{}\n", wire::AUTH_PREFIX, token.trim()).as_bytes())
            .map_err(fail)?;
        let reader = stream.try_clone().map_err(fail)?;
        Ok(Channel {
            device,
            writer: Box::new(stream),
            frames: spawn_reader(reader),
            child: None,
            stderr: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The end of the runtime's stderr so far.
    pub fn stderr_tail(&self) -> String {
        let k = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&k).into_owned()
    }

    /// Send one message.
    pub fn send<T: serde::Serialize>(&mut self, msg: &T, during: &str) -> Result<(), DeviceError> {
        let r = wire::write_frame(&mut self.writer, msg);
        r.map_err(|source| {
            // A write to a dead runtime: its death is the better explanation.
            if source.kind() == std::io::ErrorKind::BrokenPipe {
                return self.died(during, "its input closed".into());
            }
            DeviceError::Send {
                device: self.device.clone(),
                during: during.to_string(),
                source,
            }
        })
    }

    /// The next frame, waiting at most `timeout`. On a timeout the runtime is stopped.
    pub fn recv(&mut self, timeout: Duration, during: &str) -> Result<Vec<u8>, DeviceError> {
        match self.frames.recv_timeout(timeout) {
            Ok(Event::Frame(f)) => Ok(f),
            Ok(Event::Closed(how)) => Err(self.died(during, how)),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.died(during, "its output ended".into()))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                // Give the stderr thread a moment to drain what the runtime wrote.
                std::thread::sleep(Duration::from_millis(100));
                Err(DeviceError::Timeout {
                    device: self.device.clone(),
                    what: during.to_string(),
                    after: timeout,
                    stderr: self.stderr_tail(),
                })
            }
        }
    }

    /// The error for a runtime whose output ended: its exit status (waited for briefly) and
    /// the end of its stderr.
    fn died(&mut self, during: &str, how: String) -> DeviceError {
        let mut status = how;
        if let Some(child) = self.child.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => {
                        status = format!("{status}; {}", describe_status(s));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            // The stderr thread ends with the pipe; let it catch up.
            std::thread::sleep(Duration::from_millis(50));
        }
        DeviceError::RuntimeDied {
            device: self.device.clone(),
            during: during.to_string(),
            status,
            stderr: self.stderr_tail(),
        }
    }

    /// Stop the runtime's process (or ssh) now.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait up to `timeout` for the process to exit on its own (after `Shutdown`), then stop it.
    pub fn finish(mut self, timeout: Duration) {
        if let Some(mut child) = self.child.take() {
            // Closing stdin ends a runtime that did not get `Shutdown`.
            self.writer = Box::new(std::io::sink());
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `exit status 1`, `killed by signal 9`.
pub fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}
