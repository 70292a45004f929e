//! The example-write routes: `POST /v1/examples` (validated by the label policy, stamped
//! with provenance, limited per API key, one source's share of a label flagged),
//! `DELETE /v1/examples/{id}` and `DELETE /v1/examples?source=` (one client's additions
//! undone). Deletions retire a category whose last example goes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::api::CollectionQuery;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::flood::{share_flags, ShareFlag};
use super::{AppState, KeyId};
use crate::corpus::Row;
use crate::curate::{self, Removed};
use crate::example::point_id_for;
use crate::index::{self, FieldMap};
use crate::provenance::{Origin, Provenance};
use crate::store::now_secs;

/// Examples one `POST /v1/examples` may carry.
const MAX_EXAMPLES_PER_REQUEST: usize = 1000;

/// Schema only: examples are read one by one and validated against the taxonomy.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewExample {
    pub text: String,
    /// A label of the taxonomy; another one is refused (naming the nearest) unless `new_label` is true.
    pub label: String,
    pub urgency: Option<String>,
    pub subcategory: Option<String>,
    /// Re-using an id replaces that example [default: a hash of the text].
    pub id: Option<String>,
    pub lang: Option<String>,
    pub rationale: Option<String>,
    /// This example's label is meant to be new: it is added to the taxonomy.
    pub new_label: Option<bool>,
    // Values of the collection's metadata fields (see `triage collections info`) are kept too.
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddExamplesRequest {
    #[schema(value_type = Vec<NewExample>)]
    pub examples: Vec<Value>,
    pub collection: Option<String>,
    /// Every label of the request not in the taxonomy is meant to be new (added to it);
    /// without it such examples are refused, naming the nearest existing label.
    #[serde(default)]
    pub new_label: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedExample {
    /// Position in the request's `examples` array (0-based).
    pub index: usize,
    pub reason: String,
    /// `unreadable`, `blank_text`, `blank_label`, `duplicate`, `unknown_label` or `invalid`.
    #[schema(value_type = String)]
    pub kind: index::RejectKind,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AddExamplesResponse {
    pub collection: String,
    /// New or changed examples embedded and stored; used from the next classification on.
    pub indexed: usize,
    /// Examples already stored with the same content.
    pub unchanged: usize,
    pub rejected: Vec<RejectedExample>,
    /// Labels this request added to the taxonomy (`new_label`).
    pub new_labels: Vec<String>,
    pub examples_in_collection: usize,
    /// Where these examples are recorded to come from (`api:<key id>`).
    pub source: String,
    /// Labels of which this source now holds more than --max-source-share.
    pub source_share_flags: Vec<ShareFlag>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResponse {
    pub deleted: String,
    pub collection: String,
    /// Categories that lost their last example and left the active taxonomy.
    pub retired_labels: Vec<String>,
}

fn key_of(key: Option<Extension<KeyId>>) -> String {
    key.map(|Extension(KeyId(k))| k).unwrap_or_else(|| crate::provenance::ANONYMOUS.to_string())
}

/// Add or replace labeled examples; they are used from the very next classification.
#[utoipa::path(post, path = "/v1/examples", request_body = AddExamplesRequest,
    responses(
        (status = 200, description = "Stored; rows that failed validation are listed in `rejected`", body = AddExamplesResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown collection", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "No usable example (reasons in the message; `unknown_label` names the nearest existing label)", body = ErrorBody),
        (status = 429, description = "At the concurrency limit, or this key's example writes per minute are used up (Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn add_examples(
    State(state): State<Arc<AppState>>,
    key: Option<Extension<KeyId>>,
    JsonBody(req): JsonBody<AddExamplesRequest>,
) -> Result<Json<AddExamplesResponse>, ApiError> {
    let key = key_of(key);
    let collection = state.collection_name(req.collection.as_deref()).to_string();
    let origin = Origin::Api(key.clone());
    Ok(Json(add(&state, &key, collection, req.examples, req.new_label, origin).await?))
}

/// The one path every example written through `serve` takes (`POST /v1/examples`, the
/// review queue's accept and correct): the label policy of the taxonomy, provenance
/// from `origin`, the per-key write limit, the durable write, the refit when due and
/// the source-share flags.
pub(super) async fn add(
    state: &Arc<AppState>,
    key: &str,
    collection: String,
    raw: Vec<Value>,
    new_label: bool,
    origin: Origin,
) -> Result<AddExamplesResponse, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::unprocessable("no_examples", "examples is empty"));
    }
    if raw.len() > MAX_EXAMPLES_PER_REQUEST {
        return Err(ApiError::unprocessable(
            "too_many_examples",
            format!("at most {MAX_EXAMPLES_PER_REQUEST} examples per request; use `triage index` for bulk loads"),
        ));
    }
    let mut meta = state.store.require_meta(&collection).await?;
    meta.check_model(state.embedder.model_name(), state.embedder.dim())?;
    let per_minute = state.cfg.example_writes_per_minute;
    if let Err(wait) = state.write_limits.take(key, raw.len(), per_minute, Instant::now()) {
        state.metrics.write_limited();
        tracing::warn!(key, examples = raw.len(), "example writes over the per-key limit");
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "write_rate_limited",
                format!("this key may add {per_minute} examples per minute (--example-writes-per-minute); retry after {wait} s"),
            )
        });
    }
    let rows = raw
        .into_iter()
        .enumerate()
        .map(|(i, v)| Row {
            line: i + 1,
            record: None,
            fields: match v {
                Value::Object(m) => Ok(m.into_iter().collect()),
                _ => Err("the example is not a JSON object".to_string()),
            },
        })
        .collect();
    // The collection's metadata fields (index --meta-fields) are kept, so posted
    // examples can be found by filtered retrieval like indexed ones.
    let fields = FieldMap { meta: meta.meta_fields.clone(), ..FieldMap::default() };
    let (mut examples, lines, rejected) = index::validate_rows_with_lines(rows, &fields, Some(&meta.taxonomy), new_label);
    let rejected: Vec<RejectedExample> =
        rejected.into_iter().map(|r| RejectedExample { index: r.line.saturating_sub(1), reason: r.reason, kind: r.kind }).collect();
    if examples.is_empty() {
        let reasons: Vec<String> = rejected.iter().take(5).map(|r| format!("[{}] {}", r.index, r.reason)).collect();
        let unknown = rejected.iter().all(|r| r.kind == index::RejectKind::UnknownLabel);
        let code = if unknown { "unknown_label" } else { "no_valid_examples" };
        return Err(ApiError::unprocessable(code, format!("no usable example: {}", reasons.join("; "))));
    }
    // Labels the policy let in as new join the taxonomy.
    let labels: BTreeSet<String> = examples.iter().map(|e| e.label.clone()).collect();
    let urgencies: BTreeSet<String> =
        if meta.taxonomy.derived { examples.iter().filter_map(|e| e.urgency.clone()).collect() } else { BTreeSet::new() };
    let mut new_labels = Vec::new();
    if meta.taxonomy.clone().absorb(&labels, &urgencies) {
        // Read again under the meta lock: a fit or another write stored meanwhile is kept.
        let _meta = crate::store::meta_lock(&meta.name).await;
        meta = state.store.require_meta(&meta.name).await?;
        let known: BTreeSet<String> = meta.taxonomy.labels().into_iter().map(str::to_string).collect();
        if meta.taxonomy.absorb(&labels, &urgencies) {
            new_labels = meta.taxonomy.labels().into_iter().filter(|l| !known.contains(*l)).map(str::to_string).collect();
            meta.updated_at = now_secs();
            state.store.put_meta(&meta).await?;
        }
        if !new_labels.is_empty() {
            tracing::info!(collection, key, ?new_labels, "new labels added to the taxonomy (new_label)");
        }
    }
    let now = now_secs();
    for (e, line) in examples.iter_mut().zip(&lines) {
        e.provenance = Some(Provenance::new(&origin, Some(*line), &meta.taxonomy, now));
    }
    let source = examples.first().and_then(|e| e.provenance.as_ref()).map(Provenance::source_name).unwrap_or_default();
    let (indexed, unchanged) = index::upsert_examples(
        &examples,
        &collection,
        state.embedder.as_ref(),
        state.store.as_ref(),
        256,
        &crate::progress::silent,
    )
    .await?;
    state.invalidate(&collection).await;
    state.examples_added(&collection).await;
    let stored = curate::list_examples(state.store.as_ref(), &collection, None, None).await?;
    let written: Vec<String> = labels.into_iter().collect();
    let source_share_flags = share_flags(&stored, &written, &source, state.cfg.max_source_share);
    for f in &source_share_flags {
        state.metrics.share_flag(&f.label);
        tracing::warn!(collection, label = f.label, source = f.source, share = f.share, "one source holds more than its share of a label");
    }
    Ok(AddExamplesResponse {
        examples_in_collection: stored.len(),
        collection,
        indexed,
        unchanged,
        rejected,
        new_labels,
        source,
        source_share_flags,
    })
}

