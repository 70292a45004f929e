//! The report sections of [`super::segments`]: segments, edge cases, secondary issues
//! and the context budget, in Markdown and HTML. Each appears only when the data allows
//! it (a `--segment-field`, edge tickets, a `secondary` field, a k sweep with prompts).

use std::fmt::Write as _;

use super::html::esc;
use super::segments::{BudgetCurve, RunSections, Sections, BUDGET_TOLERANCE};

fn f3(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

fn run_title(r: &RunSections) -> String {
    format!("{} {}k={}", r.method, r.model.as_deref().map(|m| format!("{m} ")).unwrap_or_default(), r.k)
}

fn gap_line(s: &Sections, f: &super::segments::FieldSegments) -> String {
    let small: Vec<String> =
        f.segments.iter().filter(|x| x.too_small).map(|x| format!("{} ({})", x.value, x.tickets)).collect();
    let mut line = match &f.largest_gap {
        Some(g) => format!(
            "Largest gap: {:.1} points between {} ({} tickets) and {} ({} tickets){}.",
            g.points,
            g.highest,
            g.highest_tickets,
            g.lowest,
            g.lowest_tickets,
            if g.flagged { format!(" **above the {:.1}-point threshold**", s.gap_threshold) } else { format!(", within {:.1} points", s.gap_threshold) }
        ),
        None => format!("No gap: fewer than two segments with at least {} tickets.", s.min_segment),
    };
    if !small.is_empty() {
        let _ = write!(line, " Too small to judge (under {} tickets): {}.", s.min_segment, small.join(", "));
    }
    line
}

fn md_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn html_row(cells: &[String]) -> String {
    format!("<tr>{}</tr>", cells.iter().map(|c| format!("<td>{c}</td>")).collect::<String>())
}

fn segment_cells(x: &super::segments::Segment) -> [String; 5] {
    [
        format!("{}{}", x.value, if x.too_small { " (too small)" } else { "" }),
        x.tickets.to_string(),
        f3(x.accuracy),
        f3(x.review_rate),
        f3(x.ece),
    ]
}

fn edge_cells(t: &super::segments::EdgeTicket, no: &str) -> [String; 5] {
    [
        t.id.clone(),
        t.gold.clone(),
        t.predicted.clone().unwrap_or_else(|| "–".into()),
        if t.needs_review { "yes" } else { "no" }.into(),
        if t.correct { "yes".into() } else { no.to_string() },
    ]
}

fn secondary_cells(r: &RunSections, x: &super::segments::SecondaryFigures) -> [String; 9] {
    [
        run_title(r),
        x.tickets.to_string(),
        x.multi_issue_tickets.to_string(),
        x.listed.to_string(),
        x.predicted.to_string(),
        x.found.to_string(),
        f3(x.precision),
        f3(x.recall),
        f3(x.primary_accuracy_multi_issue),
    ]
}

fn budget_cells(p: &super::segments::BudgetPoint) -> [String; 4] {
    [k_cell(p.k), format!("{:.0}", p.prompt_tokens_per_ticket), format!("{:.2}", p.llm_calls_per_ticket), f3(p.accuracy)]
}

fn k_cell(k: usize) -> String {
    if k == 0 { "0 (zero-shot)".into() } else { k.to_string() }
}

fn budget_note(c: &BudgetCurve) -> String {
    format!(
        "Best accuracy {:.3}; the smallest k within {:.0} point of it is **k={}**{}.",
        c.best_accuracy,
        BUDGET_TOLERANCE * 100.0,
        c.smallest_k_near_best,
        if c.smallest_k_near_best == 0 { " (zero-shot: no examples in the prompt)" } else { "" }
    )
}

pub fn markdown(s: &Sections) -> String {
    let mut out = String::new();
    if s.runs.iter().any(|r| !r.segments.is_empty()) {
        let _ = writeln!(out, "\n## By segment\n\nAccuracy, review rate and ECE per value of each segment field (tickets pooled over repeats).\n");
        for r in s.runs.iter().filter(|r| !r.segments.is_empty()) {
            for f in &r.segments {
                let _ = writeln!(out, "### {} · {}\n\n| {} | tickets | accuracy | review rate | ECE |\n|---|---|---|---|---|", run_title(r), f.field, f.field);
                for x in &f.segments {
                    out.push_str(&md_row(&segment_cells(x)));
                }
                let _ = writeln!(out, "\n{}\n", gap_line(s, f));
            }
        }
    }
    if s.runs.iter().any(|r| r.edge.is_some()) {
        let _ = writeln!(out, "\n## Edge cases\n");
        for r in &s.runs {
            let Some(e) = &r.edge else { continue };
            let _ = writeln!(
                out,
                "### {}\n\n{} edge tickets: accuracy {} against the {:.0} % target ({}); other tickets {}.\n",
                run_title(r),
                e.tickets,
                f3(e.accuracy),
                e.target * 100.0,
                if e.meets_target { "met" } else { "**not met**" },
                f3(e.other_accuracy)
            );
            let _ = writeln!(out, "| id | gold | predicted | review | correct |\n|---|---|---|---|---|");
            for t in &e.list {
                out.push_str(&md_row(&edge_cells(t, "**no**")));
            }
            out.push('\n');
        }
    }
    if s.runs.iter().any(|r| r.secondary.is_some()) {
        let _ = writeln!(
            out,
            "\n## Secondary issues\n\nOver in-scope tickets; the test file's `secondary` labels against the results' `secondary` categories.\n\n\
             | run | tickets | multi-issue | listed | predicted | found | precision | recall | primary acc (multi-issue) |\n|---|---|---|---|---|---|---|---|---|"
        );
        for r in &s.runs {
            let Some(x) = &r.secondary else { continue };
            out.push_str(&md_row(&secondary_cells(r, x)));
        }
    }
    if !s.context_budget.is_empty() {
        let _ = writeln!(out, "\n## Context budget\n\nAccuracy against prompt tokens per ticket over the k sweep (a zero-shot run of the same model is the k = 0 point).\n");
        for c in &s.context_budget {
            let _ = writeln!(
                out,
                "### {} {}\n\n| k | prompt tok/ticket | calls/ticket | accuracy |\n|---|---|---|---|",
                c.method,
                c.model.as_deref().unwrap_or("")
            );
            for p in &c.points {
                out.push_str(&md_row(&budget_cells(p)));
            }
            let _ = writeln!(out, "\n{}\n", budget_note(c));
        }
    }
    out
}

/// Accuracy (y) against prompt tokens per ticket (x), one point per k.
fn budget_svg(c: &BudgetCurve) -> String {
    let (w, h, m) = (420.0, 280.0, 45.0);
    let max_x = c.points.iter().map(|p| p.prompt_tokens_per_ticket).fold(1.0, f64::max);
    let accs: Vec<f64> = c.points.iter().filter_map(|p| p.accuracy).collect();
    let lo = (accs.iter().copied().fold(1.0, f64::min) - 0.02).max(0.0);
    let hi = (accs.iter().copied().fold(0.0, f64::max) + 0.02).min(1.0);
    let x = |v: f64| m + (w - 2.0 * m) * v / max_x;
    let y = |v: f64| h - m - (h - 2.0 * m) * (v - lo) / (hi - lo).max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-size=\"10\" font-family=\"sans-serif\">\
         <rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">prompt tokens per ticket</text>\
         <text transform=\"translate(12,{}) rotate(-90)\" text-anchor=\"middle\">accuracy</text>\
         <text x=\"{m}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max_x:.0}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{lo:.2}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{hi:.2}</text>",
        w - 2.0 * m,
        h - 2.0 * m,
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h - m + 12.0,
        w - m,
        h - m + 12.0,
        m - 3.0,
        h - m,
        m - 3.0,
        m + 8.0
    );
    let pts: Vec<String> = c
        .points
        .iter()
        .filter_map(|p| p.accuracy.map(|a| format!("{:.1},{:.1}", x(p.prompt_tokens_per_ticket), y(a))))
        .collect();
    let _ = write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"#285ac8\" stroke-width=\"2\"/>", pts.join(" "));
    for p in &c.points {
        let Some(a) = p.accuracy else { continue };
        let chosen = p.k == c.smallest_k_near_best;
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\"><title>k={}: {:.0} prompt tokens per ticket, accuracy {a:.3}</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\">k={}</text>",
            x(p.prompt_tokens_per_ticket),
            y(a),
            if chosen { 5 } else { 3 },
            if chosen { "#c33" } else { "#285ac8" },
            p.k,
            p.prompt_tokens_per_ticket,
            x(p.prompt_tokens_per_ticket) + 5.0,
            y(a) - 5.0,
            p.k
        );
    }
    s.push_str("</svg>");
    s
}

