//! `sintra mcp` (issue #19): a Model Context Protocol server over stdio, so that an agent can
//! inspect, compress, benchmark and optimize models and read the history as tools.
//!
//! The transport is MCP's stdio one: JSON-RPC 2.0 messages, one per line, requests from the
//! client on stdin, responses and notifications on stdout (logs go to stderr). Each tool runs
//! this very program's subcommand ([`tools`]) in a child process, so a tool does exactly what
//! the command line does; a long tool reports progress (`notifications/progress`, when the call
//! carries a `progressToken`) from the lines its command prints, and a
//! `notifications/cancelled` stops its process. Calls run concurrently; the server answers
//! `ping` while an optimization runs.

mod tools;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

/// Protocol revisions this server speaks, newest first.
const VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// The longest message read (a longer line is refused and skipped, not buffered whole).
const MAX_LINE: usize = 4 << 20;

/// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Where messages go: stdout, one line each, never interleaved.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Out")
    }
}

impl Out {
    fn send(&self, msg: &Value) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A client that closed stdout has gone: nothing to tell it.
        let _ = writeln!(w, "{msg}").and_then(|()| w.flush());
    }

    fn result(&self, id: &Value, result: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn error(&self, id: &Value, code: i64, message: &str) {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        );
    }

    /// `notifications/progress` for `token`.
    pub fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: &str) {
        let mut params = json!({"progressToken": token, "progress": progress, "message": message});
        if let Some(t) = total {
            params["total"] = json!(t);
        }
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": params}));
    }
}

/// Calls in flight, by request id: what cancels each.
type Running = Arc<Mutex<HashMap<String, tools::Cancel>>>;

/// Serve MCP on stdin and stdout until stdin closes.
pub fn serve() -> anyhow::Result<()> {
    let out = Out(Arc::new(Mutex::new(Box::new(std::io::stdout()))));
    serve_on(std::io::stdin().lock(), out)
}

/// Serve MCP on `input`, writing to `out`, until `input` ends; calls still running then are
/// waited for (their answers are sent).
pub fn serve_on(mut input: impl BufRead, out: Out) -> anyhow::Result<()> {
    let running: Running = Arc::default();
    let mut calls = Vec::new();
    loop {
        let line = match read_line(&mut input)? {
            Line::End => break,
            Line::TooLong(n) => {
                out.error(
                    &Value::Null,
                    INVALID_REQUEST,
                    &format!("a message of {n} bytes or more: at most {MAX_LINE} are read"),
                );
                continue;
            }
            Line::Text(l) => l,
        };
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                out.error(&Value::Null, PARSE_ERROR, &format!("not JSON: {e}"));
                continue;
            }
        };
        if msg.is_array() {
            out.error(&Value::Null, INVALID_REQUEST, "batches are not part of MCP");
            continue;
        }
        let method = msg["method"].as_str().unwrap_or("");
        let id = msg.get("id").cloned();
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let Some(id) = id else {
            // A notification: no answer.
            if method == "notifications/cancelled" {
                let key = params["requestId"].to_string();
                if let Some(c) = running.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
                    c.cancel();
                }
            }
            continue;
        };
        if msg["jsonrpc"] != "2.0" || method.is_empty() {
            out.error(
                &id,
                INVALID_REQUEST,
                "not a JSON-RPC 2.0 request (jsonrpc \"2.0\" and a method)",
            );
            continue;
        }
        match method {
            "initialize" => {
                let asked = params["protocolVersion"].as_str().unwrap_or("");
                let version = VERSIONS
                    .iter()
                    .find(|v| **v == asked)
                    .unwrap_or(&VERSIONS[0]);
                out.result(
                    &id,
                    json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": false}},
                        "serverInfo": {"name": "sintra", "version": env!("CARGO_PKG_VERSION")},
                        "instructions": "Sintra fits language models (GGUF) onto edge devices and measures them there. inspect a model, compress it with a recipe, bench it on a device, optimize it for a device's targets, and read past runs with history.",
                    }),
                );
            }
            "ping" => out.result(&id, json!({})),
            "tools/list" => out.result(&id, json!({"tools": tools::list()})),
            "tools/call" => {
                let name = params["name"].as_str().unwrap_or("").to_string();
                let args = params.get("arguments").cloned().unwrap_or(json!({}));
                let call = match tools::prepare(&name, &args) {
                    Ok(c) => c,
                    Err(tools::Refusal::UnknownTool) => {
                        out.error(
                            &id,
                            INVALID_PARAMS,
                            &format!("no tool named '{name}' (tools/list lists them)"),
                        );
                        continue;
                    }
                    Err(tools::Refusal::BadArguments(why)) => {
                        out.error(&id, INVALID_PARAMS, &format!("{name}: {why}"));
                        continue;
                    }
                };
                let token = params["_meta"]["progressToken"].clone();
                let cancel = tools::Cancel::default();
                let key = id.to_string();
                running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), cancel.clone());
                let (out, running) = (out.clone(), running.clone());
                calls.push(std::thread::spawn(move || {
                    let progress = (!token.is_null()).then_some((&out, &token));
                    let result = call.run(progress, &cancel);
                    running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    // A cancelled request gets no answer (the protocol says so).
                    if !cancel.cancelled() {
                        out.result(&id, result);
                    }
                }));
            }
            other => out.error(
                &id,
                METHOD_NOT_FOUND,
                &format!("method '{other}' is not served (this server has tools only)"),
            ),
        }
    }
    for c in calls {
        let _ = c.join();
    }
    Ok(())
}

