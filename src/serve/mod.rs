//! The HTTP classification service (`triage serve`): shared state, the router, auth,
//! back-pressure and graceful shutdown. Handlers and the OpenAPI document are in
//! `api.rs`, `/healthz` and `/readyz` in `probes.rs`, JSON errors and the body extractor in `error.rs`, the Prometheus
//! registry in `metrics.rs`, outgoing webhooks (review queue, helpdesk callback) in
//! `notify.rs`, refits of the fitted models while serving in `refit.rs`, the corpus doctor in `doctor.rs`, the helpdesk
//! push path (`/v1/webhooks/ticket`, agents' corrections) in `webhook.rs`, the accept
//! loop with its connection limits in `listen.rs`, the review queue's routes in `review.rs`, and the middleware against slow,
//! hostile and cross-site clients in `protect.rs`.

mod api;
mod doctor;
mod examples;
mod flood;
mod error;
pub mod error_codes;
mod listen;
mod openapi;
mod metrics;
mod notify;
mod refit;
mod probes;
mod protect;
mod review;
mod ui;
mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::sync::{RwLock, Semaphore};

use crate::classifier::{Classifier, ClassifyOptions};
use crate::embed::Embedder;
use crate::helpdesk::HelpdeskState;
use crate::llm::LlmClient;
use crate::store::{ExampleStore, StoreError};

pub use openapi::ApiDoc;
pub use listen::ConnLimits;
use error::ApiError;
use metrics::Metrics;
pub use notify::RetrySettings;
use notify::Notifier;

/// Where the helpdesk webhook finds the ticket in its JSON body (dotted paths).
#[derive(Debug, Clone)]
pub struct WebhookMapping {
    pub id_field: String,
    /// Joined with a blank line, in this order; missing or empty fields are skipped.
    pub text_fields: Vec<String>,
    /// Where an agent-set category may be (dotted path): differing from ours, it is a correction.
    pub category_field: Option<String>,
    /// Where the ticket's tags may be (dotted path): a `triage_<category>` tag other than ours is a correction.
    pub tags_field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Used when a request names no collection; `/readyz` checks it.
    pub collection: String,
    pub options: ClassifyOptions,
    /// LLM calls in flight for one batch request.
    pub batch_concurrency: usize,
    pub max_batch: usize,
    /// Bytes.
    pub max_body: usize,
    /// `/v1` requests handled at once; more get 429.
    pub max_inflight: usize,
    /// Bearer token every `/v1` route requires, when set: one key, or several separated
    /// by commas (one per client: provenance and write limits are per key). Without it,
    /// requests that change something must be JSON and carry no foreign origin.
    pub api_key: Option<String>,
    /// Examples each API key (or all anonymous clients together) may write per minute; 0: no limit.
    pub example_writes_per_minute: usize,
    /// A write after which one source holds more than this share of a label's examples is flagged.
    pub max_source_share: f64,
    /// Listening on a loopback address without an API key: `/v1` answers only
    /// requests addressed to a loopback host name (no DNS rebinding).
    pub loopback_only: bool,
    pub limits: ConnLimits,
    pub webhook: WebhookMapping,
    /// Results with `needs_review` are POSTed here (Slack-compatible message).
    pub review_webhook: Option<String>,
    /// Results of `/v1/webhooks/ticket` are POSTed here too.
    pub ticket_callback: Option<String>,
    pub delivery: RetrySettings,
    /// Refit a calibrated collection in the background after this many new examples
    /// (`None`: the larger of 50 and a tenth of its last fit's; `Some(0)`: never).
    pub refit_after: Option<usize>,
    /// How long a cached collection (its metadata: taxonomy, calibration) is used
    /// before it is read again. Another replica or `triage calibrate` may have changed
    /// it; one metadata read per collection per interval keeps replicas in step.
    pub meta_refresh: Duration,
}

