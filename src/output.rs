//! Writing results: JSON array, JSON lines, CSV (one row per ticket, for joining
//! back to the helpdesk export by id), or a table for people.

use std::io::Write;

use crate::classifier::{Classifier, Ticket, TicketResult};
use crate::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Jsonl,
    /// One row per ticket: the input's id, then the result fields (no neighbours or usage).
    Csv,
    Table,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 11] = [
    "id", "category", "subcategory", "urgency", "confidence", "needs_review", "review_reason", "method", "model", "summary", "error",
];

/// A cell a spreadsheet will not run as a formula (CSV injection, as OWASP
/// describes it): text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return
/// gets a leading `'`, which spreadsheets show as text and do not display. The ticket's
/// id and summary come from outside (`=HYPERLINK(...)` in a summary).
pub fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A CSV header row when `header`, then one row per result; text cells through [`csv_cell`].
pub fn write_csv(out: &mut dyn Write, results: &[TicketResult], header: bool) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    if header {
        w.write_record(CSV_COLUMNS)?;
    }
    for r in results {
        let reason = r.review_reason.as_ref().map(|x| x.to_string()).unwrap_or_default();
        let confidence = format!("{:.3}", r.confidence);
        let cells = [
            r.id.as_str(),
            r.category.as_deref().unwrap_or(""),
            r.subcategory.as_deref().unwrap_or(""),
            r.urgency.as_deref().unwrap_or(""),
            confidence.as_str(),
            if r.needs_review { "true" } else { "false" },
            reason.as_str(),
            r.method.as_str(),
            r.model.as_deref().unwrap_or(""),
            r.summary.as_str(),
            r.error.as_deref().unwrap_or(""),
        ];
        w.write_record(cells.iter().map(|c| csv_cell(c).into_owned()))?;
    }
    w.flush()?;
    Ok(())
}

pub fn write_jsonl(out: &mut dyn Write, results: &[TicketResult]) -> std::io::Result<()> {
    for r in results {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn cell(s: &str, width: usize) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() <= width {
        format!("{s:<width$}")
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub fn write_table(out: &mut dyn Write, results: &[TicketResult]) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {} {} {} {} {} {} SUMMARY",
        cell("ID", 8),
        cell("URGENCY", 9),
        cell("CATEGORY", 18),
        cell("CONF", 5),
        cell("METHOD", 12),
        cell("REVIEW", 6),
        cell("REASON", 16)
    )?;
    for r in results {
        let summary = match (&r.error, r.summary.is_empty()) {
            (Some(e), _) => format!("ERROR: {e}"),
            (None, true) => "-".into(),
            (None, false) => r.summary.clone(),
        };
        let category = match (&r.category, &r.subcategory) {
            (Some(c), Some(s)) => format!("{c} / {s}"),
            (Some(c), None) => c.clone(),
            _ => "-".into(),
        };
        // The reason's kind (`low_confidence`, `out_of_scope`, ...); the detail is in the JSON.
        let reason = r.review_reason.as_ref().map_or("-", |x| x.kind.as_str());
        writeln!(
            out,
            "{} {} {} {} {} {} {} {}",
            cell(&r.id, 8),
            cell(r.urgency.as_deref().unwrap_or("-"), 9),
            cell(&category, 18),
            cell(&format!("{:.2}", r.confidence), 5),
            cell(r.method.as_str(), 12),
            cell(if r.needs_review { "yes" } else { "no" }, 6),
            cell(reason, 16),
            cell(&summary, 70).trim_end()
        )?;
    }
    let review = results.iter().filter(|r| r.needs_review).count();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    writeln!(out, "\n{} tickets: {} auto-routable, {} for review ({} failed)", results.len(), results.len() - review, review, failed)?;
    Ok(())
}
/// Classify `tickets` (`concurrency` at once) and write the results to `out` in
/// `format`; returns how many failed (their results carry `error`). JSON lines and
/// CSV stream out chunk by chunk; a JSON array and a table are written at the end.
pub async fn classify_into(
    classifier: &Classifier,
    tickets: Vec<Ticket>,
    concurrency: usize,
    format: OutputFormat,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> std::io::Result<usize> {
    let total = tickets.len();
    progress("", 0, total);
    let mut all: Vec<TicketResult> = Vec::new();
    let mut failed = 0usize;
    let mut done = 0usize;
    // Chunks keep memory flat on big inputs and let JSONL stream out as it is ready.
    // Each chunk is embedded in one call, sorted by length: bigger chunks mean less
    // padding (BANKING77 test: 48k tokens computed in one chunk, 63k in chunks of 512).
    const CHUNK: usize = 4096;
    let started = std::time::Instant::now();
    let mut rest = tickets;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        let results = classifier.classify_batch(chunk, concurrency).await;
        failed += results.iter().filter(|r| r.failed_hard()).count();
        let first = done == 0;
        done += results.len();
        progress("", done, total);
        match format {
            OutputFormat::Jsonl => write_jsonl(out, &results)?,
            OutputFormat::Csv => write_csv(out, &results, first)?,
            _ => all.extend(results),
        }
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        embedding = ?crate::embed::embed_stats(),
        "classified {total} tickets (the rest of the time is retrieval, vote and output)"
    );
    match format {
        OutputFormat::Jsonl | OutputFormat::Csv => {}
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &all)?;
            writeln!(out)?;
        }
        OutputFormat::Table => write_table(out, &all)?,
    }
    Ok(failed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_a_spreadsheet_would_run_get_a_quote() {
        let mut r = TicketResult::failed("=1+1", "x".into(), std::time::Instant::now());
        r.error = Some("-bad".into());
        r.summary = "=HYPERLINK(\"https://evil.example\",\"Open\")".into();
        r.category = Some("@SUM(A1:A9)".into());
        r.urgency = Some("+High".into());
        let mut out = Vec::new();
        write_csv(&mut out, &[r], true).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "'=1+1");
        assert_eq!(&row[1], "'@SUM(A1:A9)");
        assert_eq!(&row[3], "'+High");
        assert_eq!(&row[9], "'=HYPERLINK(\"https://evil.example\",\"Open\")");
        assert_eq!(&row[10], "'-bad");
        assert!(row.iter().all(|c| !c.starts_with(['=', '+', '-', '@', '\t', '\r'])), "{row:?}");
        assert_eq!(csv_cell("Billing"), "Billing");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "'\rx");
        assert_eq!(csv_cell(""), "");
    }
}
