//! The MCP server's tools: each one's JSON Schema, its arguments checked against it, and the
//! `sintra` command line it runs (this program, in a child process).

use super::Out;
use serde_json::{json, Map, Value};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The most bytes of a command's output a result carries (its end, where the summary is).
const MAX_TEXT: usize = 64 << 10;

/// Every tool: name, description, input schema.
pub fn list() -> Vec<Value> {
    let model = json!({"type": "string", "description": "A GGUF file (a path on the machine running sintra)"});
    vec![
        json!({
            "name": "inspect",
            "description": "Describe a GGUF model: architecture, hyper-parameters, tokenizer, tensors and their types, size (JSON).",
            "inputSchema": {"type": "object", "properties": {
                "model": {"type": "string", "description": "A GGUF file (default: SmolLM2-135M-Instruct from the setup cache)"}
            }, "additionalProperties": false},
        }),
        json!({
            "name": "compress",
            "description": "Write one recipe (per-tensor types, dropped layers, pruning) of a GGUF model to a new GGUF file. The source is never modified.",
            "inputSchema": {"type": "object", "properties": {
                "model": model,
                "recipe": {"type": "object", "description": "A recipe: {\"default_type\": \"Q4_K\", \"overrides\": [{\"tensor\": REGEX, \"type\": TYPE}], \"drop_layers\": [], \"imatrix\": false}"},
                "output": {"type": "string", "description": "The GGUF file to write (atomically)"}
            }, "required": ["model", "recipe", "output"], "additionalProperties": false},
        }),
        json!({
            "name": "bench",
            "description": "Benchmark a GGUF model on a device with sintra-rt (llama-bench's prompt processing and generation, tokens per second per repetition, JSON).",
            "inputSchema": {"type": "object", "properties": {
                "model": model,
                "device": {"type": "string", "description": "local (default), user@host[:port], an ssh alias, tcp://HOST:PORT or a profile YAML"},
                "n_prompt": {"type": "integer", "minimum": 0, "maximum": 16384, "description": "prompt tokens (default 64; 0 skips)"},
                "n_gen": {"type": "integer", "minimum": 0, "maximum": 16384, "description": "generated tokens (default 32; 0 skips)"},
                "repetitions": {"type": "integer", "minimum": 1, "maximum": 100, "description": "default 3"},
                "threads": {"type": "integer", "minimum": 0, "maximum": 1024, "description": "0: all cores (default)"}
            }, "required": ["model"], "additionalProperties": false},
        }),
        json!({
            "name": "optimize",
            "description": "Find a recipe that meets a device's speed and accuracy targets: propose, write, benchmark on the device, score against the original, repeat. Long-running: reports progress per iteration. Returns the run's summary (best recipe, outputs).",
            "inputSchema": {"type": "object", "properties": {
                "model": {"type": "string", "description": "A GGUF path, a file in the model cache, or a Hugging Face repository owner/name (default: SmolLM2-135M-Instruct)"},
                "profile": {"type": "string", "description": "A hardware profile name (rpi4, rpi5, jetson-nano, jetson-orin-nano, x86-laptop, qemu-aarch64) or YAML file; default: this machine, detected"},
                "fleet": {"type": "string", "description": "An Ansible inventory: measure speed on every host of it"},
                "max_iters": {"type": "integer", "minimum": 1, "maximum": 100, "description": "default 5"},
                "target_tps": {"type": "number", "exclusiveMinimum": 0},
                "target_speedup": {"type": "number", "exclusiveMinimum": 0},
                "target_accuracy": {"type": "number", "minimum": 0, "maximum": 1},
                "no_sensitivity": {"type": "boolean", "description": "skip the sensitivity pass (faster first run)"},
                "mock": {"type": "boolean", "description": "write and measure nothing: a documented formula (marked mock)"},
                "output_dir": {"type": "string", "description": "where the run's directory goes (default ./outputs)"}
            }, "additionalProperties": false},
        }),
        json!({
            "name": "history",
            "description": "Past runs and the best recipe per device and model; with fleet, every fleet device and its figures side by side.",
            "inputSchema": {"type": "object", "properties": {
                "fleet": {"type": "boolean"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 10000, "description": "most runs to list (default 20)"}
            }, "additionalProperties": false},
        }),
    ]
}

