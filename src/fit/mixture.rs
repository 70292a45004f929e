//! The neighbours' mixture: the similarity-weighted vote of the k nearest examples
//! (softmax temperature, cap on one neighbour's share) mixed with the fitted head, and
//! the choice of its settings on held-out points ([`choose`]).

use serde::{Deserialize, Serialize};

use crate::stats::share;
use crate::taxonomy::label_key;

/// The labels a fitted model knows, in head order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelSet {
    pub names: Vec<String>,
    /// Per label: its examples are out-of-scope negatives, never an answer.
    pub out_of_scope: Vec<bool>,
}

impl LabelSet {
    pub fn index(&self, label: &str) -> Option<usize> {
        let k = label_key(label);
        self.names.iter().position(|n| label_key(n) == k)
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One held-out example: its gold label, its k nearest other examples and (with a
/// head) its out-of-fold head probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOutPoint {
    pub gold: usize,
    /// `(label index, similarity)` of the nearest other examples, most similar first.
    pub neighbours: Vec<(usize, f32)>,
    pub head: Option<Vec<f32>>,
    /// The example's language (ISO 639-1), when it could be told.
    pub lang: Option<String>,
    /// Its largest similarity to the collection's noise texts ([`super::closeness`]).
    pub noise: Option<f32>,
}

impl HeldOutPoint {
    pub fn new(gold: usize, neighbours: Vec<(usize, f32)>, head: Option<Vec<f32>>) -> Self {
        HeldOutPoint { gold, neighbours, head, lang: None, noise: None }
    }

    pub fn top_similarity(&self) -> f32 {
        self.neighbours.first().map_or(-1.0, |n| n.1)
    }
}


/// Vote temperatures tried when fitting (see [`crate::knn::vote_with`]).
pub const TEMPERATURES: [f32; 6] = [0.02, 0.03, 0.05, 0.07, 0.1, 0.15];

/// Caps on one neighbour's share of the vote tried when fitting (see [`crate::knn::weights`]).
pub const VOTE_CAPS: [f32; 4] = [1.0, 0.5, 0.35, 0.25];

/// `(label index, share)` of a similarity-weighted vote at temperature `t`, no
/// neighbour above `cap`.
pub(super) fn shares(neighbours: &[(usize, f32)], t: f32, cap: f32) -> Vec<(usize, f32)> {
    let sims: Vec<f32> = neighbours.iter().map(|n| n.1).collect();
    neighbours.iter().zip(crate::knn::weights(&sims, t, cap)).map(|(n, w)| (n.0, w)).collect()
}

/// Mixture probabilities over `n` labels (plus none for unknown labels).
pub(super) fn mix(vote: &[(usize, f32)], head: Option<&[f32]>, w: f32, n: usize) -> Vec<f32> {
    let mut p = vec![0.0f32; n];
    let w = if head.is_some() { w } else { 0.0 };
    if let Some(h) = head {
        for (pi, hi) in p.iter_mut().zip(h) {
            *pi = w * hi;
        }
    }
    for &(i, s) in vote {
        if let Some(pi) = p.get_mut(i) {
            *pi += (1.0 - w) * s;
        }
    }
    p
}

pub(super) fn argmax(p: &[f32], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, v) in p.iter().enumerate() {
        if allowed(i) && best.is_none_or(|b| *v > p[b]) {
            best = Some(i);
        }
    }
    best
}

/// One held-out point under a mixture weight: the in-scope label and its probability,
/// and whether the overall leader is an out-of-scope label.
pub(super) struct Scored {
    pub label: Option<usize>,
    pub probability: f32,
    pub top_is_oos: bool,
    pub overall_correct: bool,
    pub gold_probability: f32,
}

/// Divide the mixture by the labels' prior (their share of the examples) raised to
/// `alpha`, and renormalise: 0 leaves it, 1 removes the prior entirely, so a label with
/// 3 examples is not drowned by one with 3,000 merely for being rare. Labels beyond
/// `prior` (not seen by the fit) are left as they are.
pub(super) fn correct_prior(m: &mut [f32], prior: &[f32], alpha: f32) {
    if alpha <= 0.0 || prior.is_empty() {
        return;
    }
    for (p, q) in m.iter_mut().zip(prior) {
        *p /= q.max(1e-6).powf(alpha);
    }
    let total: f32 = m.iter().sum();
    if total > 0.0 {
        m.iter_mut().for_each(|p| *p /= total);
    }
}

/// The labels' share of the held-out points (their gold labels).
pub(super) fn prior_of(points: &[HeldOutPoint], labels: &LabelSet) -> Vec<f32> {
    let mut counts = vec![0usize; labels.len()];
    for p in points {
        if let Some(c) = counts.get_mut(p.gold) {
            *c += 1;
        }
    }
    let n = points.len().max(1) as f32;
    counts.into_iter().map(|c| c as f32 / n).collect()
}

pub(super) fn score(vote: &[(usize, f32)], p: &HeldOutPoint, labels: &LabelSet, w: f32, prior: (&[f32], f32)) -> Scored {
    let mut m = mix(vote, p.head.as_deref(), w, labels.len());
    correct_prior(&mut m, prior.0, prior.1);
    let top = argmax(&m, |_| true);
    let label = argmax(&m, |i| !labels.out_of_scope[i]);
    Scored {
        label,
        probability: label.map_or(0.0, |i| m[i]),
        top_is_oos: top.is_some_and(|i| labels.out_of_scope[i]),
        overall_correct: top == Some(p.gold),
        gold_probability: m.get(p.gold).copied().unwrap_or(0.0),
    }
}

pub(super) fn default_temperature() -> f32 {
    crate::knn::TEMPERATURE
}

/// The vote's temperature and cap, the head's weight and the prior correction, chosen
/// on held-out points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Mixture {
    pub temperature: f32,
    pub cap: f32,
    pub weight: f32,
    pub prior_alpha: f32,
}

