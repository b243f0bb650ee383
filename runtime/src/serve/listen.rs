//! `sintra-rt serve --listen ADDR`: the wire protocol on a TCP socket, safe by default.
//!
//! - `--listen PORT` or `:PORT` binds loopback; another machine's reach needs an address
//!   (`0.0.0.0:7878`) **and** a token (`--token-file FILE` or `SINTRA_RT_TOKEN`): without one
//!   the runtime refuses to start.
//! - Every connection first sends [`AUTH_PREFIX`], the token and a newline (at most
//!   [`MAX_AUTH_LINE`] bytes, within [`AUTH_TIMEOUT`]); a wrong or missing token is refused
//!   before any request is read. The token is compared by digest and never logged.
//! - One planner is served at a time (one model, all cores): another is told the runtime is
//!   busy. At most [`MAX_CONNECTIONS`] connections exist at once, and at most
//!   [`MAX_PENDING_PER_IP`] from one address before their token line (more are closed at once); an
//!   authenticated session silent for the idle timeout is closed; a client that stops reading
//!   our answers is dropped after [`WRITE_TIMEOUT`]. Frames past the protocol's cap are refused
//!   by the frame reader without being stored.
//! - Every path a client names is confined to the work directory (`--root`, see
//!   [`super::confine`]).

use super::{error, log, serve_confined};
use formats::wire::{self, ErrorKind, AUTH_PREFIX, MAX_AUTH_LINE};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most connections open at once (authenticating or served).
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections from one IP address still to send their token line: a client that opens
/// many and says nothing fills its own quota, not the planner's.
pub const MAX_PENDING_PER_IP: usize = 4;
/// How long a new connection has to send its token line.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a client may block before the client is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `serve --listen` was told.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub addr: String,
    /// The shared secret every connection must present; required off loopback.
    pub token: Option<String>,
    /// The work directory paths are confined to (default: the current directory).
    pub root: Option<PathBuf>,
    /// A session silent this long is closed.
    pub idle: Duration,
}

/// `ADDR`, `:PORT` or `PORT` as a socket address (`flag` names the option in errors); no host
/// means loopback. Shared by `--listen` and `--http`.
pub fn resolve_addr(flag: &str, addr: &str) -> Result<SocketAddr, String> {
    let full = match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) => {
            format!("127.0.0.1:{addr}")
        }
        None => addr.to_string(),
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{flag} {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{flag} {addr}: no address"))
}

struct Shared {
    token: Option<[u8; 32]>,
    root: PathBuf,
    idle: Duration,
    connections: AtomicUsize,
    /// Connections per peer address that have not sent their token line yet.
    pending: Mutex<HashMap<IpAddr, usize>>,
    /// Held while a planner is served.
    session: Mutex<()>,
}

/// Accept planners until one sends `Shutdown`.
pub fn listen(opts: &ListenOptions) -> Result<(), String> {
    let addr = resolve_addr("--listen", &opts.addr)?;
    let token = opts.token.as_deref().filter(|t| !t.is_empty());
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(format!(
            "--listen {}: {addr} is reachable from other machines, and anyone reaching it could \
             load and run files as this user; give a token the planner also has \
             (--token-file FILE or SINTRA_RT_TOKEN; make one with `head -c 32 /dev/urandom | \
             base64 > token`), or listen on loopback (--listen PORT)",
            opts.addr
        ));
    }
    if token.is_some_and(|t| t.contains('\n') || t.len() + AUTH_PREFIX.len() >= MAX_AUTH_LINE) {
        return Err(format!(
            "the token must be one line shorter than {} bytes",
            MAX_AUTH_LINE - AUTH_PREFIX.len()
        ));
    }
    let root = match &opts.root {
        Some(r) => r.clone(),
        None => std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?,
    };
    let root = root
        .canonicalize()
        .map_err(|e| format!("--root {}: {e}", root.display()))?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // The planner (or a test) reads the port from this line when it asked for port 0.
    log(format!(
        "listening on {local} (work directory {}; {})",
        root.display(),
        if token.is_some() {
            "token required"
        } else {
            "loopback, no token"
        }
    ));
    let shared = Arc::new(Shared {
        token: token.map(digest),
        root,
        idle: opts.idle,
        connections: AtomicUsize::new(0),
        pending: Mutex::new(HashMap::new()),
        session: Mutex::new(()),
    });
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log(format!("accept failed: {e}"));
                continue;
            }
        };
        let Ok(peer_addr) = stream.peer_addr() else {
            continue;
        };
        let peer = peer_addr.to_string();
        if !shared.pend(peer_addr.ip(), 1) {
            log(format!(
                "closed {peer} at once: {MAX_PENDING_PER_IP} connections from {} have not sent a token line yet",
                peer_addr.ip()
            ));
            continue;
        }
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.pend(peer_addr.ip(), -1);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            log(format!(
                "closed {peer} at once: {MAX_CONNECTIONS} connections are open"
            ));
            continue;
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let shutdown = connection(stream, peer_addr.ip(), &peer, &shared);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            if shutdown {
                log(format!("{peer} asked the runtime to shut down"));
                std::process::exit(0);
            }
        });
    }
    Ok(())
}

