//! The doctor's report for people: a terminal summary and a self-contained HTML page
//! (the same look as eval's report).

use std::fmt::Write as _;

use super::Diagnosis;
use crate::eval::html::esc;

/// Rows of each finding shown in the terminal summary.
const SHOWN: usize = 10;

fn more(total: usize, shown: usize, s: &mut String) {
    if total > shown {
        let _ = writeln!(s, "  ... and {} more (all of them: --format json or --report-dir)", total - shown);
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::input::cap_chars(flat, max)
}

/// The terminal summary.
pub fn summary(d: &Diagnosis) -> String {
    let mut s = String::new();
    let m = &d.method;
    let _ = writeln!(
        s,
        "collection {}: {} examples, {} labels; held-out accuracy {:.3} ({})",
        d.collection,
        d.examples,
        d.labels,
        m.held_out_accuracy,
        if m.head { "out-of-fold head and leave-one-out neighbours" } else { "leave-one-out neighbours only" }
    );
    if let Some(note) = &m.head_note {
        let _ = writeln!(s, "  {note}");
    }
    let _ = writeln!(
        s,
        "\nlikely mislabeled: {} listed (confident learning estimates {} of the {} examples judged)",
        d.mislabeled.len(),
        m.mislabeled_estimate,
        m.ranked
    );
    for x in d.mislabeled.iter().take(SHOWN) {
        let _ = writeln!(s, "  {:>3}. {:.3}  {}  {} -> {}  \"{}\"", x.rank, x.score, x.id, x.label, x.suggested, one_line(&x.text, 60));
    }
    more(d.mislabeled.len(), SHOWN, &mut s);
    let _ = writeln!(s, "\nconflicting duplicates (same or nearly the same text, different labels): {}", d.conflicting_duplicates.len());
    for x in d.conflicting_duplicates.iter().take(SHOWN) {
        let [a, b] = &x.examples;
        let _ = writeln!(s, "  {:.3}  {} ({}) / {} ({})  \"{}\"", x.similarity, a.id, a.label, b.id, b.label, one_line(&a.text, 50));
    }
    more(d.conflicting_duplicates.len(), SHOWN, &mut s);
    let _ = writeln!(s, "\nsmall labels (fewer than {} examples): {}", d.settings.min_label_examples, d.small_labels.len());
    for x in d.small_labels.iter().take(SHOWN) {
        let _ = writeln!(s, "  {} ({}): {}", x.label, x.examples, x.cost);
    }
    more(d.small_labels.len(), SHOWN, &mut s);
    let _ = writeln!(s, "\nsimilar label names: {}", d.similar_labels.len());
    for x in d.similar_labels.iter().take(SHOWN) {
        let named: Vec<String> = x.labels.iter().zip(&x.examples).map(|(l, n)| format!("{l:?} ({n})")).collect();
        let _ = writeln!(s, "  {}: {}", named.join(" / "), x.reason);
    }
    more(d.similar_labels.len(), SHOWN, &mut s);
    let _ = writeln!(s, "\nmost confused label pairs (held out): {}", d.confused_pairs.len());
    for x in d.confused_pairs.iter().take(SHOWN) {
        let _ = writeln!(
            s,
            "  {} -> {}: {} ({:.1} % of {}; {} the other way)",
            x.gold,
            x.predicted,
            x.count,
            100.0 * x.share_of_gold,
            x.gold,
            x.reverse
        );
    }
    let _ = writeln!(s, "\nexamples in languages the model does not cover: {}", d.uncovered_language.len());
    for x in d.uncovered_language.iter().take(SHOWN) {
        let _ = writeln!(s, "  {} ({}, {}): \"{}\"", x.id, x.lang.as_deref().unwrap_or("?"), x.label, one_line(&x.text, 60));
    }
    more(d.uncovered_language.len(), SHOWN, &mut s);
    let _ = writeln!(s, "\nempty or junk examples: {}", d.junk.len());
    for x in d.junk.iter().take(SHOWN) {
        let _ = writeln!(s, "  {} ({}): {}", x.id, x.label, x.reason.as_deref().unwrap_or(""));
    }
    more(d.junk.len(), SHOWN, &mut s);
    s
}

fn table(s: &mut String, caption: &str, head: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        let _ = write!(s, "<p><b>{}</b>: none.</p>", esc(caption));
        return;
    }
    let _ = write!(s, "<div class=\"wide\"><table><caption>{} ({})</caption><tr>", esc(caption), rows.len());
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(&c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table></div>");
}

fn opt(v: Option<f32>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into())
}

