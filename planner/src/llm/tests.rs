//! Providers against the loopback TEST DOUBLE in `crate::http_double` (the real services cannot
//! be reached from tests): the request each one sends, and how it takes good, bad, slow, broken
//! and failing answers.

use super::*;
use crate::http_double::{Reply, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Fast retries so the tests do not sleep for seconds.
fn quick_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn openai_answer(text: &str) -> Reply {
    Reply::json(
        200,
        &json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
        }),
    )
}

fn openai(server: &TestServer, key: Option<&str>, retries: u32) -> OpenAi {
    OpenAi::new(
        &format!("{}/v1", server.url()),
        key.map(String::from),
        "test-model",
        TIMEOUT,
        quick_retry(retries),
    )
    .unwrap()
}

#[test]
fn openai_sends_chat_completions_request() {
    let server = TestServer::start(vec![openai_answer(r#"{"default_type": "Q4_K"}"#)]);
    let llm = openai(&server, Some("sk-test-secret"), 0);
    assert_eq!(llm.name(), "openai:test-model");
    let text = llm
        .complete(&ChatRequest::new("you plan", "make a recipe"))
        .unwrap();
    assert_eq!(text, r#"{"default_type": "Q4_K"}"#);

    let seen = server.finish();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer sk-test-secret"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "you plan"},
                {"role": "user", "content": "make a recipe"},
            ],
            "response_format": {"type": "json_object"},
            "max_tokens": 1024,
        })
    );
}

/// With a schema: OpenAI's `json_schema` response format, Ollama's `format` holding the schema,
/// Anthropic's forced tool (whose input comes back as the answer); `max_tokens` bounded in all
/// three as each spells it.
#[test]
fn a_schema_and_a_length_bound_reach_every_provider_as_it_spells_them() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}},
                        "required": ["a"], "additionalProperties": false});
    let req = ChatRequest {
        schema: Some(("answer", &schema)),
        max_tokens: 300,
        ..ChatRequest::new("s", "u")
    };
    let server = TestServer::start(vec![openai_answer(r#"{"a": 1}"#)]);
    assert_eq!(
        openai(&server, None, 0).complete(&req).unwrap(),
        r#"{"a": 1}"#
    );
    let body = server.finish()[0].json();
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}})
    );
    assert_eq!(body["max_tokens"], json!(300));

    let server = TestServer::start(vec![Reply::json(
        200,
        &json!({"message": {"role": "assistant", "content": "{\"a\": 2}"}, "done": true}),
    )]);
    let llm = Ollama::new(&server.url(), "qwen", TIMEOUT, quick_retry(0)).unwrap();
    assert_eq!(llm.complete(&req).unwrap(), r#"{"a": 2}"#);
    let body = server.finish()[0].json();
    assert_eq!(body["format"], schema);
    assert_eq!(body["options"]["num_predict"], json!(300));

    let server = TestServer::start(vec![Reply::json(
        200,
        &json!({"content": [{"type": "tool_use", "id": "t1", "name": "answer", "input": {"a": 3}}],
                "stop_reason": "tool_use"}),
    )]);
    let llm = Anthropic::new(&server.url(), "k".into(), "m", TIMEOUT, quick_retry(0)).unwrap();
    assert_eq!(llm.complete(&req).unwrap(), r#"{"a":3}"#);
    let body = server.finish()[0].json();
    assert_eq!(body["tools"][0]["name"], json!("answer"));
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    assert_eq!(body["max_tokens"], json!(300));
}

/// A deadline bounds the whole exchange, retries and their waits included, even when the
/// client's own timeout is longer.
#[test]
fn a_deadline_ends_the_exchange_and_its_retries() {
    let server = TestServer::start(vec![Reply::Hang(Duration::from_secs(10))]);
    let llm = OpenAi::new(
        &format!("{}/v1", server.url()),
        None,
        "m",
        Duration::from_secs(60),
        quick_retry(3),
    )
    .unwrap();
    let start = Instant::now();
    let req = ChatRequest {
        deadline: Some(Instant::now() + Duration::from_millis(400)),
        ..ChatRequest::new("s", "u")
    };
    let err = llm.complete(&req).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, LlmError::Timeout), "{err:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(llm);
    server.finish();

    // Past the deadline nothing is sent.
    let server = TestServer::start(vec![]);
    let llm = openai(&server, None, 0);
    let req = ChatRequest {
        deadline: Some(Instant::now()),
        ..ChatRequest::new("s", "u")
    };
    assert!(matches!(llm.complete(&req), Err(LlmError::Timeout)));
    assert!(server.finish().is_empty());
}

