//! The parts of the eval report read first: the headline (which answers the
//! report is about and how good they are), the worst confusions with their counts,
//! and the misclassified tickets themselves (text, gold, predicted, confidence,
//! neighbours), in Markdown and HTML.

use std::fmt::Write as _;

use super::figures::{story, MethodReport};
use super::{outcome, Evaluation};
use super::html::esc;

/// Misclassified tickets listed per report (all of them are in predictions.jsonl).
pub const MISCLASSIFIED_SHOWN: usize = 25;
/// Characters of ticket text shown per misclassified ticket.
const TEXT_SHOWN: usize = 240;

/// The row the report is about: the story's combined answers (rag, else rag-always,
/// else knn) for its first model and k, else the most accurate row.
pub fn headline_row(rows: &[MethodReport]) -> Option<&MethodReport> {
    let s = story(rows);
    s.first()
        .and_then(|h| rows.iter().find(|r| r.method == h.combined_method && r.k == h.k && (r.model == h.model || r.method == "knn")))
        .or_else(|| rows.iter().max_by(|a, b| a.accuracy.unwrap_or(0.0).total_cmp(&b.accuracy.unwrap_or(0.0))))
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "–".into())
}

/// Cost in US dollars (the `--price-*` flags are USD).
pub fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x < 0.01 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// The headline figures of `r`, as (name, value, what it means); `baseline`: the
/// majority-class baseline (share, label) to show beside accuracy.
pub fn headline(r: &MethodReport, baseline: Option<&(f64, String)>) -> Vec<(&'static str, String, String)> {
    let lowest = r.per_class.iter().filter(|(_, c)| c.support > 0).min_by(|a, b| a.1.recall.total_cmp(&b.1.recall));
    vec![
        (
            "accuracy",
            pct(r.accuracy),
            match baseline {
                Some((share, label)) => format!(
                    "of {} test tickets; always answering {label} would score {}",
                    r.tickets,
                    pct(Some(*share))
                ),
                None => format!("of {} test tickets", r.tickets),
            },
        ),
        (
            "macro-F1",
            pct(r.macro_f1),
            match lowest {
                Some((l, c)) => format!("every category counts the same; lowest recall: {l} {}", pct(Some(c.recall))),
                None => "every category counts the same".into(),
            },
        ),
        (
            "auto-routed",
            pct(r.auto_routed_share),
            format!("routed without review, {} of them right", pct(r.auto_routed_accuracy)),
        ),
        ("to review", pct(r.needs_review_rate), "sent to a person".into()),
        ("calibration error", r.ece.map(|e| format!("{e:.3}")).unwrap_or_else(|| "–".into()), "ECE: confidence vs accuracy, 0 is perfect".into()),
        (
            "cost",
            usd(r.cost_per_ticket * 1000.0),
            format!("per 1,000 tickets (USD at the given prices), {:.2} LLM calls per ticket", r.llm_calls_per_ticket),
        ),
        ("latency", r.latency_ms_p50.map(|v| if v < 10.0 { format!("{v:.1} ms") } else { format!("{v:.0} ms") }).unwrap_or_else(|| "–".into()), "median per ticket".into()),
    ]
}

/// The share of tickets whose gold label is the most frequent one, and that label: what
/// always answering it would score.
pub fn majority_baseline(tickets: &[super::LabeledTicket]) -> Option<(f64, String)> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for t in tickets.iter().filter(|t| !t.is_oos) {
        *counts.entry(t.label.as_str()).or_default() += 1;
    }
    let (label, n) = counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    Some((n as f64 / tickets.len().max(1) as f64, label.to_string()))
}

/// One misclassified ticket (first repeat of the run).
#[derive(Debug, Clone)]
pub struct Miss {
    pub id: String,
    pub text: String,
    pub gold: String,
    pub predicted: String,
    pub confidence: f32,
    pub review: String,
    /// The nearest examples' labels and similarities, nearest first.
    pub neighbours: Vec<(String, f32)>,
}

