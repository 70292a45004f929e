//! `GET /v1/collections/{name}/doctor`: the corpus doctor's report (as `triage doctor
//! --format json`). CPU work of seconds to a minute: it runs on the blocking pool, one
//! examination per collection at a time.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::calibrate::doctor::{examine, Examination};
use crate::calibrate::CalibrateError;
use crate::doctor::Settings;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DoctorQuery {
    /// List this many ranked examples as likely mislabeled [default: confident learning's estimate]
    pub top: Option<usize>,
    /// Labels with fewer examples are listed as small [default: 10]
    pub min_label_examples: Option<usize>,
}

/// Examine a collection's examples: likely mislabeled ones (ranked, with a suggested
/// label and the evidence), conflicting duplicates, small and similar labels, the most
/// confused label pairs, examples in languages the model does not cover, junk.
#[utoipa::path(get, path = "/v1/collections/{name}/doctor", params(("name" = String, Path), DoctorQuery),
    responses(
        (status = 200, body = Examination),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "An examination of this collection is running", body = ErrorBody),
        (status = 422, description = "The collection cannot be examined (no examples)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn doctor(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<DoctorQuery>,
) -> Result<Json<Examination>, ApiError> {
    state.store.require_meta(&name).await?;
    if !state.examinations.start(&name) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "doctor_running",
            format!("an examination of {name:?} is already running"),
        ));
    }
    let settings = Settings {
        top: q.top,
        min_label_examples: q.min_label_examples.unwrap_or(Settings::default().min_label_examples),
        ..Settings::default()
    };
    let handle = tokio::runtime::Handle::current();
    let (worker, collection) = (state.clone(), name.clone());
    let result = tokio::task::spawn_blocking(move || {
        let coverage = worker.embedder.coverage();
        handle.block_on(examine(worker.store.as_ref(), &collection, coverage.as_deref(), &settings, &crate::progress::silent))
    })
    .await
    .unwrap_or_else(|e| Err(CalibrateError::Fit(format!("the examination stopped: {e}"))));
    state.examinations.finish(&name);
    result.map(Json).map_err(|e| match e {
        CalibrateError::Store(s) => ApiError::from(s),
        other => ApiError::unprocessable("cannot_examine", other.to_string()),
    })
}