/// One line of input.
enum Line {
    Text(String),
    /// Longer than [`MAX_LINE`]: skipped to its end; how much was seen.
    TooLong(usize),
    End,
}

/// The next line, without buffering more than [`MAX_LINE`] bytes of it.
fn read_line(input: &mut impl BufRead) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut skipped = 0usize;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(match (buf.is_empty(), skipped) {
                (true, 0) => Line::End,
                (_, 0) => Line::Text(String::from_utf8_lossy(&buf).into_owned()),
                _ => Line::TooLong(skipped),
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if skipped > 0 || buf.len() + take > MAX_LINE {
            skipped += buf.len() + take;
            buf.clear();
        } else {
            buf.extend_from_slice(&chunk[..take]);
        }
        input.consume(take);
        if done {
            if skipped > 0 {
                return Ok(Line::TooLong(skipped));
            }
            return Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the server writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn exchange(input: &str) -> Vec<Value> {
        let sink = Sink::default();
        serve_on(
            input.as_bytes(),
            Out(Arc::new(Mutex::new(Box::new(sink.clone())))),
        )
        .unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The protocol around the tools: the handshake, listing, ping, and an error for every
    /// kind of bad message; notifications get no answer.
    #[test]
    fn handshake_listing_and_errors() {
        let long = format!("{{\"x\": \"{}\"}}", "a".repeat(MAX_LINE + 10));
        let input = [
            r#"{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}"#,
            r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#,
            r#"{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}"#,
            r#"{"jsonrpc": "2.0", "id": "p", "method": "ping"}"#,
            "{not json",
            r#"[{"jsonrpc": "2.0", "id": 3, "method": "ping"}]"#,
            r#"{"id": 4, "method": "ping"}"#,
            r#"{"jsonrpc": "2.0", "id": 5, "method": "resources/list"}"#,
            r#"{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "rm", "arguments": {}}}"#,
            r#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "bench", "arguments": {"model": 3}}}"#,
            &long,
            r#"{"jsonrpc": "2.0", "id": 8, "method": "ping"}"#,
        ]
        .join("\n");
        let got = exchange(&input);
        let by_id = |id: Value| {
            got.iter()
                .find(|m| m["id"] == id)
                .unwrap_or_else(|| panic!("{id}: {got:?}"))
        };
        let init = &by_id(json!(1))["result"];
        assert_eq!(init["protocolVersion"], "2024-11-05");
        assert_eq!(init["serverInfo"]["name"], "sintra");
        assert_eq!(
            by_id(json!(2))["result"]["tools"].as_array().unwrap().len(),
            5
        );
        assert_eq!(by_id(json!("p"))["result"], json!({}));
        assert_eq!(by_id(json!(4))["error"]["code"], INVALID_REQUEST);
        assert_eq!(by_id(json!(5))["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(by_id(json!(6))["error"]["code"], INVALID_PARAMS);
        let bad = by_id(json!(7))["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(bad.contains("'model'"), "{bad}");
        // The line after an oversized one is read as usual.
        assert_eq!(by_id(json!(8))["result"], json!({}));
        let anonymous: Vec<i64> = got
            .iter()
            .filter(|m| m["id"].is_null())
            .map(|m| m["error"]["code"].as_i64().unwrap())
            .collect();
        assert_eq!(
            anonymous,
            [PARSE_ERROR, INVALID_REQUEST, INVALID_REQUEST],
            "{got:?}"
        );
        // One answer per request, none for the notification.
        assert_eq!(got.len(), 11, "{got:?}");
    }
}