/// Everything the handlers share. Holds no per-client state: replicas behind a load
/// balancer can answer any request.
pub struct AppState {
    cfg: ServeConfig,
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    llm: Option<Arc<dyn LlmClient>>,
    classifiers: RwLock<HashMap<String, (Arc<Classifier>, Instant)>>,
    inflight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// What the push path classified per ticket, to notice agents' corrections.
    ledger: Option<Arc<dyn HelpdeskState>>,
    refits: refit::Refits,
    /// Collections the doctor is examining now.
    examinations: refit::Refits,
    write_limits: flood::WriteLimits,
    /// Held while a review item is resolved: its open check and its write are one step.
    resolutions: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Must be called inside a tokio runtime (it starts the webhook delivery task).
    pub fn new(
        cfg: ServeConfig,
        embedder: Arc<dyn Embedder>,
        store: Arc<dyn ExampleStore>,
        llm: Option<Arc<dyn LlmClient>>,
        ledger: Option<Arc<dyn HelpdeskState>>,
    ) -> Result<Arc<Self>, crate::Error> {
        let metrics = Arc::new(Metrics::default());
        let notifier = Notifier::start(cfg.delivery, metrics.clone())?;
        Ok(Arc::new(AppState {
            inflight: Arc::new(Semaphore::new(cfg.max_inflight.max(1))),
            cfg,
            embedder,
            store,
            llm,
            classifiers: RwLock::new(HashMap::new()),
            metrics,
            notifier,
            ledger,
            refits: refit::Refits::default(),
            examinations: refit::Refits::default(),
            write_limits: flood::WriteLimits::default(),
            resolutions: tokio::sync::Mutex::new(()),
        }))
    }

    /// The classifier for `collection` (default: the configured one), opened on
    /// first use and re-opened (its metadata read again) once it is older than
    /// `meta_refresh`. When that read fails for a transient reason (the store is
    /// unreachable or degraded), the cached one keeps serving and the read is retried
    /// one interval later.
    async fn classifier(&self, collection: Option<&str>) -> Result<Arc<Classifier>, StoreError> {
        let name = collection.filter(|c| !c.trim().is_empty()).unwrap_or(&self.cfg.collection);
        let cached = self.classifiers.read().await.get(name).cloned();
        if let Some((c, at)) = &cached {
            if at.elapsed() < self.cfg.meta_refresh {
                return Ok(c.clone());
            }
        }
        let opened =
            Classifier::open(self.embedder.clone(), self.store.clone(), self.llm.clone(), name, self.cfg.options.clone())
                .await;
        let c = match (opened, cached) {
            (Ok(c), _) => Arc::new(c),
            (Err(e @ (StoreError::Backend(_) | StoreError::Io(_))), Some((old, _))) => {
                tracing::warn!(collection = name, "cannot re-read the collection's metadata ({e}); using the cached copy");
                old
            }
            (Err(e), _) => return Err(e),
        };
        self.classifiers.write().await.insert(name.to_string(), (c.clone(), Instant::now()));
        Ok(c)
    }

    /// Whether the default collection opens with the loaded embedding model and the
    /// store answers a search in it (which reads vectors and a payload).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let classifier = self.classifier(None).await?;
        let mut probe = vec![0.0f32; classifier.meta().dim.max(1)];
        probe[0] = 1.0;
        self.store.search(&self.cfg.collection, &probe, 1, None).await.map(|_| ())
    }

    /// What is wrong with the default collection's stored data, each a sentence that
    /// says what to do: what the store sees ([`ExampleStore::integrity`]: acknowledged
    /// writes in quarantine, segment files gone), and a store that holds no example
    /// while the collection's last fit saw some (its data was lost or replaced).
    pub async fn data_problems(&self) -> Result<Vec<String>, StoreError> {
        let name = &self.cfg.collection;
        let mut problems = self.store.integrity(name).await?;
        let meta = self.store.require_meta(name).await?;
        if let Some(fit) = crate::calibrate::stored_fit(&meta) {
            let fitted_on = fit.neighbours.collection_examples;
            let now = self.store.count(name).await?;
            if now == 0 && fitted_on > 0 {
                problems.push(format!(
                    "collection {name:?} holds no examples, but its last fit saw {fitted_on}: its stored examples were \
                     lost or replaced; restore the data from a backup, or index the examples again"
                ));
            }
        }
        Ok(problems)
    }

    /// Forget the cached classifier so the next request reads the taxonomy again.
    async fn invalidate(&self, collection: &str) {
        self.classifiers.write().await.remove(collection);
    }

    fn collection_name<'a>(&'a self, requested: Option<&'a str>) -> &'a str {
        requested.filter(|c| !c.trim().is_empty()).unwrap_or(&self.cfg.collection)
    }
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/classify", post(api::classify))
        .route("/v1/classify/batch", post(api::classify_batch))
        .route("/v1/examples", post(examples::add_examples).delete(examples::delete_by_source))
        .route("/v1/examples/{id}", delete(examples::delete_example))
        .route("/v1/collections", get(api::list_collections))
        .route("/v1/collections/{name}", get(api::collection_info))
        .route("/v1/collections/{name}/calibrate", post(refit::calibrate_now))
        .route("/v1/collections/{name}/doctor", get(doctor::doctor))
        .route("/v1/webhooks/ticket", post(webhook::ticket_webhook))
        .route("/v1/review", get(review::list))
        .route("/v1/review/summary", get(review::summary))
        .route("/v1/review/{id}", post(review::resolve))
        // Layers run outside-in from the last added: auth first, so unauthenticated
        // requests never take a concurrency slot; then the origin check; then the
        // whole body is read, and only then is a concurrency slot taken.
        .route_layer(from_fn_with_state(state.clone(), limit_inflight))
        .route_layer(from_fn_with_state(state.clone(), protect::read_body))
        .route_layer(from_fn_with_state(state.clone(), protect::same_origin))
        .route_layer(from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(v1)
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route("/ui", get(ui::page))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .route("/ui/login", post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/session", get(ui::session))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.cfg.max_body))
        .layer(axum::middleware::from_fn(protect::json_errors))
        .layer(from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}

/// Serve until `shutdown` resolves, then stop accepting, let requests in flight
/// finish and queued webhook deliveries go out, all within `drain`: connections
/// still open at that deadline are closed, whatever their clients do.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let deadline = listen::serve(listener, app, state.cfg.limits, shutdown, drain).await;
    state.notifier.close(deadline.saturating_duration_since(tokio::time::Instant::now())).await;
    Ok(())
}

/// Error unless `addr` may be listened on: without an API key only loopback
/// addresses, unless `allow_unauthenticated` (anyone who can reach the port could
/// otherwise classify, read the collections and plant or delete examples).
pub fn check_listen_address(addr: &str, has_api_key: bool, allow_unauthenticated: bool) -> Result<bool, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> =
        addr.to_socket_addrs().map_err(|e| format!("cannot resolve --addr {addr}: {e}"))?.collect();
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
    if !loopback && !has_api_key && !allow_unauthenticated {
        return Err(format!(
            "refusing to listen on {addr} without authentication: set TRIAGE_API_KEY (clients then send \
             Authorization: Bearer <key>), listen on a loopback address (127.0.0.1), or pass \
             --allow-unauthenticated if something in front of triage (a gateway, a private network) controls access"
        ));
    }
    Ok(loopback)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining requests in flight");
}

