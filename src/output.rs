//! Writing results: JSON array, JSON lines, CSV (one row per ticket, for joining
//! back to the helpdesk export by id), or a table for people.

use std::io::Write;

use crate::classifier::{Classifier, Ticket, TicketResult};
use crate::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Jsonl,
    /// One row per ticket: the input's id, then the result fields (no neighbours or usage), then the ticket's text.
    Csv,
    Table,
}

/// The CSV columns, in order. `text` is the ticket as read (fields joined), so rows
/// join back to an export that has no id column.
pub const CSV_COLUMNS: [&str; 12] = [
    "id", "category", "subcategory", "urgency", "confidence", "needs_review", "review_reason", "method", "model", "summary", "error",
    "text",
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

/// A CSV header row when `header`, then one row per result; `texts[i]` is the text of
/// `results[i]`'s ticket (empty when unreadable). Every cell goes through [`csv_cell`].
pub fn write_csv(out: &mut dyn Write, results: &[TicketResult], texts: &[String], header: bool) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    if header {
        w.write_record(CSV_COLUMNS)?;
    }
    for (i, r) in results.iter().enumerate() {
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
            texts.get(i).map_or("", String::as_str),
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
/// `progress` moves as results arrive and, within a chunk, as its texts are embedded
/// (step `embedding N/M`): the embedding of a big chunk is most of a knn run's time.
/// `llm`: tickets wait on LLM requests, which take far longer than embedding; chunks
/// are then smaller (about a twentieth of the input, at least 8 × `concurrency`), so
/// results (and progress) arrive as they are ready.
pub async fn classify_into(
    classifier: &Classifier,
    tickets: Vec<Ticket>,
    concurrency: usize,
    llm: bool,
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
    let chunk_size = if llm { (total / 20).clamp(concurrency.max(1) * 8, CHUNK) } else { CHUNK };
    let started = std::time::Instant::now();
    let mut rest = tickets;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(chunk_size));
        let chunk = std::mem::replace(&mut rest, tail);
        let texts: Vec<String> = match format {
            OutputFormat::Csv => chunk.iter().map(|t| t.text.clone().unwrap_or_default()).collect(),
            _ => Vec::new(),
        };
        let results = with_embedding_progress(classifier.classify_batch(chunk, concurrency), done, total, progress).await;
        failed += results.iter().filter(|r| r.failed_hard()).count();
        let first = done == 0;
        done += results.len();
        progress("", done, total);
        match format {
            OutputFormat::Jsonl => write_jsonl(out, &results)?,
            OutputFormat::Csv => write_csv(out, &results, &texts, first)?,
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

/// Run `work` (one chunk of `classify_into`), reporting `embedding N/total` every
/// quarter second from the process's embedding counter while it runs.
async fn with_embedding_progress<T>(
    work: impl std::future::Future<Output = T>,
    done: usize,
    total: usize,
    progress: Progress<'_>,
) -> T {
    let base = crate::embed::embed_stats().texts;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let embedded = (crate::embed::embed_stats().texts.saturating_sub(base) as usize).min(total - done);
                if embedded > 0 {
                    progress(&format!("embedding {}/{total}", done + embedded), done, total);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_a_spreadsheet_would_run_get_a_quote() {
        let mut r = crate::classifier::failed_result("=1+1", "x");
        r.error = Some("-bad".into());
        r.summary = "=HYPERLINK(\"https://evil.example\",\"Open\")".into();
        r.category = Some("@SUM(A1:A9)".into());
        r.urgency = Some("+High".into());
        let mut out = Vec::new();
        write_csv(&mut out, &[r], &["=cmd|calc".to_string()], true).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "'=1+1");
        assert_eq!(&row[1], "'@SUM(A1:A9)");
        assert_eq!(&row[3], "'+High");
        assert_eq!(&row[9], "'=HYPERLINK(\"https://evil.example\",\"Open\")");
        assert_eq!(&row[10], "'-bad");
        assert_eq!(&row[11], "'=cmd|calc", "the ticket's text column too");
        assert!(row.iter().all(|c| !c.starts_with(['=', '+', '-', '@', '\t', '\r'])), "{row:?}");
        assert_eq!(csv_cell("Billing"), "Billing");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "'\rx");
        assert_eq!(csv_cell(""), "");
    }
}
