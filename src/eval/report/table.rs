//! The results table `triage eval` prints: one line per method, model and k, the
//! methods skipped (once per reason) and the report files written.

use std::io::Write;
use std::path::PathBuf;

use crate::eval::figures::MethodReport;
use crate::eval::glance::{headline_row, majority_baseline};
use crate::eval::{LabeledTicket, Skipped};

/// Categories listed by name under the table (lowest recall first); the rest are counted.
const RECALLS_SHOWN: usize = 12;

/// Under the table: the majority-class baseline beside the headline row's accuracy and
/// macro-F1, and its recall per category, lowest first (small categories count).
pub fn write_categories(out: &mut dyn Write, rows: &[MethodReport], tickets: &[LabeledTicket]) -> std::io::Result<()> {
    let Some(r) = headline_row(rows) else { return Ok(()) };
    if let Some((share, label)) = majority_baseline(tickets) {
        writeln!(
            out,
            "{} k={}: accuracy {}, macro-F1 {}; always answering the most frequent label ({label}) would score {share:.3}",
            r.method,
            r.k,
            pct(r.accuracy),
            pct(r.macro_f1)
        )?;
    }
    let mut recalls: Vec<(&String, f64, usize)> =
        r.per_class.iter().filter(|(_, c)| c.support > 0).map(|(l, c)| (l, c.recall, c.support)).collect();
    recalls.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    if recalls.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = recalls.iter().take(RECALLS_SHOWN).map(|(l, rc, n)| format!("{l} {rc:.2} (n={n})")).collect();
    let rest = recalls.len().saturating_sub(RECALLS_SHOWN);
    let tail = if rest > 0 {
        format!("; {rest} more, all at or above {:.2}", recalls[RECALLS_SHOWN].1)
    } else {
        String::new()
    };
    writeln!(out, "recall by category, lowest first: {}{tail}", shown.join(", "))
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// Write the table of `rows`, then the skipped methods and the `paths` written.
pub fn write(out: &mut dyn Write, rows: &[MethodReport], skipped: &[Skipped], paths: &[PathBuf]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<15} {:<20} {:>3} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>6} {:>6} {:>9}",
        "method", "model", "k", "accuracy", "macro-F1", "review", "selective", "ECE", "gold@k", "calls", "skip", "p50 ms"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<15} {:<20} {:>3} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>6} {:>6} {:>9}",
            r.method,
            r.model.as_deref().unwrap_or("-"),
            r.k,
            pct(r.accuracy),
            pct(r.macro_f1),
            pct(r.needs_review_rate),
            pct(r.selective_accuracy),
            pct(r.ece),
            pct(r.gold_in_top_k),
            r.llm_calls_sent,
            r.llm_skip_rate.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into()),
            r.latency_ms_p50.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
        )?;
    }
    for (reason, methods) in by_reason(skipped) {
        writeln!(out, "skipped {}: {reason}", methods.join(", "))?;
    }
    for p in paths {
        writeln!(out, "wrote {}", p.display())?;
    }
    Ok(())
}

/// One entry per reason ("no LLM configured" once), with the methods it skipped, in order.
fn by_reason(skipped: &[Skipped]) -> Vec<(&str, Vec<&str>)> {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in skipped {
        match reasons.iter_mut().find(|(r, _)| *r == s.reason) {
            Some((_, methods)) => methods.push(s.method),
            None => reasons.push((&s.reason, vec![s.method])),
        }
    }
    reasons
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn skipped_methods_are_told_once_per_reason() {
        let s = |method, reason: &str| Skipped { method, reason: reason.into() };
        let skipped = [s("rag", "no LLM"), s("zero-shot", "no LLM"), s("knn", "other")];
        let mut out = Vec::new();
        write(&mut out, &[], &skipped, &[PathBuf::from("r/report.json")]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines, ["skipped rag, zero-shot: no LLM", "skipped knn: other", "wrote r/report.json"]);
    }
}