/// The tickets `r`'s run got wrong (wrong label, an out-of-scope ticket routed, an
/// in-scope ticket flagged out of scope), lowest confidence last; and how many.
pub fn misclassified(eval: &Evaluation, r: &MethodReport) -> (Vec<Miss>, usize) {
    let Some(run) = eval.runs.iter().find(|x| x.method.name() == r.method && x.model == r.model && x.k == r.k) else {
        return (Vec::new(), 0);
    };
    let Some(results) = run.results.first() else { return (Vec::new(), 0) };
    let mut misses: Vec<Miss> = eval
        .tickets
        .iter()
        .zip(results)
        .filter(|(t, res)| !outcome(t, res).correct())
        .map(|(t, res)| Miss {
            id: t.id.clone(),
            text: t.text.clone(),
            gold: if t.is_oos { format!("{} (out of scope)", t.label) } else { t.label.clone() },
            predicted: res.category.clone().unwrap_or_else(|| "–".into()),
            confidence: res.confidence,
            review: res.review_reason.as_ref().map(|x| x.kind.as_str().to_string()).unwrap_or_default(),
            neighbours: res.neighbors.iter().take(3).map(|n| (n.label.clone(), n.score)).collect(),
        })
        .collect();
    let total = misses.len();
    // Confident mistakes first: they are the ones that get auto-routed.
    misses.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.id.cmp(&b.id)));
    misses.truncate(MISCLASSIFIED_SHOWN);
    (misses, total)
}

fn short(text: &str) -> String {
    let plain = without_markup(text);
    let flat: String = plain.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= TEXT_SHOWN {
        flat
    } else {
        flat.chars().take(TEXT_SHOWN - 1).collect::<String>() + "…"
    }
}

/// Text for display without the HTML a helpdesk export leaves in ticket bodies
/// (`<br>`, `<p>`, `<div>`, `&nbsp;`): when the text holds such a tag, every tag is
/// dropped (a space in its place) and the common entities are decoded. Other text,
/// such as a ticket quoting `a < b`, is left as it is.
fn without_markup(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if !["<br", "<p>", "</p>", "<div", "</div>"].iter().any(|t| lower.contains(t)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tag = &rest[i..];
        let is_tag = tag[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/');
        match tag.find('>').filter(|_| is_tag) {
            Some(end) => {
                out.push(' ');
                rest = &tag[end + 1..];
            }
            None => {
                out.push('<');
                rest = &tag[1..];
            }
        }
    }
    out.push_str(rest);
    [("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&amp;", "&")]
        .iter()
        .fold(out, |acc, (entity, c)| acc.replace(entity, c))
}

fn neighbours_text(m: &Miss) -> String {
    m.neighbours.iter().map(|(l, s)| format!("{l} ({s:.2})")).collect::<Vec<_>>().join(", ")
}

fn title(r: &MethodReport) -> String {
    format!("{}{} k={}", r.method, r.model.as_deref().map(|m| format!(" {m}")).unwrap_or_default(), r.k)
}

/// What the fits in use refused (too few held-out examples, a map worse than raw).
pub fn calibration_refusals(eval: &Evaluation) -> Vec<String> {
    eval.calibrations
        .iter()
        .flat_map(|c| {
            let k = c["k"].as_u64().unwrap_or(0);
            c["stats"]["refused"].as_array().cloned().unwrap_or_default().into_iter().filter_map(move |r| {
                r.as_str().map(|r| format!("calibration at k={k} refused the {r}"))
            })
        })
        .collect()
}

/// The Markdown headline and misclassified section for the headline row.
pub fn glance_md(eval: &Evaluation, rows: &[MethodReport]) -> String {
    let Some(r) = headline_row(rows) else { return String::new() };
    let mut s = format!("## At a glance: {}\n\n", title(r));
    let baseline = majority_baseline(&eval.tickets);
    for (name, value, note) in headline(r, baseline.as_ref()) {
        let _ = writeln!(s, "- **{name}: {value}** {note}");
    }
    for r in calibration_refusals(eval) {
        let _ = writeln!(s, "- note: {r}");
    }
    let (misses, total) = misclassified(eval, r);
    let _ = writeln!(
        s,
        "\n## Misclassified tickets ({} of {total}, most confident first; all in predictions.jsonl)\n\n\
         | id | text | gold | predicted | confidence | review | nearest examples |\n|---|---|---|---|---|---|---|",
        misses.len()
    );
    let cell = |x: &str| x.replace('|', "\\|");
    for m in &misses {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {} | {} |",
            cell(&m.id),
            cell(&short(&m.text)),
            cell(&m.gold),
            cell(&m.predicted),
            m.confidence,
            if m.review.is_empty() { "no" } else { m.review.as_str() },
            cell(&neighbours_text(m))
        );
    }
    s.push('\n');
    s
}