pub fn html(s: &Sections) -> String {
    let mut out = String::new();
    if s.runs.iter().any(|r| !r.segments.is_empty()) {
        out.push_str("<section><h2>By segment</h2>");
        for r in s.runs.iter().filter(|r| !r.segments.is_empty()) {
            for f in &r.segments {
                let _ = write!(
                    out,
                    "<h3>{} · {}</h3><table><tr><th>{}</th><th>tickets</th><th>accuracy</th><th>review rate</th><th>ECE</th></tr>",
                    esc(&run_title(r)),
                    esc(&f.field),
                    esc(&f.field)
                );
                for x in &f.segments {
                    out.push_str(&html_row(&segment_cells(x).map(|c| esc(&c))));
                }
                let line = gap_line(s, f).replace("**", "");
                let _ = write!(out, "</table><p>{}</p>", esc(&line));
            }
        }
        out.push_str("</section>");
    }
    if s.runs.iter().any(|r| r.edge.is_some()) {
        out.push_str("<section><h2>Edge cases</h2>");
        for r in &s.runs {
            let Some(e) = &r.edge else { continue };
            let _ = write!(
                out,
                "<h3>{}</h3><p>{} edge tickets: accuracy {} against the {:.0} % target ({}); other tickets {}.</p>\
                 <table><tr><th>id</th><th>gold</th><th>predicted</th><th>review</th><th>correct</th></tr>",
                esc(&run_title(r)),
                e.tickets,
                f3(e.accuracy),
                e.target * 100.0,
                if e.meets_target { "met" } else { "not met" },
                f3(e.other_accuracy)
            );
            for t in &e.list {
                let mut cells = edge_cells(t, "no").map(|c| esc(&c));
                if !t.correct {
                    cells[4] = "<b>no</b>".into();
                }
                out.push_str(&html_row(&cells));
            }
            out.push_str("</table>");
        }
        out.push_str("</section>");
    }
    if s.runs.iter().any(|r| r.secondary.is_some()) {
        out.push_str(
            "<section><h2>Secondary issues</h2><table><tr><th>run</th><th>tickets</th><th>multi-issue</th><th>listed</th>\
             <th>predicted</th><th>found</th><th>precision</th><th>recall</th><th>primary acc (multi-issue)</th></tr>",
        );
        for r in &s.runs {
            let Some(x) = &r.secondary else { continue };
            out.push_str(&html_row(&secondary_cells(r, x).map(|c| esc(&c))));
        }
        out.push_str("</table></section>");
    }
    if !s.context_budget.is_empty() {
        out.push_str("<section><h2>Context budget</h2><div class=\"plots\">");
        for c in &s.context_budget {
            let _ = write!(
                out,
                "<figure><figcaption>{} {}</figcaption>{}<table><tr><th>k</th><th>prompt tok/ticket</th><th>calls/ticket</th><th>accuracy</th></tr>",
                esc(c.method),
                esc(c.model.as_deref().unwrap_or("")),
                budget_svg(c)
            );
            for p in &c.points {
                out.push_str(&html_row(&budget_cells(p).map(|c| esc(&c))));
            }
            let _ = write!(out, "</table><p>{}</p></figure>", esc(&budget_note(c).replace("**", "")));
        }
        out.push_str("</div></section>");
    }
    out
}
