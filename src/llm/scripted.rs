//! An instant, deterministic stand-in for an LLM: answers with the label of the most
//! similar demonstration in the prompt. For load tests and benchmarks of everything
//! around the LLM (`--provider scripted`); it has no judgement of its own.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{LlmClient, LlmError, LlmRequest, LlmResponse, Usage};

pub struct ScriptedClient;

#[async_trait]
impl LlmClient for ScriptedClient {
    fn model(&self) -> &str {
        "scripted"
    }
    fn provider(&self) -> &'static str {
        "scripted"
    }

    async fn complete(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        super::retry::note_request();
        let prompt = req.messages.first().map(|m| m.content.as_str()).unwrap_or_default();
        let demo: Value = prompt
            .lines()
            .find_map(|l| l.strip_prefix("label: "))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        let first_enum = |key: &str| req.schema["properties"][key]["enum"][0].clone();
        let category = match &demo["category"] {
            Value::String(_) => demo["category"].clone(),
            _ => first_enum("category"),
        };
        let mut answer = json!({
            "reasoning": "scripted: label of the most similar example",
            "category": category,
            "summary": "Scripted answer",
            "confidence": 0.9,
        });
        if req.schema["properties"].get("urgency").is_some() {
            answer["urgency"] = match &demo["urgency"] {
                Value::String(_) => demo["urgency"].clone(),
                _ => first_enum("urgency"),
            };
        }
        if req.schema["properties"].get("subcategory").is_some() {
            answer["subcategory"] = demo["subcategory"].clone();
        }
        Ok(LlmResponse {
            text: answer.to_string(),
            // About 4 characters per token, system prompt (taxonomy) included.
            usage: Usage { prompt_tokens: ((req.system.len() + prompt.len()) / 4) as u64, completion_tokens: 30 },
            model: "scripted".into(),
            attempts: 1,
            logprobs: None,
        })
    }
}
