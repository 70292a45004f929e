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

/// Text for Slack's `mrkdwn` with `&`, `<` and `>` as the entities Slack documents
/// for them (<https://api.slack.com/reference/surfaces/formatting#escaping>): ticket
/// text can then neither mention anyone (`<@U0ADMIN>`, `<!channel>`) nor disguise a
/// link (`<https://evil.example|Open ticket>`); it shows as typed.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack incoming-webhook message (`text`), with the full result under `triage`
/// for receivers that route on it. Every value in `text` is escaped ([`slack_escape`]):
/// the ticket's id, summary and reasons come from outside.
pub fn review_message(r: &TicketResult) -> Value {
    let label = [r.category.as_deref(), r.subcategory.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" / ");
    let text = format!(
        "Ticket {} needs review: {}\nSuggested: {} (urgency {}, confidence {:.2}, method {})\nSummary: {}",
        slack_escape(&r.id),
        slack_escape(&r.review_reason.as_ref().map_or_else(|| "flagged".to_string(), |x| x.to_string())),
        slack_escape(if label.is_empty() { "-" } else { &label }),
        slack_escape(r.urgency.as_deref().unwrap_or("-")),
        r.confidence,
        slack_escape(r.method.as_str()),
        slack_escape(if r.summary.is_empty() { "-" } else { &r.summary }),
    );
    json!({"text": text, "triage": r})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_markup_reaches_slack_inert() {
        let mut r = crate::classifier::failed_result("<!channel>", "x");
        r.error = None;
        r.summary = "<@U0ADMIN> please see <https://evil.example|Open ticket> & pay".into();
        r.category = Some("Billing <!here>".into());
        let v = review_message(&r);
        let text = v["text"].as_str().unwrap_or_default();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.starts_with("Ticket &lt;!channel&gt; needs review"), "{text}");
        assert!(text.contains("&lt;@U0ADMIN&gt; please see &lt;https://evil.example|Open ticket&gt; &amp; pay"), "{text}");
        assert!(text.contains("Suggested: Billing &lt;!here&gt;"), "{text}");
        // The structured copy keeps the values as they are.
        assert_eq!(v["triage"]["summary"], r.summary);
    }
}