#[test]
fn recipe_in_a_chatty_reply_is_extracted() {
    let reply = "Here is my plan:\n```json\n{\"default_type\": \"Q4_K\", \"drop_layers\": [20]}\n```\nIt keeps quality.";
    let server = TestServer::start(vec![openai_answer(reply)]);
    let text = openai(&server, None, 0)
        .complete(&ChatRequest::new("s", "u"))
        .unwrap();
    let recipe: serde_json::Value = serde_json::from_str(extract_json(&text).unwrap()).unwrap();
    assert_eq!(recipe, json!({"default_type": "Q4_K", "drop_layers": [20]}));
    server.finish();
}

#[test]
fn openai_compatible_server_needs_no_key() {
    let server = TestServer::start(vec![openai_answer("ok")]);
    let llm = openai(&server, None, 0)
        .with_json_mode(false)
        .with_temperature(Some(0.0));
    assert_eq!(llm.complete(&ChatRequest::new("s", "u")).unwrap(), "ok");
    let req = &server.finish()[0];
    assert_eq!(req.header("authorization"), None);
    let body = req.json();
    assert_eq!(body.get("response_format"), None);
    assert_eq!(body["temperature"], json!(0.0));
}

#[test]
fn key_is_redacted_from_debug() {
    let llm = OpenAi::new(
        "http://127.0.0.1:9/v1",
        Some("sk-hidden".into()),
        "m",
        TIMEOUT,
        quick_retry(0),
    )
    .unwrap();
    let shown = format!("{llm:?}");
    assert!(!shown.contains("sk-hidden"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let claude = Anthropic::new(
        "http://127.0.0.1:9",
        "ant-hidden".into(),
        "m",
        TIMEOUT,
        quick_retry(0),
    )
    .unwrap();
    assert!(!format!("{claude:?}").contains("ant-hidden"));
}

#[test]
fn server_error_then_success_is_retried() {
    let server = TestServer::start(vec![
        Reply::text(500, &[], "upstream exploded"),
        Reply::text(429, &[("retry-after", "0")], "slow down"),
        openai_answer("third time"),
    ]);
    let llm = openai(&server, None, 3);
    assert_eq!(
        llm.complete(&ChatRequest::new("s", "u")).unwrap(),
        "third time"
    );
    let seen = server.finish();
    assert_eq!(seen.len(), 3);
    // Every retry sends the same request.
    assert!(seen.iter().all(|r| r.body == seen[0].body));
}

#[test]
fn retries_are_bounded() {
    let server = TestServer::start(vec![
        Reply::text(503, &[], "busy 1"),
        Reply::text(503, &[], "busy 2"),
        Reply::text(503, &[], "busy 3"),
        openai_answer("never reached"),
    ]);
    let llm = openai(&server, None, 2);
    match llm.complete(&ChatRequest::new("s", "u")) {
        Err(LlmError::Http { status: 503, body }) => assert_eq!(body, "busy 3"),
        other => panic!("expected http 503, got {other:?}"),
    }
    drop(llm);
    // The fourth scripted reply is never asked for.
    assert_eq!(server.finish().len(), 3);
}

#[test]
fn unauthorized_is_not_retried() {
    let body =
        r#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}"#;
    let server = TestServer::start(vec![Reply::text(401, &[], body), openai_answer("no")]);
    let llm = openai(&server, Some("sk-wrong"), 3);
    match llm.complete(&ChatRequest::new("s", "u")) {
        Err(LlmError::Http { status: 401, body }) => {
            assert!(body.contains("Incorrect API key"), "{body}")
        }
        other => panic!("expected http 401, got {other:?}"),
    }
    assert_eq!(server.finish().len(), 1);
}

#[test]
fn malformed_json_is_a_bad_response() {
    let server = TestServer::start(vec![
        Reply::text(
            200,
            &[("content-type", "application/json")],
            "{\"choices\": [ oops",
        ),
        openai_answer("not reached"),
    ]);
    let llm = openai(&server, None, 3);
    match llm.complete(&ChatRequest::new("s", "u")) {
        Err(LlmError::BadResponse(m)) => assert!(m.contains("not json"), "{m}"),
        other => panic!("expected bad response, got {other:?}"),
    }
    assert_eq!(server.finish().len(), 1);

    // Valid JSON of the wrong shape.
    let server = TestServer::start(vec![Reply::json(200, &json!({"choices": "none"}))]);
    let err = openai(&server, None, 0)
        .complete(&ChatRequest::new("s", "u"))
        .unwrap_err();
    assert!(matches!(err, LlmError::BadResponse(_)), "{err:?}");
    server.finish();
}

#[test]
fn hanging_server_times_out() {
    let server = TestServer::start(vec![Reply::Hang(Duration::from_secs(10))]);
    let llm = OpenAi::new(
        &format!("{}/v1", server.url()),
        None,
        "m",
        Duration::from_millis(300),
        quick_retry(3),
    )
    .unwrap();
    let start = Instant::now();
    let err = llm.complete(&ChatRequest::new("s", "u")).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, LlmError::Timeout), "{err:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(llm);
    assert_eq!(server.finish().len(), 1, "a timeout is not retried");
}

#[test]
fn truncated_body_is_retried_then_reported() {
    let full = json!({"choices": [{"message": {"content": "whole"}}]}).to_string();
    let cut = |n: usize| Reply::Cut {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        declared: full.len(),
        body: full.as_bytes()[..n].to_vec(),
    };
    let server = TestServer::start(vec![cut(10), openai_answer("whole")]);
    assert_eq!(
        openai(&server, None, 1)
            .complete(&ChatRequest::new("s", "u"))
            .unwrap(),
        "whole"
    );
    assert_eq!(server.finish().len(), 2);

    let server = TestServer::start(vec![cut(5), cut(20)]);
    match openai(&server, None, 1).complete(&ChatRequest::new("s", "u")) {
        Err(LlmError::Transport(m)) => assert!(m.contains("/v1/chat/completions"), "{m}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(server.finish().len(), 2);
}

#[test]
fn refused_connection_is_reported_quickly() {
    // Bind then drop a listener so the port is (very likely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let llm = Ollama::new(
        &format!("http://127.0.0.1:{port}"),
        "m",
        TIMEOUT,
        quick_retry(3),
    )
    .unwrap();
    match llm.complete(&ChatRequest::new("s", "u")) {
        Err(LlmError::Transport(m)) => assert!(m.contains("refused"), "{m}"),
        other => panic!("expected connection refused, got {other:?}"),
    }
}

#[test]
fn anthropic_sends_messages_request() {
    let server = TestServer::start(vec![Reply::json(
        200,
        &json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "{\"a\": 1}"}],
            "stop_reason": "end_turn",
        }),
    )]);
    let llm = Anthropic::new(
        &server.url(),
        "ant-key".into(),
        "claude-test",
        TIMEOUT,
        quick_retry(0),
    )
    .unwrap()
    .with_temperature(Some(0.0));
    assert_eq!(llm.name(), "anthropic:claude-test");
    assert_eq!(
        llm.complete(&ChatRequest::new("sys", "usr")).unwrap(),
        "{\"a\": 1}"
    );
    let req = &server.finish()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("ant-key"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.json(),
        json!({
            "model": "claude-test",
            "max_tokens": 1024,
            "system": "sys",
            "messages": [{"role": "user", "content": "usr"}],
            "temperature": 0.0,
        })
    );
}

