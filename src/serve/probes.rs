//! Liveness and readiness probes: `/healthz` (the process answers) and `/readyz` (the
//! default collection opens with the loaded model and answers a one-result search, its
//! stored data is whole (no quarantined journal records, segments present, examples
//! where its last fit saw some) and, on a Qdrant cluster, every shard has an active
//! copy; `degraded` when some copy is dead or recovering).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use crate::store::{ReplicaHealth, ReplicaStatus};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (/healthz); `ready`, `degraded` (answering, with dead or recovering shard copies) or `not_ready` (/readyz).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// On a Qdrant server: the default collection's shard replicas as the node triage talks to sees them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub replicas: Option<Value>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), reason: None, collection: None, replicas: None })
}

/// Readiness: the embedding model is loaded, the default collection opens with it and
/// answers a search, and (on a Qdrant server) every shard of it has an active replica. `degraded` (still 200):
/// some shard copy is dead or recovering, answers still come.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let collection = Some(state.cfg.collection.clone());
    let health = |status: &str, reason: Option<String>, replicas: Option<&ReplicaHealth>| Health {
        status: status.into(),
        reason,
        collection: collection.clone(),
        replicas: replicas.and_then(|r| serde_json::to_value(r).ok()),
    };
    let not_ready = |h: Health| (StatusCode::SERVICE_UNAVAILABLE, Json(h)).into_response();
    // Opens the collection and runs a one-result search: a store whose pages cannot be
    // read is not ready, even where the metadata still opens.
    if let Err(e) = state.ready().await {
        return not_ready(health("not_ready", Some(e.to_string()), None));
    }
    // Acknowledged data the store cannot serve (quarantined journal records, missing
    // segments, examples gone that the last fit saw): not ready until an operator acts.
    match state.data_problems().await {
        Ok(problems) if !problems.is_empty() => return not_ready(health("not_ready", Some(problems.join("; ")), None)),
        Ok(_) => {}
        Err(e) => return not_ready(health("not_ready", Some(format!("the store does not answer: {e}")), None)),
    }
    // A live look at the store: the classifier above may be a cached copy.
    match state.store.replica_health(&state.cfg.collection).await {
        Ok(None) => Json(health("ready", None, None)).into_response(),
        Ok(Some(r)) => match r.status() {
            ReplicaStatus::Healthy => Json(health("ready", None, Some(&r))).into_response(),
            ReplicaStatus::Degraded => Json(health("degraded", Some(r.summary()), Some(&r))).into_response(),
            ReplicaStatus::Unavailable => not_ready(health("not_ready", Some(r.summary()), Some(&r))),
        },
        Err(e) => not_ready(health("not_ready", Some(format!("the store does not answer: {e}")), None)),
    }
}
