//! One HTTP client per helpdesk account: basic-auth credentials that never leave the
//! configured base URL and never reach a log, retries with backoff on 5xx, timeouts
//! and connection errors, `Retry-After` on 429, and pacing on the rate-limit headers
//! (`X-Rate-Limit-Remaining`, `ratelimit-remaining`, `X-RateLimit-Remaining`; wait
//! `ratelimit-reset` or `Retry-After` seconds when it reaches 0).

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use super::HelpdeskError;

/// A credential: shown as `[redacted]` by `Debug`, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// A new secret made from this one's text (e.g. `email/token`).
    pub fn map(self, f: impl FnOnce(String) -> String) -> Secret {
        Secret(f(self.0))
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A required environment variable, trimmed; the error names it.
pub fn env_secret(name: &str, what: &str) -> Result<Secret, HelpdeskError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
        _ => Err(HelpdeskError::Config(format!("{name} is not set: it must hold {what}"))),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries on 5xx, timeouts and connection errors (the first attempt not counted).
    pub max_retries: u32,
    /// First backoff delay; doubles each retry, ±50 % jitter, at most `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longest wait honoured for one `Retry-After` or rate-limit reset.
    pub max_wait: Duration,
    /// 429 answers in a row before giving up.
    pub max_rate_limited: u32,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
            max_rate_limited: 20,
            timeout: Duration::from_secs(30),
        }
    }
}

pub struct HelpdeskHttp {
    helpdesk: &'static str,
    base: String,
    user: Secret,
    password: Secret,
    auth_hint: String,
    client: reqwest::Client,
    policy: RetryPolicy,
    /// No request before this instant (the rate limit said to wait).
    pace_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for HelpdeskHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelpdeskHttp")
            .field("helpdesk", &self.helpdesk)
            .field("base", &self.base)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl HelpdeskHttp {
    /// `auth_hint` says which variables to check when the helpdesk answers 401/403.
    pub fn new(
        helpdesk: &'static str,
        base_url: &str,
        user: Secret,
        password: Secret,
        auth_hint: &str,
        policy: RetryPolicy,
    ) -> Result<Self, HelpdeskError> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(HelpdeskError::Config(format!("--base-url {base_url:?} must start with https:// (or http://)")));
        }
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HelpdeskError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HelpdeskHttp {
            helpdesk,
            base,
            user,
            password,
            auth_hint: auth_hint.to_string(),
            client,
            policy,
            pace_until: Mutex::new(None),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The host of the base URL (for the state name).
    pub fn host(&self) -> String {
        let rest = self.base.split_once("://").map(|(_, r)| r).unwrap_or(&self.base);
        rest.split('/').next().unwrap_or(rest).to_string()
    }

    /// `path` below the base URL, or an absolute URL under it (a `next_page` link);
    /// credentials are never sent anywhere else.
    fn url(&self, path: &str, what: &str) -> Result<String, HelpdeskError> {
        if path.starts_with("http://") || path.starts_with("https://") {
            if path.starts_with(&format!("{}/", self.base)) {
                return Ok(path.to_string());
            }
            return Err(HelpdeskError::BadResponse {
                helpdesk: self.helpdesk,
                what: what.to_string(),
                detail: format!("a link outside {} was not followed", self.base),
            });
        }
        Ok(format!("{}{path}", self.base))
    }

    async fn wait_for_pace(&self) {
        let until = *self.pace_until.lock().await;
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                tokio::time::sleep(t - now).await;
            }
        }
    }

    /// Remember to wait before the next request when the rate limit is used up.
    async fn pace(&self, headers: &HeaderMap) {
        let remaining = ["x-rate-limit-remaining", "ratelimit-remaining", "x-ratelimit-remaining"]
            .iter()
            .find_map(|h| header_u64(headers, h));
        if remaining == Some(0) {
            let wait = header_u64(headers, "ratelimit-reset")
                .or_else(|| header_u64(headers, "retry-after"))
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(60))
                .min(self.policy.max_wait);
            tracing::info!("{}: rate limit used up; pausing {} s before the next request", self.helpdesk, wait.as_secs());
            *self.pace_until.lock().await = Some(Instant::now() + wait);
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let base = self.policy.base_delay.as_secs_f64() * 2f64.powi(retry.min(20) as i32);
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        Duration::from_secs_f64((base * jitter).min(self.policy.max_delay.as_secs_f64()))
    }

    /// Send `method path` with an optional JSON body; the answer's JSON (`Null` when empty).
    /// `what` names the request in errors and logs ("export page", "ticket 42 update").
    /// Retried on 429, 5xx, timeouts and connection errors: only for requests that are
    /// safe to repeat.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Value, HelpdeskError> {
        self.send(method, path, body, what, true).await
    }

    /// A write that adds a note, so not safe to repeat blindly: 429 is retried (the
    /// helpdesk did not process it), but a 5xx, timeout or lost connection gives
    /// [`HelpdeskError::Uncertain`], and the caller looks for the note before writing
    /// again (see [`HelpdeskHttp::write_checked`]).
    pub async fn request_once(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Value, HelpdeskError> {
        self.send(method, path, body, what, false).await
    }

    /// Run `write` (built on [`HelpdeskHttp::request_once`]); when its outcome is
    /// uncertain, wait (backoff), ask `done` whether it was applied after all, and write
    /// again only if not; at most `max_retries` times.
    pub async fn write_checked<W, WF, D, DF>(&self, mut write: W, mut done: D) -> Result<(), HelpdeskError>
    where
        W: FnMut() -> WF,
        WF: std::future::Future<Output = Result<(), HelpdeskError>>,
        D: FnMut() -> DF,
        DF: std::future::Future<Output = Result<bool, HelpdeskError>>,
    {
        let mut retry = 0;
        loop {
            match write().await {
                Err(e @ HelpdeskError::Uncertain { .. }) => {
                    if retry >= self.policy.max_retries {
                        return Err(e);
                    }
                    let delay = self.backoff(retry);
                    retry += 1;
                    tracing::warn!("{}: {e}; checking the ticket in {:.1} s before writing again", self.helpdesk, delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                    if done().await? {
                        return Ok(());
                    }
                }
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
        repeatable: bool,
    ) -> Result<Value, HelpdeskError> {
        let url = self.url(path, what)?;
        let mut retries = 0u32;
        let mut limited = 0u32;
        loop {
            self.wait_for_pace().await;
            let mut req = self
                .client
                .request(method.clone(), &url)
                .basic_auth(self.user.expose(), Some(self.password.expose()))
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let failure = match req.send().await {
                Err(e) => format!("{}", without_url(e)),
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    self.pace(&headers).await;
                    if status.is_success() {
                        let bytes = resp.bytes().await.map_err(|e| self.unavailable(what, retries + 1, e.without_url()))?;
                        if bytes.iter().all(u8::is_ascii_whitespace) {
                            return Ok(Value::Null);
                        }
                        return serde_json::from_slice(&bytes).map_err(|e| HelpdeskError::BadResponse {
                            helpdesk: self.helpdesk,
                            what: what.to_string(),
                            detail: format!("not JSON: {e}"),
                        });
                    }
                    let text = resp.text().await.unwrap_or_default();
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => {
                            limited += 1;
                            if limited > self.policy.max_rate_limited {
                                return Err(self.unavailable(what, retries + limited, "429 Too Many Requests"));
                            }
                            let wait = header_u64(&headers, "retry-after")
                                .map(Duration::from_secs)
                                .unwrap_or(Duration::from_secs(60))
                                .min(self.policy.max_wait);
                            tracing::info!("{}: 429 on {what}; retrying in {} s (Retry-After)", self.helpdesk, wait.as_secs());
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            return Err(HelpdeskError::Auth {
                                helpdesk: self.helpdesk,
                                status: status.as_u16(),
                                what: what.to_string(),
                                hint: self.auth_hint.clone(),
                            })
                        }
                        StatusCode::NOT_FOUND => {
                            return Err(HelpdeskError::NotFound { helpdesk: self.helpdesk, what: what.to_string() })
                        }
                        s if s.is_server_error() => {
                            if let Some(after) = header_u64(&headers, "retry-after") {
                                *self.pace_until.lock().await =
                                    Some(Instant::now() + Duration::from_secs(after).min(self.policy.max_wait));
                            }
                            format!("{} {}", s.as_u16(), excerpt(&text))
                        }
                        s => {
                            return Err(HelpdeskError::Rejected {
                                helpdesk: self.helpdesk,
                                what: what.to_string(),
                                status: s.as_u16(),
                                body: excerpt(&text),
                            })
                        }
                    }
                }
            };
            if !repeatable {
                return Err(HelpdeskError::Uncertain { helpdesk: self.helpdesk, what: what.to_string(), detail: failure });
            }
            if retries >= self.policy.max_retries {
                return Err(self.unavailable(what, retries + 1, failure));
            }
            let delay = self.backoff(retries);
            retries += 1;
            tracing::warn!("{}: {what} failed ({failure}); retry {retries} in {:.1} s", self.helpdesk, delay.as_secs_f64());
            tokio::time::sleep(delay).await;
        }
    }

    fn unavailable(&self, what: &str, attempts: u32, last: impl std::fmt::Display) -> HelpdeskError {
        HelpdeskError::Unavailable { helpdesk: self.helpdesk, what: what.to_string(), attempts, last: last.to_string() }
    }
}

fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v.ceil() as u64)
}

