//! Evaluation figures as pure functions over per-ticket outcomes: accuracy with the
//! out-of-scope rule, per-class precision/recall/F1, macro-F1, confusion matrix,
//! calibration (ECE, Brier, reliability bins), selective accuracy and coverage,
//! consistency over repeats. Shares, ECE, reliability bins and percentiles are the
//! shared ones of [`crate::stats`].
//!
//! Definitions (also in docs/accuracy.md):
//! - A ticket whose gold label is in the taxonomy is correct when the predicted label
//!   equals it. A ticket whose gold label is outside the taxonomy (`is_oos`) is correct
//!   only when it was flagged `needs_review`.
//! - "label correct" (used for calibration, selective accuracy and coverage) is
//!   stricter: an in-scope ticket with the right label. Confidence is the model's
//!   probability that the label is right, and for an out-of-scope ticket no label is.
//! - ECE: 10 equal-width confidence bins `[0, 0.1), ..., [0.9, 1.0]`; the sum over bins
//!   of `n_bin / n × |accuracy_bin − mean_confidence_bin|`.
//! - Brier: the one-vs-rest binary Brier score of the predicted label, averaged:
//!   `(1 − confidence)²` when the label is correct, `confidence²` when it is not.
//! - Percentiles: nearest rank (`⌈p/100 × n⌉`-th smallest value).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use crate::stats::{ece, percentile, reliability, share, Point, ReliabilityBin};

/// One ticket's result, reduced to what the figures need.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The gold label (canonical taxonomy name when in scope).
    pub gold: String,
    /// False when the gold label is outside the taxonomy (CLINC150's `oos`).
    pub in_scope: bool,
    /// The predicted label; `None` when the ticket failed outright.
    pub predicted: Option<String>,
    pub confidence: f64,
    pub needs_review: bool,
    /// Flagged as out of scope (`review_reason: out_of_scope: ...`): the classifier
    /// declined to give the label as an answer.
    pub abstained: bool,
}

impl Outcome {
    /// The counting rule: the right label (not abstained) in scope, a review flag out of scope.
    pub fn correct(&self) -> bool {
        if self.in_scope {
            self.label_correct() && !self.abstained
        } else {
            self.needs_review
        }
    }

    /// The predicted label is the gold label (never for out-of-scope tickets).
    pub fn label_correct(&self) -> bool {
        self.in_scope && self.predicted.as_deref() == Some(self.gold.as_str())
    }
}

pub fn accuracy(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().map(Outcome::correct))
}

/// Accuracy over in-scope tickets only; a ticket flagged out of scope counts as wrong.
pub fn in_scope_accuracy(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().filter(|o| o.in_scope).map(Outcome::correct))
}

/// Label accuracy over in-scope tickets, out-of-scope flags ignored.
pub fn in_scope_accuracy_without_abstention(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().filter(|o| o.in_scope).map(Outcome::label_correct))
}

/// Share of out-of-scope tickets flagged for review (for any reason).
pub fn oos_recall(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().filter(|o| !o.in_scope).map(|o| o.needs_review))
}

/// Share of out-of-scope tickets flagged out of scope specifically.
pub fn oos_flag_recall(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().filter(|o| !o.in_scope).map(|o| o.abstained))
}

/// Share of in-scope tickets flagged out of scope.
pub fn in_scope_abstention_rate(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().filter(|o| o.in_scope).map(|o| o.abstained))
}

pub fn needs_review_rate(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().map(|o| o.needs_review))
}

