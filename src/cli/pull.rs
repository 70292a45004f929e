//! `triage pull`: classify a helpdesk's new and changed tickets and write the results
//! back (logic in [`crate::helpdesk`]; this file only turns flags into settings).

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{flag, store_settings, CommonArgs, LlmArgs, EXIT_SOME_FAILED};
use crate::classifier::{Classifier, ClassifyOptions};
use crate::config;
use crate::options::SERVE_MAX_K;
use crate::helpdesk::freshdesk::Freshdesk;
use crate::helpdesk::http::RetryPolicy;
use crate::helpdesk::pull::{self, Engine, Event, PullError, PullSettings};
use crate::helpdesk::report::{serve_metrics, PullMetrics};
use crate::helpdesk::zendesk::Zendesk;
use crate::helpdesk::{now_secs, parse_duration_secs, parse_rfc3339, state, HelpdeskError, SourceSettings, TicketSource};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceKind {
    /// Zendesk Support (credentials: ZENDESK_EMAIL, ZENDESK_API_TOKEN)
    Zendesk,
    /// Freshdesk (credentials: FRESHDESK_API_KEY)
    Freshdesk,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The helpdesk to pull from
    #[arg(long, value_enum)]
    pub source: SourceKind,
    /// The helpdesk's base URL, e.g. https://acme.zendesk.com or https://acme.freshdesk.com
    #[arg(long, env = "TRIAGE_HELPDESK_URL")]
    pub base_url: String,
    /// Collection holding the examples (agents' corrections are added to it)
    #[arg(long)]
    pub collection: String,
    /// One pass to the end of the export, then exit (the default)
    #[arg(long, conflicts_with = "every")]
    pub once: bool,
    /// Pull again this long after each pass (e.g. 60s, 5m) until stopped
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// First run only (no stored cursor): tickets updated since this long ago (24h, 7d) or this date (2026-11-01, RFC 3339)
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Ticket fields joined into the text [default: subject,description (Zendesk); subject,description_text (Freshdesk)]
    #[arg(long, value_delimiter = ',')]
    pub text_fields: Vec<String>,
    /// Custom field that gets the category: a Zendesk field id, a Freshdesk cf_ name [default: none; tags only]
    #[arg(long)]
    pub category_field: Option<String>,
    /// Print the requests that would be sent (JSON lines); write nothing to the helpdesk, store nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Tickets per export page (Zendesk at most 1000, Freshdesk at most 100)
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Examples retrieved per ticket
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Refit the collection after this many agents' corrections were stored [default: the larger of 50 and a tenth of its last fit's examples; 0: never]
    #[arg(long)]
    pub refit_after: Option<usize>,
    /// Ask the LLM for every ticket, also where the collection's fit says the neighbours are decisive (no knn-shortcut): an LLM summary and reasoning for every ticket, at one request per ticket
    #[arg(long, env = "TRIAGE_NO_SHORTCUT", action = clap::ArgAction::SetTrue, value_parser = clap::builder::FalseyValueParser::new())]
    pub no_shortcut: bool,
    /// Review threshold [default: the taxonomy's, else 0.85]
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Route by a precision target instead of a threshold: e.g. 0.98 sends on without review only as many tickets as the collection's held-out answers show are at least 98 % right [default: the taxonomy's auto_route_precision, if any]
    #[arg(long, conflicts_with = "min_confidence")]
    pub auto_route_precision: Option<f64>,
    /// Tickets classified at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Retries of one helpdesk request on 5xx, timeouts and connection errors
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// First retry delay in ms (doubles, with jitter)
    #[arg(long, default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Seconds before one helpdesk request times out
    #[arg(long, default_value_t = 30.0)]
    pub http_timeout: f64,
    /// Longest Retry-After or rate-limit reset honoured, in seconds
    #[arg(long, default_value_t = 300)]
    pub max_wait: u64,
    /// Serve this process's Prometheus metrics at http://ADDR/metrics (useful with --every)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Print events and each run's summary as JSON lines
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// `--since`: a duration back from now, or a date.
fn since(s: &str, now: u64) -> anyhow::Result<u64> {
    let date = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    if let Some(t) = parse_rfc3339(&date) {
        return Ok(t);
    }
    let back = parse_duration_secs(s).map_err(|e| anyhow::anyhow!("--since: {e}, or a date such as 2026-11-01"))?;
    Ok(now.saturating_sub(back))
}

