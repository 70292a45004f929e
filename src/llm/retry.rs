//! Retries with exponential backoff and jitter on 429, 5xx, timeouts and connection
//! errors, honouring `Retry-After`; 4xx other than 429 fail at once. Every LLM
//! request of one ticket shares a deadline ([`for_ticket`], [`RetryPolicy::deadline`]):
//! each request's timeout is cut to the time left, and a retry that would start
//! after the deadline (a long `Retry-After`, a long backoff) is not waited for: the
//! call fails at once with the reason, and the ticket falls back to the vote.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::{RequestBuilder, StatusCode};

use super::LlmError;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    /// Longest wait before a retry; a `Retry-After` asking for more ends the retries.
    pub max_delay: Duration,
    /// Time all LLM requests of one ticket may take together, waits included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            deadline: Duration::from_secs(90),
        }
    }
}

/// One ticket's LLM work: when it started, and the HTTP requests it sent.
#[derive(Clone)]
struct TicketScope {
    start: Instant,
    sent: Arc<AtomicU32>,
}

tokio::task_local! {
    static TICKET: TicketScope;
}

/// Run `work` as one ticket's LLM requests: they share one deadline, counted from now
/// ([`RetryPolicy::deadline`]), and [`ticket_requests`] counts them. Outside such a
/// scope each call has its own deadline.
pub async fn for_ticket<F: Future>(work: F) -> F::Output {
    TICKET.scope(TicketScope { start: Instant::now(), sent: Arc::new(AtomicU32::new(0)) }, work).await
}

/// HTTP requests sent so far for the current ticket (inside [`for_ticket`]; 0
/// outside): first attempts, retries, fallbacks without an optional feature, failed
/// ones. A cached answer sends none.
pub fn ticket_requests() -> u32 {
    TICKET.try_with(|t| t.sent.load(Ordering::Relaxed)).unwrap_or(0)
}

fn count_request() {
    REQUESTS_SENT.fetch_add(1, Ordering::Relaxed);
    let _ = TICKET.try_with(|t| t.sent.fetch_add(1, Ordering::Relaxed));
}

/// HTTP requests sent to LLM providers by this process, failed ones and retries included.
static REQUESTS_SENT: AtomicU64 = AtomicU64::new(0);

/// HTTP requests sent to LLM providers by this process (what per-request pricing
/// charges and rate limits count), failed ones and retries included.
pub fn requests_sent() -> u64 {
    REQUESTS_SENT.load(Ordering::Relaxed)
}

/// Count one request of a provider that does not go through [`send`] (the scripted
/// test double, built only with the `test-doubles` feature).
#[cfg_attr(not(feature = "test-doubles"), allow(dead_code))]
pub(crate) fn note_request() {
    count_request();
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based): base * 2^retry with +-50% jitter,
    /// at most `max_delay`; or the server's `Retry-After` when it gave one, as given
    /// (whether to wait that long is [`send`]'s decision).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        exp.mul_f64(jitter).min(self.max_delay)
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    parse_retry_after(resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?, SystemTime::now())
}

/// A `Retry-After` value (RFC 9110 10.2.3): delay seconds (decimals accepted) or an
/// HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`, and the two obsolete formats), as the
/// wait from `now`; a date in the past is no wait. Delays too long for a `Duration`
/// (`1e20`, 20-digit integers) are the longest one, which no policy waits for.
/// Anything else (negative, NaN, garbage) is ignored.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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