/// The HTML page.
pub fn html(d: &Diagnosis) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>triage doctor report</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}\
         td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee}\
         section{margin-top:2.5em}.wide{max-width:100%;overflow-x:auto}.cards{display:flex;flex-wrap:wrap;gap:1em}\
         .card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:10em;max-width:16em}\
         .card .v{font-size:26px;font-weight:bold}.card .d{font-size:12px;color:#555}\
         caption{text-align:left;font-weight:bold;padding:4px 0}</style></head><body>",
    );
    let m = &d.method;
    let _ = write!(
        s,
        "<h1>Corpus doctor: {}</h1><p>{} examples, {} labels. Evidence: {}; held-out accuracy {:.3}. \
         Mislabeled examples are ranked by the mean of two percentile ranks (the head's out-of-fold doubt in the label, \
         and how much closer the nearest examples of another label are); confident learning estimates how many to list.</p>",
        esc(&d.collection),
        d.examples,
        d.labels,
        if m.head { "an out-of-fold head and leave-one-out neighbours" } else { "leave-one-out neighbours only" },
        m.held_out_accuracy
    );
    if let Some(note) = &m.head_note {
        let _ = write!(s, "<p>{}</p>", esc(note));
    }
    s.push_str("<div class=\"cards\">");
    for (v, name) in [
        (d.mislabeled.len(), "likely mislabeled"),
        (d.conflicting_duplicates.len(), "conflicting duplicates"),
        (d.small_labels.len(), "small labels"),
        (d.similar_labels.len(), "similar label names"),
        (d.uncovered_language.len(), "uncovered language"),
        (d.junk.len(), "empty or junk"),
    ] {
        let _ = write!(s, "<div class=\"card\"><div class=\"v\">{v}</div><div class=\"d\">{}</div></div>", esc(name));
    }
    s.push_str("</div><section>");
    let rows = d
        .mislabeled
        .iter()
        .map(|x| {
            let e = &x.evidence;
            let near: Vec<String> = e.nearest.iter().map(|n| format!("{} ({}, {:.2})", n.id, n.label, n.similarity)).collect();
            vec![
                x.rank.to_string(),
                format!("{:.3}", x.score),
                x.id.clone(),
                x.label.clone(),
                x.suggested.clone(),
                format!("{} / {}", opt(e.head_probability), opt(e.head_probability_suggested)),
                format!("{} / {}", opt(e.label_similarity), opt(e.suggested_similarity)),
                x.text.clone(),
                near.join("; "),
            ]
        })
        .collect();
    table(&mut s, "Likely mislabeled", &["#", "score", "id", "label", "suggested", "head p (label / suggested)", "neighbours (label / suggested)", "text", "nearest examples"], rows);
    s.push_str("</section><section>");
    let rows = d
        .conflicting_duplicates
        .iter()
        .map(|x| {
            let [a, b] = &x.examples;
            vec![format!("{:.3}", x.similarity), format!("{:.2}", x.word_overlap), a.id.clone(), a.label.clone(), a.text.clone(), b.id.clone(), b.label.clone(), b.text.clone()]
        })
        .collect();
    table(&mut s, "Conflicting duplicates", &["similarity", "words shared", "id", "label", "text", "id", "label", "text"], rows);
    s.push_str("</section><section>");
    let rows = d
        .small_labels
        .iter()
        .map(|x| vec![x.label.clone(), x.examples.to_string(), format!("{:.2}", x.held_out_recall), x.cost.clone()])
        .collect();
    table(&mut s, &format!("Labels with fewer than {} examples", d.settings.min_label_examples), &["label", "examples", "held-out recall", "cost"], rows);
    let rows = d
        .similar_labels
        .iter()
        .map(|x| {
            let named: Vec<String> = x.labels.iter().zip(&x.examples).map(|(l, n)| format!("{l} ({n})")).collect();
            vec![named.join(" / "), x.reason.clone()]
        })
        .collect();
    table(&mut s, "Similar label names", &["labels (examples)", "why"], rows);
    let rows = d
        .confused_pairs
        .iter()
        .map(|x| vec![x.gold.clone(), x.predicted.clone(), x.count.to_string(), format!("{:.1} %", 100.0 * x.share_of_gold), x.reverse.to_string()])
        .collect();
    table(&mut s, "Most confused label pairs (held-out predictions)", &["label", "predicted", "count", "share of label", "the other way"], rows);
    s.push_str("</section><section>");
    let rows = d.uncovered_language.iter().map(|x| vec![x.id.clone(), x.label.clone(), x.lang.clone().unwrap_or_default(), x.text.clone()]).collect();
    table(&mut s, "Examples in languages the embedding model does not cover", &["id", "label", "language", "text"], rows);
    let rows = d.junk.iter().map(|x| vec![x.id.clone(), x.label.clone(), x.reason.clone().unwrap_or_default(), x.text.clone()]).collect();
    table(&mut s, "Empty or junk examples", &["id", "label", "why", "text"], rows);
    s.push_str("</section></body></html>\n");
    s
}