/// Remove one example by its id.
#[utoipa::path(delete, path = "/v1/examples/{id}", params(("id" = String, Path, description = "Example id"), CollectionQuery),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown collection or example", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete_example(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<CollectionQuery>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let collection = state.collection_name(q.collection.as_deref()).to_string();
    state.store.require_meta(&collection).await?;
    let point = point_id_for(&id);
    let Some(example) = state.store.get(&collection, &[point]).await?.into_iter().next() else {
        return Err(ApiError::not_found("unknown_example", format!("no example with id {id:?} in {collection:?}")));
    };
    let retired_labels =
        curate::write_and_retire(state.store.as_ref(), &collection, Vec::new(), &[point], &[example.label]).await?;
    after_retiring(&state, &collection, &retired_labels).await;
    Ok(Json(DeleteResponse { deleted: id, collection, retired_labels }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceQuery {
    /// Whose examples: a kind (`api`, `index`, `correction`, `import`, `unknown`) or one
    /// source (`api:key-1a2b3c4d`, `api:anonymous`, `index:<file>`, `correction:zendesk`)
    pub source: String,
    /// [default: the server's --collection]
    pub collection: Option<String>,
}

/// Remove every example one source added (undo one client's additions), in one durable write.
#[utoipa::path(delete, path = "/v1/examples", params(SourceQuery),
    responses(
        (status = 200, body = Removed),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "No source given", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete_by_source(
    State(state): State<Arc<AppState>>,
    Query(q): Query<SourceQuery>,
) -> Result<Json<Removed>, ApiError> {
    if q.source.trim().is_empty() {
        return Err(ApiError::unprocessable("invalid_request", "source is empty: name a kind (api) or a source (api:key-...)"));
    }
    let collection = state.collection_name(q.collection.as_deref()).to_string();
    let removed = curate::delete_by_source(state.store.as_ref(), &collection, &q.source).await?;
    after_retiring(&state, &collection, &removed.retired_labels).await;
    state.invalidate(&collection).await;
    Ok(Json(removed))
}

/// A retired label is still in the stored fit: refit in the background (a calibrated
/// collection) so that classification stops using it.
async fn after_retiring(state: &Arc<AppState>, collection: &str, retired: &[String]) {
    if !retired.is_empty() {
        state.invalidate(collection).await;
        state.refit_soon(collection).await;
    }
}
