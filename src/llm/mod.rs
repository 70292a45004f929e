//! LLM calls: the `LlmClient` role and its providers (OpenAI-compatible chat
//! completions, Anthropic Messages). Providers keep their wire types private and
//! return neutral `LlmResponse`s; errors say what the caller should do.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod cache;
pub mod openai;
mod retry;
#[cfg(feature = "test-doubles")]
mod scripted;

pub use anthropic::AnthropicClient;
pub use cache::{CacheStats, CachedLlm, Throttle};
pub use openai::OpenAiClient;
pub use retry::{for_ticket, requests_sent, ticket_requests, RetryPolicy};
#[cfg(feature = "test-doubles")]
pub use scripted::ScriptedClient;

/// An API key. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let k = key.into().trim().to_string();
        (!k.is_empty()).then_some(ApiKey(k))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// A provider-neutral request for one JSON answer.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub system: String,
    pub messages: Vec<Message>,
    /// JSON schema of the expected answer (sent where the provider supports it).
    pub schema: serde_json::Value,
    pub max_tokens: u32,
    pub temperature: f32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

/// One generated token and its log-probability, as OpenAI-compatible servers
/// return them with `logprobs: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
}

/// Probability the model gave the string value of `key` in its JSON answer: the
/// product of the probabilities of the tokens that overlap the value (the joint
/// probability of writing that value, given everything before it). `None` when the
/// tokens do not spell `text` or the key has no string value.
pub fn field_probability(text: &str, tokens: &[TokenLogprob], key: &str) -> Option<f32> {
    let joined: String = tokens.iter().map(|t| t.token.as_str()).collect();
    if joined != text || tokens.is_empty() {
        return None;
    }
    let needle = format!("\"{key}\"");
    let at = text.find(&needle)? + needle.len();
    let rest = &text[at..];
    let colon = rest.find(|c: char| !c.is_whitespace())?;
    if !rest[colon..].starts_with(':') {
        return None;
    }
    let after = &rest[colon + 1..];
    let quote = after.find(|c: char| !c.is_whitespace())?;
    if !after[quote..].starts_with('"') {
        return None;
    }
    let start = at + colon + 1 + quote + 1;
    let bytes = text.as_bytes();
    let mut end = start;
    while end < bytes.len() && bytes[end] != b'"' {
        end += if bytes[end] == b'\\' { 2 } else { 1 };
    }
    if end >= bytes.len() || end == start {
        return None;
    }
    let mut pos = 0usize;
    let mut sum = 0.0f32;
    for t in tokens {
        let (a, b) = (pos, pos + t.token.len());
        pos = b;
        if a < end && b > start {
            sum += t.logprob;
        }
    }
    Some(sum.exp().clamp(0.0, 1.0))
}

#[derive(Debug, Clone)]
pub struct LlmResponse {
    /// The answer text (for tool-use providers: the tool input as JSON).
    pub text: String,
    pub usage: Usage,
    /// The model that answered, as the provider reports it.
    pub model: String,
    /// HTTP attempts made, retries included.
    pub attempts: u32,
    /// Per-token log-probabilities of `text`, when the provider returned them.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// Errors grouped by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// 401/403: the key is missing or wrong. Retrying will not help.
    #[error("LLM provider rejected the credentials (HTTP {status}): {hint}")]
    Auth { status: u16, hint: String },
    /// Other 4xx: the request itself is wrong (model name, parameters).
    #[error("LLM provider rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// 429/5xx/connection errors/timeouts that persisted through every retry.
    #[error("LLM provider unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The provider answered 2xx with something that is not a completion.
    #[error("LLM provider returned an unreadable response: {0}")]
    BadResponse(String),
}

impl LlmError {
    /// A short machine-readable kind for results and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Auth { .. } => "llm_auth",
            LlmError::Rejected { .. } => "llm_rejected",
            LlmError::Unavailable { .. } => "llm_unavailable",
            LlmError::BadResponse(_) => "llm_bad_response",
        }
    }
}

#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Model name used in results (`--llm-model`).
    fn model(&self) -> &str;
    /// "openai", "anthropic", ...
    fn provider(&self) -> &'static str;
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError>;
}

/// Settings shared by the HTTP providers.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<ApiKey>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("ticket-triage/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::BadResponse(format!("cannot build HTTP client: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn toks(parts: &[(&str, f32)]) -> Vec<TokenLogprob> {
        parts.iter().map(|(t, l)| TokenLogprob { token: t.to_string(), logprob: *l }).collect()
    }

    #[test]
    fn field_probability_multiplies_the_value_tokens() {
        // {"reasoning": "x", "category": "Billing", ...}: "Bill" and "ing" make up the value.
        let t = toks(&[
            ("{\"reasoning\": \"x\", ", -0.5),
            ("\"category\": \"", -0.1),
            ("Bill", -0.2),
            ("ing", -0.05),
            ("\", \"confidence\": 0.9}", -0.3),
        ]);
        let text: String = t.iter().map(|x| x.token.as_str()).collect();
        let p = field_probability(&text, &t, "category").unwrap();
        assert!((p - (-0.25f32).exp()).abs() < 1e-6, "{p}");
        // A token that straddles the opening quote counts (it commits to the value).
        let t2 = toks(&[("{\"category\":\"Te", -0.7), ("chnical\"}", -0.1)]);
        let text2: String = t2.iter().map(|x| x.token.as_str()).collect();
        let p2 = field_probability(&text2, &t2, "category").unwrap();
        assert!((p2 - (-0.8f32).exp()).abs() < 1e-6);
        // Tokens that do not spell the text, a missing key, a non-string value: none.
        assert!(field_probability("{}", &t, "category").is_none());
        assert!(field_probability(&text, &t, "urgency").is_none());
        let t3 = toks(&[("{\"category\": 3}", -0.1)]);
        assert!(field_probability("{\"category\": 3}", &t3, "category").is_none());
    }

    #[test]
    fn api_key_is_never_printed() {
        let k = ApiKey::new("sk-secret-123").unwrap();
        assert!(!format!("{k:?}").contains("secret"));
        assert!(ApiKey::new("  ").is_none());
        let s = HttpSettings {
            base_url: "http://x".into(),
            model: "m".into(),
            api_key: Some(k),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        };
        assert!(!format!("{s:?}").contains("secret"));
    }
}
