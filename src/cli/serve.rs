//! `triage serve`: the HTTP classification API (logic in [`crate::serve`]).

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{flag, store_settings, CommonArgs, LlmArgs};
use crate::classifier::ClassifyOptions;
use crate::config;
use crate::options::SERVE_MAX_K;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Collection used when a request names none (checked by /readyz)
    #[arg(long, env = "TRIAGE_COLLECTION")]
    pub collection: String,
    /// Address to listen on; port 0 picks a free port (printed on stderr)
    #[arg(long, env = "TRIAGE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Examples retrieved per ticket (requests may override)
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Review threshold [default: the taxonomy's, else 0.85]
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Two-stage prompts for taxonomies with subcategories: the category first (categories only), then that category's subcategories in a second, short request. Shorter prompts, up to twice the requests
    #[arg(long)]
    pub two_stage: bool,
    /// Most tickets in one /v1/classify/batch request
    #[arg(long, default_value_t = 100)]
    pub max_batch: usize,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// /v1 requests handled at once; beyond it the answer is 429 with Retry-After
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// LLM calls in flight for one batch request
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// POST results that need review here (Slack-compatible JSON with the result under "triage"); retried with backoff
    #[arg(long, env = "TRIAGE_REVIEW_WEBHOOK")]
    pub review_webhook: Option<String>,
    /// POST {ticket_id, result} here for every ticket received on /v1/webhooks/ticket
    #[arg(long, env = "TRIAGE_TICKET_CALLBACK")]
    pub ticket_callback: Option<String>,
    /// Where /v1/webhooks/ticket finds the ticket id (dotted path)
    #[arg(long, default_value = "ticket.id")]
    pub webhook_id_field: String,
    /// Where /v1/webhooks/ticket finds the text (dotted paths, joined in order)
    #[arg(long, value_delimiter = ',', default_value = "ticket.subject,ticket.description")]
    pub webhook_text_fields: Vec<String>,
    /// Where /v1/webhooks/ticket finds a category an agent set (dotted path); another than ours becomes an example
    #[arg(long, default_value = "ticket.category")]
    pub webhook_category_field: String,
    /// Where /v1/webhooks/ticket finds the ticket's tags (array, or a string separated by spaces); a triage_<category> tag other than ours becomes an example
    #[arg(long, default_value = "ticket.tags")]
    pub webhook_tags_field: String,
    /// Attempts per outgoing webhook delivery, the first included
    #[arg(long, default_value_t = 5)]
    pub webhook_attempts: u32,
    /// Delay before retrying a failed webhook delivery, in ms (doubles each time)
    #[arg(long, default_value_t = 1000)]
    pub webhook_retry_base_ms: u64,
    /// Seconds shutdown may take: requests in flight finish and queued webhook deliveries go out within it; connections still open then are closed
    #[arg(long, default_value_t = 10.0)]
    pub drain_seconds: f64,
    /// Refit a calibrated collection (head and calibration) in the background after this many examples were added through the API [default: the larger of 50 and a tenth of its last fit's examples; 0: never]
    #[arg(long)]
    pub refit_after: Option<usize>,
    /// Seconds a cached collection's metadata (taxonomy, calibration) is used before it is read again: how soon a change made through another replica or `triage calibrate` applies here
    #[arg(long, env = "TRIAGE_META_REFRESH", default_value_t = 1.0)]
    pub meta_refresh: f64,
    /// Open connections at most (more wait in the listen backlog)
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive connection stays open)
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's body once its headers arrived (else 408)
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout: f64,
    /// Examples one API key (TRIAGE_API_KEY may list several, comma-separated; without one: all clients together) may add per minute through /v1/examples; beyond it 429 with Retry-After. 0: no limit
    #[arg(long, env = "TRIAGE_EXAMPLE_WRITES_PER_MINUTE", default_value_t = 1200)]
    pub example_writes_per_minute: usize,
    /// Flag (in the response, the log and /metrics) a write after which one source holds more than this share of a label's examples (labels of 10 examples or more)
    #[arg(long, env = "TRIAGE_MAX_SOURCE_SHARE", default_value_t = 0.5)]
    pub max_source_share: f64,
    /// Listen on a non-loopback address without TRIAGE_API_KEY (only behind something that controls access)
    #[arg(long, env = "TRIAGE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
}


