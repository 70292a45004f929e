//! Refitting a collection's neighbours' side (vote + head, calibration) while
//! serving: on demand (`POST /v1/collections/{name}/calibrate`) and in the background
//! once enough examples were added since the last fit (`--refit-after`). Examples
//! count in the vote as soon as they are stored; only the head and the calibration wait
//! for the refit. One refit per collection at a time; classification goes on with the
//! previous fit meanwhile and picks up the new one when it is stored.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::calibrate::{self, refit, stored_fit};
use crate::fit::NeighbourModel;

/// Collections being refitted (or examined) now.
#[derive(Default)]
pub struct Refits {
    running: Mutex<HashSet<String>>,
}

impl Refits {
    /// Claim `collection`; false when a refit of it is already running.
    pub(super) fn start(&self, collection: &str) -> bool {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(collection.to_string())
    }
    pub(super) fn finish(&self, collection: &str) {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(collection);
    }
}

/// When a background refit starts: `Some(n)` after `n` new examples; `None` after the
/// larger of 50 and a tenth of the examples the last fit saw.
pub fn due(fitted_on: usize, now: usize, after: Option<usize>) -> bool {
    match after {
        Some(0) => false,
        Some(n) => now >= fitted_on + n,
        None => now >= fitted_on + (fitted_on / 10).max(50),
    }
}

/// What a refit reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefitResponse {
    pub collection: String,
    pub k: usize,
    /// Examples the fit saw.
    pub examples: usize,
    /// Held-out accuracy of the vote, the head and their mixture.
    pub vote_accuracy: f64,
    pub head_accuracy: Option<f64>,
    pub mixed_accuracy: f64,
    pub head_weight: f32,
    /// Why there is no head, when there is none.
    pub head_note: Option<String>,
    pub calibrated_ece: f64,
    pub seconds: f64,
}

/// [`refit`] on a blocking-pool thread of its own: the fit is CPU work, and the
/// compiler cannot prove the leave-one-out stream `Send` for `tokio::spawn` or a handler.
fn refit_in_background(
    state: Arc<AppState>,
    name: String,
) -> tokio::task::JoinHandle<Result<NeighbourModel, calibrate::CalibrateError>> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(refit(state.store.as_ref(), &name, state.cfg.options.k)))
}

impl AppState {
    /// After examples were added: start a background refit when enough have come in
    /// since the collection's last fit (collections never calibrated are left alone).
    pub(super) async fn examples_added(self: &Arc<Self>, collection: &str) {
        let Ok(Some(meta)) = self.store.get_meta(collection).await else { return };
        let Some(fit) = stored_fit(&meta) else { return };
        let Ok(now) = self.store.count(collection).await else { return };
        if due(fit.neighbours.collection_examples, now, self.cfg.refit_after) {
            self.start_refit(collection);
        }
    }

    /// After a label left the taxonomy: a calibrated collection's fit still knows it, so
    /// it is refitted in the background.
    pub(super) async fn refit_soon(self: &Arc<Self>, collection: &str) {
        if let Ok(Some(meta)) = self.store.get_meta(collection).await {
            if stored_fit(&meta).is_some() {
                self.start_refit(collection);
            }
        }
    }

    fn start_refit(self: &Arc<Self>, collection: &str) {
        if !self.refits.start(collection) {
            return;
        }
        let state = self.clone();
        let name = collection.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            match refit_in_background(state.clone(), name.clone()).await {
                Ok(Ok(m)) => tracing::info!(
                    collection = %name,
                    examples = m.collection_examples,
                    accuracy = m.stats.mixed_accuracy,
                    seconds = started.elapsed().as_secs_f64(),
                    "background refit done"
                ),
                Ok(Err(e)) => tracing::warn!(collection = %name, "background refit failed: {e}"),
                Err(e) => tracing::warn!(collection = %name, "background refit stopped: {e}"),
            }
            state.refits.finish(&name);
            state.invalidate(&name).await;
        });
    }
}

/// Refit a collection's neighbours' side now (leave-one-out votes, cross-fitted head,
/// calibration) with the settings of its last fit. Takes seconds to minutes on large
/// collections; classification keeps using the previous fit meanwhile.
#[utoipa::path(post, path = "/v1/collections/{name}/calibrate", params(("name" = String, Path)),
    responses(
        (status = 200, body = RefitResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A refit of this collection is running", body = ErrorBody),
        (status = 422, description = "The collection cannot be calibrated (too few examples)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn calibrate_now(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<RefitResponse>, ApiError> {
    if !state.refits.start(&name) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "refit_running",
            format!("a refit of {name:?} is already running"),
        ));
    }
    let started = Instant::now();
    let result = refit_in_background(state.clone(), name.clone())
        .await
        .unwrap_or_else(|e| Err(calibrate::CalibrateError::Fit(format!("the refit stopped: {e}"))));
    state.refits.finish(&name);
    state.invalidate(&name).await;
    let m = result.map_err(|e| match e {
        calibrate::CalibrateError::Store(s) => ApiError::from(s),
        other => ApiError::unprocessable("cannot_calibrate", other.to_string()),
    })?;
    Ok(Json(RefitResponse {
        collection: name,
        k: m.k,
        examples: m.collection_examples,
        vote_accuracy: m.stats.vote_accuracy,
        head_accuracy: m.stats.head_accuracy,
        mixed_accuracy: m.stats.mixed_accuracy,
        head_weight: m.head_weight,
        head_note: m.head_note,
        calibrated_ece: m.stats.calibrated_ece,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refit_is_due_after_enough_new_examples() {
        assert!(!due(1000, 1099, None) && due(1000, 1100, None), "a tenth of 1,000");
        assert!(!due(100, 149, None) && due(100, 150, None), "at least 50");
        assert!(!due(100, 104, Some(5)) && due(100, 105, Some(5)));
        assert!(!due(100, 10_000, Some(0)), "0: never");
        let r = Refits::default();
        assert!(r.start("a") && !r.start("a") && r.start("b"));
        r.finish("a");
        assert!(r.start("a"));
    }
}