#[test]
fn anthropic_overloaded_then_success() {
    let ok = Reply::json(200, &json!({"content": [{"type": "text", "text": "fine"}]}));
    let overloaded = Reply::text(
        529,
        &[],
        r#"{"type":"error","error":{"type":"overloaded_error"}}"#,
    );
    let server = TestServer::start(vec![overloaded, ok]);
    let llm = Anthropic::new(&server.url(), "k".into(), "m", TIMEOUT, quick_retry(2)).unwrap();
    assert_eq!(llm.complete(&ChatRequest::new("s", "u")).unwrap(), "fine");
    assert_eq!(server.finish().len(), 2);
}

#[test]
fn ollama_sends_native_chat_request() {
    let server = TestServer::start(vec![Reply::json(
        200,
        &json!({"model": "qwen", "message": {"role": "assistant", "content": "{}"}, "done": true}),
    )]);
    let llm = Ollama::new(&server.url(), "qwen", TIMEOUT, quick_retry(0))
        .unwrap()
        .with_temperature(Some(0.2));
    assert_eq!(llm.name(), "ollama:qwen");
    assert_eq!(llm.complete(&ChatRequest::new("s", "u")).unwrap(), "{}");
    let req = &server.finish()[0];
    assert_eq!(req.path, "/api/chat");
    assert_eq!(req.header("authorization"), None);
    let body = req.json();
    assert_eq!(body["stream"], json!(false));
    assert_eq!(body["format"], json!("json"));
    assert_eq!(body["options"]["num_predict"], json!(1024));
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "s"})
    );
    assert_eq!(body["messages"][1], json!({"role": "user", "content": "u"}));
    assert!((body["options"]["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
}

#[test]
fn ollama_model_not_found() {
    let server = TestServer::start(vec![Reply::text(
        404,
        &[],
        r#"{"error":"model 'nope' not found"}"#,
    )]);
    let llm = Ollama::new(&server.url(), "nope", TIMEOUT, quick_retry(2)).unwrap();
    match llm.complete(&ChatRequest::new("s", "u")) {
        Err(LlmError::Http { status: 404, body }) => assert!(body.contains("'nope'"), "{body}"),
        other => panic!("expected http 404, got {other:?}"),
    }
    assert_eq!(server.finish().len(), 1);
}

/// All environment-driven construction in one test: the variables are process-wide.
#[test]
fn provider_from_environment() {
    let vars = [
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OLLAMA_HOST",
        "SINTRA_LLM_TIMEOUT_SECS",
    ];
    for v in vars {
        std::env::remove_var(v);
    }

    assert!(matches!(
        provider("openai", None),
        Err(LlmError::MissingKey("OPENAI_API_KEY"))
    ));
    assert!(matches!(
        provider("anthropic", None),
        Err(LlmError::MissingKey("ANTHROPIC_API_KEY"))
    ));
    assert!(matches!(provider("gemini", None), Err(LlmError::UnknownProvider(k)) if k == "gemini"));

    let ollama = provider("ollama", None).unwrap();
    assert_eq!(ollama.name(), format!("ollama:{}", ollama::DEFAULT_MODEL));

    std::env::set_var("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/");
    let local = provider("llama-server", Some("local")).unwrap();
    assert_eq!(local.name(), "openai:local");

    std::env::set_var("OPENAI_BASE_URL", "localhost:8080");
    match provider("openai", None) {
        Err(LlmError::Config(m)) => assert!(m.contains("'localhost:8080'"), "{m}"),
        Err(e) => panic!("expected a config error, got {e:?}"),
        Ok(p) => panic!("expected a config error, got {}", p.name()),
    }
    std::env::remove_var("OPENAI_BASE_URL");

    std::env::set_var("OPENAI_API_KEY", "sk-x");
    assert_eq!(
        provider("OpenAI", None).unwrap().name(),
        format!("openai:{}", openai::DEFAULT_MODEL)
    );
    std::env::set_var("ANTHROPIC_API_KEY", "k");
    assert_eq!(
        provider("anthropic", Some("claude-x")).unwrap().name(),
        "anthropic:claude-x"
    );

    std::env::set_var("SINTRA_LLM_TIMEOUT_SECS", "soon");
    match provider("ollama", None) {
        Err(LlmError::Config(m)) => assert!(m.contains("'soon'"), "{m}"),
        Err(e) => panic!("expected a config error, got {e:?}"),
        Ok(p) => panic!("expected a config error, got {}", p.name()),
    }
    for v in vars {
        std::env::remove_var(v);
    }
}