/// Send a request built by `build` (each with at most `timeout`, and never past the
/// ticket's deadline) until it succeeds or the policy gives up.
/// Returns the body of the 2xx response and the number of attempts made.
pub(crate) async fn send(
    policy: &RetryPolicy,
    timeout: Duration,
    auth_hint: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<(String, u32), LlmError> {
    let deadline = TICKET.try_with(|t| t.start).unwrap_or_else(|_| Instant::now()) + policy.deadline;
    let mut attempt = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LlmError::Unavailable {
                attempts: attempt,
                last: format!("the ticket's LLM deadline of {} s passed", policy.deadline.as_secs_f64()),
            });
        }
        attempt += 1;
        count_request();
        let (last, wait) = match build().timeout(timeout.min(left)).send().await {
            Ok(resp) => {
                let status = resp.status();
                let after = retry_after(&resp);
                let body = match read_capped(resp).await {
                    Ok(b) => b,
                    Err(e) if status.is_success() => return Err(e),
                    Err(_) => String::new(),
                };
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
        if let Some(asked) = wait.filter(|w| *w > policy.max_delay) {
            return Err(LlmError::Unavailable {
                attempts: attempt,
                last: format!(
                    "{last}; the server asked to retry after {} s, longer than the {} s a ticket waits (not retried)",
                    asked.as_secs_f64(),
                    policy.max_delay.as_secs_f64()
                ),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if delay >= left {
            return Err(LlmError::Unavailable {
                attempts: attempt,
                last: format!(
                    "{last}; a retry in {:.1} s would pass the ticket's LLM deadline ({:.1} s left of {} s)",
                    delay.as_secs_f64(),
                    left.as_secs_f64(),
                    policy.deadline.as_secs_f64()
                ),
            });
        }
        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, "LLM call failed, retrying: {last}");
        tokio::time::sleep(delay).await;
    }
}

/// Largest LLM reply read, in bytes: a classification answer is a few hundred.
const MAX_REPLY_BYTES: usize = 4 << 20;

/// The response body as text, refusing replies over [`MAX_REPLY_BYTES`] without
/// holding more than that in memory.
async fn read_capped(mut resp: reqwest::Response) -> Result<String, LlmError> {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(LlmError::BadResponse(format!("the reply is larger than {MAX_REPLY_BYTES} bytes")));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            Err(e) => return Err(LlmError::BadResponse(format!("reading the reply failed: {}", without_url(&e)))),
        }
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
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(60),
        };
        for _ in 0..20 {
            let d0 = p.delay(0, None);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(150));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_secs(1));
            assert_eq!(p.delay(10, None), Duration::from_secs(1));
        }
        assert_eq!(p.delay(0, Some(Duration::from_millis(700))), Duration::from_millis(700));
        // Retry-After is the server's: not shortened (`send` decides not to wait).
        assert_eq!(p.delay(0, Some(Duration::from_secs(90))), Duration::from_secs(90));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates_and_never_panics() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").expect("an HTTP date");
        let p = |v: &str| parse_retry_after(v, now);
        assert_eq!(p("1"), Some(Duration::from_secs(1)));
        assert_eq!(p(" 0.5 "), Some(Duration::from_millis(500)));
        // Before: `Duration::from_secs_f64` panicked on these.
        assert_eq!(p("1e20"), Some(Duration::MAX));
        assert_eq!(p("99999999999999999999"), Some(Duration::MAX));
        assert_eq!(p("1.7e308"), Some(Duration::MAX));
        for ignored in ["-1", "NaN", "inf", "soon", ""] {
            assert_eq!(p(ignored), None, "{ignored:?}");
        }
        // HTTP dates: IMF-fixdate and the two obsolete formats; the past is no wait.
        assert_eq!(p("Wed, 21 Oct 2026 07:28:30 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(p("Wednesday, 21-Oct-26 07:29:00 GMT"), Some(Duration::from_secs(60)));
        assert_eq!(p("Wed Oct 21 07:28:02 2026"), Some(Duration::from_secs(2)));
        assert_eq!(p("Tue, 20 Oct 2026 07:28:00 GMT"), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn requests_are_counted_per_ticket() {
        assert_eq!(ticket_requests(), 0);
        let (inner, after) = for_ticket(async {
            count_request();
            count_request();
            let inner = for_ticket(async {
                count_request();
                ticket_requests()
            })
            .await;
            (inner, ticket_requests())
        })
        .await;
        assert_eq!((inner, after), (1, 2), "each ticket counts its own");
        assert_eq!(ticket_requests(), 0);
    }

    #[test]
    fn error_messages_are_extracted() {
        assert_eq!(error_message(r#"{"error":{"message":"model not found"}}"#), "model not found");
        assert_eq!(error_message("plain text"), "plain text");
        assert_eq!(error_message(&"x".repeat(1000)).len(), 300);
    }
}
