//! HTTP/1.1 on a `TcpStream`, as much as an API server needs: a request line, headers and a
//! `Content-Length` body read under limits (header bytes, body bytes, a read timeout against
//! slow clients), keep-alive, and responses with a length or, for server-sent events, chunked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// Most bytes of request line and headers.
pub const MAX_HEAD: usize = 16 << 10;

/// Most bytes of a request body (a long chat fits; a model does not).
pub const MAX_BODY: usize = 1 << 20;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked to close the connection after this exchange.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection between requests (not an error to report).
    Closed,
    /// The connection failed or timed out.
    Io,
    /// The request is malformed or too large: answer with this status and message, then
    /// close.
    Bad(u16, String),
    /// A `/v1` request without the API key: answer 401 and close, its body unread.
    Unauthorized,
}

/// Whether `Authorization: Bearer KEY` names `key`; compared by digest, without an early exit.
fn bearer_is(req: &Request, key: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(key.as_bytes()),
    );
    a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Read one request from `r`. With `key`, a request for `/v1/...` without it is refused after
/// its headers, before its body is read.
pub fn read_request(r: &mut BufReader<TcpStream>, key: Option<&str>) -> Result<Request, ReadError> {
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r
            .by_ref()
            .take((MAX_HEAD - head.len() + 1) as u64)
            .read_until(b'\n', &mut line)
            .map_err(|_| ReadError::Io)?;
        if n == 0 {
            return if head.is_empty() && lines.is_empty() {
                Err(ReadError::Closed)
            } else {
                Err(ReadError::Bad(
                    400,
                    "the request ended inside its headers".into(),
                ))
            };
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return Err(ReadError::Bad(
                431,
                format!("the request's headers are longer than {MAX_HEAD} bytes"),
            ));
        }
        if !line.ends_with(b"\n") {
            return Err(ReadError::Bad(400, "a header line without its end".into()));
        }
        let text = String::from_utf8(line)
            .map_err(|_| ReadError::Bad(400, "headers that are not UTF-8".into()))?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // stray blank lines before a request are allowed (RFC 9112 2.2)
            }
            break;
        }
        lines.push(text);
    }
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(
            400,
            format!("a malformed request line: {:?}", snippet(&lines[0])),
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(505, format!("{version} is not supported")));
    }
    let mut headers = Vec::new();
    for l in &lines[1..] {
        let Some((k, v)) = l.split_once(':') else {
            return Err(ReadError::Bad(
                400,
                format!("a malformed header line: {:?}", snippet(l)),
            ));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
    };
    if let Some(key) = key {
        if req.path.starts_with("/v1") && !bearer_is(&req, key) {
            return Err(ReadError::Unauthorized);
        }
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(ReadError::Bad(
            411,
            "chunked request bodies are not supported: send Content-Length".into(),
        ));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            ReadError::Bad(
                400,
                format!("Content-Length {:?} is not a number", snippet(v)),
            )
        })?,
    };
    if len > MAX_BODY {
        return Err(ReadError::Bad(
            413,
            format!("the request body is {len} bytes, more than the {MAX_BODY} accepted"),
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            ReadError::Bad(400, format!("the body ended before its {len} bytes"))
        }
        _ => ReadError::Io,
    })?;
    req.body = body;
    Ok(req)
}

fn snippet(s: &str) -> String {
    s.chars().take(80).collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Write a whole response with a JSON body.
pub fn write_json(
    w: &mut impl Write,
    status: u16,
    body: &str,
    close: bool,
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(if close {
        "connection: close\r\n\r\n"
    } else {
        "connection: keep-alive\r\n\r\n"
    });
    w.write_all(head.as_bytes())?;
    w.write_all(body.as_bytes())?;
    w.flush()
}

/// A server-sent event stream: chunked transfer, one chunk per event.
#[derive(Debug)]
pub struct EventStream<'w, W: Write> {
    w: &'w mut W,
}

impl<'w, W: Write> EventStream<'w, W> {
    pub fn start(w: &'w mut W) -> std::io::Result<Self> {
        w.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n",
        )?;
        w.flush()?;
        Ok(EventStream { w })
    }

    /// `data: {data}\n\n`.
    pub fn send(&mut self, data: &str) -> std::io::Result<()> {
        let event = format!("data: {data}\n\n");
        write!(self.w, "{:x}\r\n{event}\r\n", event.len())?;
        self.w.flush()
    }

    /// The stream's last chunk.
    pub fn finish(self) -> std::io::Result<()> {
        self.w.write_all(b"0\r\n\r\n")?;
        self.w.flush()
    }
}