/// Prior corrections tried (see [`correct_prior`]).
pub const PRIOR_ALPHAS: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// What the mixture's settings are chosen for: the mean of the held-out accuracy and
/// the held-out balanced accuracy (the mean recall over labels), so that small labels
/// count without giving up the large ones; ties go to the lower log loss.
fn objective(points: &[HeldOutPoint], scored: &[Scored], labels: usize) -> (f64, f64) {
    let acc = share(scored.iter().map(|s| s.overall_correct)).unwrap_or(0.0);
    let mut per = vec![(0usize, 0usize); labels];
    for (p, s) in points.iter().zip(scored) {
        if let Some(c) = per.get_mut(p.gold) {
            c.0 += usize::from(s.overall_correct);
            c.1 += 1;
        }
    }
    let recalls: Vec<f64> = per.iter().filter(|c| c.1 > 0).map(|c| c.0 as f64 / c.1 as f64).collect();
    let balanced = recalls.iter().sum::<f64>() / recalls.len().max(1) as f64;
    let nll = scored.iter().map(|s| -f64::from(s.gold_probability.max(1e-6)).ln()).sum::<f64>() / scored.len().max(1) as f64;
    (0.5 * acc + 0.5 * balanced, nll)
}

/// Better when the objective is higher, or equal with a lower log loss.
fn better(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 > b.0 + 1e-12 || ((a.0 - b.0).abs() <= 1e-12 && a.1 < b.1 - 1e-12)
}

/// The mixture's settings with the best held-out [`objective`]: the vote's temperature
/// and cap with the head's weight, then the prior correction, then the weight again
/// under that correction. Without a head only the vote's settings and the correction
/// are chosen. The first of equals wins: no cap, no correction unless they earn it.
pub(super) fn choose(points: &[HeldOutPoint], labels: &LabelSet, has_head: bool, prior: &[f32]) -> Mixture {
    let weights: Vec<f32> = if has_head { (0..=20).map(|s| s as f32 * 0.05).collect() } else { vec![0.0] };
    let eval = |m: &Mixture, votes: &[Vec<(usize, f32)>]| {
        let scored: Vec<Scored> =
            points.iter().zip(votes).map(|(p, v)| score(v, p, labels, m.weight, (prior, m.prior_alpha))).collect();
        objective(points, &scored, labels.len())
    };
    let mut best = Mixture { temperature: crate::knn::TEMPERATURE, cap: 1.0, weight: 0.0, prior_alpha: 0.0 };
    let mut best_score = (-1.0f64, f64::INFINITY);
    for t in TEMPERATURES {
        for cap in VOTE_CAPS {
            let votes: Vec<Vec<(usize, f32)>> = points.iter().map(|p| shares(&p.neighbours, t, cap)).collect();
            for &w in &weights {
                let m = Mixture { temperature: t, cap, weight: w, prior_alpha: 0.0 };
                let s = eval(&m, &votes);
                if better(s, best_score) {
                    (best, best_score) = (m, s);
                }
            }
        }
    }
    let votes: Vec<Vec<(usize, f32)>> = points.iter().map(|p| shares(&p.neighbours, best.temperature, best.cap)).collect();
    for stage in 0..2 {
        let candidates: Vec<Mixture> = if stage == 0 {
            PRIOR_ALPHAS.iter().map(|&a| Mixture { prior_alpha: a, ..best }).collect()
        } else {
            weights.iter().map(|&w| Mixture { weight: w, ..best }).collect()
        };
        for m in candidates {
            let s = eval(&m, &votes);
            if better(s, best_score) {
                (best, best_score) = (m, s);
            }
        }
    }
    best
}
