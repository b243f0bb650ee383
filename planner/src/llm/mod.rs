//! Language-model providers for the planner's architect and critic.
//!
//! Use: `let llm = llm::provider("openai", None)?;` then `llm.complete(&ChatRequest::new(system,
//! user))?` returns the assistant's text, and [`extract_json`] pulls the JSON object (a recipe)
//! out of it. A request may carry a JSON Schema the answer must follow — each wire format has
//! its own way to enforce one: OpenAI's `response_format` of type `json_schema` (honoured by
//! OpenAI, llama.cpp's `llama-server`, vLLM and `sintra-rt serve --http`), Ollama's `format`
//! with the schema, and for Anthropic a tool whose input is the schema — a bound on the
//! answer's length (`max_tokens`), and a deadline for the whole exchange, retries included.
//! Three wire formats are spoken over blocking HTTP (ureq):
//! - `openai`: OpenAI-compatible chat completions. `OPENAI_BASE_URL` points it at any server
//!   that speaks the format (Ollama's `/v1`, llama.cpp's `llama-server`, vLLM); `OPENAI_API_KEY`
//!   is required only for `api.openai.com`.
//! - `anthropic`: the Messages API, `ANTHROPIC_API_KEY` (`ANTHROPIC_BASE_URL` for a proxy).
//! - `ollama`: Ollama's native `/api/chat` at `OLLAMA_HOST` (default `127.0.0.1:11434`).
//!
//! Keys are read from the environment only and never printed: `Debug` shows them redacted.
//! Every call has a timeout (`SINTRA_LLM_TIMEOUT_SECS`, default [`DEFAULT_TIMEOUT`]); 429 and
//! 5xx answers are retried a bounded number of times with exponential backoff.

mod anthropic;
mod http;
mod json;
mod ollama;
mod openai;

#[cfg(test)]
mod tests;

pub use anthropic::Anthropic;
pub use http::RetryPolicy;
pub use json::extract_json;
pub use ollama::Ollama;
pub use openai::OpenAi;

use std::time::{Duration, Instant};

/// One chat exchange with a language model; implementations: OpenAI-compatible, Anthropic, Ollama.
pub trait ChatProvider {
    /// Provider and model, for logs and the history database, e.g. "openai:gpt-4o-mini".
    fn name(&self) -> String;
    /// Send a system and a user message; return the assistant's text (with a schema: the JSON
    /// object the model answered, as text).
    fn complete(&self, req: &ChatRequest<'_>) -> Result<String, LlmError>;
}

/// The most tokens an answer may take when the request names no bound: a recipe is a few
/// hundred tokens, and without a bound a small model can ramble inside a JSON list until the
/// server's context is full (issue #17).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// What to ask of a chat model.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub system: &'a str,
    pub user: &'a str,
    /// The answer must be one JSON object valid against this JSON Schema (a name for it, as
    /// OpenAI's `json_schema` and Anthropic's tools want one, and the schema).
    pub schema: Option<(&'a str, &'a serde_json::Value)>,
    /// The most tokens the answer may take.
    pub max_tokens: u32,
    /// Fail with [`LlmError::Timeout`] if the answer (retries included) is not in by then.
    pub deadline: Option<Instant>,
    /// Sampling temperature for this request, instead of the provider's.
    pub temperature: Option<f32>,
}

impl<'a> ChatRequest<'a> {
    /// A plain exchange: no schema, [`DEFAULT_MAX_TOKENS`], no deadline beyond the client's
    /// timeout.
    pub fn new(system: &'a str, user: &'a str) -> Self {
        ChatRequest {
            system,
            user,
            schema: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            deadline: None,
            temperature: None,
        }
    }
}

/// Why a chat exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The server answered with a non-success status (after retries, for 429 and 5xx).
    #[error("http {status} from the model server: {body}")]
    Http { status: u16, body: String },
    /// The connection failed or broke (refused, reset, truncated body, TLS).
    #[error("transport: {0}")]
    Transport(String),
    /// The server did not answer within the timeout.
    #[error("the model server did not answer within the timeout")]
    Timeout,
    /// The server answered 2xx with a body we cannot use (not JSON, missing fields, no JSON
    /// object in the reply text).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The named environment variable holding the API key is not set.
    #[error("missing api key: set {0}")]
    MissingKey(&'static str),
    /// `provider()` was given a kind it does not know.
    #[error("unknown llm provider '{0}' (expected openai, anthropic or ollama)")]
    UnknownProvider(String),
    /// A setting (base URL, host, timeout) cannot be used; the message names it and its value.
    #[error("bad llm setting: {0}")]
    Config(String),
}

/// Timeout of one HTTP exchange (request to last byte of the answer) when
/// `SINTRA_LLM_TIMEOUT_SECS` is not set. Local models on a CPU can take minutes for a recipe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Recipes are answers to a precise question: a low temperature keeps them on the schema.
const RECIPE_TEMPERATURE: Option<f32> = Some(0.2);

/// Builds the provider `kind` (`openai`, `anthropic`, `ollama`; `openai-compatible`,
/// `llama-server` and `vllm` are aliases of `openai`) for `model`, or its default model.
/// Settings come from the environment (see the module documentation).
pub fn provider(kind: &str, model: Option<&str>) -> Result<Box<dyn ChatProvider>, LlmError> {
    let timeout = timeout_from_env()?;
    let retry = RetryPolicy::default();
    Ok(match kind.to_ascii_lowercase().as_str() {
        "openai" | "openai-compatible" | "llama-server" | "vllm" => {
            Box::new(OpenAi::from_env(model, timeout, retry)?.with_temperature(RECIPE_TEMPERATURE))
        }
        "anthropic" | "claude" => Box::new(
            Anthropic::from_env(model, timeout, retry)?.with_temperature(RECIPE_TEMPERATURE),
        ),
        "ollama" => {
            Box::new(Ollama::from_env(model, timeout, retry)?.with_temperature(RECIPE_TEMPERATURE))
        }
        _ => return Err(LlmError::UnknownProvider(kind.to_string())),
    })
}

fn timeout_from_env() -> Result<Duration, LlmError> {
    let Some(raw) = env_nonempty("SINTRA_LLM_TIMEOUT_SECS") else {
        return Ok(DEFAULT_TIMEOUT);
    };
    match raw.trim().parse::<u64>() {
        Ok(s) if (1..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(LlmError::Config(format!(
            "SINTRA_LLM_TIMEOUT_SECS '{raw}' is not a number of seconds between 1 and 86400"
        ))),
    }
}

/// The variable's value when it is set and not blank.
fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An API key: kept out of `Debug` output and logs.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Checks that `url` is an http(s) URL and drops trailing slashes; `what` names the setting.
fn base_url(what: &str, url: &str) -> Result<String, LlmError> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_string())
        }
        _ => Err(LlmError::Config(format!(
            "{what} '{url}' is not an http:// or https:// url"
        ))),
    }
}

/// At most `max` characters of `s`, cut on a character boundary, with a marker when cut.
fn snippet(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
