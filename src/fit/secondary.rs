//! When a runner-up label of the neighbours' mixture counts as a second issue of the
//! ticket (without an LLM), fitted on the same held-out points as the rest of the
//! neighbours' side. Pure.
//!
//! A candidate is an in-scope label other than the predicted one, with mixture
//! probability above 0 and at least one of the k nearest examples carrying it (the
//! neighbours support it). The threshold on its probability comes from the data:
//!
//! - **labeled**: when the held-out examples carry at least [`MIN_LABELED`] secondary
//!   labels (`secondary` field of the corpus), the candidate probability that
//!   maximises F1 of the secondary labels found on them (ties: the higher threshold);
//! - **budget**: otherwise the examples say nothing about second issues, so every
//!   candidate on them is taken as spurious: the threshold is the lowest at which at
//!   most `budget` (default 5 %) of held-out examples would get one. This is a stated
//!   cost, like the out-of-scope budget, not an accuracy figure.


use super::neighbours::{HeldOutPoint, NeighbourModel};

/// Fewest labeled secondary issues among the held-out examples for the labeled fit.
pub const MIN_LABELED: usize = 10;
/// Default share of held-out examples allowed a spurious secondary (budget fit).
pub const DEFAULT_BUDGET: f64 = 0.05;

pub use super::secondary_rule::SecondaryRule;

/// Candidates of one point: `(probability, is a gold secondary)`.
fn candidates(model: &NeighbourModel, p: &HeldOutPoint, gold: &[usize]) -> Vec<(f32, bool)> {
    let m = model.held_out_mixture(p);
    let oos = &model.labels.out_of_scope;
    let primary = (0..m.len()).filter(|i| !oos.get(*i).copied().unwrap_or(false)).max_by(|a, b| m[*a].total_cmp(&m[*b]));
    (0..m.len())
        .filter(|&i| Some(i) != primary && !oos.get(i).copied().unwrap_or(false) && m[i] > 0.0)
        .filter(|&i| p.neighbours.iter().any(|(l, _)| *l == i))
        .map(|i| (m[i], gold.contains(&i)))
        .collect()
}

/// Fit the rule on held-out points and their gold secondary labels (label indices,
/// parallel to `points`). `None` without points.
pub fn fit(model: &NeighbourModel, points: &[HeldOutPoint], gold: &[Vec<usize>], budget: f64) -> Option<SecondaryRule> {
    if points.is_empty() {
        return None;
    }
    let empty = Vec::new();
    let per_point: Vec<Vec<(f32, bool)>> =
        points.iter().enumerate().map(|(i, p)| candidates(model, p, gold.get(i).unwrap_or(&empty))).collect();
    let labeled: usize = gold.iter().map(Vec::len).sum();
    let flag_rate = |t: f32| {
        per_point.iter().filter(|c| c.iter().any(|(p, _)| *p >= t)).count() as f64 / points.len() as f64
    };
    let mut values: Vec<f32> = per_point.iter().flatten().map(|(p, _)| *p).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values.dedup();
    if labeled >= MIN_LABELED {
        let mut best: Option<(f64, f32, f64, f64)> = None;
        for &t in &values {
            let (mut tp, mut fp) = (0usize, 0usize);
            for (p, pos) in per_point.iter().flatten() {
                if *p >= t {
                    if *pos {
                        tp += 1;
                    } else {
                        fp += 1;
                    }
                }
            }
            let precision = tp as f64 / (tp + fp).max(1) as f64;
            let recall = tp as f64 / labeled as f64;
            let f1 = if tp == 0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            // Values go from high to low: a tie keeps the higher threshold.
            if best.is_none_or(|b| f1 > b.0) {
                best = Some((f1, t, precision, recall));
            }
        }
        if let Some((f1, t, precision, recall)) = best.filter(|b| b.0 > 0.0) {
            let _ = f1;
            return Some(SecondaryRule {
                threshold: t,
                method: "labeled".into(),
                held_out: points.len(),
                labeled,
                precision: Some(precision),
                recall: Some(recall),
                flag_rate: flag_rate(t),
            });
        }
    }
    // Budget: the largest candidate per point; the threshold sits just above all but
    // `budget` of them.
    let mut tops: Vec<f32> = per_point.iter().map(|c| c.iter().map(|x| x.0).fold(0.0, f32::max)).collect();
    tops.sort_by(|a, b| b.total_cmp(a));
    let allowed = (budget.clamp(0.0, 1.0) * points.len() as f64).floor() as usize;
    let threshold = match tops.get(allowed) {
        Some(v) if *v > 0.0 => next_up(*v),
        _ => tops.iter().copied().filter(|v| *v > 0.0).fold(f32::INFINITY, f32::min).min(1.0),
    };
    Some(SecondaryRule {
        threshold,
        method: "budget".into(),
        held_out: points.len(),
        labeled,
        precision: None,
        recall: None,
        flag_rate: flag_rate(threshold),
    })
}

