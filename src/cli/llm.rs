//! The LLM flags shared by `classify`, `eval`, `serve`, `calibrate` and `pull`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::config::{self, JsonMode, LlmSettings, Provider};
use crate::llm::RetryPolicy;

#[derive(Debug, Args)]
pub struct LlmArgs {
    /// LLM provider [default: openai when a key or base URL is set, else anthropic when ANTHROPIC_API_KEY is set, else none (knn)]
    #[arg(long, env = "TRIAGE_LLM_PROVIDER", value_enum)]
    pub provider: Option<Provider>,
    /// Base URL of the LLM API [default: https://api.oxlo.ai/v1 for openai, https://api.anthropic.com for anthropic]
    #[arg(long, env = "TRIAGE_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// Model name [default: llama-3.3-70b for openai, claude-sonnet-4-5 for anthropic]
    #[arg(long, env = "TRIAGE_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Seconds before one LLM request times out
    #[arg(long, env = "TRIAGE_LLM_TIMEOUT", default_value_t = 60.0)]
    pub llm_timeout: f64,
    /// Retries on 429, 5xx, timeouts and connection errors
    #[arg(long, env = "TRIAGE_LLM_MAX_RETRIES", default_value_t = 3)]
    pub llm_max_retries: u32,
    /// First backoff delay in milliseconds (doubles each retry, with jitter; Retry-After wins)
    #[arg(long, env = "TRIAGE_LLM_RETRY_BASE_MS", default_value_t = 500)]
    pub llm_retry_base_ms: u64,
    /// Seconds all LLM requests of one ticket may take, retries and waits included; a retry that would start later (e.g. a long Retry-After) is not made and the ticket falls back to the neighbours' vote
    #[arg(long, env = "TRIAGE_LLM_DEADLINE", default_value_t = 90.0)]
    pub llm_deadline: f64,
    /// How to ask OpenAI-compatible servers for JSON
    #[arg(long, env = "TRIAGE_LLM_JSON_MODE", value_enum, default_value = "schema")]
    pub json_mode: JsonMode,
}

impl LlmArgs {
    /// The configured LLM, or `None` for knn mode (saying so on stderr when that was the default).
    pub fn client(&self) -> anyhow::Result<Option<Arc<dyn crate::llm::LlmClient>>> {
        let (llm, note) = config::build_llm(&self.settings()?)?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        Ok(llm)
    }

    pub fn settings(&self) -> anyhow::Result<LlmSettings> {
        anyhow::ensure!(
            self.llm_timeout.is_finite() && self.llm_timeout > 0.0,
            "--llm-timeout must be a positive number of seconds"
        );
        anyhow::ensure!(
            self.llm_deadline.is_finite() && self.llm_deadline > 0.0,
            "--llm-deadline must be a positive number of seconds"
        );
        Ok(LlmSettings {
            provider: self.provider,
            base_url: self.llm_base_url.clone().filter(|u| !u.trim().is_empty()),
            model: self.llm_model.clone().filter(|m| !m.trim().is_empty()),
            timeout: Duration::from_secs_f64(self.llm_timeout),
            retry: RetryPolicy {
                max_retries: self.llm_max_retries,
                base_delay: Duration::from_millis(self.llm_retry_base_ms),
                max_delay: Duration::from_secs(30),
                deadline: Duration::from_secs_f64(self.llm_deadline),
            },
            json_mode: self.json_mode,
        })
    }
}