fn source_settings(args: &PullArgs) -> SourceSettings {
    let defaults: &[&str] = match args.source {
        SourceKind::Zendesk => &Zendesk::DEFAULT_TEXT_FIELDS,
        SourceKind::Freshdesk => &Freshdesk::DEFAULT_TEXT_FIELDS,
    };
    let fields: Vec<String> = args.text_fields.iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect();
    SourceSettings {
        base_url: args.base_url.clone(),
        text_fields: if fields.is_empty() { defaults.iter().map(|s| s.to_string()).collect() } else { fields },
        category_field: args.category_field.clone().filter(|f| !f.trim().is_empty()),
        page_size: args.page_size.max(1),
        retry: RetryPolicy {
            max_retries: args.max_retries,
            base_delay: Duration::from_millis(args.retry_base_ms),
            max_wait: Duration::from_secs(args.max_wait),
            timeout: Duration::from_secs_f64(args.http_timeout),
            ..RetryPolicy::default()
        },
    }
}

pub async fn pull(common: &CommonArgs, args: PullArgs) -> anyhow::Result<u8> {
    let options = ClassifyOptions::checked(args.k, args.min_confidence, Some(SERVE_MAX_K))
        .and_then(|o| o.with_precision(args.auto_route_precision))
        .map(|o| ClassifyOptions { shortcut: !args.no_shortcut, ..o })
        .map_err(flag)?;
    anyhow::ensure!(args.http_timeout.is_finite() && args.http_timeout > 0.0, "--http-timeout must be positive");
    let every = args.every.as_deref().map(parse_duration_secs).transpose().map_err(|e| anyhow::anyhow!("--every: {e}"))?;
    let since = since(&args.since, now_secs())?;
    let settings = source_settings(&args);
    let source: Box<dyn TicketSource> = match args.source {
        SourceKind::Zendesk => Box::new(Zendesk::from_env(&settings)?),
        SourceKind::Freshdesk => Box::new(Freshdesk::from_env(&settings)?),
    };
    let llm = args.llm.client()?;
    let stores = store_settings(common);
    let store = config::open_store(&stores)?;
    // The embedded store and the journal next to it are single-process.
    store.claim()?;
    let state = state::open(&stores)?;
    let embedder = common.embedder()?;
    let classifier = Classifier::open(embedder.clone(), store.clone(), llm, &args.collection, options).await?;
    let taxonomy = store.require_meta(&args.collection).await?.taxonomy;
    let mut engine = Engine {
        classifier,
        taxonomy,
        embedder,
        store: store.clone(),
        collection: args.collection.clone(),
        concurrency: args.concurrency.max(1),
    };
    let metrics = PullMetrics::default();
    if let Some(addr) = &args.metrics_addr {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (--metrics-addr)"))?;
        eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(serve_metrics(listener, metrics.clone(), std::future::pending()));
    }
    let run = PullSettings { since, dry_run: args.dry_run };
    let json = args.json;
    let mut on_event = move |e: Event| match (&e, json) {
        (_, true) | (Event::WouldWrite { .. }, false) => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
        (Event::Correction { ticket, label, previous, via, example_id }, false) => println!(
            "ticket {ticket}: an agent changed the category ({via}) from {} to {label}: stored as example {example_id}",
            previous.as_deref().unwrap_or("none")
        ),
    };
    loop {
        match pull::run_once(source.as_ref(), state.as_ref(), &engine, &run, &mut on_event).await {
            Ok(report) => {
                metrics.record(&report);
                if !args.dry_run && report.corrections.total() > 0 {
                    // Fitted from the start, and kept so as corrections arrive.
                    if let Err(e) = engine.refit_if_due(args.refit_after).await {
                        eprintln!("warning: refitting after the corrections failed ({e}); the previous fit stays in use");
                    }
                }
                if json {
                    println!("{}", serde_json::json!({"event": "run", "source": source.kind(), "report": report}));
                } else {
                    println!("{}", report.summary(source.kind(), &args.collection));
                }
                if every.is_none() {
                    return Ok(if report.rejected.is_empty() { 0 } else { EXIT_SOME_FAILED });
                }
            }
            Err(e) => {
                metrics.failed();
                let fatal = matches!(e, PullError::Helpdesk(HelpdeskError::Auth { .. } | HelpdeskError::Config(_)));
                if every.is_none() || fatal {
                    return Err(anyhow::Error::new(e).context("pull stopped; the cursor stays where it was, re-run to go on"));
                }
                eprintln!("error: {e:#} (trying again at the next interval)");
            }
        }
        let Some(secs) = every else { return Ok(0) };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
            _ = crate::serve::shutdown_signal() => return Ok(0),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_dates() {
        assert_eq!(since("24h", 100_000).unwrap(), 100_000 - 86_400);
        assert_eq!(since("2026-11-01", 0).unwrap(), 1_793_491_200);
        assert_eq!(since("2026-11-01T12:00:00Z", 0).unwrap(), 1_793_534_400);
        assert!(since("last tuesday", 0).is_err());
    }
}