/// The first 300 characters of an error body, on one line.
fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let http = HelpdeskHttp::new(
            "zendesk",
            "https://acme.zendesk.com/",
            Secret::new("agent@acme.com/token"),
            Secret::new("s3cr3t-token"),
            "check ZENDESK_API_TOKEN",
            RetryPolicy::default(),
        )
        .unwrap();
        let shown = format!("{http:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("agent@acme.com"), "{shown}");
        assert!(shown.contains("https://acme.zendesk.com"), "{shown}");
        assert_eq!(http.host(), "acme.zendesk.com");
    }

    #[test]
    fn links_outside_the_base_are_refused() {
        let http =
            HelpdeskHttp::new("zendesk", "https://acme.zendesk.com", Secret::new("u"), Secret::new("p"), "", RetryPolicy::default())
                .unwrap();
        assert_eq!(http.url("/api/v2/x.json", "t").unwrap(), "https://acme.zendesk.com/api/v2/x.json");
        assert!(http.url("https://acme.zendesk.com/api/v2/x.json?page=2", "t").is_ok());
        assert!(http.url("https://evil.example/api", "t").is_err());
        assert!(http.url("https://acme.zendesk.com.evil.example/api", "t").is_err());
        assert!(HelpdeskHttp::new("zendesk", "acme.zendesk.com", Secret::new("u"), Secret::new("p"), "", RetryPolicy::default())
            .is_err());
    }

    #[test]
    fn rate_limit_headers_are_read_leniently() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        h.insert("ratelimit-reset", "1.2".parse().unwrap());
        h.insert("x-rate-limit-remaining", "x".parse().unwrap());
        assert_eq!(header_u64(&h, "retry-after"), Some(2));
        assert_eq!(header_u64(&h, "ratelimit-reset"), Some(2));
        assert_eq!(header_u64(&h, "x-rate-limit-remaining"), None);
        assert_eq!(excerpt(&"a ".repeat(400)).len(), 303);
    }
}
