//! Helpdesk push integration, `POST /v1/webhooks/ticket`: classify the ticket a
//! webhook carries, and learn from it when it carries a category an agent set.
//!
//! Each classification is recorded in the helpdesk ledger (source `webhook`: ticket
//! id, text hash, our category). When a later webhook for the same ticket carries,
//! at `--webhook-category-field` or as a `triage_<category>` tag at
//! `--webhook-tags-field`, another category than ours (and than the last correction),
//! an agent moved the ticket: its text becomes an example with the agent's label
//! (`correction-webhook-<id>`), counted in `triage_corrections_total{label=...}`, and
//! the answer says so instead of classifying the ticket again.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::api::{classify_one, text_id, CollectionQuery};
use super::error::{ApiError, ErrorBody, JsonBody};
use super::{AppState, KeyId};
use crate::classifier::{Classifier, Ticket, TicketResult};
use crate::helpdesk::correction::{self, Finding, Observed};
use crate::helpdesk::state::{text_hash, EntryStatus, LedgerEntry, StateKey};
use crate::helpdesk::writeback::Verdict;
use crate::helpdesk::now_secs;

/// The ledger source name of the push path.
pub const WEBHOOK_SOURCE: &str = "webhook";

/// A dotted path (`ticket.subject`) into a JSON document.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Tags as an array of strings, or one string separated by spaces or commas
/// (Zendesk's `{{ticket.tags}}` placeholder renders them space-separated).
fn tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => s.split([' ', ',']).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CorrectionInfo {
    /// The agent's category, now an example's label.
    pub label: String,
    /// Our category (or the previous correction's) before the agent changed it.
    pub previous: Option<String>,
    /// `field` or `tag`: where the agent's category was seen.
    pub via: String,
    pub example_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CorrectionResponse {
    pub ticket_id: String,
    pub collection: String,
    pub correction: CorrectionInfo,
}

/// The classification, or, when the webhook carried an agent's category change, the correction learnt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookResponse {
    Classified(TicketResult),
    Corrected(CorrectionResponse),
}

