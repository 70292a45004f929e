//! Writing results: JSON array, JSON lines, or a table for people.

use std::io::Write;

use crate::classifier::TicketResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Jsonl,
    Table,
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
    writeln!(out, "{} {} {} {} {} SUMMARY", cell("ID", 8), cell("URGENCY", 9), cell("CATEGORY", 18), cell("CONF", 5), cell("REVIEW", 6))?;
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
        writeln!(
            out,
            "{} {} {} {} {} {}",
            cell(&r.id, 8),
            cell(r.urgency.as_deref().unwrap_or("-"), 9),
            cell(&category, 18),
            cell(&format!("{:.2}", r.confidence), 5),
            cell(if r.needs_review { "yes" } else { "no" }, 6),
            cell(&summary, 70).trim_end()
        )?;
    }
    let review = results.iter().filter(|r| r.needs_review).count();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    writeln!(out, "\n{} tickets: {} auto-routable, {} for review ({} failed)", results.len(), results.len() - review, review, failed)?;
    Ok(())
}