/// Compare digests so the comparison takes the same time whatever the input.
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which API key a request came with: [`crate::provenance::key_id`] of it, or
/// `anonymous` when the server requires none. Set by [`require_key`] on every `/v1` request.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyId(pub String);

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched
/// without regard to case (RFC 9110 11.1: `BEARER`, `bearer`).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

async fn require_key(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let mut id = crate::provenance::ANONYMOUS.to_string();
    if let Some(expected) = &state.cfg.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        // The review page's session cookie stands in for the bearer token when there is none.
        let session = if given.is_none() { ui::session_cookie(req.headers()) } else { None };
        // Every key is compared, so the time taken does not tell which one matched.
        let matched = expected
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .fold(None, |found, k| match (given, session) {
                (Some(g), _) if same_secret(g, k) => Some(k),
                (None, Some(c)) if same_secret(c, &ui::session_token(k)) => Some(k),
                _ => found,
            });
        let Some(key) = matched else {
            let mut resp = ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong API key: send Authorization: Bearer <TRIAGE_API_KEY>",
            )
            .into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return resp;
        };
        // A browser attaches the cookie by itself: writes signed in by it must come from our own page.
        if session.is_some() {
            let why = "requests signed in by the review page's cookie are accepted only from this server's own page";
            if let Some(refusal) = protect::refuse_cross_site(req.method(), req.headers(), true, why) {
                return refusal.into_response();
            }
        }
        id = crate::provenance::key_id(key);
    }
    req.extensions_mut().insert(KeyId(id));
    next.run(req).await
}

async fn limit_inflight(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match state.inflight.clone().try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => {
            state.metrics.busy();
            ApiError::busy(state.cfg.max_inflight).into_response()
        }
    }
}

async fn record_metrics(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    use axum::http::Method;
    // Label values come from a fixed set, whatever clients send: methods outside
    // the standard ones are OTHER, paths no route matches are `unmatched`.
    let method = match *req.method() {
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD | Method::OPTIONS | Method::PATCH => {
            req.method().as_str()
        }
        _ => "OTHER",
    };
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| format!("{method} {}", p.as_str()))
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.http(&endpoint, resp.status().as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod refresh_tests;

#[cfg(test)]
mod journal_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("k-123", "k-123"));
        assert!(!same_secret("k-124", "k-123"));
        assert!(!same_secret("", "k-123"));
        assert!(!same_secret("k-123 ", "k-123"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer k-1", "bearer k-1", "BEARER k-1", "BeArEr   k-1 ", "Bearer\tk-1"] {
            assert_eq!(bearer_token(v), Some("k-1"), "{v:?}");
        }
        for v in ["Basic k-1", "Bearerk-1", "Bearer ", "k-1", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
