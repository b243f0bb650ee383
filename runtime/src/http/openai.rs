//! The OpenAI API's shapes: requests of `/v1/completions` and `/v1/chat/completions` checked
//! into [`Completion`] (every bad value a 400 naming the parameter), and the JSON of answers,
//! stream chunks and errors as the official clients expect them.

use super::template::Message;
use crate::json_constraint::Schema;
use crate::sampler::SamplerConfig;
use serde_json::{json, Value};

/// An error as OpenAI spells one: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.to_string()),
            code: None,
        }
    }

    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn body(&self) -> String {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
            .to_string()
    }
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// A checked generation request.
#[derive(Debug)]
pub struct Completion {
    pub endpoint: Endpoint,
    /// `prompt` (completions) or the conversation (chat, rendered by the worker's template).
    pub prompt: String,
    pub messages: Vec<Message>,
    /// `None`: as many as the context holds.
    pub max_tokens: Option<usize>,
    pub sampling: SamplerConfig,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub format: Option<Schema>,
    /// llama-server's `ignore_eos`: never end at an end-of-generation token (benchmarks).
    pub ignore_eos: bool,
}

/// Most stop strings, and the longest.
const MAX_STOPS: usize = 16;
const MAX_STOP_LEN: usize = 256;

/// Parse and check a request body for `endpoint`; `model` is the served model's id.
pub fn parse(body: &[u8], endpoint: Endpoint, model: &str) -> Result<Completion, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_request_error",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::new(
            400,
            "invalid_request_error",
            "the body must be a JSON object",
        )
    })?;
    match obj.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == model || m.is_empty() => {}
        Some(Value::String(m)) => {
            return Err(ApiError {
                status: 404,
                message: format!("the model '{m}' does not exist; this server serves '{model}'"),
                kind: "invalid_request_error",
                param: Some("model".into()),
                code: Some("model_not_found"),
            })
        }
        Some(_) => return Err(ApiError::invalid("model", "model must be a string")),
    }
    let num = |k: &str| -> Result<Option<f64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(k, format!("{k} must be a number, got {x}"))),
        }
    };
    let uint = |k: &str| -> Result<Option<u64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_u64().map(Some).ok_or_else(|| {
                ApiError::invalid(k, format!("{k} must be a non-negative integer, got {x}"))
            }),
        }
    };
    let flag = |k: &str| -> Result<bool, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(x) => Err(ApiError::invalid(
                k,
                format!("{k} must be a boolean, got {x}"),
            )),
        }
    };
    if let Some(n) = uint("n")? {
        if n != 1 {
            return Err(ApiError::invalid(
                "n",
                format!("n = {n}: only one choice per request is served"),
            ));
        }
    }
    let temperature = num("temperature")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature {temperature} is outside [0, 2]"),
        ));
    }
    let top_p = num("top_p")?.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p {top_p} is outside (0, 1]"),
        ));
    }
    let top_k = uint("top_k")?.unwrap_or(0).min(1 << 20) as usize;
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        Some(x) => x
            .as_i64()
            .map(|s| s as u64)
            .or_else(|| x.as_u64())
            .ok_or_else(|| {
                ApiError::invalid("seed", format!("seed must be an integer, got {x}"))
            })?,
    };
    let max_tokens = match (
        uint("max_tokens")?,
        uint("max_completion_tokens")?,
        uint("n_predict")?,
    ) {
        (Some(m), _, _) | (None, Some(m), _) | (None, None, Some(m)) => {
            Some(m.min(1 << 20) as usize)
        }
        // OpenAI's completions default to 16 tokens; chat to what the context holds.
        (None, None, None) if endpoint == Endpoint::Completions => Some(16),
        _ => None,
    };
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid("stop", "stop must be a string or a list of strings")
            })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "stop must be a string or a list of strings",
            ))
        }
    };
    if stop.len() > MAX_STOPS || stop.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOPS} stop strings of 1 to {MAX_STOP_LEN} bytes"),
        ));
    }
    let stream = flag("stream")?;
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let format = match obj.get("response_format") {
        None | Some(Value::Null) => None,
        Some(f) => response_format(f)?,
    };
    let (prompt, messages) = match endpoint {
        Endpoint::Completions => (prompt_text(obj.get("prompt"))?, Vec::new()),
        Endpoint::Chat => (String::new(), messages(obj.get("messages"))?),
    };
    if obj.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    Ok(Completion {
        endpoint,
        prompt,
        messages,
        max_tokens,
        sampling: SamplerConfig {
            temp: temperature as f32,
            top_k,
            top_p: top_p as f32,
            seed,
        },
        stop,
        stream,
        include_usage,
        format,
        ignore_eos: flag("ignore_eos")?,
    })
}

