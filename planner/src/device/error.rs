//! What can go wrong talking to a device. Every variant names the device; those that follow a
//! runtime's death carry the end of its stderr, which usually says why.

use formats::wire::{ErrorKind, PROTOCOL_VERSION};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A local program (ssh, scp, the runtime) could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// A helper command (ssh, scp) failed.
    #[error("{what} on {device} failed ({status}){}", stderr_suffix(.stderr))]
    Command {
        device: String,
        what: String,
        status: String,
        stderr: String,
    },
    /// Nothing was heard within the time allowed; the runtime (or command) was killed.
    #[error("{what} on {device}: no answer within {} s, gave up and stopped it{}", .after.as_secs_f64(), stderr_suffix(.stderr))]
    Timeout {
        device: String,
        what: String,
        after: Duration,
        stderr: String,
    },
    /// The runtime's output ended: it exited, was killed or the connection dropped.
    #[error("the runtime on {device} stopped during {during} ({status}){}", stderr_suffix(.stderr))]
    RuntimeDied {
        device: String,
        during: String,
        status: String,
        stderr: String,
    },
    /// The runtime speaks another protocol version.
    #[error("the runtime on {device} speaks wire protocol {runtime}, this planner speaks {planner}: deploy a sintra-rt built from the same release as the planner")]
    ProtocolMismatch {
        device: String,
        runtime: u32,
        planner: u32,
    },
    /// The runtime sent bytes that are not a response of this protocol.
    #[error("malformed frame from the runtime on {device} during {during}: {problem} (this planner speaks wire protocol {PROTOCOL_VERSION}, {runtime})", runtime = runtime_version_note(*.runtime_protocol))]
    BadFrame {
        device: String,
        during: String,
        problem: String,
        /// The version the runtime announced, if it got as far as the handshake.
        runtime_protocol: Option<u32>,
    },
    /// The runtime answered with an error.
    #[error("the runtime on {device} refused {during}: {message} ({kind})")]
    Runtime {
        device: String,
        during: String,
        kind: ErrorKind,
        message: String,
    },
    /// The runtime answered with a response that does not fit the request.
    #[error("the runtime on {device} answered {during} with an unexpected {got}")]
    Unexpected {
        device: String,
        during: String,
        got: String,
    },
    /// Writing to the runtime failed.
    #[error("cannot send {during} to the runtime on {device}: {source}")]
    Send {
        device: String,
        during: String,
        source: std::io::Error,
    },
    /// A local file or setting is wrong.
    #[error("{0}")]
    Setup(String),
}

fn runtime_version_note(v: Option<u32>) -> String {
    match v {
        Some(v) => format!("the runtime said it speaks {v}"),
        None => "the runtime has not said which version it speaks".to_string(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    let hint = if s.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        "; the device's SSH host key is not the one recorded for it: if the device was \
         reinstalled, remove the old key (`ssh-keygen -R HOST`, the known-hosts file ssh names \
         below), otherwise someone may be in between"
    } else if s.contains("Host key verification failed") {
        "; its SSH host key could not be verified (sintra records a new host's key and refuses \
         a changed one)"
    } else {
        ""
    };
    if s.is_empty() {
        hint.to_string()
    } else {
        format!("{hint}; its stderr ends with:\n{s}")
    }
}
