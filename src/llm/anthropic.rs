//! Anthropic Messages API. Structured output through a forced tool call whose
//! input schema is the answer schema.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::retry;
use super::{http_client, HttpSettings, LlmClient, LlmError, LlmRequest, LlmResponse, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
const API_VERSION: &str = "2023-06-01";
const TOOL: &str = "classify_ticket";

pub struct AnthropicClient {
    http: reqwest::Client,
    url: String,
    settings: HttpSettings,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text { text: String },
    ToolUse { input: serde_json::Value },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl AnthropicClient {
    pub fn new(settings: HttpSettings) -> Result<Self, LlmError> {
        let base = settings.base_url.trim_end_matches('/');
        let url = if base.ends_with("/v1") { format!("{base}/messages") } else { format!("{base}/v1/messages") };
        Ok(AnthropicClient { http: http_client(settings.timeout)?, url, settings })
    }
}

#[async_trait]
impl LlmClient for AnthropicClient {
    fn model(&self) -> &str {
        &self.settings.model
    }
    fn provider(&self) -> &'static str {
        "anthropic"
    }

    async fn complete(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = json!({
            "model": self.settings.model,
            "system": req.system,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "tools": [{"name": TOOL, "description": "Record the ticket classification.", "input_schema": req.schema}],
            "tool_choice": {"type": "tool", "name": TOOL},
        });
        let hint = "set TRIAGE_LLM_API_KEY or ANTHROPIC_API_KEY to a valid Anthropic key";
        let (text, attempts) = retry::send(&self.settings.retry, self.settings.timeout, hint, || {
            let mut rb = self.http.post(&self.url).header("anthropic-version", API_VERSION).json(&body);
            if let Some(key) = &self.settings.api_key {
                rb = rb.header("x-api-key", key.expose());
            }
            rb
        })
        .await?;
        let wire: WireResponse = serde_json::from_str(&text)
            .map_err(|e| LlmError::BadResponse(format!("{e}: {}", text.chars().take(200).collect::<String>())))?;
        let mut answer = None;
        for block in wire.content {
            match block {
                WireBlock::ToolUse { input } => {
                    answer = Some(input.to_string());
                    break;
                }
                WireBlock::Text { text } if answer.is_none() => answer = Some(text),
                _ => {}
            }
        }
        let text = answer.ok_or_else(|| LlmError::BadResponse("no tool_use or text block in content".into()))?;
        let usage = wire
            .usage
            .map(|u| Usage { prompt_tokens: u.input_tokens, completion_tokens: u.output_tokens })
            .unwrap_or_default();
        Ok(LlmResponse {
            text,
            usage,
            model: wire.model.unwrap_or_else(|| self.settings.model.clone()),
            attempts,
            logprobs: None,
        })
    }
}