fn response_format(f: &Value) -> Result<Option<Schema>, ApiError> {
    let bad = |m: String| ApiError::invalid("response_format", m);
    let ty = f.get("type").and_then(Value::as_str).ok_or_else(|| {
        bad("response_format needs a type (text, json_object or json_schema)".into())
    })?;
    let compile =
        |s: &Value| Schema::compile(s).map_err(|e| bad(format!("response_format schema: {e}")));
    match ty {
        "text" => Ok(None),
        // llama-server also takes a schema beside json_object.
        "json_object" => match f.get("schema") {
            Some(s) => compile(s).map(Some),
            None => Ok(Some(Schema::any_object())),
        },
        "json_schema" => {
            let s = f
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| bad("json_schema needs json_schema.schema".into()))?;
            compile(s).map(Some)
        }
        other => Err(bad(format!(
            "response_format type '{other}' is unknown (text, json_object or json_schema)"
        ))),
    }
}

fn prompt_text(p: Option<&Value>) -> Result<String, ApiError> {
    match p {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(list)) if list.len() == 1 && list[0].is_string() => {
            Ok(list[0].as_str().unwrap_or("").to_string())
        }
        Some(Value::Array(_)) => Err(ApiError::invalid(
            "prompt",
            "prompt must be one string (lists of prompts and token ids are not served)",
        )),
        None => Err(ApiError::invalid("prompt", "prompt is required")),
        Some(_) => Err(ApiError::invalid("prompt", "prompt must be a string")),
    }
}

fn messages(m: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    let list = m
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "messages must be a non-empty list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, msg) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = msg
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(&at, format!("{at}.role must be a string")))?;
        let role = match role {
            "developer" => "system",
            "system" | "user" | "assistant" | "tool" => role,
            other => {
                return Err(ApiError::invalid(
                    &at,
                    format!(
                        "{at}.role '{other}' is not system, developer, user, assistant or tool"
                    ),
                ))
            }
        };
        let content = match msg.get("content") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (
                        p.get("type").and_then(Value::as_str),
                        p.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                &at,
                                format!("{at}.content[{j}]: only text parts are served"),
                            ))
                        }
                    }
                }
                text
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    &at,
                    format!("{at}.content must be a string or a list of parts"),
                ))
            }
        };
        out.push(Message {
            role: role.to_string(),
            content,
        });
    }
    Ok(out)
}

/// A response id: the endpoint's prefix and a number unique in this process.
pub fn response_id(endpoint: Endpoint) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = now() & 0xffff_ffff;
    match endpoint {
        Endpoint::Completions => format!("cmpl-{t:08x}{n:06}"),
        Endpoint::Chat => format!("chatcmpl-{t:08x}{n:06}"),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Token counts of an answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
}

impl Usage {
    fn json(&self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion,
               "total_tokens": self.prompt + self.completion})
    }
}

/// The whole answer of a request that did not stream.
pub fn answer(
    endpoint: Endpoint,
    id: &str,
    model: &str,
    text: &str,
    finish: &str,
    usage: Usage,
) -> String {
    let choice = match endpoint {
        Endpoint::Completions => {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
        }
        Endpoint::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                                 "logprobs": null, "finish_reason": finish}),
    };
    json!({
        "id": id,
        "object": match endpoint { Endpoint::Completions => "text_completion", Endpoint::Chat => "chat.completion" },
        "created": now(),
        "model": model,
        "system_fingerprint": concat!("sintra-rt-", env!("CARGO_PKG_VERSION")),
        "choices": [choice],
        "usage": usage.json(),
    })
    .to_string()
}

/// One stream chunk: a piece of text (`first`: a chat stream's first chunk also says the role),
/// or the last one with its finish reason.
pub fn chunk(
    endpoint: Endpoint,
    id: &str,
    model: &str,
    text: Option<&str>,
    first: bool,
    finish: Option<&str>,
) -> String {
    let choice = match endpoint {
        Endpoint::Completions => {
            json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
        }
        Endpoint::Chat => {
            let mut delta = json!({});
            if first {
                delta["role"] = json!("assistant");
            }
            if let Some(t) = text {
                delta["content"] = json!(t);
            }
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        }
    };
    json!({
        "id": id,
        "object": match endpoint { Endpoint::Completions => "text_completion", Endpoint::Chat => "chat.completion.chunk" },
        "created": now(),
        "model": model,
        "system_fingerprint": concat!("sintra-rt-", env!("CARGO_PKG_VERSION")),
        "choices": [choice],
    })
    .to_string()
}

/// The usage chunk a stream ends with when `stream_options.include_usage` asked for it.
pub fn usage_chunk(endpoint: Endpoint, id: &str, model: &str, usage: Usage) -> String {
    json!({
        "id": id,
        "object": match endpoint { Endpoint::Completions => "text_completion", Endpoint::Chat => "chat.completion.chunk" },
        "created": now(),
        "model": model,
        "choices": [],
        "usage": usage.json(),
    })
    .to_string()
}

/// `/v1/models`.
pub fn models(model: &str, created: u64) -> String {
    json!({"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "sintra"}]})
        .to_string()
}
