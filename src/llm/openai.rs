//! OpenAI-compatible chat completions: Oxlo (default), OpenAI, vLLM, llama.cpp,
//! Ollama. Asks for `json_schema` output with enum labels; when a server rejects
//! that with 400, falls back to plain JSON mode for the rest of the run. Asks for
//! token log-probabilities (`logprobs: true`) so that the probability of the chosen
//! label can be read off; a server that rejects the parameter is asked again without
//! it, for the rest of the run too.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::retry::{self, RetryPolicy};
use super::{http_client, HttpSettings, LlmClient, LlmError, LlmRequest, LlmResponse, TokenLogprob, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.oxlo.ai/v1";
pub const DEFAULT_MODEL: &str = "llama-3.3-70b";

pub struct OpenAiClient {
    http: reqwest::Client,
    url: String,
    settings: HttpSettings,
    /// Set once a server has said it does not support `json_schema`.
    schema_unsupported: AtomicBool,
    /// Set once a server has said it does not support `logprobs`.
    logprobs_unsupported: AtomicBool,
    /// Start in JSON-object mode (`--json-mode object`).
    force_object: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
}

/// `choices[0].logprobs`: the chat format (`content: [{token, logprob}]`), or the
/// legacy completions format some servers use (`tokens`, `token_logprobs`).
#[derive(Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireToken>>,
    #[serde(default)]
    tokens: Option<Vec<String>>,
    #[serde(default)]
    token_logprobs: Option<Vec<Option<f32>>>,
}

#[derive(Deserialize)]
struct WireToken {
    token: String,
    logprob: f32,
}

impl WireLogprobs {
    fn tokens(self) -> Option<Vec<TokenLogprob>> {
        if let Some(c) = self.content {
            return Some(c.into_iter().map(|t| TokenLogprob { token: t.token, logprob: t.logprob }).collect());
        }
        let (tokens, lps) = (self.tokens?, self.token_logprobs?);
        (tokens.len() == lps.len())
            .then(|| tokens.into_iter().zip(lps).map(|(token, l)| TokenLogprob { token, logprob: l.unwrap_or(0.0) }).collect())
    }
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiClient {
    pub fn new(settings: HttpSettings, force_object: bool) -> Result<Self, LlmError> {
        let url = format!("{}/chat/completions", settings.base_url.trim_end_matches('/'));
        Ok(OpenAiClient {
            http: http_client(settings.timeout)?,
            url,
            settings,
            schema_unsupported: AtomicBool::new(false),
            logprobs_unsupported: AtomicBool::new(false),
            force_object,
        })
    }

    fn body(&self, req: &LlmRequest, use_schema: bool, logprobs: bool) -> serde_json::Value {
        let mut messages = vec![json!({"role": "system", "content": req.system})];
        messages.extend(req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})));
        let response_format = if use_schema {
            json!({"type": "json_schema", "json_schema": {"name": "ticket_classification", "strict": true, "schema": req.schema}})
        } else {
            json!({"type": "json_object"})
        };
        let mut body = json!({
            "model": self.settings.model,
            "messages": messages,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "response_format": response_format,
        });
        if logprobs {
            body["logprobs"] = json!(true);
        }
        body
    }

    async fn post(&self, body: &serde_json::Value) -> Result<(String, u32), LlmError> {
        let hint = "set TRIAGE_LLM_API_KEY (or OXLO_API_KEY / OPENAI_API_KEY) to a valid key for this base URL";
        retry::send(&self.settings.retry, self.settings.timeout, hint, || {
            let mut rb = self.http.post(&self.url).json(body);
            if let Some(key) = &self.settings.api_key {
                rb = rb.bearer_auth(key.expose());
            }
            rb
        })
        .await
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.settings.retry
    }
}

fn mentions_logprobs(message: &str) -> bool {
    message.to_lowercase().contains("logprob")
}

fn mentions_schema(message: &str) -> bool {
    let m = message.to_lowercase();
    ["response_format", "json_schema", "schema", "structured output"].iter().any(|k| m.contains(k))
}

#[async_trait]
impl LlmClient for OpenAiClient {
    fn model(&self) -> &str {
        &self.settings.model
    }
    fn provider(&self) -> &'static str {
        "openai"
    }

    async fn complete(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let mut attempts_before = 0;
        // At most one fallback per optional feature (logprobs, then json_schema).
        let (body, attempts) = loop {
            let use_schema = !self.force_object && !self.schema_unsupported.load(Ordering::Relaxed);
            let logprobs = !self.logprobs_unsupported.load(Ordering::Relaxed);
            match self.post(&self.body(req, use_schema, logprobs)).await {
                Ok((b, a)) => break (b, a + attempts_before),
                // Most servers answer 400; llama-cpp-python 0.3.36 answers 500 (after our retries).
                Err(LlmError::Rejected { status: 400, message } | LlmError::Unavailable { last: message, .. })
                    if logprobs && mentions_logprobs(&message) =>
                {
                    tracing::warn!("the LLM server does not accept logprobs ({message}); asking without them");
                    self.logprobs_unsupported.store(true, Ordering::Relaxed);
                    attempts_before += 1;
                }
                Err(LlmError::Rejected { status: 400, message } | LlmError::Unavailable { last: message, .. })
                    if use_schema && mentions_schema(&message) =>
                {
                    tracing::warn!("the LLM server does not accept json_schema output ({message}); using JSON mode");
                    self.schema_unsupported.store(true, Ordering::Relaxed);
                    attempts_before += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let wire: WireResponse = serde_json::from_str(&body)
            .map_err(|e| LlmError::BadResponse(format!("{e}: {}", body.chars().take(200).collect::<String>())))?;
        let choice =
            wire.choices.into_iter().next().ok_or_else(|| LlmError::BadResponse("no choices[0].message.content".into()))?;
        let logprobs = choice.logprobs.and_then(WireLogprobs::tokens).filter(|t| !t.is_empty());
        let text = choice.message.content.ok_or_else(|| LlmError::BadResponse("no choices[0].message.content".into()))?;
        let usage = wire
            .usage
            .map(|u| Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens })
            .unwrap_or_default();
        Ok(LlmResponse {
            text,
            usage,
            model: wire.model.unwrap_or_else(|| self.settings.model.clone()),
            attempts,
            logprobs,
        })
    }
}
