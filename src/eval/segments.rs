//! Figures beyond overall accuracy, per evaluated run: accuracy, review rate and ECE
//! by segment (any test-file field, `--segment-field lang,tier`) with the largest gap
//! between segments; the edge-case subset (`--edge-field edge`) against its target;
//! secondary-issue precision and recall; and the context budget (accuracy against
//! prompt tokens per ticket over a `--k` sweep). Rendered by [`super::report_sections`].
//!
//! Definitions:
//! - a segment's accuracy, review rate and ECE are those of the overall figures
//!   (`Outcome::correct`, `needs_review`, ECE over (confidence, label right) in 10
//!   bins), over its tickets pooled over the run's repeats;
//! - the largest gap is the highest minus the lowest segment accuracy of one field,
//!   over segments with at least `--min-segment` tickets (smaller ones are listed as
//!   too small to judge); it is flagged above `--gap-threshold` points;
//! - secondary precision: predicted secondary labels that the test file lists, over all
//!   predicted; recall: listed secondary labels that were predicted, over all listed;
//!   over in-scope tickets, when the test file has the field at all (a row without it
//!   counts as a single-issue ticket);
//! - context budget: per method and model with at least two k values and LLM prompts,
//!   accuracy and prompt tokens per ticket at each k; the smallest k whose accuracy is
//!   within 1 point of the best.

use std::collections::BTreeMap;

use serde::Serialize;

use super::figures::{round4, MethodReport};
use super::metrics::Outcome;
use super::{outcome, Evaluation, Run};
use crate::stats::{ece, share, Point};
use crate::taxonomy::label_key;

/// The thresholds of these sections (`triage eval` flags).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct Thresholds {
    /// Test-file fields to report accuracy, review rate and ECE by, each value a segment (e.g. lang,tier)
    #[arg(long, value_delimiter = ',')]
    #[serde(skip)]
    pub segment_field: Vec<String>,
    /// Flag a gap between segments' accuracy above this many points
    #[arg(long, default_value_t = 3.0)]
    pub gap_threshold: f64,
    /// Segments with fewer tickets are too small to judge (listed, left out of the largest gap)
    #[arg(long, default_value_t = 30)]
    pub min_segment: usize,
    /// Boolean test-file field marking edge cases (unusual or complex tickets), reported apart
    #[arg(long)]
    #[serde(skip)]
    pub edge_field: Option<String>,
    /// Accuracy target of the edge cases
    #[arg(long, default_value_t = 0.8)]
    pub edge_target: f64,
    /// Test-file field listing each ticket's secondary issues (a list, or comma-separated)
    #[arg(long, default_value = "secondary")]
    #[serde(skip)]
    pub secondary_field: String,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            segment_field: Vec::new(),
            gap_threshold: 3.0,
            min_segment: 30,
            edge_field: None,
            edge_target: 0.8,
            secondary_field: "secondary".into(),
        }
    }
}

