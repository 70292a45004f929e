//! Request and response types and the classification and collection handlers; the
//! OpenAPI document generated from them is in [`super::openapi`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, JsonBody};
use super::{AppState, KeyId};
use crate::review::{self, ReviewItem, ReviewSource};
use crate::classifier::{Classifier, ClassifyOptions, Ticket, TicketResult};
use crate::example::hex;
use crate::options::{check_filter, OptionError};
use crate::store::summary::{self, CollectionInfo, CollectionSummary};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// The ticket text.
    pub text: String,
    /// Echoed in the result [default: a hash of the text].
    pub id: Option<String>,
    /// [default: the server's --collection]
    pub collection: Option<String>,
    /// Examples retrieved [default: the server's --k].
    pub k: Option<usize>,
    /// Review threshold in [0, 1] [default: the server's, else the taxonomy's].
    pub min_confidence: Option<f32>,
    /// Retrieve only examples whose fields have these values, e.g. {"lang": "en", "tier": "gold"}
    /// (all must match; fields: label, subcategory, urgency, lang and the collection's metadata fields).
    pub filter: Option<BTreeMap<String, String>>,
}

/// Schema only: batch tickets are read one by one so a malformed one cannot sink the batch.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchTicket {
    pub id: Option<String>,
    pub text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Tickets to classify; a malformed ticket gets a flagged result, the others are classified.
    #[schema(value_type = Vec<BatchTicket>)]
    pub tickets: Vec<Value>,
    pub collection: Option<String>,
    pub k: Option<usize>,
    pub min_confidence: Option<f32>,
    /// As in /v1/classify: applies to every ticket of the batch.
    pub filter: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per ticket, in input order.
    pub results: Vec<TicketResult>,
}

/// A query parameter (`?collection=`), never a path segment: OpenAPI requires every
/// path parameter to appear in the path and to be required.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CollectionQuery {
    /// [default: the server's --collection]
    pub collection: Option<String>,
}

/// A collection of the listing: its summary and the number of categories.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedCollection {
    #[serde(flatten)]
    pub summary: CollectionSummary,
    pub labels: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionsResponse {
    pub collections: Vec<ListedCollection>,
}

fn options(state: &AppState, k: Option<usize>, min_confidence: Option<f32>) -> Result<ClassifyOptions, ApiError> {
    state.cfg.options.overridden(k, min_confidence).map_err(invalid)
}

/// A request option out of range: 422 with `invalid_<option>`.
fn invalid(e: OptionError) -> ApiError {
    let code = match e {
        OptionError::KTooSmall | OptionError::KAbove(_) => "invalid_k",
        OptionError::MinConfidence => "invalid_min_confidence",
        OptionError::Precision | OptionError::BothBars => "invalid_auto_route_precision",
        OptionError::EmptyFilterValue | OptionError::RepeatedFilterField => "invalid_filter",
    };
    ApiError::unprocessable(code, e.to_string())
}

/// Add a request's filter to the options, once the collection says it can be filtered so.
fn with_filter(
    options: &mut ClassifyOptions,
    classifier: &Classifier,
    filter: Option<BTreeMap<String, String>>,
) -> Result<(), ApiError> {
    let Some(filter) = filter.filter(|f| !f.is_empty()) else { return Ok(()) };
    let filter = check_filter(filter).map_err(invalid)?;
    classifier.meta().check_filter(&filter)?;
    options.filter = filter;
    Ok(())
}

pub(super) fn text_id(text: &str) -> String {
    format!("t-{}", hex(&Sha256::digest(text.as_bytes())[..6]))
}

/// Where a classification came from, for the review queue.
pub(super) fn via(how: &str, key: Option<&KeyId>, helpdesk: Option<&str>) -> ReviewSource {
    ReviewSource { via: how.to_string(), helpdesk: helpdesk.map(str::to_string), key: key.map(|k| k.0.clone()) }
}

/// Count results, queue the flagged ones for review (durably, before the answer goes
/// out: a 2xx means they are queued), and queue review messages (never waiting for
/// their delivery). A result that could not be queued says so in its warnings.
async fn after_classification(
    state: &AppState,
    classifier: &Classifier,
    texts: &[Option<String>],
    results: &mut [TicketResult],
    source: &ReviewSource,
) {
    state.metrics.results(results);
    let collection = &classifier.meta().name;
    let now = crate::store::now_secs();
    let items: Vec<ReviewItem> = texts
        .iter()
        .zip(results.iter())
        .filter_map(|(t, r)| ReviewItem::from_result(collection, t.as_deref()?, r, source.clone(), now))
        .filter(|i| !i.text.trim().is_empty())
        .collect();
    let queued: std::collections::HashSet<String> = items.iter().map(|i| i.ticket_id.clone()).collect();
    if let Err(e) = review::enqueue(state.store.as_ref(), collection, items).await {
        tracing::warn!(collection, "flagged results not queued for review: {e}");
        for r in results.iter_mut().filter(|r| queued.contains(&r.id)) {
            r.warnings.push(format!("not queued for review: {e}"));
        }
    }
    if let Some(url) = &state.cfg.review_webhook {
        for r in results.iter().filter(|r| r.needs_review) {
            state.notifier.review(url, r).await;
        }
    }
}

