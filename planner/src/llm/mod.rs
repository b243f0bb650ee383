//! Language-model providers for the LLM architects (the HTTP clients land in this module).
// The HTTP providers that construct every variant are merged separately.
#![allow(dead_code)]

/// One chat exchange with a language model; implementations: OpenAI-compatible, Anthropic, Ollama.
pub trait ChatProvider {
    /// Provider and model, for logs and the history database, e.g. "openai:gpt-4o-mini".
    fn name(&self) -> String;
    /// Send a system and a user message; return the assistant's text.
    fn complete(&self, system: &str, user: &str) -> Result<String, LlmError>;
}

/// Why a chat exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The server answered with an error status.
    #[error("http status {status}: {body}")]
    Http { status: u16, body: String },
    /// The request did not reach the server or the answer did not come back.
    #[error("transport error: {0}")]
    Transport(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// An answer that is not what the API promises.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The API key's environment variable is not set.
    #[error("missing API key: set {0}")]
    MissingKey(&'static str),
}
