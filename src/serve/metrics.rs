//! Prometheus text exposition, kept by hand: request counts and latency histograms
//! by endpoint and status, and what the pipeline did (methods, reviews, LLM calls,
//! tokens, webhook deliveries).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::classifier::TicketResult;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    methods: Mutex<BTreeMap<String, u64>>,
    needs_review: AtomicU64,
    failed: AtomicU64,
    llm_failures: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    busy: AtomicU64,
    deliveries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    corrections: Mutex<crate::helpdesk::CorrectionCounts>,
    write_limited: AtomicU64,
    share_flags: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves counts that are still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn http(&self, endpoint: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((endpoint.to_string(), status)).or_insert(0) += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = lock(&self.latency);
        let h = latency.entry(endpoint.to_string()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    pub fn results(&self, results: &[TicketResult]) {
        let mut methods = lock(&self.methods);
        for r in results {
            *methods.entry(r.method.as_str().to_string()).or_insert(0) += 1;
            if r.needs_review {
                self.needs_review.fetch_add(1, Ordering::Relaxed);
            }
            if r.failed_hard() {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            if r.method == crate::result::ResultMethod::KnnFallback {
                self.llm_failures.fetch_add(1, Ordering::Relaxed);
            }
            self.prompt_tokens.fetch_add(r.usage.prompt_tokens, Ordering::Relaxed);
            self.completion_tokens.fetch_add(r.usage.completion_tokens, Ordering::Relaxed);
        }
    }

    /// `kind`: `review` or `callback`; `outcome`: `delivered`, `failed` or `dropped`.
    pub fn delivery(&self, kind: &'static str, outcome: &'static str) {
        *lock(&self.deliveries).entry((kind, outcome)).or_insert(0) += 1;
    }

    /// An agent's category change learnt from a webhook (`label`: the agent's category).
    pub fn correction(&self, label: &str) {
        lock(&self.corrections).add(label);
    }

    /// An example write refused by the per-key write limit.
    pub fn write_limited(&self) {
        self.write_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A write after which one source held more than its share of `label`.
    pub fn share_flag(&self, label: &str) {
        *lock(&self.share_flags).entry(label.to_string()).or_insert(0) += 1;
    }

    pub fn render(&self, inflight: usize) -> String {
        let mut out = String::new();
        let _ = self.write(&mut out, inflight);
        out
    }

    fn write(&self, o: &mut String, inflight: usize) -> std::fmt::Result {
        writeln!(o, "# HELP triage_http_requests_total HTTP requests by endpoint and status.")?;
        writeln!(o, "# TYPE triage_http_requests_total counter")?;
        for ((endpoint, status), n) in lock(&self.requests).iter() {
            writeln!(o, "triage_http_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}", esc(endpoint))?;
        }
        writeln!(o, "# HELP triage_http_request_duration_seconds HTTP request latency by endpoint.")?;
        writeln!(o, "# TYPE triage_http_request_duration_seconds histogram")?;
        for (endpoint, h) in lock(&self.latency).iter() {
            let e = esc(endpoint);
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                writeln!(o, "triage_http_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"{le}\"}} {n}")?;
            }
            writeln!(o, "triage_http_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {}", h.count)?;
            writeln!(o, "triage_http_request_duration_seconds_sum{{endpoint=\"{e}\"}} {}", h.sum)?;
            writeln!(o, "triage_http_request_duration_seconds_count{{endpoint=\"{e}\"}} {}", h.count)?;
        }
        writeln!(o, "# HELP triage_classifications_total Tickets classified, by method (rag, knn, knn-fallback, none).")?;
        writeln!(o, "# TYPE triage_classifications_total counter")?;
        for (m, n) in lock(&self.methods).iter() {
            writeln!(o, "triage_classifications_total{{method=\"{}\"}} {n}", esc(m))?;
        }
        let llm_requests = AtomicU64::new(crate::llm::requests_sent());
        let counters = [
            ("triage_needs_review_total", "Results flagged for human review.", &self.needs_review),
            ("triage_ticket_errors_total", "Tickets that could not be classified at all (bad input, store or embedding failure).", &self.failed),
            ("triage_llm_calls_total", "HTTP requests sent to the LLM (retries, repairs and two-stage subcategory requests included).", &llm_requests),
            ("triage_llm_errors_total", "Tickets whose LLM call failed (answered by the neighbours' vote instead).", &self.llm_failures),
            ("triage_llm_prompt_tokens_total", "Prompt tokens reported by the LLM.", &self.prompt_tokens),
            ("triage_llm_completion_tokens_total", "Completion tokens reported by the LLM.", &self.completion_tokens),
            ("triage_rejected_busy_total", "Requests answered 429 because the server was at its concurrency limit.", &self.busy),
            ("triage_example_writes_limited_total", "Example writes answered 429 by the per-key write limit (--example-writes-per-minute).", &self.write_limited),
        ];
        for (name, help, v) in counters {
            writeln!(o, "# HELP {name} {help}")?;
            writeln!(o, "# TYPE {name} counter")?;
            writeln!(o, "{name} {}", v.load(Ordering::Relaxed))?;
        }
        writeln!(o, "# HELP triage_webhook_deliveries_total Outgoing webhook deliveries by kind and outcome.")?;
        writeln!(o, "# TYPE triage_webhook_deliveries_total counter")?;
        for ((kind, outcome), n) in lock(&self.deliveries).iter() {
            writeln!(o, "triage_webhook_deliveries_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}")?;
        }
        lock(&self.corrections).render(o);
        writeln!(o, "# HELP triage_example_source_share_flags_total Example writes after which one source held more than --max-source-share of a label's examples, by label.")?;
        writeln!(o, "# TYPE triage_example_source_share_flags_total counter")?;
        for (label, n) in lock(&self.share_flags).iter() {
            writeln!(o, "triage_example_source_share_flags_total{{label=\"{}\"}} {n}", esc(label))?;
        }
        writeln!(o, "# HELP triage_inflight_requests /v1 requests being handled now.")?;
        writeln!(o, "# TYPE triage_inflight_requests gauge")?;
        writeln!(o, "triage_inflight_requests {inflight}")?;
        Ok(())
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.http("POST /v1/classify", 200, Duration::from_millis(3));
        m.http("POST /v1/classify", 200, Duration::from_millis(30));
        m.http("POST /v1/classify", 422, Duration::from_millis(1));
        let text = m.render(2);
        assert!(text.contains("triage_http_requests_total{endpoint=\"POST /v1/classify\",status=\"200\"} 2"));
        assert!(text.contains("triage_http_requests_total{endpoint=\"POST /v1/classify\",status=\"422\"} 1"));
        assert!(text.contains("triage_http_request_duration_seconds_bucket{endpoint=\"POST /v1/classify\",le=\"0.002\"} 1"));
        assert!(text.contains("triage_http_request_duration_seconds_bucket{endpoint=\"POST /v1/classify\",le=\"0.005\"} 2"));
        assert!(text.contains("triage_http_request_duration_seconds_bucket{endpoint=\"POST /v1/classify\",le=\"0.05\"} 3"));
        assert!(text.contains("triage_http_request_duration_seconds_count{endpoint=\"POST /v1/classify\"} 3"));
        assert!(text.contains("triage_inflight_requests 2"));
    }
}