pub(super) async fn classify_one(
    state: &AppState,
    classifier: &Classifier,
    ticket: Ticket,
    options: &ClassifyOptions,
    source: &ReviewSource,
) -> TicketResult {
    let text = ticket.text.as_ref().ok().cloned();
    let mut result = classifier.classify_with(&ticket, options).await;
    after_classification(state, classifier, &[text], std::slice::from_mut(&mut result), source).await;
    result
}

/// Classify one ticket.
#[utoipa::path(post, path = "/v1/classify", request_body = ClassifyRequest,
    responses(
        (status = 200, description = "The result; an LLM outage gives a flagged result, not an error", body = TicketResult),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown collection", body = ErrorBody),
        (status = 413, description = "Body over --max-body", body = ErrorBody),
        (status = 422, description = "Empty text or invalid fields", body = ErrorBody),
        (status = 429, description = "At the concurrency limit; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn classify(
    State(state): State<Arc<AppState>>,
    key: Option<Extension<KeyId>>,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Json<TicketResult>, ApiError> {
    if req.text.trim().is_empty() {
        return Err(ApiError::unprocessable("empty_text", "text is empty or only whitespace"));
    }
    let mut options = options(&state, req.k, req.min_confidence)?;
    let classifier = state.classifier(req.collection.as_deref()).await?;
    with_filter(&mut options, &classifier, req.filter)?;
    let id = req.id.filter(|i| !i.trim().is_empty()).unwrap_or_else(|| text_id(&req.text));
    let ticket = Ticket { id, text: Ok(req.text) };
    let source = via("classify", key.as_deref(), None);
    Ok(Json(classify_one(&state, &classifier, ticket, &options, &source).await))
}

fn batch_ticket(i: usize, v: Value) -> Ticket {
    let id = match v.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => (i + 1).to_string(),
    };
    let text = match v.get("text") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("\"text\" is not a string".to_string()),
        None if v.is_object() => Err("no \"text\" field".to_string()),
        None => Err("the ticket is not a JSON object".to_string()),
    };
    Ticket { id, text }
}

/// Classify several tickets; one result per ticket, in input order.
#[utoipa::path(post, path = "/v1/classify/batch", request_body = BatchRequest,
    responses(
        (status = 200, description = "Results in input order; unusable tickets come back flagged with `error`", body = BatchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "No tickets, or more than --max-batch", body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn classify_batch(
    State(state): State<Arc<AppState>>,
    key: Option<Extension<KeyId>>,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    if req.tickets.is_empty() {
        return Err(ApiError::unprocessable("empty_batch", "tickets is empty"));
    }
    if req.tickets.len() > state.cfg.max_batch {
        return Err(ApiError::unprocessable(
            "batch_too_large",
            format!("{} tickets; at most {} per request (--max-batch)", req.tickets.len(), state.cfg.max_batch),
        ));
    }
    let mut options = options(&state, req.k, req.min_confidence)?;
    let classifier = state.classifier(req.collection.as_deref()).await?;
    with_filter(&mut options, &classifier, req.filter)?;
    let tickets: Vec<Ticket> = req.tickets.into_iter().enumerate().map(|(i, v)| batch_ticket(i, v)).collect();
    let texts: Vec<Option<String>> = tickets.iter().map(|t| t.text.as_ref().ok().cloned()).collect();
    let mut results = classifier.classify_batch_with(tickets, state.cfg.batch_concurrency, &options).await;
    after_classification(&state, &classifier, &texts, &mut results, &via("batch", key.as_deref(), None)).await;
    Ok(Json(BatchResponse { results }))
}

/// The collections in the store.
#[utoipa::path(get, path = "/v1/collections",
    responses((status = 200, body = CollectionsResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_collections(State(state): State<Arc<AppState>>) -> Result<Json<CollectionsResponse>, ApiError> {
    let listing = summary::list(state.store.as_ref()).await?;
    let collections =
        listing.collections.into_iter().map(|summary| ListedCollection { labels: summary.labels, summary }).collect();
    Ok(Json(CollectionsResponse { collections }))
}

/// One collection: taxonomy, examples per label, embedding model.
#[utoipa::path(get, path = "/v1/collections/{name}", params(("name" = String, Path)),
    responses((status = 200, body = CollectionInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn collection_info(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    Ok(Json(summary::info(state.store.as_ref(), &name).await?))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let inflight = state.cfg.max_inflight.max(1) - state.inflight.available_permits();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(inflight)).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route; see /openapi.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_tickets_keep_their_place_when_malformed() {
        let t = batch_ticket(0, json!({"id": 7, "text": "hello"}));
        assert_eq!((t.id.as_str(), t.text.as_deref()), ("7", Ok("hello")));
        assert!(batch_ticket(1, json!({"text": 3})).text.is_err());
        assert!(batch_ticket(2, json!("just a string")).text.is_err());
        assert_eq!(batch_ticket(3, json!({"body": "x"})).id, "4");
    }
}
