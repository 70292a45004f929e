//! Routing by a precision target: "at most 2 % of the tickets sent on automatically may
//! be wrong" becomes a confidence threshold chosen on held-out answers, not a number a
//! team has to guess.
//!
//! A fit keeps its held-out answers as [`RoutePoints`]: each answer's final confidence
//! (cross-fitted: the confidence map that scored it did not see it), the label it gave
//! and whether that label was right. [`threshold_for`] sorts them by confidence and
//! returns the lowest threshold at which the answers at or above it were right at least
//! `target` of the time, judged by a one-sided lower bound of that share (Wilson, 84 %)
//! so that a handful of lucky answers does not set it. Per category, only the answers
//! that gave that label count, when there are at least [`MIN_LABEL_POINTS`] of them;
//! otherwise the collection-wide answers set it (and the result says so).

use serde::{Deserialize, Serialize};

/// Fewest held-out answers with a label for a threshold of its own.
pub const MIN_LABEL_POINTS: usize = 30;
/// Fewest answers at or above a threshold for it to count.
pub const MIN_POINTS: usize = 10;
/// z of the one-sided lower bound on the precision above a threshold (84 %).
const Z: f64 = 1.0;

/// Held-out answers of one fit, in the fit's label order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutePoints {
    pub confidence: Vec<f32>,
    pub label: Vec<u32>,
    pub correct: Vec<bool>,
}

impl RoutePoints {
    pub fn push(&mut self, confidence: f32, label: u32, correct: bool) {
        self.confidence.push(confidence);
        self.label.push(label);
        self.correct.push(correct);
    }

    pub fn len(&self) -> usize {
        self.confidence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confidence.is_empty()
    }
}

/// What a precision target gives on a fit's held-out answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Answers at or above `confidence` were right `precision` of the time (`share` of all
    /// answers considered, `points` of them); `own_label` when the label's own answers set it.
    Met { confidence: f32, precision: f64, share: f64, points: usize, own_label: bool },
    /// No threshold reaches the target: every answer goes to review.
    Unreachable { best_precision: f64, points: usize },
}

impl Threshold {
    /// The confidence an answer needs to be routed (above 1 when none can be).
    pub fn confidence(&self) -> f32 {
        match self {
            Threshold::Met { confidence, .. } => *confidence,
            Threshold::Unreachable { .. } => f32::INFINITY,
        }
    }
}

/// Lower bound of a binomial share (Wilson score interval, one-sided at [`Z`]).
pub fn wilson_lower(right: usize, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (n, p) = (n as f64, right as f64 / n as f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// The threshold for `target` among `points` (those that gave `label`, when it has at
/// least [`MIN_LABEL_POINTS`]; else all of them).
pub fn threshold_for(points: &RoutePoints, target: f64, label: Option<u32>) -> Threshold {
    let own: Vec<usize> = match label {
        Some(l) => (0..points.len()).filter(|&i| points.label[i] == l).collect(),
        None => Vec::new(),
    };
    let own_label = own.len() >= MIN_LABEL_POINTS;
    let idx: Vec<usize> = if own_label { own } else { (0..points.len()).collect() };
    let mut order = idx.clone();
    order.sort_by(|&a, &b| points.confidence[b].total_cmp(&points.confidence[a]));
    let (mut right, mut best) = (0usize, None);
    let mut best_precision = 0.0f64;
    for (n, &i) in order.iter().enumerate() {
        right += usize::from(points.correct[i]);
        let seen = n + 1;
        // Only cut between distinct confidences: ties go together.
        let last_of_tie = order.get(n + 1).is_none_or(|&j| points.confidence[j] < points.confidence[i]);
        if !last_of_tie || seen < MIN_POINTS {
            continue;
        }
        let lower = wilson_lower(right, seen, Z);
        best_precision = best_precision.max(right as f64 / seen as f64);
        if lower >= target {
            best = Some((points.confidence[i], right as f64 / seen as f64, seen));
        }
    }
    match best {
        Some((confidence, precision, seen)) => Threshold::Met {
            confidence,
            precision,
            share: seen as f64 / idx.len().max(1) as f64,
            points: seen,
            own_label,
        },
        None => Threshold::Unreachable { best_precision, points: idx.len() },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn points(spec: &[(f32, u32, bool)]) -> RoutePoints {
        let mut p = RoutePoints::default();
        for &(c, l, ok) in spec {
            p.push(c, l, ok);
        }
        p
    }

    #[test]
    fn the_threshold_keeps_the_precision_above_the_target_with_a_margin() {
        // 200 answers: confidence i/200, right unless i % 10 == 0 below 0.5, and 1 in 50 above.
        let spec: Vec<(f32, u32, bool)> =
            (0..200).map(|i| (i as f32 / 200.0, 0, if i < 100 { i % 10 != 0 } else { i % 50 != 7 })).collect();
        let p = points(&spec);
        let Threshold::Met { confidence, precision, share, .. } = threshold_for(&p, 0.95, None) else { panic!() };
        assert!(precision >= 0.95, "{precision}");
        assert!(confidence >= 0.3 && confidence <= 0.6, "{confidence}");
        assert!(share > 0.4 && share < 0.75, "{share}");
        // The lower bound is stricter than the plain share.
        let plain_ok = spec.iter().filter(|s| s.0 >= confidence).filter(|s| s.2).count() as f64
            / spec.iter().filter(|s| s.0 >= confidence).count() as f64;
        assert!(plain_ok >= precision - 1e-9);
        assert!(matches!(threshold_for(&p, 0.999, None), Threshold::Unreachable { .. }));
    }

    #[test]
    fn a_label_with_enough_answers_sets_its_own_threshold() {
        let mut spec = Vec::new();
        for i in 0..100 {
            spec.push((0.5 + i as f32 / 200.0, 0, true)); // label 0 always right
            spec.push((0.5 + i as f32 / 200.0, 1, i >= 60)); // label 1 right only when confident
        }
        let p = points(&spec);
        let t0 = threshold_for(&p, 0.9, Some(0));
        let t1 = threshold_for(&p, 0.9, Some(1));
        assert!(matches!(t0, Threshold::Met { own_label: true, .. }));
        assert!(t0.confidence() < t1.confidence(), "{t0:?} {t1:?}");
        // Too few answers with label 2: the collection's answers decide.
        assert!(matches!(threshold_for(&p, 0.9, Some(2)), Threshold::Met { own_label: false, .. }));
        assert!((wilson_lower(0, 0, 1.0)).abs() < 1e-12 && wilson_lower(10, 10, 1.0) < 1.0);
    }
}
