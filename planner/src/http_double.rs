//! TEST DOUBLE: a scripted HTTP/1.1 server on 127.0.0.1 for the LLM and download tests.
//!
//! It stands in for OpenAI, Anthropic, Ollama and the Hugging Face hub, which the tests cannot
//! reach. Each accepted connection reads one request, records it (method, path, headers, body)
//! and answers with the next scripted [`Reply`], then closes the connection. The server thread
//! stops once the script is spent, when [`TestServer::finish`] is called, or when no client comes
//! within [`ACCEPT_WAIT`], so a failing test never leaves it running. Only loopback is used.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server waits for each next connection before it gives up on the script.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// Largest request head the double reads (the clients under test send far less).
const MAX_HEAD: usize = 64 * 1024;

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lowercased, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (the test fails if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is not json")
    }
}

/// Builds a reply from the recorded request.
pub type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// What the double sends back on one connection.
pub enum Reply {
    /// A whole response with a `content-length` header (no body for HEAD requests).
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers announce `declared` bytes but only `body` is sent before the connection closes.
    Cut {
        status: u16,
        headers: Vec<(String, String)>,
        declared: usize,
        body: Vec<u8>,
    },
    /// Send nothing until the client gives up (or `Duration` passes), then close.
    Hang(Duration),
    /// A reply computed from the request (for Range handling).
    Dynamic(Responder),
}

impl Reply {
    /// A 200-style reply with a JSON body.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// A reply with a text body and extra headers.
    pub fn text(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Full {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Full { status, .. } => write!(f, "Full({status})"),
            Reply::Cut {
                status, declared, ..
            } => write!(f, "Cut({status}, {declared})"),
            Reply::Hang(d) => write!(f, "Hang({d:?})"),
            Reply::Dynamic(_) => write!(f, "Dynamic"),
        }
    }
}

/// A running double; [`TestServer::finish`] returns what it received.
#[derive(Debug)]
pub struct TestServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Recorded>>,
}

impl TestServer {
    /// Starts the double on an ephemeral loopback port with a script of replies, one per
    /// connection, in order.
    pub fn start(script: Vec<Reply>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(listener, script, &flag));
        TestServer { port, stop, thread }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops waiting for more clients (connections already made are still answered) and
    /// returns the requests received, in order. Call it after the client under test returned.
    pub fn finish(self) -> Vec<Recorded> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("test server thread panicked")
    }
}

fn serve(listener: TcpListener, script: Vec<Reply>, stop: &AtomicBool) -> Vec<Recorded> {
    let mut seen = Vec::new();
    for reply in script {
        let Some(mut stream) = accept(&listener, stop) else {
            break;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Some(request) = read_request(&mut stream) else {
            continue;
        };
        let reply = match reply {
            Reply::Dynamic(f) => f(&request),
            other => other,
        };
        answer(&mut stream, &request, reply);
        seen.push(request);
    }
    seen
}

fn accept(listener: &TcpListener, stop: &AtomicBool) -> Option<TcpStream> {
    let deadline = Instant::now() + ACCEPT_WAIT;
    // A pending connection is taken before the stop flag is looked at.
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((s, _)) => return Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => return None,
        }
    }
    None
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn answer(stream: &mut TcpStream, request: &Recorded, reply: Reply) {
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let head = head(status, &headers, body.len());
            let _ = stream.write_all(head.as_bytes());
            if request.method != "HEAD" {
                let _ = stream.write_all(&body);
            }
        }
        Reply::Cut {
            status,
            headers,
            declared,
            body,
        } => {
            let head = head(status, &headers, declared);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
        Reply::Hang(limit) => {
            // Wait until the client closes the connection (read returns 0 or fails) or the
            // limit passes, whichever comes first.
            let _ = stream.set_read_timeout(Some(limit));
            let mut sink = [0u8; 256];
            let _ = stream.read(&mut sink);
        }
        Reply::Dynamic(_) => {}
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn head(status: u16, headers: &[(String, String)], length: usize) -> String {
    let mut s =
        format!("HTTP/1.1 {status} Status\r\ncontent-length: {length}\r\nconnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
