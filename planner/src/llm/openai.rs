//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI itself, and any
//! server speaking the format (Ollama's `/v1`, llama.cpp's `llama-server`, vLLM).

use super::http::{JsonClient, RetryPolicy};
use super::{base_url, env_nonempty, ChatProvider, ChatRequest, LlmError, Secret};
use serde_json::json;
use std::time::Duration;

/// The OpenAI endpoint, used when `OPENAI_BASE_URL` is not set.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// Default model: small, cheap, and good at following a JSON schema.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// A client for one model on one OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAi {
    base: String,
    key: Option<Secret>,
    model: String,
    json_mode: bool,
    temperature: Option<f32>,
    client: JsonClient,
}

impl OpenAi {
    /// From `OPENAI_BASE_URL` (default [`OPENAI_BASE`]) and `OPENAI_API_KEY` (required only for
    /// api.openai.com; local servers need none).
    pub fn from_env(
        model: Option<&str>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<OpenAi, LlmError> {
        let base = env_nonempty("OPENAI_BASE_URL").unwrap_or_else(|| OPENAI_BASE.to_string());
        let key = env_nonempty("OPENAI_API_KEY");
        let base = base_url("OPENAI_BASE_URL", &base)?;
        if key.is_none() && is_openai_host(&base) {
            return Err(LlmError::MissingKey("OPENAI_API_KEY"));
        }
        OpenAi::new(&base, key, model.unwrap_or(DEFAULT_MODEL), timeout, retry)
    }

    /// An explicit server, key and model (`base` ends in `/v1` for most servers).
    pub fn new(
        base: &str,
        key: Option<String>,
        model: &str,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<OpenAi, LlmError> {
        Ok(OpenAi {
            base: base_url("openai base url", base)?,
            key: key.map(Secret),
            model: model.to_string(),
            json_mode: true,
            temperature: None,
            client: JsonClient::new(timeout, retry),
        })
    }

    /// Whether to ask for `response_format: {"type": "json_object"}` (on by default: the
    /// planner's prompts ask for JSON, which that mode requires the prompt to mention).
    #[cfg(test)]
    pub fn with_json_mode(mut self, on: bool) -> OpenAi {
        self.json_mode = on;
        self
    }

    /// Sampling temperature; unset by default because some models accept only their default.
    pub fn with_temperature(mut self, t: Option<f32>) -> OpenAi {
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
            "max_tokens": req.max_tokens,
        });
        match req.schema {
            // Structured output: the server's sampler keeps the answer on the schema.
            Some((name, schema)) => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": true},
                });
            }
            None if self.json_mode => {
                body["response_format"] = json!({"type": "json_object"});
            }
            None => {}
        }
        if let Some(t) = req.temperature.or(self.temperature) {
            body["temperature"] = json!(t);
        }
        body
    }
}

fn is_openai_host(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host.eq_ignore_ascii_case("api.openai.com")
}

impl ChatProvider for OpenAi {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn complete(&self, req: &ChatRequest<'_>) -> Result<String, LlmError> {
        let url = format!("{}/chat/completions", self.base);
        let auth = self.key.as_ref().map(|k| format!("Bearer {}", k.0));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let answer = self
            .client
            .post(&url, &headers, &self.request_body(req), req.deadline)?;
        parse_answer(&answer)
    }
}

/// `choices[0].message.content`, or an error that says what came instead.
fn parse_answer(answer: &serde_json::Value) -> Result<String, LlmError> {
    let message = &answer["choices"][0]["message"];
    if let Some(text) = message["content"].as_str() {
        return Ok(text.to_string());
    }
    if let Some(refusal) = message["refusal"].as_str() {
        return Err(LlmError::BadResponse(format!(
            "the model refused: {refusal}"
        )));
    }
    Err(LlmError::BadResponse(format!(
        "no choices[0].message.content in the answer: {}",
        super::snippet(&answer.to_string(), 200)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_host_detection() {
        assert!(is_openai_host("https://api.openai.com/v1"));
        assert!(is_openai_host("https://API.OpenAI.com:443/v1"));
        assert!(!is_openai_host("http://127.0.0.1:8080/v1"));
        assert!(!is_openai_host("https://api.openai.com.evil.example/v1"));
    }

    #[test]
    fn answer_shapes() {
        let ok = json!({"choices": [{"message": {"role": "assistant", "content": "hi"}}]});
        assert_eq!(parse_answer(&ok).unwrap(), "hi");
        let refused = json!({"choices": [{"message": {"content": null, "refusal": "no"}}]});
        assert!(parse_answer(&refused)
            .unwrap_err()
            .to_string()
            .contains("refused: no"));
        for bad in [json!({}), json!({"choices": []}), json!([1]), json!("x")] {
            assert!(matches!(parse_answer(&bad), Err(LlmError::BadResponse(_))));
        }
    }
}