/// Helpdesk push integration: classify the ticket a webhook carries; learn from an agent's category change.
#[utoipa::path(post, path = "/v1/webhooks/ticket", request_body(content = Object, description = "The helpdesk's webhook JSON; by default Zendesk-style ticket.id, ticket.subject, ticket.description, and optionally ticket.category and ticket.tags (see --webhook-id-field, --webhook-text-fields, --webhook-category-field, --webhook-tags-field)"),
    params(CollectionQuery),
    responses(
        (status = 200, description = "The result (also POSTed to --ticket-callback when set), or the correction learnt when the webhook carries an agent's category change", body = WebhookResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "No ticket text at the configured fields", body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn ticket_webhook(
    State(state): State<Arc<AppState>>,
    api_key: Option<Extension<KeyId>>,
    Query(q): Query<CollectionQuery>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let mapping = &state.cfg.webhook;
    let parts = mapping.text_fields.iter().filter_map(|f| lookup(&body, f).and_then(as_text));
    let Some(text) = crate::fields::join_parts(parts) else {
        return Err(ApiError::unprocessable(
            "no_ticket_text",
            format!("no text at {} (set --webhook-text-fields)", mapping.text_fields.join(", ")),
        ));
    };
    let id = lookup(&body, &mapping.id_field).and_then(as_text).unwrap_or_else(|| text_id(&text));
    let collection = state.collection_name(q.collection.as_deref()).to_string();
    let classifier = state.classifier(Some(&collection)).await?;
    let key = StateKey::new(&collection, WEBHOOK_SOURCE);
    let entry = match &state.ledger {
        Some(l) => l.entries(&key, std::slice::from_ref(&id)).await.map_err(state_error)?.remove(&id),
        None => None,
    };
    if let Some(entry) = &entry {
        let observed = Observed {
            field: mapping.category_field.as_deref().and_then(|f| lookup(&body, f)).and_then(as_text),
            tags: tags(mapping.tags_field.as_deref().and_then(|f| lookup(&body, f))),
        };
        if let Some(c) = learn(&state, &classifier, &key, entry, &observed, &text).await? {
            return Ok(Json(WebhookResponse::Corrected(c)));
        }
    }
    let options = state.cfg.options.clone();
    let source = super::api::via("webhook", api_key.as_deref(), Some(WEBHOOK_SOURCE));
    let result = classify_one(&state, &classifier, Ticket { id: id.clone(), text: Ok(text.clone()) }, &options, &source).await;
    if let Some(ledger) = &state.ledger {
        let v = Verdict::from_result(&result);
        let record = LedgerEntry {
            ticket: id.clone(),
            text_hash: text_hash(&text),
            status: EntryStatus::Classified,
            category: v.category,
            tags: Vec::new(),
            write: None,
            error: v.error,
            agent_label: entry.and_then(|e| e.agent_label),
            updated_at: now_secs(),
        };
        // The result stands even if it cannot be recorded; only a later correction would go unnoticed.
        if let Err(e) = ledger.put(&key, &[record]).await {
            tracing::warn!("ticket {id}: classification not recorded in the helpdesk ledger: {e}");
        }
    }
    if let Some(url) = &state.cfg.ticket_callback {
        state.notifier.callback(url, &id, &result).await;
    }
    Ok(Json(WebhookResponse::Classified(result)))
}

/// Store an agent's correction as an example, when `observed` shows one.
async fn learn(
    state: &AppState,
    classifier: &Classifier,
    key: &StateKey,
    entry: &LedgerEntry,
    observed: &Observed,
    text: &str,
) -> Result<Option<CorrectionResponse>, ApiError> {
    let (label, via) = match correction::find(&classifier.meta().taxonomy, entry, observed) {
        Finding::Correction { label, via } => (label, via),
        Finding::Unclear(why) => {
            tracing::warn!("ticket {}: category changed but unclear: {why}", entry.ticket);
            return Ok(None);
        }
        Finding::None => return Ok(None),
    };
    let now = now_secs();
    let example = match correction::example(&classifier.meta().taxonomy, WEBHOOK_SOURCE, &entry.ticket, text, &label, now) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("ticket {}: correction not stored: {e}", entry.ticket);
            return Ok(None);
        }
    };
    correction::store(std::slice::from_ref(&example), &key.collection, state.embedder.as_ref(), state.store.as_ref()).await?;
    if let Some(ledger) = &state.ledger {
        let updated = LedgerEntry { agent_label: Some(label.clone()), updated_at: now, ..entry.clone() };
        ledger.put(key, &[updated]).await.map_err(state_error)?;
    }
    state.metrics.correction(&label);
    tracing::info!("ticket {}: agent correction to {label} stored as example {}", entry.ticket, example.id);
    Ok(Some(CorrectionResponse {
        ticket_id: entry.ticket.clone(),
        collection: key.collection.clone(),
        correction: CorrectionInfo {
            label,
            previous: entry.effective_label().map(str::to_string),
            via: via.to_string(),
            example_id: example.id,
        },
    }))
}

fn state_error(e: crate::helpdesk::state::StateError) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_find_webhook_fields() {
        let v = json!({"ticket": {"id": 42, "subject": "Refund", "tags": ["a", "b"], "empty": " "}});
        assert_eq!(lookup(&v, "ticket.id").and_then(as_text).as_deref(), Some("42"));
        assert_eq!(lookup(&v, "ticket.tags.1"), Some(&json!("b")));
        assert_eq!(lookup(&v, "ticket.empty").and_then(as_text), None);
        assert_eq!(lookup(&v, "ticket.missing"), None);
        assert_eq!(lookup(&v, "ticket.subject.x"), None);
    }

    #[test]
    fn tags_come_as_arrays_or_placeholder_strings() {
        assert_eq!(tags(Some(&json!(["vip", "triage_billing"]))), ["vip", "triage_billing"]);
        assert_eq!(tags(Some(&json!("vip triage_billing,x"))), ["vip", "triage_billing", "x"]);
        assert!(tags(Some(&json!(3))).is_empty());
        assert!(tags(None).is_empty());
    }
}
