//! A real OpenSSH server for tests and benches: throwaway host and user keys, its own config,
//! a free port on the loopback addresses asked for. Needs `/usr/sbin/sshd` and `ssh-keygen`
//! (openssh-server; `scripts/setup.sh` installs it) and permission to start sshd (root, as in
//! CI).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `cmd`; its output, or a panic with both streams when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An sshd of our own on a free port of 127.0.0.1, and an ssh config naming it `sintra-test`
/// (also used by the planner's tests).
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_on(&["127.0.0.1"])
    }

    /// An sshd listening on each of `addrs` (loopback addresses: 127.0.0.2 and up need no setup
    /// on Linux), on one free port.
    pub fn start_on(addrs: &[&str]) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = &dir.path().to_path_buf();
        // sshd's privilege separation directory; a fresh CI machine may not have it.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (run as root)");
        for key in ["host_key", "user_key"] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(d.join(key)),
            );
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        let user = String::from_utf8(run_ok(Command::new("id").arg("-un")).stdout)
            .unwrap()
            .trim()
            .to_string();
        let port = free_port();
        let listen: String = addrs
            .iter()
            .map(|a| format!("ListenAddress {a}\n"))
            .collect();
        let config = format!(
            "Port {port}\n{listen}HostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let client = format!(
            "Host sintra-test\n  HostName {}\n  Port {port}\n  User {user}\n  IdentityFile {d}/user_key\n\
             \x20 IdentitiesOnly yes\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {d}/known_hosts\n  LogLevel ERROR\n",
            addrs[0],
            d = d.display()
        );
        std::fs::write(d.join("ssh_config"), client).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/sshd (apt-get install openssh-server)");
        let mut sshd = Sshd { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect((addrs[0], port)).is_ok() {
                break;
            }
            if let Ok(Some(s)) = sshd.child.try_wait() {
                panic!("sshd exited at start ({s}): check {}", d.display());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The client key that logs in (the current user's, on this sshd).
    pub fn user_key(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    /// Kill the sshd and every session it started (what a device losing power looks like to
    /// the planner: the connection drops, the runtime with it).
    pub fn kill_all(&mut self) {
        let root = self.child.id();
        let mut doomed = vec![root];
        // Descendants by parent pid, from /proc (sessions fork off the listener).
        loop {
            let before = doomed.len();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...: the fields after the last ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid.is_some_and(|p| doomed.contains(&p)) && !doomed.contains(&pid) {
                    doomed.push(pid);
                }
            }
            if doomed.len() == before {
                break;
            }
        }
        for pid in doomed {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.child.wait();
    }

    /// A fresh directory for the device's files.
    pub fn remote_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
