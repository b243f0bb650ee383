//! A device over SSH, with the system's `ssh` and `scp` so that the user's `~/.ssh/config`
//! (hosts, keys, jump hosts, agents) applies as it does in their shell. Files are deployed into
//! one directory on the device (`~/.sintra` by default) and copied only when the SHA-256 there
//! differs: a file is uploaded under a temporary name and renamed, so a broken copy never
//! passes for a good one.

use super::channel::{describe_status, join_for, spawn_tail, Channel};
use super::error::DeviceError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to reach a device over SSH.
#[derive(Debug, Clone, Default)]
pub struct SshTarget {
    /// Host name or `~/.ssh/config` alias.
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Prepended to the runtime's command line on the device: `nice -n -5`,
    /// `qemu-aarch64-static`, `taskset -c 4-7`.
    pub exec_prefix: Option<String>,
    /// An ssh config file instead of `~/.ssh/config` (`ssh -F`).
    pub config_file: Option<PathBuf>,
    /// Extra `-o KEY=VALUE` options.
    pub options: Vec<String>,
    /// Directory on the device for the runtime and models; relative paths are under the home
    /// directory.
    pub remote_dir: String,
    /// How long to wait for the TCP connection and SSH handshake.
    pub connect_timeout: Duration,
}

/// A file to put on the device.
#[derive(Debug, Clone)]
pub struct Upload {
    pub local: PathBuf,
    /// Path relative to the remote directory.
    pub remote: String,
    pub executable: bool,
}

/// What a deploy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeployReport {
    /// Remote paths copied because they were missing or differed.
    pub uploaded: Vec<String>,
    /// Remote paths already identical on the device.
    pub unchanged: Vec<String>,
    pub bytes_uploaded: u64,
    pub seconds: f64,
}

/// Whether an ssh option would stop host keys being checked.
fn unchecked_host_keys(o: &str) -> bool {
    let Some((k, v)) = o.split_once('=') else {
        return false;
    };
    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
    (k == "stricthostkeychecking" && matches!(v.as_str(), "no" | "off" | "false"))
        || (k == "userknownhostsfile" && v.split_whitespace().any(|f| f == "/dev/null"))
}