/// The HTML first screen (headline cards) for the headline row.
pub fn headline_html(eval: &Evaluation, rows: &[MethodReport]) -> String {
    let Some(r) = headline_row(rows) else { return String::new() };
    let mut s = format!("<div class=\"glance\"><h2>At a glance: <code>{}</code></h2><div class=\"cards\">", esc(&title(r)));
    let baseline = majority_baseline(&eval.tickets);
    for (name, value, note) in headline(r, baseline.as_ref()) {
        let _ = write!(s, "<div class=\"card\"><div class=\"v\">{}</div><div class=\"n\">{}</div><div class=\"d\">{}</div></div>", esc(&value), esc(name), esc(&note));
    }
    s.push_str("</div>");
    for r in calibration_refusals(eval) {
        let _ = write!(s, "<p class=\"note\">Note: {}</p>", esc(&r));
    }
    s.push_str("</div>");
    s
}

/// The most frequent confusions of `r` as a table with visible counts.
pub fn confusions_html(r: &MethodReport, pairs: &[(String, String, usize)]) -> String {
    if pairs.is_empty() {
        return "<p>No confusions: every labelled answer was right.</p>".into();
    }
    let mut s = format!("<table class=\"conf\"><caption>Worst confusions of {}</caption><tr><th>gold</th><th>predicted</th><th>count</th><th>share of gold</th></tr>", esc(&title(r)));
    for (g, p, c) in pairs {
        let total: usize = r.confusion.get(g).map_or(0, |row| row.values().sum());
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{c}</td><td>{:.0}%</td></tr>",
            esc(g),
            esc(p),
            100.0 * *c as f64 / total.max(1) as f64
        );
    }
    s.push_str("</table>");
    s
}

/// The HTML misclassified section for the headline row.
pub fn misclassified_html(eval: &Evaluation, rows: &[MethodReport]) -> String {
    let Some(r) = headline_row(rows) else { return String::new() };
    let (misses, total) = misclassified(eval, r);
    let mut s = format!(
        "<section id=\"misclassified\"><h2>Misclassified tickets</h2><p>{} of {total} wrong answers of <code>{}</code>, \
         most confident first (those are the ones routed without review); every ticket is in predictions.jsonl.</p>\
         <div class=\"wide\"><table class=\"miss\"><tr><th>id</th><th>text</th><th>gold</th><th>predicted</th><th>confidence</th>\
         <th>review</th><th>nearest examples</th></tr>",
        misses.len(),
        esc(&title(r))
    );
    for m in &misses {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td class=\"t\">{}</td></tr>",
            esc(&m.id),
            esc(&short(&m.text)),
            esc(&m.gold),
            esc(&m.predicted),
            m.confidence,
            if m.review.is_empty() { "no".to_string() } else { esc(&m.review) },
            esc(&neighbours_text(m))
        );
    }
    s.push_str("</table></div></section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_carry_the_currency() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.004), "$0.0040");
        assert_eq!(usd(1.5), "$1.50");
    }

    #[test]
    fn helpdesk_markup_is_not_shown_as_text() {
        assert_eq!(short("Hello,<br><br>my card&nbsp;was <b>declined</b>.<br/>Thanks"), "Hello, my card was declined . Thanks");
        assert_eq!(short("<p>One</p><p>Two &amp; three</p>"), "One Two & three");
        // No markup: angle brackets stay (a ticket about code).
        assert_eq!(short("if a < b and c > d"), "if a < b and c > d");
    }

    #[test]
    fn long_texts_are_shortened_on_one_line() {
        let t = format!("a\nb{}", "x".repeat(500));
        let s = short(&t);
        assert_eq!(s.chars().count(), TEXT_SHOWN);
        assert!(s.starts_with("a b") && s.ends_with('…'));
    }
}
