//! LLM calls: the `LlmClient` role and its providers (OpenAI-compatible chat
//! completions, Anthropic Messages). Providers keep their wire types private and
//! return neutral `LlmResponse`s; errors say what the caller should do.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub mod anthropic;
pub mod cache;
pub mod openai;
mod retry;
mod scripted;

pub use anthropic::AnthropicClient;
pub use cache::{CacheStats, CachedLlm, Throttle};
pub use openai::OpenAiClient;
pub use retry::RetryPolicy;
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

#[derive(Debug, Clone)]
pub struct LlmResponse {
    /// The answer text (for tool-use providers: the tool input as JSON).
    pub text: String,
    pub usage: Usage,
    /// The model that answered, as the provider reports it.
    pub model: String,
    /// HTTP attempts made, retries included.
    pub attempts: u32,
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
mod tests {
    use super::*;

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
