//! Ollama's native chat API (`POST {host}/api/chat`, not streamed, `format: "json"`).

use super::http::{JsonClient, RetryPolicy};
use super::{base_url, env_nonempty, ChatProvider, ChatRequest, LlmError};
use serde_json::json;
use std::time::Duration;

/// Where Ollama listens by default.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:11434";

/// Default model: follows JSON instructions well and runs on a laptop.
pub const DEFAULT_MODEL: &str = "qwen2.5:7b-instruct";

/// A client for one model on one Ollama server.
#[derive(Debug, Clone)]
pub struct Ollama {
    host: String,
    model: String,
    json_mode: bool,
    temperature: Option<f32>,
    client: JsonClient,
}

impl Ollama {
    /// From `OLLAMA_HOST` (as Ollama reads it: `host`, `host:port`, or a URL; default
    /// [`DEFAULT_HOST`]).
    pub fn from_env(
        model: Option<&str>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Ollama, LlmError> {
        let host = match env_nonempty("OLLAMA_HOST") {
            Some(h) => host_url(&h)?,
            None => DEFAULT_HOST.to_string(),
        };
        Ollama::new(&host, model.unwrap_or(DEFAULT_MODEL), timeout, retry)
    }

    /// An explicit server URL and model.
    pub fn new(
        host: &str,
        model: &str,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Ollama, LlmError> {
        Ok(Ollama {
            host: base_url("ollama host", host)?,
            model: model.to_string(),
            json_mode: true,
            temperature: None,
            client: JsonClient::new(timeout, retry),
        })
    }

    /// Sampling temperature; the model's default when unset.
    pub fn with_temperature(mut self, t: Option<f32>) -> Ollama {
        self.temperature = t;
        self
    }

    fn request_body(&self, req: &ChatRequest<'_>) -> serde_json::Value {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": req.system},
                {"role": "user", "content": req.user},
            ],
            "stream": false,
            "options": {"num_predict": req.max_tokens},
        });
        match req.schema {
            // Structured outputs: `format` holds the schema itself.
            Some((_, schema)) => body["format"] = schema.clone(),
            None if self.json_mode => body["format"] = json!("json"),
            None => {}
        }
        if let Some(t) = req.temperature.or(self.temperature) {
            body["options"]["temperature"] = json!(t);
        }
        body
    }
}

/// `OLLAMA_HOST` as a URL, the way Ollama's own client reads it: no scheme means `http`, no
/// port means 11434 (80 or 443 when a scheme is given), and `0.0.0.0` (a listen address) means
/// this machine.
fn host_url(raw: &str) -> Result<String, LlmError> {
    let raw = raw.trim();
    let (scheme, rest, default_port) = match raw.split_once("://") {
        None => ("http", raw, 11434),
        Some(("http", rest)) => ("http", rest, 80),
        Some(("https", rest)) => ("https", rest, 443),
        Some((other, _)) => {
            return Err(LlmError::Config(format!(
                "OLLAMA_HOST '{raw}' has scheme '{other}'; expected http or https"
            )))
        }
    };
    let (hostport, path) = match rest.split_once('/') {
        Some((hp, p)) => (hp, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    let has_port = match hostport.rsplit_once(':') {
        // `[::1]:11434` or `host:11434`; a bare IPv6 address without brackets has no port.
        Some((h, p)) => {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']'))
        }
        None => false,
    };
    let hostport = if hostport.is_empty() {
        format!("127.0.0.1:{default_port}")
    } else if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    // `0.0.0.0` and an empty host are listen addresses; a client reaches them on loopback.
    let hostport = match hostport.strip_prefix("0.0.0.0:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None if hostport.starts_with(':') => format!("127.0.0.1{hostport}"),
        None => hostport,
    };
    let url = if path.is_empty() {
        format!("{scheme}://{hostport}")
    } else {
        format!("{scheme}://{hostport}/{path}")
    };
    base_url("OLLAMA_HOST", &url)
}

impl ChatProvider for Ollama {
    fn name(&self) -> String {
        format!("ollama:{}", self.model)
    }

    fn complete(&self, req: &ChatRequest<'_>) -> Result<String, LlmError> {
        let url = format!("{}/api/chat", self.host);
        let answer = self
            .client
            .post(&url, &[], &self.request_body(req), req.deadline)?;
        parse_answer(&answer)
    }
}

/// `message.content`, or the server's `error`.
fn parse_answer(answer: &serde_json::Value) -> Result<String, LlmError> {
    if let Some(text) = answer["message"]["content"].as_str() {
        return Ok(text.to_string());
    }
    if let Some(err) = answer["error"].as_str() {
        return Err(LlmError::BadResponse(format!("ollama: {err}")));
    }
    Err(LlmError::BadResponse(format!(
        "no message.content in the answer: {}",
        super::snippet(&answer.to_string(), 200)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        for (raw, want) in [
            ("127.0.0.1", "http://127.0.0.1:11434"),
            ("gpu-box:8000", "http://gpu-box:8000"),
            ("0.0.0.0", "http://127.0.0.1:11434"),
            ("0.0.0.0:11434", "http://127.0.0.1:11434"),
            ("http://gpu-box", "http://gpu-box:80"),
            ("https://ollama.example/", "https://ollama.example:443"),
            (
                "https://ollama.example:8443/proxy/",
                "https://ollama.example:8443/proxy",
            ),
            ("[::1]:11434", "http://[::1]:11434"),
            ("[::1]", "http://[::1]:11434"),
            (":11434", "http://127.0.0.1:11434"),
        ] {
            match host_url(raw) {
                Ok(got) => assert_eq!(got, want, "{raw}"),
                Err(e) => assert_eq!(want, "", "{raw}: {e}"),
            }
        }
        assert!(host_url("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("'ftp'"));
    }

    #[test]
    fn answer_shapes() {
        let ok = json!({"message": {"role": "assistant", "content": "{}"}, "done": true});
        assert_eq!(parse_answer(&ok).unwrap(), "{}");
        let err = json!({"error": "model 'x' not found"});
        assert!(parse_answer(&err)
            .unwrap_err()
            .to_string()
            .contains("'x' not found"));
        assert!(parse_answer(&json!({})).is_err());
    }
}