impl Shared {
    /// Count a connection from `ip` still to authenticate (`+1`; `false` past the quota) or
    /// one that has (`-1`).
    fn pend(&self, ip: IpAddr, by: isize) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let n = p.entry(ip).or_insert(0);
        if by > 0 && *n >= MAX_PENDING_PER_IP {
            return false;
        }
        *n = n.saturating_add_signed(by);
        if *n == 0 {
            p.remove(&ip);
        }
        true
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Equal digests, compared without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The token line, read up to its newline (nothing after it is consumed). Bytes that cannot
/// begin [`AUTH_PREFIX`] are refused as soon as they arrive.
fn read_auth_line(r: &mut impl BufRead) -> Result<String, String> {
    let not_auth = || {
        format!(
            "the connection did not open with `{}TOKEN\\n` (clients of protocol {} or later do)",
            AUTH_PREFIX,
            wire::PROTOCOL_VERSION
        )
    };
    let prefix = AUTH_PREFIX.as_bytes();
    let mut line = Vec::new();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no token line within {} s", AUTH_TIMEOUT.as_secs()))
            }
            Err(e) => return Err(format!("reading the token line: {e}")),
        };
        if avail.is_empty() {
            return Err("closed before sending a token line".into());
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        line.extend_from_slice(&avail[..take]);
        r.consume(if done { take + 1 } else { take });
        let n = line.len().min(prefix.len());
        if line[..n] != prefix[..n] || (done && line.len() < prefix.len()) {
            return Err(not_auth());
        }
        if line.len() + 1 > MAX_AUTH_LINE {
            return Err(format!(
                "the token line is longer than {MAX_AUTH_LINE} bytes"
            ));
        }
        if done {
            break;
        }
    }
    let line = String::from_utf8(line).map_err(|_| "the token line is not UTF-8".to_string())?;
    Ok(line[AUTH_PREFIX.len()..].to_string())
}

/// Serve one connection; `true` when its planner sent `Shutdown`.
fn connection(stream: TcpStream, ip: IpAddr, peer: &str, shared: &Shared) -> bool {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(reader) = stream
        .set_read_timeout(Some(AUTH_TIMEOUT))
        .and_then(|()| stream.try_clone())
    else {
        shared.pend(ip, -1);
        return false;
    };
    let mut reader = BufReader::with_capacity(MAX_AUTH_LINE, reader);
    let mut writer = stream;
    let refuse = |w: &mut TcpStream, why: String| {
        log(format!("refused {peer}: {why}"));
        let _ = wire::write_frame(w, &error(ErrorKind::Refused, why));
        false
    };
    let line = read_auth_line(&mut reader);
    shared.pend(ip, -1);
    let token = match line {
        Ok(t) => t,
        Err(why) => return refuse(&mut writer, why),
    };
    if let Some(want) = &shared.token {
        if !same(want, &digest(&token)) {
            let why = if token.is_empty() {
                "this runtime requires a token (the planner sends SINTRA_RT_TOKEN)"
            } else {
                "wrong token"
            };
            return refuse(&mut writer, why.into());
        }
    }
    // One planner at a time; the others are told so.
    let _slot = match shared.session.try_lock() {
        Ok(s) => s,
        Err(_) => {
            return refuse(
                &mut writer,
                "busy: another planner is being served; try again when it is done".into(),
            )
        }
    };
    log(format!("planner connected from {peer}"));
    if writer.set_read_timeout(Some(shared.idle)).is_err() {
        return false;
    }
    match serve_confined(reader, writer, false, Some(shared.root.clone())) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            log(format!("connection from {peer} ended: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn addresses_without_a_host_are_loopback() {
        let r = |a| resolve_addr("--listen", a);
        assert!(r("7878").unwrap().ip().is_loopback());
        assert!(r(":7878").unwrap().ip().is_loopback());
        assert!(!r("0.0.0.0:7878").unwrap().ip().is_loopback());
        assert!(r("").unwrap_err().starts_with("--listen"));
    }

    #[test]
    fn a_token_line_is_read_to_its_newline_and_no_further() {
        let mut r = std::io::Cursor::new(b"SINTRA-AUTH s3cret\nFRAME".to_vec());
        assert_eq!(read_auth_line(&mut r).unwrap(), "s3cret");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "FRAME");
        let mut long = AUTH_PREFIX.as_bytes().to_vec();
        long.resize(MAX_AUTH_LINE * 4, b'x');
        let e = read_auth_line(&mut std::io::Cursor::new(long)).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        // A frame instead of the line: refused on its first byte, without waiting for more.
        let e = read_auth_line(&mut std::io::Cursor::new(b"\x01\x02")).unwrap_err();
        assert!(e.contains("did not open with"), "{e}");
        assert!(read_auth_line(&mut std::io::Cursor::new(b"GET / HTTP/1.1\n")).is_err());
        assert!(read_auth_line(&mut std::io::Cursor::new(b"")).is_err());
        assert!(same(&digest("a"), &digest("a")) && !same(&digest("a"), &digest("b")));
    }

    #[test]
    fn no_token_no_network() {
        let e = listen(&ListenOptions {
            addr: "0.0.0.0:0".into(),
            token: None,
            root: None,
            idle: Duration::from_secs(1),
        })
        .unwrap_err();
        assert!(e.contains("token") && e.contains("0.0.0.0"), "{e}");
    }
}