pub async fn run(common: &CommonArgs, args: ServeArgs) -> anyhow::Result<u8> {
    use crate::serve::{self, AppState, RetrySettings, ServeConfig, WebhookMapping};
    let options = ClassifyOptions::checked(args.k, args.min_confidence, Some(SERVE_MAX_K)).map_err(flag)?;
    anyhow::ensure!(args.max_batch >= 1 && args.max_inflight >= 1, "--max-batch and --max-inflight must be at least 1");
    anyhow::ensure!(args.drain_seconds.is_finite() && args.drain_seconds >= 0.0, "--drain-seconds must be >= 0");
    anyhow::ensure!(args.meta_refresh.is_finite() && args.meta_refresh >= 0.0, "--meta-refresh must be >= 0 seconds");
    for (flag, v) in [("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout)] {
        anyhow::ensure!(v.is_finite() && v > 0.0, "{flag} must be a positive number of seconds");
    }
    anyhow::ensure!(args.max_connections >= 1, "--max-connections must be at least 1");
    anyhow::ensure!(
        args.max_source_share.is_finite() && args.max_source_share > 0.0 && args.max_source_share <= 1.0,
        "--max-source-share must be in (0, 1]"
    );
    let api_key = std::env::var("TRIAGE_API_KEY").ok().filter(|k| !k.trim().is_empty());
    let loopback = serve::check_listen_address(&args.addr, api_key.is_some(), args.allow_unauthenticated)
        .map_err(anyhow::Error::msg)?;
    let llm = args.llm.client()?;
    let store = config::open_store(&store_settings(common))?;
    // The embedded store is single-process: own it for as long as the server runs.
    store.claim()?;
    let embedder = common.serving_embedder()?;
    let cfg = ServeConfig {
        collection: args.collection.clone(),
        options: ClassifyOptions { two_stage: args.two_stage, ..options },
        batch_concurrency: args.concurrency.max(1),
        max_batch: args.max_batch,
        max_body: args.max_body,
        max_inflight: args.max_inflight,
        api_key: api_key.clone(),
        example_writes_per_minute: args.example_writes_per_minute,
        max_source_share: args.max_source_share,
        loopback_only: loopback && api_key.is_none(),
        limits: serve::ConnLimits {
            max_connections: args.max_connections,
            header_timeout: Duration::from_secs_f64(args.header_timeout),
            body_timeout: Duration::from_secs_f64(args.body_timeout),
        },
        webhook: WebhookMapping {
            id_field: args.webhook_id_field.clone(),
            text_fields: args.webhook_text_fields.clone(),
            category_field: Some(args.webhook_category_field.clone()).filter(|f| !f.trim().is_empty()),
            tags_field: Some(args.webhook_tags_field.clone()).filter(|f| !f.trim().is_empty()),
        },
        review_webhook: args.review_webhook.clone().filter(|u| !u.trim().is_empty()),
        ticket_callback: args.ticket_callback.clone().filter(|u| !u.trim().is_empty()),
        delivery: RetrySettings {
            attempts: args.webhook_attempts.max(1),
            base_delay: Duration::from_millis(args.webhook_retry_base_ms),
            ..RetrySettings::default()
        },
        refit_after: args.refit_after,
        meta_refresh: Duration::from_secs_f64(args.meta_refresh),
    };
    let ledger = crate::helpdesk::state::open(&store_settings(common))?;
    let state = AppState::new(cfg, embedder, store, llm, Some(ledger))?;
    if let Err(e) = state.ready().await {
        eprintln!("warning: {e} (/readyz answers 503 until it is fixed)");
    }
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "listening on http://{addr} (collection {}, auth {}); OpenAPI at /openapi.json",
        args.collection,
        if api_key.is_some() { "on" } else { "off: set TRIAGE_API_KEY to require a bearer token" }
    );
    serve::run(listener, state, serve::shutdown_signal(), Duration::from_secs_f64(args.drain_seconds)).await?;
    eprintln!("stopped");
    Ok(0)
}