/// Why a call is refused before it runs.
#[derive(Debug)]
pub enum Refusal {
    UnknownTool,
    BadArguments(String),
}

/// How a command's lines become progress.
#[derive(Debug, Clone, Copy)]
enum Progress {
    /// Every line it prints on stderr is a step.
    Lines,
    /// Its `#N ...` lines are iterations N of `total`.
    Iterations { total: u32 },
}

/// A checked call: the command line to run.
#[derive(Debug)]
pub struct Call {
    args: Vec<OsString>,
    progress: Progress,
    /// Files the call needs while it runs (a recipe written for `compress`).
    _keep: Option<tempfile::TempDir>,
}

/// Stops a call's process; remembers that it was asked to.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Mutex<(bool, Option<Child>)>>);

impl Cancel {
    pub fn cancel(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = true;
        if let Some(c) = &mut g.1 {
            let _ = c.kill();
        }
    }

    pub fn cancelled(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// The arguments, checked against the tool's schema's properties and types.
struct Args<'a> {
    tool: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    fn new(tool: &'a str, args: &'a Value, schema: &Value) -> Result<Self, Refusal> {
        let map = args.as_object().ok_or_else(|| {
            Refusal::BadArguments(format!("arguments must be an object, found {args}"))
        })?;
        let props = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in map {
            let Some(p) = props.get(k) else {
                let known: Vec<&String> = props.keys().collect();
                return Err(Refusal::BadArguments(format!(
                    "unknown argument '{k}' (known: {})",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let ok = match p["type"].as_str() {
                Some("string") => v.is_string(),
                Some("integer") => v.as_i64().is_some_and(|n| {
                    p["minimum"].as_i64().is_none_or(|m| n >= m)
                        && p["maximum"].as_i64().is_none_or(|m| n <= m)
                }),
                Some("number") => v.as_f64().is_some_and(|n| {
                    n.is_finite()
                        && p["minimum"].as_f64().is_none_or(|m| n >= m)
                        && p["maximum"].as_f64().is_none_or(|m| n <= m)
                        && p["exclusiveMinimum"].as_f64().is_none_or(|m| n > m)
                }),
                Some("boolean") => v.is_boolean(),
                Some("object") => v.is_object(),
                _ => true,
            };
            if !ok {
                return Err(Refusal::BadArguments(format!(
                    "argument '{k}' is {v}: {} expected{}",
                    p["type"].as_str().unwrap_or("?"),
                    match (&p["minimum"], &p["maximum"]) {
                        (Value::Number(a), Value::Number(b)) => format!(" from {a} to {b}"),
                        _ => String::new(),
                    }
                )));
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or("");
            if !map.contains_key(r) {
                return Err(Refusal::BadArguments(format!("argument '{r}' is required")));
            }
        }
        Ok(Args { tool, map })
    }

    fn str(&self, k: &str) -> Option<&'a str> {
        self.map.get(k).and_then(Value::as_str)
    }

    fn num(&self, k: &str) -> Option<String> {
        self.map
            .get(k)
            .filter(|v| v.is_number())
            .map(|v| v.to_string())
    }

    fn flag(&self, k: &str) -> bool {
        self.map.get(k).and_then(Value::as_bool).unwrap_or(false)
    }
}

/// Check `args` for tool `name` and build its command line.
pub fn prepare(name: &str, args: &Value) -> Result<Call, Refusal> {
    let all = list();
    let tool = all
        .iter()
        .find(|t| t["name"] == name)
        .ok_or(Refusal::UnknownTool)?;
    let a = Args::new(name, args, &tool["inputSchema"])?;
    let mut cmd: Vec<OsString> = Vec::new();
    let mut push = |s: &str| cmd.push(s.into());
    let mut keep = None;
    let mut progress = Progress::Lines;
    match a.tool {
        "inspect" => {
            push("inspect");
            if let Some(m) = a.str("model") {
                push(m);
            }
            push("--json");
        }
        "compress" => {
            let dir = tempfile::tempdir()
                .map_err(|e| Refusal::BadArguments(format!("no room for the recipe: {e}")))?;
            let recipe = dir.path().join("recipe.json");
            std::fs::write(&recipe, a.map["recipe"].to_string())
                .map_err(|e| Refusal::BadArguments(format!("writing the recipe: {e}")))?;
            push("compress");
            push(a.str("model").unwrap_or_default());
            push("--recipe");
            cmd.push(recipe.into_os_string());
            cmd.push("-o".into());
            cmd.push(a.str("output").unwrap_or_default().into());
            keep = Some(dir);
        }
        "bench" => {
            push("bench");
            push(a.str("model").unwrap_or_default());
            push("--device");
            push(a.str("device").unwrap_or("local"));
            for (k, flag, default) in [
                ("n_prompt", "-p", "64"),
                ("n_gen", "-n", "32"),
                ("repetitions", "-r", "3"),
                ("threads", "-t", "0"),
            ] {
                push(flag);
                push(&a.num(k).unwrap_or_else(|| default.into()));
            }
            push("--json");
        }
        "optimize" => {
            match (a.str("profile"), a.str("fleet")) {
                (Some(p), _) => push(p),
                (None, Some(_)) => {}
                (None, None) => push("--auto-detect"),
            }
            if let Some(f) = a.str("fleet") {
                push("--fleet");
                push(f);
            }
            if let Some(m) = a.str("model") {
                push("--model-id");
                push(m);
            }
            let iters = a.num("max_iters").unwrap_or_else(|| "5".into());
            progress = Progress::Iterations {
                total: iters.parse().unwrap_or(5),
            };
            push("--max-iters");
            push(&iters);
            for (k, flag) in [
                ("target_tps", "--target-tps"),
                ("target_speedup", "--target-speedup"),
                ("target_accuracy", "--target-accuracy"),
            ] {
                if let Some(v) = a.num(k) {
                    push(flag);
                    push(&v);
                }
            }
            if let Some(d) = a.str("output_dir") {
                push("--output-dir");
                push(d);
            }
            for (k, flag) in [("no_sensitivity", "--no-sensitivity"), ("mock", "--mock")] {
                if a.flag(k) {
                    push(flag);
                }
            }
        }
        "history" => {
            push("history");
            if a.flag("fleet") {
                push("--fleet");
            }
            if let Some(n) = a.num("limit") {
                push("--limit");
                push(&n);
            }
        }
        other => unreachable!("tool {other} is listed but not built"),
    }
    Ok(Call {
        args: cmd,
        progress,
        _keep: keep,
    })
}

/// The last `MAX_TEXT` bytes of `s`, on a character boundary.
fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(MAX_TEXT);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Call {
    /// Run the command; the tool result (`isError` when it failed, with what it printed).
    pub fn run(&self, progress: Option<(&Out, &Value)>, cancel: &Cancel) -> Value {
        let text = |t: String, error: bool| json!({"content": [{"type": "text", "text": t}], "isError": error});
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return text(format!("cannot find the sintra program: {e}"), true),
        };
        let child = Command::new(&exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return text(format!("starting {}: {e}", exe.display()), true),
        };
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        {
            let mut g = cancel.0.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 {
                let _ = child.kill();
            }
            g.1 = Some(child);
        }
        let steps = Mutex::new(0u32);
        let report = |line: &str, from_stdout: bool| {
            let Some((out, token)) = progress else { return };
            match self.progress {
                Progress::Iterations { total } => {
                    let n = line
                        .strip_prefix('#')
                        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|n| n.parse::<u32>().ok());
                    if let (true, Some(n)) = (from_stdout, n) {
                        out.progress(token, n as f64, Some(total as f64), line);
                    }
                }
                // What a command says on stdout is its result; its progress goes to stderr.
                Progress::Lines if from_stdout => {}
                Progress::Lines => {
                    let mut s = steps.lock().unwrap_or_else(|p| p.into_inner());
                    *s += 1;
                    out.progress(token, *s as f64, None, line);
                }
            }
        };
        let (out_text, err_text) = std::thread::scope(|scope| {
            let err = scope.spawn(|| collect(stderr, |l| report(l, false)));
            let out = collect(stdout, |l| report(l, true));
            (out, err.join().unwrap_or_default())
        });
        let status = {
            let mut g = cancel.0.lock().unwrap_or_else(|p| p.into_inner());
            g.1.take().map(|mut c| c.wait())
        };
        let ok = matches!(status, Some(Ok(s)) if s.success());
        if ok {
            text(tail(&out_text).to_string(), false)
        } else {
            let how = match status {
                Some(Ok(s)) => s.to_string(),
                Some(Err(e)) => e.to_string(),
                None => "not run".into(),
            };
            text(
                format!(
                    "sintra {} failed ({how}):\n{}{}",
                    self.args
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" "),
                    tail(&err_text),
                    tail(&out_text)
                ),
                true,
            )
        }
    }
}

/// Read `r` to its end, a line at a time (each passed to `line` without its ending), and
/// return everything read.
fn collect(r: Option<impl Read>, mut line: impl FnMut(&str)) -> String {
    let Some(r) = r else { return String::new() };
    let mut all = String::new();
    for l in BufReader::new(r).split(b'\n').map_while(Result::ok) {
        let l = String::from_utf8_lossy(&l);
        // Spinners redraw with carriage returns: the last state of the line is what it says.
        let shown = l.rsplit('\r').find(|s| !s.trim().is_empty()).unwrap_or("");
        if !shown.trim().is_empty() {
            line(shown.trim_end());
        }
        all.push_str(&l);
        all.push('\n');
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, args: Value) -> String {
        match prepare(name, &args) {
            Err(Refusal::BadArguments(why)) => why,
            other => panic!("{name} {args}: {other:?}"),
        }
    }

    #[test]
    fn arguments_are_checked_against_the_schemas() {
        assert!(matches!(
            prepare("nope", &json!({})),
            Err(Refusal::UnknownTool)
        ));
        assert!(refused("bench", json!({})).contains("'model' is required"));
        assert!(refused("bench", json!({"model": "m.gguf", "n_gen": -1})).contains("'n_gen'"));
        assert!(refused("bench", json!({"model": "m.gguf", "n_gen": "32"})).contains("integer"));
        assert!(refused("inspect", json!({"modle": "x"})).contains("unknown argument 'modle'"));
        assert!(refused("optimize", json!({"target_accuracy": 2.0})).contains("target_accuracy"));
        assert!(refused("optimize", json!({"target_tps": 0})).contains("target_tps"));
        assert!(refused("inspect", json!([1])).contains("object"));
        let c = prepare("bench", &json!({"model": "m.gguf", "n_prompt": 16})).unwrap();
        let args: Vec<String> = c.args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args,
            [
                "bench", "m.gguf", "--device", "local", "-p", "16", "-n", "32", "-r", "3", "-t",
                "0", "--json"
            ]
        );
        let c = prepare("optimize", &json!({"max_iters": 2, "mock": true})).unwrap();
        let args: Vec<String> = c.args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(args, ["--auto-detect", "--max-iters", "2", "--mock"]);
        // Every listed tool can be prepared from its required arguments.
        for t in list() {
            let mut args = json!({});
            for r in t["inputSchema"]["required"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                args[r] = if r == "recipe" {
                    json!({"default_type": "Q8_0"})
                } else {
                    json!("x")
                };
            }
            prepare(t["name"].as_str().unwrap(), &args).unwrap();
        }
    }

    #[test]
    fn progress_lines_drop_spinner_redraws() {
        let mut seen = Vec::new();
        let all = collect(
            Some("a\r\rb [1/2]\rb [2/2]\n\n#1 Q4_K: ok\n".as_bytes()),
            |l| seen.push(l.to_string()),
        );
        assert_eq!(seen, ["b [2/2]", "#1 Q4_K: ok"]);
        assert!(all.contains("#1 Q4_K"));
    }
}