/// The smallest f32 above `x` (for positive finite `x`).
fn next_up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fit::neighbours::{self, LabelSet, Settings};

    fn model() -> NeighbourModel {
        let labels = LabelSet { names: vec!["A".into(), "B".into(), "C".into()], out_of_scope: vec![false; 3] };
        let pts: Vec<HeldOutPoint> =
            (0..60).map(|i| HeldOutPoint::new(i % 3, vec![(i % 3, 0.9)], None)).collect();
        neighbours::fit(neighbours::FitInput::new(&pts, labels, 60, 0), &Settings::default())
    }

    /// A point whose nearest examples are `main` (n of them) and `other` (m), all at
    /// similarity 0.8: an even vote, so shares are n/(n+m) and m/(n+m).
    fn point(main: usize, n: usize, other: usize, m: usize) -> HeldOutPoint {
        let mut nb = vec![(main, 0.8); n];
        nb.extend(vec![(other, 0.8); m]);
        HeldOutPoint::new(main, nb, None)
    }

    #[test]
    fn labeled_secondaries_choose_the_threshold_that_finds_them() {
        let m = model();
        // 12 two-issue examples whose runner-up has 3 of 8 votes (0.375) and is their
        // secondary; 40 single-issue ones whose runner-up has 1 of 8 (0.125).
        let mut pts = Vec::new();
        let mut gold = Vec::new();
        for i in 0..12 {
            pts.push(point(i % 3, 5, (i + 1) % 3, 3));
            gold.push(vec![(i + 1) % 3]);
        }
        for i in 0..40 {
            pts.push(point(i % 3, 7, (i + 2) % 3, 1));
            gold.push(vec![]);
        }
        let r = fit(&m, &pts, &gold, DEFAULT_BUDGET).unwrap();
        assert_eq!(r.method, "labeled");
        assert!(r.threshold > 0.125 && r.threshold <= 0.375, "{r:?}");
        assert_eq!((r.precision, r.recall), (Some(1.0), Some(1.0)));
        assert!((r.flag_rate - 12.0 / 52.0).abs() < 1e-9);
    }

    #[test]
    fn without_labels_the_budget_bounds_the_flag_rate() {
        let m = model();
        // Runner-up shares 1/8 .. 4/8 spread over 100 points.
        let pts: Vec<HeldOutPoint> = (0..100).map(|i| point(0, 8 - (1 + i % 4), 1, 1 + i % 4)).collect();
        let gold = vec![Vec::new(); 100];
        let r = fit(&m, &pts, &gold, 0.05).unwrap();
        assert_eq!(r.method, "budget");
        assert!(r.flag_rate <= 0.05, "{r:?}");
        assert!(r.threshold > 0.5 - 1e-6, "only the top share could pass, and it is a quarter of the points: {r:?}");
        let loose = fit(&m, &pts, &gold, 0.3).unwrap();
        assert!(loose.flag_rate <= 0.3 && loose.flag_rate > 0.2 && loose.threshold < r.threshold, "{loose:?}");
        // Too few labels: the budget rule, not the labeled one.
        let mut few = gold.clone();
        few[0] = vec![1];
        assert_eq!(fit(&m, &pts, &few, 0.05).unwrap().method, "budget");
        assert!(fit(&m, &[], &[], 0.05).is_none());
    }
}
