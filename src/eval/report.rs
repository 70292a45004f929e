//! Figures per method × model × k from an [`Evaluation`], and the files written to
//! the report folder: `report.json`, `report.md`, `report.html` (self-contained:
//! inline SVG, no external assets) and `predictions.jsonl`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub mod table;

use super::glance;
use super::html::esc;
use super::figures::{method_report, story, with_shortcut_effect, MethodReport, StoryRow};
use super::metrics::ClassStats;
use super::{outcome, Evaluation};
use crate::taxonomy::label_key;
use crate::Error;

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn timestamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The whole report as JSON.
pub fn report_json(eval: &Evaluation, rows: &[MethodReport]) -> Value {
    json!({
        "config": eval.config,
        "dataset": eval.dataset,
        "collection": eval.collection,
        "embedding_model": eval.embedding_model,
        "taxonomy": {"name": eval.taxonomy.name, "version": eval.taxonomy.version, "labels": eval.taxonomy.categories.len(),
                     "fingerprint": eval.taxonomy.fingerprint()},
        "prompt_template_hash": crate::prompt::template_hash(&eval.taxonomy),
        "timestamp": timestamp(crate::store::now_secs()),
        "embed_seconds": eval.embed_seconds,
        "skipped": eval.skipped,
        "calibrations": eval.calibrations,
        "story": story(rows),
        "methods": rows,
        "sections": super::segments::sections(eval, rows),
    })
}

