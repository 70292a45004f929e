//! What a pull run did, as `triage pull` prints it, and the Prometheus counters of a
//! long-running `triage pull --every ... --metrics-addr ...`.

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::correction::CorrectionCounts;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejection {
    pub ticket: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub pages: usize,
    /// Tickets in the export pages (a ticket updated during the run can be counted twice).
    pub tickets: usize,
    pub classified: usize,
    /// Write-backs the helpdesk accepted.
    pub written: usize,
    /// Of those, flagged for review (`triage_needs_review`).
    pub flagged: usize,
    /// Text unchanged since its last classification (or category decided by an agent): nothing done.
    pub unchanged: usize,
    /// Writes of an interrupted run found on the ticket (its note is there), so not sent again.
    pub recovered: usize,
    /// Agents' corrections per label, stored as examples.
    #[serde(serialize_with = "counts")]
    pub corrections: CorrectionCounts,
    /// Write-backs the helpdesk refused (validation, deleted ticket); tried again when the ticket changes.
    pub rejected: Vec<Rejection>,
    /// Tickets skipped without classifying or writing anything, because they cannot be
    /// handled as they are (an id that is not a number); the cursor moves past them.
    pub skipped: Vec<Rejection>,
    pub dry_run: bool,
    pub seconds: f64,
}

fn counts<S: serde::Serializer>(c: &CorrectionCounts, s: S) -> Result<S::Ok, S::Error> {
    c.0.serialize(s)
}

impl RunReport {
    /// Corrections as a share of the tickets written back in this run: the rerouting rate.
    pub fn rerouting_rate(&self) -> Option<f64> {
        (self.written > 0).then(|| self.corrections.total() as f64 / self.written as f64)
    }

    /// The one-paragraph summary `triage pull` prints.
    pub fn summary(&self, source: &str, collection: &str) -> String {
        let mut s = format!(
            "{source} -> {collection}: {} tickets in {} pages; {} classified, {} written back ({} flagged for review), \
             {} unchanged, {} recovered from an interrupted run, {} rejected ({:.2} s){}",
            self.tickets,
            self.pages,
            self.classified,
            self.written,
            self.flagged,
            self.unchanged,
            self.recovered,
            self.rejected.len(),
            self.seconds,
            if self.dry_run { " [dry run: nothing written]" } else { "" }
        );
        if self.corrections.total() > 0 {
            let per: Vec<String> = self.corrections.0.iter().map(|(l, n)| format!("{l} {n}")).collect();
            let _ = write!(s, "\ncorrections by agents: {} ({})", self.corrections.total(), per.join(", "));
        }
        for r in &self.rejected {
            let _ = write!(s, "\n  rejected ticket {}: {}", r.ticket, r.error);
        }
        if !self.skipped.is_empty() {
            let _ = write!(s, "\nskipped {} ticket(s) that cannot be handled:", self.skipped.len());
        }
        for r in &self.skipped {
            let _ = write!(s, "\n  skipped ticket {:?}: {}", r.ticket, r.error);
        }
        s
    }
}

#[derive(Default)]
struct Totals {
    runs_ok: u64,
    runs_failed: u64,
    classified: u64,
    written: u64,
    flagged: u64,
    unchanged: u64,
    recovered: u64,
    rejected: u64,
    skipped: u64,
    corrections: CorrectionCounts,
    last_success: u64,
}

/// Counters over every run of this process.
#[derive(Default, Clone)]
pub struct PullMetrics(Arc<Mutex<Totals>>);

impl PullMetrics {
    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, r: &RunReport) {
        let mut t = self.totals();
        t.runs_ok += 1;
        t.classified += r.classified as u64;
        t.written += r.written as u64;
        t.flagged += r.flagged as u64;
        t.unchanged += r.unchanged as u64;
        t.recovered += r.recovered as u64;
        t.rejected += r.rejected.len() as u64;
        t.skipped += r.skipped.len() as u64;
        for (label, n) in &r.corrections.0 {
            *t.corrections.0.entry(label.clone()).or_insert(0) += n;
        }
        t.last_success = super::now_secs();
    }

    pub fn failed(&self) {
        self.totals().runs_failed += 1;
    }

    pub fn render(&self) -> String {
        let t = self.totals();
        let mut o = String::new();
        let mut counter = |name: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in lines {
                let _ = writeln!(o, "{name}{labels} {v}");
            }
        };
        counter("triage_pull_runs_total", "Pull runs by result.", &[("{result=\"ok\"}", t.runs_ok), ("{result=\"error\"}", t.runs_failed)]);
        counter(
            "triage_pull_tickets_total",
            "Pulled tickets by what was done with them.",
            &[
                ("{outcome=\"classified\"}", t.classified),
                ("{outcome=\"unchanged\"}", t.unchanged),
                ("{outcome=\"recovered\"}", t.recovered),
                ("{outcome=\"skipped\"}", t.skipped),
            ],
        );
        counter(
            "triage_pull_write_backs_total",
            "Write-backs by outcome (flagged: accepted and tagged for review).",
            &[("{outcome=\"written\"}", t.written), ("{outcome=\"flagged\"}", t.flagged), ("{outcome=\"rejected\"}", t.rejected)],
        );
        t.corrections.render(&mut o);
        let _ = writeln!(
            o,
            "# HELP triage_pull_last_success_timestamp_seconds End of the last successful run (Unix seconds).\n\
             # TYPE triage_pull_last_success_timestamp_seconds gauge\ntriage_pull_last_success_timestamp_seconds {}",
            t.last_success
        );
        o
    }
}

/// Serve `GET /metrics` (anything else: 404) until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: PullMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_over_runs() {
        let m = PullMetrics::default();
        let mut r = RunReport { classified: 3, written: 2, flagged: 1, ..RunReport::default() };
        r.skipped.push(Rejection { ticket: "abc".into(), error: "zendesk ticket id \"abc\" is not a number".into() });
        r.corrections.add("Technical");
        m.record(&r);
        m.record(&r);
        m.failed();
        let text = m.render();
        assert!(text.contains("triage_pull_runs_total{result=\"ok\"} 2\n"), "{text}");
        assert!(text.contains("triage_pull_runs_total{result=\"error\"} 1\n"), "{text}");
        assert!(text.contains("triage_pull_write_backs_total{outcome=\"written\"} 4\n"), "{text}");
        assert!(text.contains("triage_corrections_total{label=\"Technical\"} 2\n"), "{text}");
        assert!(text.contains("triage_pull_tickets_total{outcome=\"skipped\"} 2\n"), "{text}");
        assert!(r.summary("zendesk", "saas").contains("skipped ticket \"abc\": zendesk ticket id"));
        assert_eq!(r.rerouting_rate(), Some(0.5));
        assert!(r.summary("zendesk", "saas").contains("corrections by agents: 1 (Technical 1)"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["corrections"]["Technical"], 1);
    }
}