/// Accuracy of the tickets that were not flagged (what automation would see).
pub fn selective_accuracy(outcomes: &[Outcome]) -> Option<f64> {
    share(outcomes.iter().filter(|o| !o.needs_review).map(Outcome::label_correct))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Tickets with this gold label.
    pub support: usize,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Precision, recall and F1 of every in-scope label that is a gold label or was
/// predicted (0 where undefined). Out-of-scope gold labels are not classes, but a
/// label predicted for an out-of-scope ticket counts as a false positive.
pub fn per_class(outcomes: &[Outcome]) -> BTreeMap<String, ClassStats> {
    let mut classes: BTreeSet<&str> = outcomes.iter().filter(|o| o.in_scope).map(|o| o.gold.as_str()).collect();
    classes.extend(outcomes.iter().filter_map(|o| o.predicted.as_deref()));
    classes
        .into_iter()
        .map(|c| {
            let tp = outcomes.iter().filter(|o| o.in_scope && o.gold == c && o.predicted.as_deref() == Some(c)).count();
            let predicted = outcomes.iter().filter(|o| o.predicted.as_deref() == Some(c)).count();
            let support = outcomes.iter().filter(|o| o.in_scope && o.gold == c).count();
            let (p, r) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
            (c.to_string(), ClassStats { precision: p, recall: r, f1, support })
        })
        .collect()
}

/// Unweighted mean of the per-class F1 scores.
pub fn macro_f1(per_class: &BTreeMap<String, ClassStats>) -> Option<f64> {
    (!per_class.is_empty()).then(|| per_class.values().map(|c| c.f1).sum::<f64>() / per_class.len() as f64)
}

/// The label shown for a ticket without a prediction in the confusion matrix.
pub const NO_PREDICTION: &str = "(none)";

/// `gold → predicted → count`, sparse.
pub fn confusion(outcomes: &[Outcome]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut m: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for o in outcomes {
        let p = o.predicted.clone().unwrap_or_else(|| NO_PREDICTION.into());
        *m.entry(o.gold.clone()).or_default().entry(p).or_default() += 1;
    }
    m
}

/// Mean one-vs-rest Brier score of the predicted label.
pub fn brier(points: &[Point]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let sum: f64 = points.iter().map(|&(c, ok)| if ok { (1.0 - c).powi(2) } else { c.powi(2) }).sum();
    Some(sum / points.len() as f64)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoveragePoint {
    pub threshold: f64,
    /// Share of tickets with confidence at or above the threshold.
    pub coverage: f64,
    /// Label accuracy of those tickets (`None` when there are none).
    pub accuracy: Option<f64>,
}

/// Coverage and accuracy if every ticket with confidence `>= t` were automated.
pub fn coverage_curve(points: &[Point], thresholds: &[f64]) -> Vec<CoveragePoint> {
    thresholds
        .iter()
        .map(|&t| {
            let kept: Vec<bool> = points.iter().filter(|(c, _)| *c >= t).map(|(_, ok)| *ok).collect();
            CoveragePoint {
                threshold: t,
                coverage: ratio(kept.len(), points.len()),
                accuracy: share(kept.iter().copied()),
            }
        })
        .collect()
}

/// 0.0, 0.05, ..., 1.0.
pub fn default_thresholds() -> Vec<f64> {
    (0..=20).map(|i| i as f64 / 20.0).collect()
}

/// Share of tickets that got the same label in every run (`runs[r][t]` is run r's
/// label for ticket t). `None` with fewer than two runs.
pub fn consistency(runs: &[Vec<Option<String>>]) -> Option<f64> {
    if runs.len() < 2 {
        return None;
    }
    let n = runs.iter().map(Vec::len).min().unwrap_or(0);
    share((0..n).map(|t| runs.iter().all(|r| r[t] == runs[0][t])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(gold: &str, pred: Option<&str>, conf: f64, review: bool) -> Outcome {
        Outcome {
            gold: gold.into(),
            in_scope: gold != "oos",
            predicted: pred.map(String::from),
            confidence: conf,
            needs_review: review,
            abstained: false,
        }
    }

    #[test]
    fn abstention_counts_against_in_scope_accuracy_by_hand() {
        let abst = |mut x: Outcome| {
            x.abstained = true;
            x.needs_review = true;
            x
        };
        let v = vec![
            o("A", Some("A"), 0.9, false),       // right
            abst(o("A", Some("A"), 0.9, false)), // right label, but flagged out of scope
            o("B", Some("A"), 0.9, false),       // wrong
            abst(o("oos", Some("A"), 0.9, false)),
            o("oos", Some("B"), 0.4, true), // low confidence review
        ];
        close(in_scope_accuracy(&v), 1.0 / 3.0);
        close(in_scope_accuracy_without_abstention(&v), 2.0 / 3.0);
        close(oos_recall(&v), 1.0);
        close(oos_flag_recall(&v), 0.5);
        close(in_scope_abstention_rate(&v), 1.0 / 3.0);
        close(accuracy(&v), 3.0 / 5.0);
    }

    /// Six tickets: four in scope (A, A, B, B), two out of scope.
    fn sample() -> Vec<Outcome> {
        vec![
            o("A", Some("A"), 0.9, false), // right
            o("A", Some("B"), 0.6, true),  // wrong
            o("B", Some("B"), 0.8, false), // right
            o("B", None, 0.0, true),       // failed
            o("oos", Some("A"), 0.3, true), // flagged: correct under the oos rule
            o("oos", Some("B"), 0.95, false), // not flagged: wrong
        ]
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn accuracy_applies_the_out_of_scope_rule() {
        let s = sample();
        close(accuracy(&s), 3.0 / 6.0);
        close(in_scope_accuracy(&s), 2.0 / 4.0);
        close(oos_recall(&s), 1.0 / 2.0);
        close(needs_review_rate(&s), 3.0 / 6.0);
        // Not flagged: tickets 1, 3, 6; label-correct: 1 and 3.
        close(selective_accuracy(&s), 2.0 / 3.0);
        assert_eq!(accuracy(&[]), None);
        assert_eq!(selective_accuracy(&[o("A", Some("A"), 0.1, true)]), None);
    }

    #[test]
    fn per_class_and_macro_f1_by_hand() {
        let pc = per_class(&sample());
        assert_eq!(pc.keys().collect::<Vec<_>>(), ["A", "B"], "oos is not a class");
        // A: tp 1, predicted 2 (tickets 1 and 5), support 2 -> p 0.5, r 0.5, f1 0.5.
        let a = &pc["A"];
        assert_eq!((a.precision, a.recall, a.f1, a.support), (0.5, 0.5, 0.5, 2));
        // B: tp 1, predicted 3 (tickets 2, 3, 6), support 2 -> p 1/3, r 1/2, f1 0.4.
        let b = &pc["B"];
        assert!((b.precision - 1.0 / 3.0).abs() < 1e-12 && b.recall == 0.5);
        assert!((b.f1 - 0.4).abs() < 1e-12, "{}", b.f1);
        close(macro_f1(&pc), 0.45);
        // A predicted label that is never gold is a class with precision 0.
        let pc = per_class(&[o("A", Some("C"), 0.5, false)]);
        assert_eq!(pc["C"].f1, 0.0);
        assert_eq!(pc["A"].recall, 0.0);
        close(macro_f1(&pc), 0.0);
    }

    #[test]
    fn confusion_counts_pairs() {
        let c = confusion(&sample());
        assert_eq!(c["A"]["A"], 1);
        assert_eq!(c["A"]["B"], 1);
        assert_eq!(c["B"][NO_PREDICTION], 1);
        assert_eq!(c["oos"]["A"], 1);
        assert_eq!(c["oos"].values().sum::<usize>(), 2);
    }

    #[test]
    fn brier_is_one_vs_rest_on_the_predicted_label() {
        // (1 − 0.9)² = 0.01; 0.6² = 0.36; (1 − 1)² = 0; 0² = 0 -> mean 0.0925.
        close(brier(&[(0.9, true), (0.6, false), (1.0, true), (0.0, false)]), 0.0925);
        assert_eq!(brier(&[]), None);
    }

    #[test]
    fn coverage_curve_by_hand() {
        let p = [(0.9, true), (0.8, false), (0.5, true), (0.2, false)];
        let c = coverage_curve(&p, &[0.0, 0.5, 0.85, 0.95]);
        assert_eq!(c[0], CoveragePoint { threshold: 0.0, coverage: 1.0, accuracy: Some(0.5) });
        assert_eq!(c[1].coverage, 0.75);
        close(c[1].accuracy, 2.0 / 3.0);
        assert_eq!(c[2], CoveragePoint { threshold: 0.85, coverage: 0.25, accuracy: Some(1.0) });
        assert_eq!(c[3], CoveragePoint { threshold: 0.95, coverage: 0.0, accuracy: None });
        let t = default_thresholds();
        assert_eq!((t.len(), t[1], t[20]), (21, 0.05, 1.0));
    }

    #[test]
    fn consistency_counts_tickets_labelled_identically_every_time() {
        let s = |v: &[Option<&str>]| v.iter().map(|x| x.map(String::from)).collect::<Vec<_>>();
        let runs = vec![s(&[Some("A"), Some("B"), None, Some("C")]), s(&[Some("A"), Some("C"), None, Some("C")])];
        close(consistency(&runs), 3.0 / 4.0);
        let three = vec![runs[0].clone(), runs[0].clone(), s(&[Some("B"), Some("B"), None, Some("C")])];
        close(consistency(&three), 3.0 / 4.0);
        assert_eq!(consistency(&runs[..1]), None);
    }
}
