//! Outgoing webhooks, delivered in the background so they never hold up a response:
//! the review queue (results with `needs_review`, as a Slack-compatible message) and
//! the helpdesk callback. Failed deliveries are retried with exponential backoff; a
//! full queue drops the delivery and counts it (the API response still carries the
//! result and its review flag).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::JoinSet;

use super::metrics::Metrics;
use crate::classifier::TicketResult;

/// Deliveries waiting to go out; beyond this they are dropped and counted.
const QUEUE: usize = 10_000;
/// Deliveries in progress at once.
const PARALLEL: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub base_delay: Duration,
    pub timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings { attempts: 5, base_delay: Duration::from_secs(1), timeout: Duration::from_secs(10) }
    }
}

struct Delivery {
    kind: &'static str,
    url: String,
    body: Value,
}

pub struct Notifier {
    tx: Mutex<Option<mpsc::Sender<Delivery>>>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn start(settings: RetrySettings, metrics: Arc<Metrics>) -> Result<Self, crate::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| crate::Error::Config(format!("cannot build the webhook HTTP client: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = tokio::spawn(deliver_all(rx, client, settings, metrics.clone()));
        Ok(Notifier { tx: Mutex::new(Some(tx)), worker: Mutex::new(Some(worker)), metrics })
    }

    /// Queue a review-queue message for `result` to `url`.
    pub async fn review(&self, url: &str, result: &TicketResult) {
        self.send(Delivery { kind: "review", url: url.to_string(), body: review_message(result) }).await;
    }

    /// Queue the helpdesk callback for a webhook-classified ticket.
    pub async fn callback(&self, url: &str, ticket_id: &str, result: &TicketResult) {
        let body = json!({"ticket_id": ticket_id, "result": result});
        self.send(Delivery { kind: "callback", url: url.to_string(), body }).await;
    }

    async fn send(&self, d: Delivery) {
        let kind = d.kind;
        let sent = match self.tx.lock().await.as_ref() {
            Some(tx) => tx.try_send(d).is_ok(),
            None => false,
        };
        if !sent {
            tracing::error!(kind, "webhook queue full or closed: delivery dropped");
            self.metrics.delivery(kind, "dropped");
        }
    }

    /// Stop taking deliveries and wait up to `timeout` for the queued ones.
    pub async fn close(&self, timeout: Duration) {
        self.tx.lock().await.take();
        if let Some(worker) = self.worker.lock().await.take() {
            if tokio::time::timeout(timeout, worker).await.is_err() {
                tracing::warn!("webhook deliveries still pending after {timeout:?}; giving up on them");
            }
        }
    }
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Delivery>,
    client: reqwest::Client,
    settings: RetrySettings,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let mut running = JoinSet::new();
    while let Some(d) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (client, metrics) = (client.clone(), metrics.clone());
        running.spawn(async move {
            let outcome = if deliver(&client, &d, settings).await { "delivered" } else { "failed" };
            metrics.delivery(d.kind, outcome);
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// True once the receiver answered 2xx; retries other answers and connection errors.
async fn deliver(client: &reqwest::Client, d: &Delivery, s: RetrySettings) -> bool {
    let mut delay = s.base_delay;
    for attempt in 1..=s.attempts.max(1) {
        match client.post(&d.url).json(&d.body).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => tracing::warn!(kind = d.kind, attempt, status = %r.status(), "webhook delivery refused"),
            Err(e) => tracing::warn!(kind = d.kind, attempt, error = %e, "webhook delivery failed"),
        }
        if attempt < s.attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(300));
        }
    }
    tracing::error!(kind = d.kind, url = %d.url, attempts = s.attempts, "webhook delivery gave up");
    false
}

/// A Slack incoming-webhook message (`text`), with the full result under `triage`
/// for receivers that route on it.
pub fn review_message(r: &TicketResult) -> Value {
    let label = [r.category.as_deref(), r.subcategory.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" / ");
    let text = format!(
        "Ticket {} needs review: {}\nSuggested: {} (urgency {}, confidence {:.2}, method {})\nSummary: {}",
        r.id,
        r.review_reason.as_ref().map_or_else(|| "flagged".to_string(), |x| x.to_string()),
        if label.is_empty() { "-" } else { &label },
        r.urgency.as_deref().unwrap_or("-"),
        r.confidence,
        r.method,
        if r.summary.is_empty() { "-" } else { &r.summary },
    );
    json!({"text": text, "triage": r})
}
