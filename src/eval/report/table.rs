//! The results table `triage eval` prints: one line per method, model and k, the
//! methods skipped (once per reason) and the report files written.

use std::io::Write;
use std::path::PathBuf;

use crate::eval::figures::MethodReport;
use crate::eval::Skipped;

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