/// The context-budget rule: the smallest k within this much accuracy of the best.
pub const BUDGET_TOLERANCE: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub value: String,
    /// Tickets × repeats.
    pub tickets: usize,
    pub accuracy: Option<f64>,
    pub review_rate: Option<f64>,
    pub ece: Option<f64>,
    pub too_small: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// Accuracy points (highest minus lowest).
    pub points: f64,
    pub highest: String,
    pub highest_tickets: usize,
    pub lowest: String,
    pub lowest_tickets: usize,
    pub flagged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldSegments {
    pub field: String,
    pub segments: Vec<Segment>,
    /// `None` with fewer than two segments large enough to judge.
    pub largest_gap: Option<Gap>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeTicket {
    pub id: String,
    pub gold: String,
    pub predicted: Option<String>,
    pub needs_review: bool,
    pub correct: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeFigures {
    pub tickets: usize,
    pub accuracy: Option<f64>,
    /// Accuracy of the other tickets, for comparison.
    pub other_accuracy: Option<f64>,
    pub target: f64,
    pub meets_target: bool,
    /// Every edge ticket of the first repeat, misclassified ones first.
    pub list: Vec<EdgeTicket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecondaryFigures {
    /// In-scope tickets scored, and those the test file gives secondary issues.
    pub tickets: usize,
    pub multi_issue_tickets: usize,
    pub listed: usize,
    pub predicted: usize,
    pub found: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Primary-label accuracy on the multi-issue tickets.
    pub primary_accuracy_multi_issue: Option<f64>,
}

/// Everything these sections show for one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSections {
    pub method: &'static str,
    pub model: Option<String>,
    pub k: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<FieldSegments>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary: Option<SecondaryFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetPoint {
    pub k: usize,
    pub accuracy: Option<f64>,
    pub prompt_tokens_per_ticket: f64,
    pub llm_calls_per_ticket: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetCurve {
    pub method: &'static str,
    pub model: Option<String>,
    pub points: Vec<BudgetPoint>,
    pub best_accuracy: f64,
    /// The smallest k within [`BUDGET_TOLERANCE`] of the best accuracy.
    pub smallest_k_near_best: usize,
}

/// The sections' figures for every run, and the context-budget curves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sections {
    pub gap_threshold: f64,
    pub min_segment: usize,
    pub runs: Vec<RunSections>,
    pub context_budget: Vec<BudgetCurve>,
}

impl Sections {
    pub fn is_empty(&self) -> bool {
        self.context_budget.is_empty()
            && self.runs.iter().all(|r| r.segments.is_empty() && r.edge.is_none() && r.secondary.is_none())
    }
}

pub fn sections(eval: &Evaluation, rows: &[MethodReport]) -> Sections {
    let th = &eval.config.routing;
    Sections {
        gap_threshold: th.gap_threshold,
        min_segment: th.min_segment,
        runs: eval.runs.iter().map(|r| run_sections(eval, r)).collect(),
        context_budget: budget_curves(rows),
    }
}

/// Every (ticket, result) of a run, pooled over repeats.
fn pairs<'a>(eval: &'a Evaluation, run: &'a Run) -> impl Iterator<Item = (&'a super::LabeledTicket, &'a crate::TicketResult)> {
    run.results.iter().flat_map(move |rep| eval.tickets.iter().zip(rep))
}

fn run_sections(eval: &Evaluation, run: &Run) -> RunSections {
    let th = &eval.config.routing;
    let segments = eval
        .config
        .fields
        .segment
        .iter()
        .map(|field| field_segments(eval, run, field, th.min_segment, th.gap_threshold))
        .collect();
    RunSections {
        method: run.method.name(),
        model: run.model.clone(),
        k: run.k,
        segments,
        edge: eval.config.fields.edge.as_ref().and_then(|_| edge_figures(eval, run, th.edge_target)),
        secondary: secondary_figures(eval, run),
    }
}

fn field_segments(eval: &Evaluation, run: &Run, field: &str, min: usize, threshold: f64) -> FieldSegments {
    let items = pairs(eval, run).map(|(t, r)| (t.segments.get(field).cloned().unwrap_or_else(|| "(none)".into()), outcome(t, r)));
    let (segments, largest_gap) = segment_figures(items, min, threshold);
    FieldSegments { field: field.to_string(), segments, largest_gap }
}

/// Segments of `(value, outcome)` items and the largest gap between those of at least
/// `min` items, flagged above `threshold` points.
pub fn segment_figures(items: impl Iterator<Item = (String, Outcome)>, min: usize, threshold: f64) -> (Vec<Segment>, Option<Gap>) {
    let mut groups: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for (value, o) in items {
        groups.entry(value).or_default().push(o);
    }
    let segments: Vec<Segment> = groups
        .into_iter()
        .map(|(value, v)| {
            let points: Vec<Point> = v.iter().map(|o| (o.confidence, o.label_correct())).collect();
            Segment {
                tickets: v.len(),
                accuracy: share(v.iter().map(Outcome::correct)).map(round4),
                review_rate: share(v.iter().map(|o| o.needs_review)).map(round4),
                ece: ece(&points, 10).map(round4),
                too_small: v.len() < min,
                value,
            }
        })
        .collect();
    let judged: Vec<&Segment> = segments.iter().filter(|s| !s.too_small && s.accuracy.is_some()).collect();
    let acc = |s: &&&Segment| s.accuracy.unwrap_or(0.0);
    let hi = judged.iter().max_by(|a, b| acc(a).total_cmp(&acc(b)));
    let lo = judged.iter().min_by(|a, b| acc(a).total_cmp(&acc(b)));
    let gap = match (hi, lo) {
        (Some(hi), Some(lo)) if judged.len() >= 2 => {
            let points = ((acc(&hi) - acc(&lo)) * 100.0 * 100.0).round() / 100.0;
            Some(Gap {
                points,
                highest: hi.value.clone(),
                highest_tickets: hi.tickets,
                lowest: lo.value.clone(),
                lowest_tickets: lo.tickets,
                flagged: points > threshold,
            })
        }
        _ => None,
    };
    (segments, gap)
}

fn edge_figures(eval: &Evaluation, run: &Run, target: f64) -> Option<EdgeFigures> {
    let (mut edge, mut other) = (Vec::new(), Vec::new());
    for (t, r) in pairs(eval, run) {
        let ok = outcome(t, r).correct();
        if t.edge { edge.push(ok) } else { other.push(ok) }
    }
    if edge.is_empty() {
        return None;
    }
    let accuracy = share(edge.iter().copied()).map(round4);
    let mut list: Vec<EdgeTicket> = eval
        .tickets
        .iter()
        .zip(run.results.first()?)
        .filter(|(t, _)| t.edge)
        .map(|(t, r)| EdgeTicket {
            id: t.id.clone(),
            gold: t.label.clone(),
            predicted: r.category.clone(),
            needs_review: r.needs_review,
            correct: outcome(t, r).correct(),
        })
        .collect();
    list.sort_by_key(|e| e.correct);
    Some(EdgeFigures {
        tickets: edge.len(),
        accuracy,
        other_accuracy: share(other).map(round4),
        target,
        meets_target: accuracy.is_some_and(|a| a >= target),
        list,
    })
}

fn secondary_figures(eval: &Evaluation, run: &Run) -> Option<SecondaryFigures> {
    if !eval.tickets.iter().any(|t| t.secondary.is_some()) {
        return None;
    }
    let (mut tickets, mut multi, mut listed, mut predicted, mut found) = (0, 0, 0, 0, 0);
    let mut primary = Vec::new();
    for (t, r) in pairs(eval, run).filter(|(t, _)| !t.is_oos) {
        tickets += 1;
        let gold: Vec<String> = t.secondary.iter().flatten().map(|l| label_key(l)).collect();
        let got: Vec<String> = r.secondary.iter().map(|s| label_key(&s.category)).collect();
        listed += gold.len();
        predicted += got.len();
        found += got.iter().filter(|g| gold.contains(g)).count();
        if !gold.is_empty() {
            multi += 1;
            primary.push(outcome(t, r).correct());
        }
    }
    Some(SecondaryFigures {
        tickets,
        multi_issue_tickets: multi,
        listed,
        predicted,
        found,
        precision: (predicted > 0).then(|| round4(found as f64 / predicted as f64)),
        recall: (listed > 0).then(|| round4(found as f64 / listed as f64)),
        primary_accuracy_multi_issue: share(primary).map(round4),
    })
}

/// Per method and model: the k sweep's accuracy against prompt tokens per ticket.
pub fn budget_curves(rows: &[MethodReport]) -> Vec<BudgetCurve> {
    curves(
        rows.iter()
            .map(|r| {
                let p = BudgetPoint {
                    k: r.k,
                    accuracy: r.accuracy,
                    prompt_tokens_per_ticket: r.prompt_tokens_per_ticket,
                    llm_calls_per_ticket: r.llm_calls_per_ticket,
                };
                (r.method, r.model.clone(), p)
            })
            .collect(),
    )
}

/// Curves of runs with LLM prompts, per method and model with at least two k values.
/// A zero-shot run of the same model (no examples in the prompt, whatever its k) is the
/// k = 0 point of the curves of the methods that show examples.
fn curves(items: Vec<(&'static str, Option<String>, BudgetPoint)>) -> Vec<BudgetCurve> {
    let mut groups: BTreeMap<(&'static str, Option<String>), Vec<BudgetPoint>> = BTreeMap::new();
    let mut zero: BTreeMap<Option<String>, BudgetPoint> = BTreeMap::new();
    for (method, model, p) in items.into_iter().filter(|x| x.2.prompt_tokens_per_ticket > 0.0) {
        if method == "zero-shot" {
            zero.entry(model).or_insert(BudgetPoint { k: 0, ..p });
        } else {
            groups.entry((method, model)).or_default().push(p);
        }
    }
    for ((_, model), points) in groups.iter_mut() {
        if let Some(z) = zero.get(model) {
            points.push(z.clone());
        }
    }
    groups
        .into_iter()
        .filter_map(|((method, model), mut points)| {
            points.sort_by_key(|p| p.k);
            points.dedup_by_key(|p| p.k);
            if points.len() < 2 {
                return None;
            }
            let best = points.iter().filter_map(|p| p.accuracy).fold(f64::NEG_INFINITY, f64::max);
            if !best.is_finite() {
                return None;
            }
            let smallest = points.iter().find(|p| p.accuracy.is_some_and(|a| a >= best - BUDGET_TOLERANCE - 1e-9))?.k;
            Some(BudgetCurve { method, model, points, best_accuracy: best, smallest_k_near_best: smallest })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn o(correct: bool, review: bool) -> Outcome {
        Outcome {
            gold: "A".into(),
            in_scope: true,
            predicted: Some(if correct { "A" } else { "B" }.into()),
            confidence: 0.9,
            needs_review: review,
            abstained: false,
        }
    }

    #[test]
    fn segments_report_the_largest_gap_between_large_enough_ones() {
        let mut items = Vec::new();
        items.extend((0..40).map(|i| ("en".to_string(), o(i < 36, false)))); // 0.90
        items.extend((0..40).map(|i| ("de".to_string(), o(i < 30, i < 4)))); // 0.75
        items.extend((0..5).map(|_| ("fi".to_string(), o(false, true)))); // too small
        let (segs, gap) = segment_figures(items.into_iter(), 30, 3.0);
        let names: Vec<&str> = segs.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(names, ["de", "en", "fi"]);
        assert_eq!((segs[0].accuracy, segs[0].review_rate, segs[0].tickets), (Some(0.75), Some(0.1), 40));
        assert!(segs[2].too_small && !segs[0].too_small);
        let g = gap.unwrap();
        assert_eq!((g.highest.as_str(), g.lowest.as_str(), g.points, g.flagged), ("en", "de", 15.0, true));
        assert_eq!((g.highest_tickets, g.lowest_tickets), (40, 40));
        // ECE: confidence 0.9 everywhere, accuracy 0.9 in en.
        assert!(segs[1].ece.unwrap() < 1e-9);
        // Within the threshold: not flagged; one judged segment: no gap.
        let close = (0..40).map(|i| ("a".to_string(), o(i < 36, false))).chain((0..40).map(|i| ("b".to_string(), o(i < 35, false))));
        let g = segment_figures(close, 30, 3.0).1.unwrap();
        assert_eq!((g.points, g.flagged), (2.5, false));
        assert!(segment_figures((0..40).map(|_| ("a".to_string(), o(true, false))), 30, 3.0).1.is_none());
    }

    #[test]
    fn context_budget_names_the_smallest_k_within_a_point_of_the_best() {
        let p = |k: usize, acc: f64, tokens: f64| BudgetPoint { k, accuracy: Some(acc), prompt_tokens_per_ticket: tokens, llm_calls_per_ticket: 1.0 };
        let c = curves(vec![
            ("rag", Some("m".into()), p(8, 0.90, 2000.0)),
            ("rag", Some("m".into()), p(1, 0.80, 700.0)),
            ("rag", Some("m".into()), p(4, 0.895, 1300.0)),
            ("rag", Some("m".into()), p(16, 0.905, 3500.0)),
            ("knn", None, p(1, 0.7, 0.0)),
            ("knn", None, p(8, 0.8, 0.0)),
            ("zero-shot", Some("m".into()), p(8, 0.6, 600.0)),
        ]);
        assert_eq!(c.len(), 1, "knn has no prompts; zero-shot is a point, not a curve");
        assert_eq!(c[0].points.iter().map(|p| p.k).collect::<Vec<_>>(), [0, 1, 4, 8, 16], "zero-shot is k = 0");
        assert_eq!((c[0].best_accuracy, c[0].smallest_k_near_best), (0.905, 4));
        assert_eq!(c[0].points[0].prompt_tokens_per_ticket, 600.0);
        // Zero-shot within a point of the best: k = 0 is the answer.
        let c = curves(vec![("rag", None, p(2, 0.80, 900.0)), ("rag", None, p(4, 0.81, 1200.0)), ("zero-shot", None, p(2, 0.805, 400.0))]);
        assert_eq!(c[0].smallest_k_near_best, 0);
    }
}