fn f3(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

fn f1(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

const COLUMNS: [&str; 23] = [
    "method", "model", "k", "accuracy", "macro-F1", "in-scope acc", "in-scope acc w/o abstention", "oos recall", "urgency acc",
    "subcategory acc", "review rate",
    "selective acc", "ECE", "Brier", "consistency", "gold in top k", "calls/ticket", "LLM skip rate", "prompt tok/ticket",
    "completion tok/ticket", "cost (USD)", "p50 ms", "p95 ms",
];

/// The HTML "All figures" tables: the columns after method, model and k, in three
/// groups, so each table fits a 1,280 px window (one table of 23 columns did not).
const COLUMN_GROUPS: [(&str, std::ops::Range<usize>); 3] =
    [("Accuracy", 3..10), ("Review, calibration and retrieval", 10..16), ("Cost and speed", 16..23)];

fn cells(r: &MethodReport) -> [String; 23] {
    [
        r.method.to_string(),
        r.model.clone().unwrap_or_else(|| "–".into()),
        r.k.to_string(),
        f3(r.accuracy),
        f3(r.macro_f1),
        f3(r.in_scope_accuracy),
        f3(r.in_scope_accuracy_without_abstention),
        f3(r.oos_recall),
        f3(r.urgency_accuracy),
        f3(r.subcategory_accuracy),
        f3(r.needs_review_rate),
        f3(r.selective_accuracy),
        f3(r.ece),
        f3(r.brier),
        f3(r.consistency),
        f3(r.gold_in_top_k),
        format!("{:.2}", r.llm_calls_per_ticket),
        f3(r.llm_skip_rate),
        format!("{:.0}", r.prompt_tokens_per_ticket),
        format!("{:.0}", r.completion_tokens_per_ticket),
        glance::usd(r.cost),
        f1(r.latency_ms_p50),
        f1(r.latency_ms_p95),
    ]
}

const STORY_NOTE: &str = "Label accuracy over in-scope tickets: the model's own answers without and with the \
retrieved examples (invalid answers count as wrong), the neighbours alone on the same tickets, and the combined \
answers; then the share of tickets routed without review and their accuracy.";

const STORY_COLUMNS: [&str; 10] = [
    "model", "k", "model alone", "model + retrieval", "neighbours", "combined", "from", "auto-routed", "auto-routed acc",
    "calls/ticket",
];

fn story_cells(r: &StoryRow) -> [String; 10] {
    [
        r.model.clone().unwrap_or_else(|| "–".into()),
        r.k.to_string(),
        f3(r.model_alone),
        f3(r.model_with_retrieval),
        f3(r.neighbours),
        f3(r.combined),
        format!("{}{}", r.combined_method, if r.arbiter { " (arbiter)" } else { "" }),
        f3(r.auto_routed_share),
        f3(r.auto_routed_accuracy),
        format!("{:.2}", r.llm_calls_per_ticket),
    ]
}

/// Off-diagonal confusion pairs, most frequent first.
fn top_confusions(r: &MethodReport, n: usize) -> Vec<(String, String, usize)> {
    let mut pairs: Vec<(String, String, usize)> = r
        .confusion
        .iter()
        .flat_map(|(g, row)| row.iter().filter(move |(p, _)| *p != g).map(move |(p, c)| (g.clone(), p.clone(), *c)))
        .collect();
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    pairs.truncate(n);
    pairs
}

pub fn report_md(eval: &Evaluation, rows: &[MethodReport]) -> String {
    let d = &eval.dataset;
    let mut s = String::new();
    let _ = writeln!(s, "# Accuracy comparison: {}\n", d.path.display());
    let _ = writeln!(
        s,
        "Test set: {} tickets ({} labels, {} out of scope), sha256 `{}`. Examples: collection `{}` ({} examples, \
         embedding model `{}`). Figures pooled over {} run(s) per row; see docs/accuracy.md for definitions.{}\n",
        d.rows,
        d.labels,
        d.out_of_scope_rows,
        &d.sha256[..16.min(d.sha256.len())],
        eval.collection,
        d.train_examples,
        eval.embedding_model,
        eval.config.repeat.max(1),
        unused_note(d)
    );
    s.push_str(&glance::glance_md(eval, rows));
    let story = story(rows);
    if !story.is_empty() {
        let _ = writeln!(s, "## The story

{STORY_NOTE}
");
        let _ = writeln!(s, "| {} |", STORY_COLUMNS.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(STORY_COLUMNS.len()));
        for r in &story {
            let _ = writeln!(s, "| {} |", story_cells(r).join(" | "));
        }
        let _ = writeln!(s, "
## All figures
");
    }
    let _ = writeln!(s, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(COLUMNS.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", cells(r).join(" | "));
    }
    for sk in &eval.skipped {
        let _ = writeln!(s, "\nSkipped **{}**: {}", sk.method, sk.reason);
    }
    s.push_str(&super::report_sections::markdown(&super::segments::sections(eval, rows)));
    for r in rows {
        let _ = writeln!(
            s,
            "\n## {} {} k={}\n\n{} LLM calls ({} sent, {} from cache), {} errors, {} LLM fallbacks, {:.1} s.{}{}\n",
            r.method,
            r.model.as_deref().unwrap_or(""),
            r.k,
            r.llm_calls,
            r.llm_calls_sent,
            r.cache_hits,
            r.errors,
            r.llm_fallbacks,
            r.seconds,
            r.llm_skip_rate
                .filter(|s| *s > 0.0)
                .map(|s| format!(" knn-shortcut: {:.1}% of tickets answered without calling the LLM.", s * 100.0))
                .unwrap_or_default(),
            r.accuracy_delta_vs_always
                .map(|d| format!(" Accuracy vs rag-always (LLM called for every ticket): {:+.2} points.", d * 100.0))
                .unwrap_or_default()
        );
        let mut worst: Vec<(&String, &ClassStats)> = r.per_class.iter().filter(|(_, c)| c.support > 0).collect();
        worst.sort_by(|a, b| a.1.f1.total_cmp(&b.1.f1).then(a.0.cmp(b.0)));
        let _ = writeln!(s, "Lowest F1 (of {} classes):\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|", r.per_class.len());
        for (name, c) in worst.iter().take(8) {
            let _ = writeln!(s, "| {name} | {:.3} | {:.3} | {:.3} | {} |", c.precision, c.recall, c.f1, c.support);
        }
        let _ = writeln!(s, "\nMost frequent confusions:\n\n| gold | predicted | count |\n|---|---|---|");
        for (g, p, c) in top_confusions(r, 8) {
            let _ = writeln!(s, "| {g} | {p} | {c} |");
        }
        let _ = writeln!(s, "\nCoverage (automate when confidence ≥ t):\n\n| t | coverage | accuracy |\n|---|---|---|");
        for c in r.coverage.iter().step_by(2) {
            let _ = writeln!(s, "| {:.2} | {:.3} | {} |", c.threshold, c.coverage, f3(c.accuracy));
        }
    }
    s
}

/// " N rows of the test file were not evaluated ..." when there were such rows.
fn unused_note(d: &super::DatasetInfo) -> String {
    if d.rows_without_text_or_label == 0 {
        return String::new();
    }
    let lines: Vec<String> = d.rejected_rows.iter().take(3).map(|r| r.line.to_string()).collect();
    format!(
        " {} rows of the test file were not evaluated: no text or no label (lines {}{}; report.json lists them all).",
        d.rows_without_text_or_label,
        lines.join(", "),
        if d.rows_without_text_or_label > lines.len() { ", …" } else { "" }
    )
}

/// Confusion-matrix heatmap: rows gold, columns predicted; cell shade by row share.
fn confusion_svg(r: &MethodReport) -> String {
    let mut labels: Vec<String> = r.confusion.keys().cloned().collect();
    for row in r.confusion.values() {
        for p in row.keys() {
            if !labels.contains(p) {
                labels.push(p.clone());
            }
        }
    }
    labels.sort();
    let n = labels.len().max(1);
    let named = n <= 40;
    // Counts are written in the cells when they fit; otherwise they are in the title (hover).
    let counted = n <= 25;
    // Sized to be read at 100 % (labels 12 px, counts 11 px, 28 px cells up to 25
    // labels) and to fit a 1,280 px window up to 40; wider ones scale down (viewBox).
    let font = if counted { 12.0 } else { 11.0 };
    let cell = if counted { 28.0 } else if named { 20.0 } else { (700.0 / n as f64).max(2.0) };
    // Room for the longest label (shortened past 40 characters), so none is clipped.
    let longest = labels.iter().map(|l| l.chars().count().min(40)).max().unwrap_or(0) as f64;
    let margin = if named { (0.62 * font * longest + 12.0).max(40.0) } else { 10.0 };
    let size = margin + cell * n as f64 + 10.0;
    // Wider than tall: the top labels lean right past the last column.
    let width = size + margin * 0.5;
    let index: BTreeMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{size:.0}\" viewBox=\"0 0 {width:.0} {size:.0}\" \
         style=\"max-width:100%;height:auto\" font-size=\"{font}\" font-family=\"sans-serif\">\
         <rect x=\"{margin}\" y=\"{margin}\" width=\"{w:.1}\" height=\"{w:.1}\" fill=\"#f7f7f7\"/>",
        w = cell * n as f64
    );
    for (g, row) in &r.confusion {
        let total: usize = row.values().sum();
        let gi = index.get(g.as_str()).copied().unwrap_or(0);
        for (p, c) in row {
            let pi = index.get(p.as_str()).copied().unwrap_or(0);
            let share = *c as f64 / total.max(1) as f64;
            let color = if g == p { format!("rgba(30,120,60,{:.3})", 0.15 + 0.85 * share) } else { format!("rgba(200,40,40,{:.3})", 0.15 + 0.85 * share) };
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"{color}\"><title>gold {} → predicted {}: {c}</title></rect>",
                margin + pi as f64 * cell,
                margin + gi as f64 * cell,
                esc(g),
                esc(p)
            );
            if counted && *c > 0 {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"{}\">{c}</text>",
                    margin + (pi as f64 + 0.5) * cell,
                    margin + (gi as f64 + 0.68) * cell,
                    if share > 0.5 { "#fff" } else { "#222" }
                );
            }
        }
    }
    if named {
        for (i, l) in labels.iter().enumerate() {
            let y = margin + (i as f64 + 0.5) * cell + 0.35 * font;
            let l = &label_shown(l);
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\">{}</text>", margin - 4.0, esc(l));
            let x = margin + (i as f64 + 0.75) * cell;
            let _ = write!(
                s,
                "<text transform=\"translate({x:.1},{:.1}) rotate(-60)\">{}</text>",
                margin - 4.0,
                esc(l)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A label shortened to 40 characters for the matrix axes (the full one is in the cell titles).
fn label_shown(l: &str) -> String {
    if l.chars().count() <= 40 {
        l.to_string()
    } else {
        l.chars().take(39).collect::<String>() + "…"
    }
}

/// A 300×300 plot frame with axes from 0 to 1.
fn frame(title_x: &str, title_y: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"340\" height=\"320\" font-size=\"10\" font-family=\"sans-serif\">\
         <rect x=\"30\" y=\"10\" width=\"280\" height=\"280\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"170\" y=\"315\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(12,150) rotate(-90)\" text-anchor=\"middle\">{}</text>\
         <text x=\"30\" y=\"302\">0</text><text x=\"305\" y=\"302\">1</text><text x=\"20\" y=\"18\">1</text>",
        esc(title_x),
        esc(title_y)
    )
}

fn px(x: f64) -> f64 {
    30.0 + 280.0 * x.clamp(0.0, 1.0)
}

fn py(y: f64) -> f64 {
    290.0 - 280.0 * y.clamp(0.0, 1.0)
}

fn reliability_svg(r: &MethodReport) -> String {
    let mut s = frame("confidence", "accuracy");
    let _ = write!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>", px(0.0), py(0.0), px(1.0), py(1.0));
    for b in &r.reliability {
        if let Some(acc) = b.accuracy {
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"rgba(40,90,200,0.6)\" stroke=\"#fff\">\
                 <title>[{:.1}, {:.1}): {} tickets, accuracy {:.3}, mean confidence {}</title></rect>",
                px(b.lower),
                py(acc),
                px(b.upper) - px(b.lower),
                py(0.0) - py(acc),
                b.lower,
                b.upper,
                b.count,
                acc,
                f3(b.mean_confidence)
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn coverage_svg(r: &MethodReport) -> String {
    let mut s = frame("coverage (share automated)", "accuracy of automated");
    let pts: Vec<String> = r
        .coverage
        .iter()
        .filter_map(|c| c.accuracy.map(|a| format!("{:.1},{:.1}", px(c.coverage), py(a))))
        .collect();
    let _ = write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"#c33\" stroke-width=\"2\"/>", pts.join(" "));
    for c in &r.coverage {
        if let Some(a) = c.accuracy {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c33\"><title>confidence ≥ {:.2}: coverage {:.3}, accuracy {:.3}</title></circle>",
                px(c.coverage),
                py(a),
                c.threshold,
                c.coverage,
                a
            );
        }
    }
    s.push_str("</svg>");
    s
}

pub fn report_html(eval: &Evaluation, rows: &[MethodReport]) -> String {
    let d = &eval.dataset;
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>triage eval report</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}\
         td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;overflow-wrap:anywhere}th{background:#eee}td:first-child,td:nth-child(2){text-align:left}\
         .plots{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}section{margin-top:2.5em}\
         figure{margin:0;max-width:100%}figcaption{max-width:44em}table.figures{margin-bottom:1em}\
         .wide{max-width:100%;overflow-x:auto}.cards{display:flex;flex-wrap:wrap;gap:1em}\
         .card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:10em;max-width:16em}\
         .card .v{font-size:26px;font-weight:bold}.card .n{font-weight:bold}.card .d{font-size:12px;color:#555}\
         table.miss td{text-align:left}table.miss td:nth-child(5){text-align:right}table.miss td.t{max-width:28em}table.conf td{text-align:left}table.conf td:nth-child(n+3){text-align:right}\
         caption{text-align:left;font-weight:bold;padding:4px 0}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>Accuracy comparison</h1><p>Test set <code>{}</code>: {} tickets, {} labels, {} out of scope (sha256 <code>{}</code>). \
         Examples: collection <code>{}</code>, {} examples, embedding model <code>{}</code>. Prompt template <code>{}</code>. \
         Figures pooled over {} run(s) per row.{}</p>",
        esc(&d.path.display().to_string()),
        d.rows,
        d.labels,
        d.out_of_scope_rows,
        esc(&d.sha256),
        esc(&eval.collection),
        d.train_examples,
        esc(&eval.embedding_model),
        crate::prompt::template_hash(&eval.taxonomy),
        eval.config.repeat.max(1),
        esc(&unused_note(d))
    );
    s.push_str(&glance::headline_html(eval, rows));
    let story = story(rows);
    if !story.is_empty() {
        let _ = write!(s, "<h2>The story</h2><p>{}</p><div class=\"wide\"><table><tr>", esc(STORY_NOTE));
        for c in STORY_COLUMNS {
            let _ = write!(s, "<th>{}</th>", esc(c));
        }
        s.push_str("</tr>");
        for r in &story {
            s.push_str("<tr>");
            for c in story_cells(r) {
                let _ = write!(s, "<td>{}</td>", esc(&c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table></div>");
    }
    if let Some(h) = glance::headline_row(rows) {
        s.push_str(&glance::confusions_html(h, &top_confusions(h, 10)));
    }
    s.push_str(&glance::misclassified_html(eval, rows));
    s.push_str("<h2>All figures</h2>");
    for (caption, range) in COLUMN_GROUPS {
        let _ = write!(s, "<div class=\"wide\"><table class=\"figures\"><caption>{}</caption><tr>", esc(caption));
        for c in COLUMNS[..3].iter().chain(&COLUMNS[range.clone()]) {
            let _ = write!(s, "<th>{}</th>", esc(c));
        }
        s.push_str("</tr>");
        for r in rows {
            s.push_str("<tr>");
            let cells = cells(r);
            for c in cells[..3].iter().chain(&cells[range.clone()]) {
                let _ = write!(s, "<td>{}</td>", esc(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table></div>");
    }
    for sk in &eval.skipped {
        let _ = write!(s, "<p>Skipped <b>{}</b>: {}</p>", esc(sk.method), esc(&sk.reason));
    }
    for r in rows {
        let _ = write!(
            s,
            "<section><h2>{} {} k={}</h2><p>{} LLM calls ({} sent, {} from cache), {} errors, {} LLM fallbacks, {:.1} s.</p>\
             <div class=\"plots\"><figure>{}<figcaption>Confusion matrix (rows gold, columns predicted; green diagonal, red errors; counts in the cells, or on hover for more than 25 labels)</figcaption></figure>\
             <figure>{}<figcaption>Reliability diagram (10 bins; dashed: perfect calibration)</figcaption></figure>\
             <figure>{}<figcaption>Coverage curve over confidence thresholds 0, 0.05, …, 1</figcaption></figure></div>",
            esc(r.method),
            esc(r.model.as_deref().unwrap_or("")),
            r.k,
            r.llm_calls,
            r.llm_calls_sent,
            r.cache_hits,
            r.errors,
            r.llm_fallbacks,
            r.seconds,
            confusion_svg(r),
            reliability_svg(r),
            coverage_svg(r)
        );
        // The headline row's worst confusions are at the top of the report already.
        if !glance::headline_row(rows).is_some_and(|h| std::ptr::eq(h, r)) {
            s.push_str(&glance::confusions_html(r, &top_confusions(r, 8)));
        }
        s.push_str("<details open><summary>Per-class precision / recall / F1</summary><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
        for (name, c) in &r.per_class {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                esc(name),
                c.precision,
                c.recall,
                c.f1,
                c.support
            );
        }
        s.push_str("</table></details></section>");
    }
    s.push_str(&super::report_sections::html(&super::segments::sections(eval, rows)));
    s.push_str("</body></html>\n");
    s
}

/// One line per ticket per run, for error analysis.
pub fn write_predictions(eval: &Evaluation, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for run in &eval.runs {
        for (rep, results) in run.results.iter().enumerate() {
            for (t, r) in eval.tickets.iter().zip(results) {
                let o = outcome(t, r);
                let line = json!({
                    "method": run.method.name(), "model": run.model, "k": run.k, "repeat": rep,
                    "id": t.id, "text": t.text, "gold": t.label, "is_oos": t.is_oos, "gold_urgency": t.urgency,
                    "gold_subcategory": t.subcategory,
                    "predicted": r.category, "urgency": r.urgency, "subcategory": r.subcategory, "confidence": r.confidence, "raw_confidence": r.raw_confidence,
                    "llm_label_probability": r.llm_label_probability,
                    "needs_review": r.needs_review, "review_reason": r.review_reason,
                    "correct": o.correct(), "label_correct": o.label_correct(),
                    "gold_in_top_k": !t.is_oos && r.neighbors.iter().any(|n| label_key(&n.label) == label_key(&t.label)),
                    "neighbors": r.neighbors.iter().map(|n| json!([n.label, n.score])).collect::<Vec<_>>(),
                    "neighbours": r.neighbours, "llm_answer": r.llm_answer, "lang": r.lang, "gold_lang": t.lang,
                    "result_method": r.method, "latency_ms": r.latency_ms, "usage": r.usage, "llm_calls": r.llm_calls, "error": r.error,
                    "secondary": r.secondary, "gold_secondary": t.secondary, "edge": t.edge, "segments": t.segments,
                });
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()
}

/// Write every report file into `dir`; returns the figures and the paths written.
pub fn write_all(eval: &Evaluation, dir: &Path) -> Result<(Vec<MethodReport>, Vec<PathBuf>), Error> {
    let io = |p: &Path, e: std::io::Error| Error::Input(format!("cannot write {}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let rows = with_shortcut_effect(eval.runs.iter().map(|r| method_report(eval, r)).collect());
    let json_path = dir.join("report.json");
    let json = serde_json::to_string_pretty(&report_json(eval, &rows)).map_err(|e| Error::Input(e.to_string()))?;
    std::fs::write(&json_path, json + "\n").map_err(|e| io(&json_path, e))?;
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, report_md(eval, &rows)).map_err(|e| io(&md_path, e))?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, report_html(eval, &rows)).map_err(|e| io(&html_path, e))?;
    let pred_path = dir.join("predictions.jsonl");
    write_predictions(eval, &pred_path).map_err(|e| io(&pred_path, e))?;
    Ok((rows, vec![json_path, md_path, html_path, pred_path]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn html_escapes_labels() {
        assert_eq!(esc("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }
}
