//! Retries with exponential backoff and jitter on 429, 5xx, timeouts and connection
//! errors, honouring `Retry-After`; 4xx other than 429 fail at once.

use std::time::Duration;

use rand::Rng;
use reqwest::{RequestBuilder, StatusCode};

use super::LlmError;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based): base * 2^retry with +-50% jitter,
    /// or the server's `Retry-After` when it gave one; never above `max_delay`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        exp.mul_f64(jitter).min(self.max_delay)
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Pull a human-readable message out of an error body (`{"error": {"message": ...}}`
/// in both OpenAI and Anthropic APIs), cut to a sane length.
pub(crate) fn error_message(body: &str) -> String {
    let msg = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.pointer("/error"))
                .or_else(|| v.pointer("/message"))
                .or_else(|| v.pointer("/detail"))
                .map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string()))
        })
        .unwrap_or_else(|| body.trim().to_string());
    msg.chars().take(300).collect()
}

/// Send a request built by `build` until it succeeds or the policy gives up.
/// Returns the body of the 2xx response and the number of attempts made.
pub(crate) async fn send(
    policy: &RetryPolicy,
    auth_hint: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<(String, u32), LlmError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (last, wait) = match build().send().await {
            Ok(resp) => {
                let status = resp.status();
                let after = retry_after(&resp);
                let body = resp.text().await.unwrap_or_default();
                if status.is_success() {
                    return Ok((body, attempt));
                }
                match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        return Err(LlmError::Auth { status: status.as_u16(), hint: auth_hint.to_string() })
                    }
                    s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                        (format!("HTTP {}: {}", s.as_u16(), error_message(&body)), after)
                    }
                    s => return Err(LlmError::Rejected { status: s.as_u16(), message: error_message(&body) }),
                }
            }
            Err(e) if e.is_timeout() => ("request timed out".to_string(), None),
            Err(e) if e.is_connect() => (format!("connection failed: {}", without_url(&e)), None),
            Err(e) if e.is_request() || e.is_body() => (format!("request failed: {}", without_url(&e)), None),
            Err(e) => return Err(LlmError::BadResponse(without_url(&e))),
        };
        if attempt > policy.max_retries {
            return Err(LlmError::Unavailable { attempts: attempt, last });
        }
        let delay = policy.delay(attempt - 1, wait);
        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, "LLM call failed, retrying: {last}");
        tokio::time::sleep(delay).await;
    }
}

/// reqwest errors print the URL; URLs can carry credentials in query strings.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<llm-url>");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for _ in 0..20 {
            let d0 = p.delay(0, None);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(150));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_secs(1));
            assert_eq!(p.delay(10, None), Duration::from_secs(1));
        }
        assert_eq!(p.delay(0, Some(Duration::from_millis(700))), Duration::from_millis(700));
        assert_eq!(p.delay(0, Some(Duration::from_secs(90))), Duration::from_secs(1));
    }

    #[test]
    fn error_messages_are_extracted() {
        assert_eq!(error_message(r#"{"error":{"message":"model not found"}}"#), "model not found");
        assert_eq!(error_message("plain text"), "plain text");
        assert_eq!(error_message(&"x".repeat(1000)).len(), 300);
    }
}
