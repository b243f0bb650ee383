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
pub fn serve_on(input: impl BufRead, out: Out) -> anyhow::Result<()> {
    let running: Running = Arc::default();
    let mut calls = Vec::new();
    for line in input.lines() {
        let line = line?;
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
