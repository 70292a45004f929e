//! The review routes: `GET /v1/review` (a page of the open queue), `GET /v1/review/summary`
//! (its counts) and `POST /v1/review/{id}` (accept, correct or dismiss, once). Accept and
//! correct add the ticket as an example through [`super::examples::add`], the path of
//! `POST /v1/examples`: same label policy, provenance `review` naming the reviewer,
//! refit when due. The queue itself is [`crate::review`].

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, JsonBody};
use super::examples::{add, AddExamplesResponse};
use super::{AppState, KeyId};
use crate::provenance::{Origin, ANONYMOUS};
use crate::review::{self, Filter, Page, Resolution, ReviewError, ReviewItem, Summary};

/// Items one page may hold.
const MAX_PAGE: usize = 200;

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NotFound { .. } => ApiError::not_found("unknown_review_item", e.to_string()),
            ReviewError::Resolved { .. } => ApiError::new(StatusCode::CONFLICT, "review_resolved", e.to_string()),
            ReviewError::BadCursor(_) => ApiError::unprocessable("invalid_cursor", e.to_string()),
            ReviewError::Store(s) => s.into(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// [default: the server's --collection]
    pub collection: Option<String>,
    /// Only items flagged for this reason (`low_confidence`, `disagreement`, `out_of_scope`, ...).
    pub reason: Option<String>,
    /// Only items with this predicted category (`-`: items without one).
    pub label: Option<String>,
    /// Items per page, 1 to 200 [default: 50].
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn nonblank(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// A page of the open review queue: flagged results waiting for a person.
#[utoipa::path(get, path = "/v1/review", params(ReviewQuery),
    responses(
        (status = 200, description = "Open items in the queue's order, neighbours with their texts", body = Page),
        (status = 401, body = ErrorBody), (status = 404, description = "Unknown collection", body = ErrorBody),
        (status = 422, description = "Bad limit or cursor", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(State(state): State<Arc<AppState>>, Query(q): Query<ReviewQuery>) -> Result<Json<Page>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable("invalid_limit", format!("limit must be 1 to {MAX_PAGE}")));
    }
    let collection = state.collection_name(q.collection.as_deref()).to_string();
    let filter = Filter { reason: nonblank(q.reason), label: nonblank(q.label) };
    let mut page = review::list(state.store.as_ref(), &collection, &filter, limit, nonblank(q.cursor).as_deref()).await?;
    review::with_neighbour_texts(state.store.as_ref(), &collection, &mut page.items).await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// [default: the server's --collection]
    pub collection: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryResponse {
    pub collection: String,
    #[serde(flatten)]
    pub counts: Summary,
    /// The collection's labels, for the correction picker.
    pub labels: Vec<String>,
}

/// Counts of the queue (open, resolved, open per reason and per predicted label) and the labels a correction may use.
#[utoipa::path(get, path = "/v1/review/summary", params(SummaryQuery),
    responses((status = 200, body = SummaryResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn summary(
    State(state): State<Arc<AppState>>,
    Query(q): Query<SummaryQuery>,
) -> Result<Json<SummaryResponse>, ApiError> {
    let collection = state.collection_name(q.collection.as_deref()).to_string();
    let meta = state.store.require_meta(&collection).await?;
    let counts = review::summary(state.store.as_ref(), &collection).await?;
    let labels = meta.taxonomy.labels().into_iter().map(str::to_string).collect();
    Ok(Json(SummaryResponse { collection, counts, labels }))
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The predicted category is right: the ticket becomes an example of it.
    Accept,
    /// Another category is right (`label`): the ticket becomes an example of that one.
    Correct,
    /// Close the item without adding an example.
    Dismiss,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Correct => "correct",
            Action::Dismiss => "dismiss",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub action: Action,
    /// The right category (`correct`; a label of the taxonomy, else 422 naming the nearest).
    pub label: Option<String>,
    /// [default: `?collection=`, else the server's --collection]
    pub collection: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolveResponse {
    pub item: ReviewItem,
    /// What adding the example did (accept, correct).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<AddExamplesResponse>,
}

/// Resolve a queued item once: accept or correct (the ticket becomes an example, with
/// provenance `review` naming the reviewer's key) or dismiss.
#[utoipa::path(post, path = "/v1/review/{id}", request_body = ResolveRequest,
    params(("id" = String, Path, description = "Review item id"), SummaryQuery),
    responses(
        (status = 200, body = ResolveResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown collection or review item", body = ErrorBody),
        (status = 409, description = "Already resolved", body = ErrorBody),
        (status = 422, description = "A label outside the taxonomy (the message names the nearest), or correct without a label", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn resolve(
    State(state): State<Arc<AppState>>,
    key: Option<Extension<KeyId>>,
    Path(id): Path<String>,
    Query(q): Query<SummaryQuery>,
    JsonBody(req): JsonBody<ResolveRequest>,
) -> Result<Json<ResolveResponse>, ApiError> {
    let reviewer = key.map(|Extension(KeyId(k))| k).unwrap_or_else(|| ANONYMOUS.to_string());
    let requested = req.collection.as_deref().or(q.collection.as_deref());
    let collection = state.collection_name(requested).to_string();
    // One resolution at a time in this process: the open check and the write are one step.
    let _one = state.resolutions.lock().await;
    let item = review::open_item(state.store.as_ref(), &collection, &id).await?;
    let label = match req.action {
        Action::Dismiss => None,
        Action::Accept => Some(item.category.clone().ok_or_else(|| {
            ApiError::unprocessable("no_prediction", "nothing was predicted for this ticket: correct it with a label")
        })?),
        Action::Correct => Some(nonblank(req.label.clone()).ok_or_else(|| {
            ApiError::unprocessable("missing_label", "correct needs a label: {\"action\": \"correct\", \"label\": \"...\"}")
        })?),
    };
    let example = match &label {
        Some(label) => {
            let raw = vec![json!({"id": item.example_id(), "text": item.text, "label": label})];
            let origin = Origin::Review { reviewer: reviewer.clone(), ticket: item.ticket_id.clone() };
            Some(add(&state, &reviewer, collection.clone(), raw, false, origin).await?)
        }
        None => None,
    };
    let resolution = Resolution {
        action: req.action.as_str().to_string(),
        label,
        reviewer,
        at: crate::eval::report::timestamp(crate::store::now_secs()),
        example_id: example.as_ref().map(|_| item.example_id()),
    };
    let item = review::mark_resolved(state.store.as_ref(), &collection, item, resolution).await?;
    tracing::info!(collection, id, action = req.action.as_str(), "review item resolved");
    Ok(Json(ResolveResponse { item, example }))
}
