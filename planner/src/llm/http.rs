//! The one HTTP exchange every provider makes: POST a JSON body, get a JSON body back, with a
//! timeout, a size cap, and bounded retries with backoff on 429 and 5xx.

use super::{snippet, LlmError};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// Largest answer read from a model server; a chat reply is a few kilobytes.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// How much of an error body is kept in [`LlmError::Http`].
const MAX_ERROR_BODY_CHARS: usize = 2000;

/// Longest wait honoured from a `retry-after` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently 429 and 5xx answers, and broken connections, are retried.
/// Timeouts are not retried: a server that took the whole timeout once will likely do it again,
/// and the caller already waited long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub base_delay: Duration,
    /// Cap on one wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based), or the server's `retry-after` if it gave
    /// one (capped).
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(MAX_RETRY_AFTER);
        }
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A blocking HTTP client with one timeout for each whole exchange.
#[derive(Debug, Clone)]
pub(crate) struct JsonClient {
    agent: ureq::Agent,
    retry: RetryPolicy,
    timeout: Duration,
}

impl JsonClient {
    pub(crate) fn new(timeout: Duration, retry: RetryPolicy) -> JsonClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("sintra/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        JsonClient {
            agent,
            retry,
            timeout,
        }
    }

    /// POSTs `body` to `url` with `headers` and returns the parsed JSON answer. With a
    /// `deadline`, every attempt and every wait between attempts ends by then
    /// ([`LlmError::Timeout`] after it).
    pub(crate) fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
        deadline: Option<Instant>,
    ) -> Result<serde_json::Value, LlmError> {
        let payload = body.to_string();
        let mut retry = 0;
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        loop {
            if left() == Some(Duration::ZERO) {
                return Err(LlmError::Timeout);
            }
            let (err, retry_after) = match self.attempt(url, headers, &payload, left()) {
                Ok(v) => return Ok(v),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retryable(e, after)) => (e, after),
            };
            if retry >= self.retry.max_retries {
                return Err(err);
            }
            let wait = self.retry.delay(retry, retry_after);
            if left().is_some_and(|l| l <= wait) {
                return Err(err);
            }
            std::thread::sleep(wait);
            retry += 1;
        }
    }

    fn attempt(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        payload: &str,
        left: Option<Duration>,
    ) -> Result<serde_json::Value, Attempt> {
        let mut req = self
            .agent
            .post(url)
            .header("content-type", "application/json");
        if let Some(left) = left {
            // The agent's timeout or the time left, whichever ends first.
            let timeout = self.timeout.min(left);
            req = req.config().timeout_global(Some(timeout)).build();
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.send(payload).map_err(|e| classify(url, e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| classify(url, e))?;
        let text = String::from_utf8_lossy(&bytes);
        if !(200..300).contains(&status) {
            let err = LlmError::Http {
                status,
                body: snippet(text.trim(), MAX_ERROR_BODY_CHARS),
            };
            return Err(if status == 429 || (500..600).contains(&status) {
                Attempt::Retryable(err, retry_after)
            } else {
                Attempt::Final(err)
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Attempt::Final(LlmError::BadResponse(format!(
                "answer from {url} is not json ({e}): {}",
                snippet(text.trim(), 200)
            )))
        })
    }
}

/// The outcome of one failed attempt.
enum Attempt {
    Final(LlmError),
    Retryable(LlmError, Option<Duration>),
}

/// Sorts a ureq error into timeout (final), refused connection (final: nothing is listening, so
/// waiting will not help), or another transport failure (retryable: reset, truncated body).
fn classify(url: &str, e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::Timeout(_) => Attempt::Final(LlmError::Timeout),
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Attempt::Final(LlmError::Timeout)
        }
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            Attempt::Final(LlmError::Transport(format!(
                "connection refused by {url} (is the server running?)"
            )))
        }
        ureq::Error::BodyExceedsLimit(n) => Attempt::Final(LlmError::BadResponse(format!(
            "answer from {url} is larger than {n} bytes"
        ))),
        ureq::Error::HostNotFound => {
            Attempt::Final(LlmError::Transport(format!("host of {url} not found")))
        }
        ureq::Error::BadUri(u) => Attempt::Final(LlmError::Config(format!("bad url '{u}'"))),
        other => Attempt::Retryable(LlmError::Transport(format!("{url}: {other}")), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        assert_eq!(p.delay(0, None), Duration::from_millis(100));
        assert_eq!(p.delay(1, None), Duration::from_millis(200));
        assert_eq!(p.delay(2, None), Duration::from_millis(400));
        assert_eq!(p.delay(3, None), Duration::from_millis(500));
        assert_eq!(p.delay(u32::MAX, None), Duration::from_millis(500));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    }
}
