//! Anthropic's Messages API (`POST {base}/v1/messages`).
//!
//! The API has no JSON response mode. A request with a schema defines one tool whose input is
//! the schema and makes the model call it (`tool_choice`): the tool call's input is the answer.
//! Without one, the planner asks for JSON in the prompt and [`super::extract_json`] finds it in
//! the reply.

use super::http::{JsonClient, RetryPolicy};
use super::{base_url, env_nonempty, ChatProvider, ChatRequest, LlmError, Secret};
use serde_json::json;
use std::time::Duration;

/// The Anthropic endpoint, used when `ANTHROPIC_BASE_URL` is not set.
pub const ANTHROPIC_BASE: &str = "https://api.anthropic.com";

/// The API version sent in the `anthropic-version` header.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Default model.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

/// A client for one Anthropic model.
#[derive(Debug, Clone)]
pub struct Anthropic {
    base: String,
    key: Secret,
    model: String,
    temperature: Option<f32>,
    client: JsonClient,
}

impl Anthropic {
    /// From `ANTHROPIC_API_KEY` (required) and `ANTHROPIC_BASE_URL` (default
    /// [`ANTHROPIC_BASE`]).
    pub fn from_env(
        model: Option<&str>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Anthropic, LlmError> {
        let key =
            env_nonempty("ANTHROPIC_API_KEY").ok_or(LlmError::MissingKey("ANTHROPIC_API_KEY"))?;
        let base = env_nonempty("ANTHROPIC_BASE_URL").unwrap_or_else(|| ANTHROPIC_BASE.to_string());
        let base = base_url("ANTHROPIC_BASE_URL", &base)?;
        Anthropic::new(&base, key, model.unwrap_or(DEFAULT_MODEL), timeout, retry)
    }

    /// An explicit endpoint, key and model.
    pub fn new(
        base: &str,
        key: String,
        model: &str,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Anthropic, LlmError> {
        Ok(Anthropic {
            base: base_url("anthropic base url", base)?,
            key: Secret(key),
            model: model.to_string(),
            temperature: None,
            client: JsonClient::new(timeout, retry),
        })
    }

    /// Sampling temperature (0 to 1); the API's default when unset.
    pub fn with_temperature(mut self, t: Option<f32>) -> Anthropic {
        self.temperature = t;
        self
    }

    fn request_body(&self, req: &ChatRequest<'_>) -> serde_json::Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": req.max_tokens,
            "system": req.system,
            "messages": [{"role": "user", "content": req.user}],
        });
        if let Some((name, schema)) = req.schema {
            body["tools"] = json!([{
                "name": name,
                "description": "Give the answer: its input is the whole answer.",
                "input_schema": schema,
            }]);
            body["tool_choice"] = json!({"type": "tool", "name": name});
        }
        if let Some(t) = req.temperature.or(self.temperature) {
            body["temperature"] = json!(t);
        }
        body
    }
}

impl ChatProvider for Anthropic {
    fn name(&self) -> String {
        format!("anthropic:{}", self.model)
    }

    fn complete(&self, req: &ChatRequest<'_>) -> Result<String, LlmError> {
        let url = format!("{}/v1/messages", self.base);
        let headers = [
            ("x-api-key", self.key.0.as_str()),
            ("anthropic-version", ANTHROPIC_VERSION),
        ];
        let answer = self
            .client
            .post(&url, &headers, &self.request_body(req), req.deadline)?;
        parse_answer(&answer)
    }
}

/// The text blocks of `content`, joined; an error when there are none or the model refused.
fn parse_answer(answer: &serde_json::Value) -> Result<String, LlmError> {
    if answer["stop_reason"] == "refusal" {
        return Err(LlmError::BadResponse("the model refused to answer".into()));
    }
    let Some(blocks) = answer["content"].as_array() else {
        return Err(LlmError::BadResponse(format!(
            "no content array in the answer: {}",
            super::snippet(&answer.to_string(), 200)
        )));
    };
    // A forced tool call: its input is the answer.
    if let Some(call) = blocks.iter().find(|b| b["type"] == "tool_use") {
        return match &call["input"] {
            input @ serde_json::Value::Object(_) => Ok(input.to_string()),
            _ => Err(LlmError::BadResponse(format!(
                "a tool call without an input object: {}",
                super::snippet(&call.to_string(), 200)
            ))),
        };
    }
    let texts: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    if texts.is_empty() {
        return Err(LlmError::BadResponse(format!(
            "no text block in the answer: {}",
            super::snippet(&answer.to_string(), 200)
        )));
    }
    Ok(texts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_shapes() {
        let two = json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                         "stop_reason": "end_turn"});
        assert_eq!(parse_answer(&two).unwrap(), "ab");
        for bad in [
            json!({}),
            json!({"content": []}),
            json!({"content": [{"type": "tool_use", "id": "x"}]}),
            json!({"content": [{"type": "text", "text": "x"}], "stop_reason": "refusal"}),
        ] {
            assert!(
                matches!(parse_answer(&bad), Err(LlmError::BadResponse(_))),
                "{bad}"
            );
        }
    }
}
