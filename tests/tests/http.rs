//! `sintra-rt serve --http` (issue #17) against real clients: the official OpenAI Python client
//! (chat and completions, streamed and not, stop strings, seeds, `json_schema` and
//! `json_object` answers, eight clients at once, its error types), raw sockets for what a
//! polite client never sends (bad JSON, oversized bodies, unknown paths, a client that leaves
//! mid-generation), and greedy answers checked against `sintra-rt generate`.

use sintra_tests::{python, release_bin_path, repo_root, smollm2_q4_1, succeeded, HttpServer};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const MODEL_ID: &str = "SmolLM2-135M-Instruct.Q4_1";

/// Greedy text from `sintra-rt generate` (the reference the server's answers must equal).
fn generate(prompt: &str, n: usize, chat: bool) -> String {
    let mut cmd = Command::new(release_bin_path("runtime", "sintra-rt"));
    cmd.arg("generate").arg("-m").arg(smollm2_q4_1()).args([
        "-p",
        prompt,
        "-n",
        &n.to_string(),
        "-c",
        "1024",
    ]);
    if chat {
        cmd.arg("--chat");
    }
    let text = succeeded(&cmd.output().unwrap());
    let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
    if chat {
        text
    } else {
        text.strip_prefix(prompt).unwrap_or(&text).to_string()
    }
}

/// Send raw bytes, read until the server closes or `limit`; the response as text.
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        // One JSON answer with its length is enough.
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.parse::<usize>().ok());
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_and_json(response: &str) -> (u16, serde_json::Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |x| x.1);
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response:?}"));
    (status, json)
}