/// `'text'` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SshTarget {
    /// `user@host` or `host`, for messages and scp.
    pub fn name(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    fn common_options(&self, cmd: &mut Command) {
        if let Some(f) = &self.config_file {
            cmd.arg("-F").arg(f);
        }
        cmd.args(["-o", "BatchMode=yes"]);
        cmd.arg("-o").arg(format!(
            "ConnectTimeout={}",
            self.connect_timeout.as_secs().max(1)
        ));
        for o in self.host_key_options() {
            cmd.arg("-o").arg(o);
        }
        for o in self.options.iter().filter(|o| !unchecked_host_keys(o)) {
            cmd.arg("-o").arg(o);
        }
    }

    /// Host keys are always checked (issue #20): a new device's key is recorded
    /// (`accept-new`), a changed one refused; the user's stricter `yes` is kept. What would
    /// turn checking off — `StrictHostKeyChecking=no` or a known-hosts file of `/dev/null`, in
    /// the options (an inventory's) or the user's ssh config — is replaced, with a warning:
    /// keys are then recorded in `$SINTRA_HOME/known_hosts`. Worked out once per target with
    /// `ssh -G` (the configuration ssh would use, without connecting).
    fn host_key_options(&self) -> Vec<String> {
        use std::collections::HashMap;
        static CACHE: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);
        let key = format!(
            "{:?}",
            (
                &self.host,
                &self.user,
                self.port,
                &self.config_file,
                &self.options
            )
        );
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        if let Some(o) = cache.get(&key) {
            return o.clone();
        }
        for o in self.options.iter().filter(|o| unchecked_host_keys(o)) {
            tracing::warn!(
                "{}: ignoring ssh option {o}: sintra always checks host keys (a new device's key \
                 is recorded, a changed one refused)",
                self.name()
            );
        }
        let mut g = Command::new("ssh");
        if let Some(f) = &self.config_file {
            g.arg("-F").arg(f);
        }
        for o in self.options.iter().filter(|o| !unchecked_host_keys(o)) {
            g.arg("-o").arg(o);
        }
        if let Some(p) = self.port {
            g.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &self.user {
            g.arg("-l").arg(u);
        }
        g.arg("-G").arg(&self.host);
        let resolved = g
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let value = |k: &str| {
            resolved
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
                .map(str::trim)
        };
        let mut out = Vec::new();
        if value("stricthostkeychecking") != Some("true") {
            out.push("StrictHostKeyChecking=accept-new".to_string());
        }
        if value("userknownhostsfile")
            .is_some_and(|f| f.split_whitespace().any(|f| f == "/dev/null"))
        {
            let file = crate::home::sintra_home()
                .map(|h| h.join("known_hosts"))
                .unwrap_or_else(|_| PathBuf::from("known_hosts"));
            if let Some(d) = file.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            tracing::warn!(
                "{}: the ssh configuration keeps no known hosts (/dev/null); sintra records \
                 this device's host key in {}",
                self.name(),
                file.display()
            );
            out.push(format!("UserKnownHostsFile={}", file.display()));
        }
        cache.insert(key, out.clone());
        out
    }

    /// `ssh [options] host -- command`.
    pub fn ssh_command(&self, remote_command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        self.common_options(&mut cmd);
        if let Some(p) = self.port {
            cmd.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &self.user {
            cmd.arg("-l").arg(u);
        }
        // -T: no terminal (the channel carries binary frames); -e none: no escape character.
        cmd.args(["-T", "-e", "none"]);
        cmd.arg(&self.host).arg("--").arg(remote_command);
        cmd
    }

    /// Run a short command on the device; its stdout.
    pub fn run(
        &self,
        what: &str,
        remote_command: &str,
        timeout: Duration,
    ) -> Result<String, DeviceError> {
        run_with_timeout(
            &self.name(),
            what,
            self.ssh_command(remote_command),
            timeout,
        )
    }

    fn remote(&self, rel: &str) -> String {
        format!("{}/{rel}", self.remote_dir.trim_end_matches('/'))
    }

    /// `uname -m` of the device.
    pub fn machine(&self) -> Result<String, DeviceError> {
        let out = self.run(
            "uname -m",
            "uname -m",
            self.connect_timeout + Duration::from_secs(20),
        )?;
        Ok(out.trim().to_string())
    }

    /// Copy `files` into the remote directory, skipping those whose SHA-256 on the device
    /// already matches.
    pub fn deploy(&self, files: &[Upload]) -> Result<DeployReport, DeviceError> {
        let t = Instant::now();
        let mut report = DeployReport::default();
        let local: Vec<String> = files
            .iter()
            .map(|f| super::sha256_hex(&f.local))
            .collect::<Result<_, _>>()?;
        // One round trip: make the directories, hash what is there.
        let mut dirs: Vec<String> = files
            .iter()
            .map(|f| match f.remote.rsplit_once('/') {
                Some((d, _)) => self.remote(d),
                None => self.remote_dir.clone(),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let quoted: Vec<String> = files
            .iter()
            .map(|f| shell_quote(&self.remote(&f.remote)))
            .collect();
        let dirs_q: Vec<String> = dirs.iter().map(|d| shell_quote(d)).collect();
        let script = format!(
            "mkdir -p {} && {{ sha256sum {} 2>/dev/null; true; }}",
            dirs_q.join(" "),
            quoted.join(" ")
        );
        let listing = self.run(
            "hashing deployed files",
            &script,
            self.connect_timeout + Duration::from_secs(120),
        )?;
        let remote_hashes: Vec<(String, String)> = listing
            .lines()
            .filter_map(|l| {
                let (h, p) = l.split_once("  ")?;
                Some((h.trim().to_string(), p.trim_start_matches('*').to_string()))
            })
            .collect();
        let mut renames = Vec::new();
        for (f, hash) in files.iter().zip(&local) {
            let path = self.remote(&f.remote);
            if remote_hashes.iter().any(|(h, p)| p == &path && h == hash) {
                report.unchanged.push(f.remote.clone());
                continue;
            }
            let size = std::fs::metadata(&f.local).map(|m| m.len()).unwrap_or(0);
            let part = format!("{path}.part");
            self.scp(&f.local, &part, size)?;
            renames.push(format!(
                "{}mv -f {} {}",
                if f.executable {
                    format!("chmod +x {} && ", shell_quote(&part))
                } else {
                    String::new()
                },
                shell_quote(&part),
                shell_quote(&path)
            ));
            report.uploaded.push(f.remote.clone());
            report.bytes_uploaded += size;
        }
        if !renames.is_empty() {
            self.run(
                "installing uploaded files",
                &renames.join(" && "),
                self.connect_timeout + Duration::from_secs(30),
            )?;
        }
        report.seconds = t.elapsed().as_secs_f64();
        Ok(report)
    }

    fn scp(&self, local: &Path, remote: &str, size: u64) -> Result<(), DeviceError> {
        let mut cmd = Command::new("scp");
        self.common_options(&mut cmd);
        cmd.arg("-q");
        if let Some(p) = self.port {
            cmd.arg("-P").arg(p.to_string());
        }
        if let Some(u) = &self.user {
            cmd.arg("-o").arg(format!("User={u}"));
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        cmd.arg(local).arg(format!("{host}:{remote}"));
        // A minute, plus a second per MiB (a slow Wi-Fi link moves a few MiB/s).
        let timeout = Duration::from_secs(60 + size / (1 << 20));
        run_with_timeout(
            &self.name(),
            &format!("copying {}", local.display()),
            cmd,
            timeout,
        )?;
        Ok(())
    }

    /// Start `runtime` (a path relative to the remote directory) in serve mode on stdio.
    pub fn start(&self, runtime: &str) -> Result<Channel, DeviceError> {
        let prefix = self
            .exec_prefix
            .as_deref()
            .map_or(String::new(), |p| format!("{p} "));
        let script = format!(
            "cd {} && exec {prefix}./{} serve",
            shell_quote(&self.remote_dir),
            shell_quote(runtime)
        );
        Channel::spawn(self.name(), self.ssh_command(&script))
    }
}

/// Run `cmd` to completion within `timeout`; its stdout, or an error with its stderr.
pub fn run_with_timeout(
    device: &str,
    what: &str,
    mut cmd: Command,
    timeout: Duration,
) -> Result<String, DeviceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DeviceError::Spawn { program, source })?;
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let out_pipe = child.stdout.take().expect("stdout was piped");
    let err_pipe = child.stderr.take().expect("stderr was piped");
    let out_thread = {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut p = out_pipe;
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut p, &mut buf);
            *out.lock().unwrap_or_else(|e| e.into_inner()) = buf;
        })
    };
    let err_thread = spawn_tail(err_pipe, err.clone());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                let stderr =
                    String::from_utf8_lossy(&err.lock().unwrap_or_else(|e| e.into_inner()))
                        .into_owned();
                return Err(DeviceError::Timeout {
                    device: device.to_string(),
                    what: what.to_string(),
                    after: timeout,
                    stderr,
                });
            }
        }
    };
    join_for(out_thread, Duration::from_secs(2));
    join_for(err_thread, Duration::from_secs(2));
    let stderr =
        String::from_utf8_lossy(&err.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    if !status.success() {
        return Err(DeviceError::Command {
            device: device.to_string(),
            what: what.to_string(),
            status: describe_status(status),
            stderr,
        });
    }
    let stdout = out.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

#[cfg(test)]
mod host_key_tests {
    use super::*;

    #[test]
    fn options_that_turn_checking_off_are_recognised() {
        for o in [
            "StrictHostKeyChecking=no",
            "stricthostkeychecking = off",
            "UserKnownHostsFile=/dev/null",
            "UserKnownHostsFile=~/.ssh/a /dev/null",
        ] {
            assert!(unchecked_host_keys(o), "{o}");
        }
        for o in [
            "StrictHostKeyChecking=accept-new",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=~/.ssh/known_hosts",
            "ProxyJump=bastion",
        ] {
            assert!(!unchecked_host_keys(o), "{o}");
        }
    }

    #[test]
    fn checking_is_accept_new_at_most_whatever_the_config_says() {
        let dir = tempfile::tempdir().unwrap();
        let target = |config: &str, options: &[&str]| {
            let f = dir.path().join(format!("config{}", config.len()));
            std::fs::write(&f, config).unwrap();
            SshTarget {
                host: "board".into(),
                config_file: Some(f),
                options: options.iter().map(|s| s.to_string()).collect(),
                ..SshTarget::default()
            }
        };
        let off = target(
            "Host board\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n",
            &[],
        )
        .host_key_options();
        assert_eq!(off[0], "StrictHostKeyChecking=accept-new", "{off:?}");
        assert!(
            off[1].starts_with("UserKnownHostsFile=") && off[1].ends_with("known_hosts"),
            "{off:?}"
        );
        let strict = target("Host board\n  StrictHostKeyChecking yes\n", &[]).host_key_options();
        assert!(strict.is_empty(), "{strict:?}");
        // An inventory's `-o StrictHostKeyChecking=no` is not passed on.
        let t = target(
            "Host board\n  StrictHostKeyChecking yes\n  UserKnownHostsFile /tmp/kh\n",
            &["StrictHostKeyChecking=no", "ConnectionAttempts=2"],
        );
        let mut cmd = Command::new("ssh");
        t.common_options(&mut cmd);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            !args.iter().any(|a| a == "StrictHostKeyChecking=no"),
            "{args:?}"
        );
        assert!(args.iter().any(|a| a == "ConnectionAttempts=2"), "{args:?}");
    }
}