#[test]
fn the_official_openai_client_gets_correct_answers() {
    let server = HttpServer::start(&smollm2_q4_1(), &["-c", "1024", "-t", "2"]);
    let out = python()
        .arg(repo_root().join("tests/python/openai_client.py"))
        .arg(server.base_url())
        .arg(MODEL_ID)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    assert_eq!(r["models"], serde_json::json!([MODEL_ID]));
    // Greedy answers are sintra-rt generate's, streamed or not.
    let question = "What is the capital of France?";
    let want_chat = generate(question, 24, true);
    for key in ["chat", "chat_stream"] {
        assert_eq!(r[key]["text"].as_str().unwrap(), want_chat, "{key}");
        assert_eq!(r[key]["finish"], "length", "{key}");
        assert_eq!(r[key]["usage"]["completion_tokens"], 24, "{key}");
        assert!(r[key]["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    }
    assert_eq!(r["chat"]["object"], "chat.completion");
    assert_eq!(r["chat_stream"]["roles"], serde_json::json!(["assistant"]));
    assert!(
        r["chat_stream"]["chunks"].as_u64().unwrap() > 5,
        "streamed in pieces"
    );
    let want = generate("The capital of France is", 16, false);
    assert_eq!(r["completion"]["text"].as_str().unwrap(), want);
    assert_eq!(r["completion_stream"]["text"].as_str().unwrap(), want);
    // A stop string ends the text before it.
    let stop = &r["stop"];
    assert_eq!(stop["finish"], "stop");
    let text = stop["text"].as_str().unwrap();
    assert!(!text.contains(" 7") && !text.contains("\n\n"), "{text:?}");
    assert!(text.starts_with(" 5, 6,"), "{text:?}");
    // The same seed gives the same sample; another seed another one.
    let seeded = r["seeded"].as_array().unwrap();
    assert_eq!(seeded[0], seeded[1]);
    assert_ne!(seeded[0], seeded[2]);
    // Structured output: the schema holds, greedy and sampled.
    for answer in r["json_schema"].as_array().unwrap() {
        let cat: serde_json::Value = serde_json::from_str(answer["text"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {answer}"));
        let obj = cat.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{cat}");
        assert!(
            obj["name"]
                .as_str()
                .is_some_and(|n| n.chars().count() <= 20),
            "{cat}"
        );
        assert!(obj["age"].as_u64().is_some_and(|a| a <= 30), "{cat}");
        assert!(["black", "white", "ginger", "grey"].contains(&obj["color"].as_str().unwrap()));
        assert_eq!(answer["finish"], "stop");
    }
    let any: serde_json::Value =
        serde_json::from_str(r["json_object"]["text"].as_str().unwrap()).unwrap();
    assert!(any.is_object(), "{any}");
    // Eight clients at once get what each gets alone.
    assert_eq!(r["concurrent"]["alone"], r["concurrent"]["together"]);
    // Errors: OpenAI's shapes and 4xx codes, through the client's own error types.
    let e = &r["errors"];
    assert_eq!(e["unknown_model"]["status"], 404);
    assert_eq!(e["unknown_model"]["body"]["code"], "model_not_found");
    assert_eq!(e["bad_temperature"]["status"], 400);
    assert_eq!(e["bad_temperature"]["body"]["param"], "temperature");
    assert_eq!(e["no_messages"]["status"], 400);
    assert!(e["unsupported_schema"]["body"]["message"]
        .as_str()
        .unwrap()
        .contains("`pattern`"));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn hostile_requests_get_json_errors_and_a_client_that_leaves_stops_its_generation() {
    let mut server = HttpServer::start(&smollm2_q4_1(), &["-c", "4096", "-t", "2"]);
    let addr = server.addr.clone();
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for (request, status, needle) in [
        (
            post("/v1/chat/completions", "{not json"),
            400,
            "not valid JSON",
        ),
        (post("/v1/chat/completions", "[1, 2]"), 400, "JSON object"),
        (
            post("/v1/completions", r#"{"prompt": 7}"#),
            400,
            "prompt must be a string",
        ),
        (
            post("/v1/completions", r#"{"prompt": "x", "max_tokens": -1}"#),
            400,
            "max_tokens",
        ),
        (
            post("/v1/completions", r#"{"prompt": "x", "n": 3}"#),
            400,
            "only one choice",
        ),
        (
            post("/v1/completions", r#"{"prompt": "x", "stop": [""]}"#),
            400,
            "stop strings",
        ),
        (
            post(
                "/v1/completions",
                r#"{"prompt": "x", "max_tokens": 999999}"#,
            ),
            400,
            "context",
        ),
        (
            post(
                "/v1/chat/completions",
                r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            ),
            400,
            "wizard",
        ),
        (
            post(
                "/v1/chat/completions",
                r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
            ),
            400,
            "only text parts",
        ),
        (post("/v1/embeddings", "{}"), 404, "no such endpoint"),
        (
            "GET /v1/chat/completions HTTP/1.1\r\nconnection: close\r\n\r\n".into(),
            405,
            "not served",
        ),
        (
            "POST /v1/completions HTTP/1.1\r\ncontent-length: 5000000\r\n\r\n".into(),
            413,
            "more than",
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nx-junk: {}\r\n\r\n",
                "a".repeat(20_000)
            ),
            431,
            "headers",
        ),
        ("HELLO\r\n\r\n".into(), 400, "request line"),
        (
            "POST /v1/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".into(),
            411,
            "Content-Length",
        ),
    ] {
        let response = raw(&addr, request.as_bytes());
        let (got, json) = status_and_json(&response);
        let message = json["error"]["message"].as_str().unwrap_or("");
        assert_eq!(got, status, "{request:.80?} -> {response}");
        assert!(message.contains(needle), "{request:.80?}: {message}");
    }

    // A client that leaves in the middle of a stream, and one that leaves while it waits for a
    // whole answer: both generations stop.
    let long = r#"{"prompt": "Write a long story about a dragon.", "max_tokens": 3000, "temperature": 0.8, "seed": 1, "ignore_eos": true, "stream": STREAM}"#;
    for (stream, marker) in [(true, "data: "), (false, "")] {
        let before = server.log().matches("the client went away").count();
        let mut s = TcpStream::connect(&addr).unwrap();
        let body = long.replace("STREAM", &stream.to_string());
        s.write_all(post("/v1/completions", &body).as_bytes())
            .unwrap();
        if stream {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains(marker) {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the stream ended early");
                got.extend_from_slice(&buf[..n]);
            }
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(s);
        let t = Instant::now();
        let stopped = loop {
            let log = server.log();
            if log.matches("the client went away").count() > before {
                break log;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "generation went on:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let line = stopped
            .lines()
            .rfind(|l| l.contains("the client went away"))
            .unwrap();
        let n: usize = line
            .split("after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(n < 3000, "stream {stream}: {line}");
    }
    // Still serving, nothing panicked.
    let (status, health) = status_and_json(&raw(
        &addr,
        b"GET /health HTTP/1.1\r\nconnection: close\r\n\r\n",
    ));
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert!(server.alive());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn an_api_key_is_required_when_given_and_serve_without_the_feature_says_how_to_get_it() {
    let server = HttpServer::start(&smollm2_q4_1(), &["-c", "256", "--api-key", "s3cret"]);
    let get = |auth: &str| {
        raw(
            &server.addr,
            format!("GET /v1/models HTTP/1.1\r\n{auth}connection: close\r\n\r\n").as_bytes(),
        )
    };
    let (status, json) = status_and_json(&get(""));
    assert_eq!(status, 401);
    assert_eq!(json["error"]["code"], "invalid_api_key");
    assert_eq!(
        status_and_json(&get("authorization: Bearer wrong\r\n")).0,
        401
    );
    assert_eq!(
        status_and_json(&get("authorization: Bearer s3cret\r\n")).0,
        200
    );
    // /health answers without a key (load balancers probe it).
    let (status, _) = status_and_json(&raw(
        &server.addr,
        b"GET /health HTTP/1.1\r\nconnection: close\r\n\r\n",
    ));
    assert_eq!(status, 200);

    // The smallest build has no HTTP server and says so.
    let out = Command::new(release_bin_path("runtime", "sintra-rt"))
        .args(["serve", "--http", ":0", "-m"])
        .arg(smollm2_q4_1())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features http"), "{err}");
}

/// A row of the `prompts` table: iteration, provider, response, error, outcome.
type PromptRow = (u32, String, Option<String>, Option<String>, String);

/// Dogfood (issue #17): `sintra --provider openai` with its base URL on `sintra-rt serve --http`
/// serving SmolLM2 as the architect — a real language model answering over a real HTTP API,
/// the recipe's JSON Schema enforced by our server's sampler. A three-iteration run finishes
/// (each proposal time-boxed), most answers are valid recipes, rejected ones are re-asked and
/// then left to the heuristic, and every exchange is in the history.
///
/// Secrets (issue #20): the server requires an API key (from a file); the planner has it in
/// `OPENAI_API_KEY`, with an `HF_TOKEN` beside it and debug logging on. Neither secret may
/// reach the database, the run's outputs, `$SINTRA_HOME`, the logs or any process's command
/// line (sampled every 50 ms during the run).
#[test]
fn sintra_runs_with_sintra_rt_serving_its_architect() {
    let _one = sintra_tests::measuring_lock();
    let tmp = tempfile::tempdir().unwrap();
    const KEY: &str = "sk-sintra-test-6b1d0c9e4f";
    const HF: &str = "hf_sintraTestToken93a7";
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let server = HttpServer::start(
        &smollm2_q4_1(),
        &[
            "-c",
            "4096",
            "-t",
            "2",
            "--api-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    let home = tmp.path().join("home");
    let cmd = crate::planner::release_sintra(&home, tmp.path());
    let t0 = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut leaks = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(c) = std::fs::read(p.path().join("cmdline")) {
                        let c = String::from_utf8_lossy(&c).replace('\0', " ");
                        if c.contains(KEY) || c.contains(HF) {
                            leaks.push(c);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            leaks
        })
    };
    let out = cmd(&[
        "--auto-detect",
        "--provider",
        "openai",
        "--model",
        MODEL_ID,
        "--max-iters",
        "3",
        // Out of reach, so that the run takes all three proposals.
        "--target-accuracy",
        "0.999",
        "--no-sensitivity",
        "--output-dir",
        "out",
    ])
    .env("OPENAI_BASE_URL", server.base_url())
    .env("OPENAI_API_KEY", KEY)
    .env("HF_TOKEN", HF)
    .env("RUST_LOG", "debug")
    .env("SINTRA_LLM_PROPOSAL_SECS", "240")
    .output()
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let leaks = watcher.join().unwrap();
    assert!(leaks.is_empty(), "a secret in a command line: {leaks:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains(KEY) && !stderr.contains(HF),
        "a secret in the planner's log"
    );
    assert!(stderr.contains("DEBUG"), "debug logging was not on");
    let stdout = succeeded(&sintra_tests::unpanicked(out, "sintra --provider openai"));
    assert!(!stdout.contains(KEY) && !stdout.contains(HF));
    assert!(!server.log().contains(KEY));
    for root in [home.clone(), tmp.path().join("out")] {
        let mut files = vec![root];
        while let Some(f) = files.pop() {
            if f.is_dir() {
                files.extend(std::fs::read_dir(&f).unwrap().flatten().map(|e| e.path()));
            } else if let Ok(bytes) = std::fs::read(&f) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(KEY) && !text.contains(HF),
                    "a secret in {}",
                    f.display()
                );
            }
        }
    }
    eprintln!("{stdout}\n(run took {:.0} s)", t0.elapsed().as_secs_f64());
    assert!(
        stdout.contains("stopped: reached --max-iters 3"),
        "{stdout}"
    );

    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let run: String = db
        .query_row("SELECT id FROM runs", [], |r| r.get(0))
        .unwrap();
    let mut st = db
        .prepare("SELECT iteration, provider, response, error, outcome FROM prompts WHERE run_id = ?1 ORDER BY id")
        .unwrap();
    let prompts: Vec<PromptRow> = st
        .query_map([&run], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for p in &prompts {
        eprintln!("iteration {} {}: {} | {:?}", p.0, p.1, p.4, p.2.as_deref());
    }
    // Every exchange reached the server and was answered.
    assert!(prompts.len() >= 3, "{prompts:?}");
    assert!(prompts.iter().all(|p| p.1 == format!("openai:{MODEL_ID}")));
    assert!(
        prompts.iter().all(|p| p.2.is_some() && p.3.is_none()),
        "{prompts:?}"
    );
    // Each answer is a JSON object with the schema's keys (the schema was enforced by the
    // server's sampler), or one the token bound cut short, which the planner says.
    for p in &prompts {
        let answer = p.2.as_deref().unwrap();
        match serde_json::from_str::<serde_json::Value>(answer) {
            Ok(v) => assert!(v.get("default_type").is_some(), "{v}"),
            Err(e) => assert!(p.4.contains("cut off after"), "{e}: {p:?}"),
        }
    }
    // Most answers are valid recipes: taken, or refused only because an earlier iteration
    // already tried the same file (a 135M model repeats itself; how often depends on the
    // measured figures in its prompt, so the count of repeats is not fixed). At least one
    // recipe the run measured is the model's; a rejected answer was asked again.
    let accepted = prompts.iter().filter(|p| p.4 == "accepted").count();
    let valid = prompts
        .iter()
        .filter(|p| p.4 == "accepted" || p.4.contains("same file as one already tried"))
        .count();
    assert!(
        accepted >= 1 && 2 * valid > prompts.len(),
        "{accepted} accepted, {valid} valid of {} answers: {prompts:?}",
        prompts.len()
    );
    for (i, p) in prompts.iter().enumerate() {
        if p.4.starts_with("rejected") {
            let next = prompts.get(i + 1);
            let reasked = next.is_some_and(|n| n.0 == p.0);
            let first_of_two = i > 0 && prompts[i - 1].0 == p.0;
            assert!(
                reasked || first_of_two,
                "a rejection was not asked again: {prompts:?}"
            );
        }
    }
    let experiments: u32 = db
        .query_row(
            "SELECT COUNT(*) FROM experiments WHERE run_id = ?1",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(experiments, 3);
    assert!(!server.log().contains("panicked"));
}
