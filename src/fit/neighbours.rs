//! The neighbours' side, fitted on the collection's own examples: the similarity-
//! weighted vote of the k nearest examples and a multinomial logistic head over the
//! same embeddings, mixed with a weight chosen on held-out examples, then calibrated
//! into the probability that the chosen label is right. Pure: no store, no embedder.
//!
//! - **Mixture**: `p = w · head + (1 − w) · vote` over the collection's labels, `w` in
//!   steps of 0.05 and the vote's temperature among [`TEMPERATURES`] chosen together
//!   for held-out accuracy (ties: lower log loss). The head's
//!   held-out probabilities are out-of-fold (cross-fitted), the vote's leave-one-out,
//!   so neither has seen the example it is scored on.
//! - **Label**: the in-scope label with the largest mixture probability; out-of-scope
//!   labels (examples of what the taxonomy does not route) take probability mass but
//!   are never the answer.
//! - **Confidence**: isotonic map of the label's mixture probability, per band of
//!   nearest similarity ([`super::isotonic`]).
//! - **Out of scope**: with at least [`MIN_OOS_POINTS`] out-of-scope examples, a ticket
//!   is flagged when an out-of-scope label has the largest mixture probability or the
//!   in-scope label's probability is below a threshold fitted to flag as many held-out
//!   out-of-scope examples as possible while flagging at most `oos_cost_budget` of the
//!   in-scope examples whose label was right. Without them there is no evidence of what out of
//!   scope looks like, so by default nothing is flagged as such (uncertain tickets go
//!   to review for low confidence); on request (`oos_quantile` > 0), a ticket whose
//!   nearest example is less similar than that quantile of the examples' own nearest
//!   similarity is flagged, which by construction also flags that share of in-scope ones.
//! - **Shortcut**: the smallest confidence above which held-out labels were right at
//!   least `shortcut_target` of the time ([`super::isotonic::shortcut_threshold`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::isotonic::{apply_bands, cross_fitted, fit_bands, shortcut_threshold, Band, BandPoint};
use super::logistic::LogisticHead;
use super::out_of_scope::{self, fit_oos_threshold, signals, OosScore};
use crate::stats::{ece, quantile, share};
use crate::taxonomy::label_key;

/// Fewest held-out points above the shortcut threshold for it to be trusted.
pub const MIN_SHORTCUT_POINTS: usize = 20;
/// Fewest out-of-scope examples for fitting the out-of-scope threshold on them.
pub const MIN_OOS_POINTS: usize = 20;
/// Fewest held-out examples for a confidence map or a knn-shortcut threshold at all:
/// below it the fit keeps the raw probability as confidence and always asks the LLM.
pub const MIN_CALIBRATION_POINTS: usize = 100;

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
}

impl HeldOutPoint {
    pub fn top_similarity(&self) -> f32 {
        self.neighbours.first().map_or(-1.0, |n| n.1)
    }
}

/// Vote temperatures tried when fitting (see [`crate::knn::vote_with`]).
pub const TEMPERATURES: [f32; 6] = [0.02, 0.03, 0.05, 0.07, 0.1, 0.15];

/// `(label index, share)` of a similarity-weighted vote at temperature `t`.
fn shares(neighbours: &[(usize, f32)], t: f32) -> Vec<(usize, f32)> {
    let max = neighbours.iter().map(|n| n.1).fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f32> = neighbours.iter().map(|n| ((n.1 - max) / t).exp()).collect();
    let total: f32 = w.iter().sum();
    neighbours.iter().zip(w).map(|(n, w)| (n.0, w / total)).collect()
}

/// Fitting settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub k: usize,
    /// Quantile of the examples' own nearest similarity used as the out-of-scope
    /// threshold when the collection has no out-of-scope examples; 0 disables.
    pub oos_quantile: f64,
    /// With out-of-scope examples: the largest share of right in-scope labels the
    /// out-of-scope flag may take.
    pub oos_cost_budget: f64,
    /// Held-out accuracy required above the shortcut threshold; above 1 disables.
    pub shortcut_target: f64,
    /// Similarity bands of the confidence map (at most).
    pub bands: usize,
    /// Fewest points per band.
    pub min_band_points: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { k: 8, oos_quantile: 0.0, oos_cost_budget: 0.015, shortcut_target: 0.99, bands: 3, min_band_points: 500 }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if self.k == 0 {
            return Err("k must be at least 1".into());
        }
        if !(0.0..0.5).contains(&self.oos_quantile) {
            return Err("the out-of-scope quantile must be in [0, 0.5)".into());
        }
        if !(0.0..=0.5).contains(&self.oos_cost_budget) {
            return Err("the out-of-scope cost budget must be in [0, 0.5]".into());
        }
        if self.shortcut_target.is_nan() || self.shortcut_target <= 0.0 {
            return Err("the shortcut accuracy target must be positive".into());
        }
        Ok(())
    }
}

/// Which head a model uses, for results and `calibrate --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Examples the head was fitted on.
    pub examples: usize,
    /// Unix seconds.
    pub fitted_at: u64,
    /// Inverse regularisation (scikit-learn's `C`).
    pub c: f32,
    pub embedding_model: String,
    pub dim: usize,
    pub seconds: f64,
}

/// How the out-of-scope flag is decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum OosRule {
    None,
    /// The nearest example is less similar than this.
    Similarity { min_similarity: f32, quantile: f64 },
    /// An out-of-scope label leads the mixture, or the in-scope label's mixture
    /// probability is below this (finer-grained than the calibrated confidence, whose
    /// isotonic map is a step function).
    Examples { min_probability: f32 },
    /// An out-of-scope label leads the mixture, or the fitted out-of-scope score is at
    /// or above its threshold ([`super::out_of_scope`]).
    Fitted { score: OosScore },
}

/// What fitting measured on the held-out points (cross-fitted where it says so).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FitStats {
    pub held_out: usize,
    /// Accuracy (labels, out-of-scope labels included) of the vote alone, the head
    /// alone and the chosen mixture on the held-out points.
    pub vote_accuracy: f64,
    pub head_accuracy: Option<f64>,
    pub mixed_accuracy: f64,
    /// ECE (10 bins) of the raw mixture probability as confidence.
    pub raw_ece: f64,
    /// ECE of the calibrated confidence, cross-fitted (two halves, each scored by a
    /// map fitted on the other).
    pub calibrated_ece: f64,
    pub shortcut_coverage: Option<f64>,
    pub shortcut_accuracy: Option<f64>,
    /// Share of in-scope held-out examples the out-of-scope flag takes.
    pub in_scope_flag_rate: Option<f64>,
    /// Share of out-of-scope held-out examples it takes (with out-of-scope examples).
    pub oos_flag_recall: Option<f64>,
    /// Out-of-scope held-out examples.
    pub oos_examples: usize,
    /// What the fit refused because the held-out data cannot support it (too few
    /// examples, a confidence map that makes the cross-fitted ECE worse), and what it
    /// kept instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// The fitted neighbours' side of one collection at one k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourModel {
    pub k: usize,
    pub labels: LabelSet,
    pub head: Option<LogisticHead>,
    pub head_info: Option<HeadInfo>,
    /// Why there is no head, when there is none.
    pub head_note: Option<String>,
    /// Weight of the head in the mixture (0: the vote alone).
    pub head_weight: f32,
    /// Softmax temperature of the vote's similarity weights, fitted with the weight.
    #[serde(default = "default_temperature")]
    pub vote_temperature: f32,
    pub bands: Vec<Band>,
    pub oos: OosRule,
    /// Confidence at or above which an LLM is not asked; `None`: always asked.
    pub shortcut_confidence: Option<f32>,
    pub shortcut_target: f64,
    /// The settings it was fitted with (a refit reuses them).
    pub settings: Settings,
    /// The head's inverse regularisation; `None` when the head was turned off.
    pub head_c: Option<f32>,
    /// Examples in the collection when fitted; unix seconds.
    pub collection_examples: usize,
    pub fitted_at: u64,
    pub stats: FitStats,
    /// When a runner-up label counts as a secondary issue (fitted on the same held-out
    /// points, [`super::secondary`]); `None` in fits made before it existed.
    #[serde(default)]
    pub secondary: Option<super::secondary::SecondaryRule>,
}

/// The neighbours' answer for one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The in-scope label with the largest probability; `None` when no neighbour nor
    /// the head supports any in-scope label.
    pub label: Option<String>,
    /// Mixture probability of `label`.
    pub probability: f32,
    /// Probability that `label` is right: calibrated when fitted, else `probability`.
    pub confidence: f32,
    /// Mixture mass on out-of-scope labels.
    pub oos_probability: f32,
    /// `out_of_scope: ...` when the ticket is unlike the taxonomy's tickets.
    pub out_of_scope: Option<String>,
    /// The mixture over labels (out-of-scope ones included), largest first.
    pub distribution: Vec<(String, f32)>,
}

impl Judgement {
    /// Mixture probability of `label` (0 when nothing supports it).
    pub fn probability_of(&self, label: &str) -> f32 {
        let k = label_key(label);
        self.distribution.iter().find(|(l, _)| label_key(l) == k).map(|(_, p)| *p).unwrap_or(0.0)
    }

    /// The vote alone, uncalibrated: for collections without a fitted model.
    /// `is_oos` says which labels are out-of-scope negatives.
    pub fn from_vote(shares: &[(String, f32)], is_oos: impl Fn(&str) -> bool) -> Judgement {
        let mut distribution = shares.to_vec();
        distribution.sort_by(|a, b| b.1.total_cmp(&a.1));
        let best = distribution.iter().find(|(l, _)| !is_oos(l)).cloned();
        let oos_probability: f32 = distribution.iter().filter(|(l, _)| is_oos(l)).map(|(_, p)| *p).sum();
        let top_is_oos = distribution.first().is_some_and(|(l, _)| is_oos(l));
        let out_of_scope = top_is_oos.then(|| oos_label_reason(&distribution[0].0, distribution[0].1));
        let (label, probability) = best.map_or((None, 0.0), |(l, p)| (Some(l), p));
        Judgement { label, probability, confidence: probability, oos_probability, out_of_scope, distribution }
    }
}

fn oos_label_reason(label: &str, p: f32) -> String {
    format!("out_of_scope: the neighbours favour the out-of-scope examples ({label}, probability {p:.2})")
}

/// Mixture probabilities over `n` labels (plus none for unknown labels).
fn mix(vote: &[(usize, f32)], head: Option<&[f32]>, w: f32, n: usize) -> Vec<f32> {
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

fn argmax(p: &[f32], allowed: impl Fn(usize) -> bool) -> Option<usize> {
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
struct Scored {
    label: Option<usize>,
    probability: f32,
    top_is_oos: bool,
    overall_correct: bool,
    gold_probability: f32,
}

fn score(vote: &[(usize, f32)], p: &HeldOutPoint, labels: &LabelSet, w: f32) -> Scored {
    let m = mix(vote, p.head.as_deref(), w, labels.len());
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

fn default_temperature() -> f32 {
    crate::knn::TEMPERATURE
}

/// The vote temperature and head weight with the best held-out accuracy (ties: lower
/// log loss). Without a head only the temperature is chosen.
fn choose(points: &[HeldOutPoint], labels: &LabelSet, has_head: bool) -> (f32, f32) {
    let mut best = (crate::knn::TEMPERATURE, 0.0f32, -1.0f64, f64::INFINITY);
    let weights: Vec<f32> = if has_head { (0..=20).map(|s| s as f32 * 0.05).collect() } else { vec![0.0] };
    for t in TEMPERATURES {
        let votes: Vec<Vec<(usize, f32)>> = points.iter().map(|p| shares(&p.neighbours, t)).collect();
        for &w in &weights {
            let scored: Vec<Scored> = points.iter().zip(&votes).map(|(p, v)| score(v, p, labels, w)).collect();
            let acc = share(scored.iter().map(|s| s.overall_correct)).unwrap_or(0.0);
            let nll = scored.iter().map(|s| -f64::from(s.gold_probability.max(1e-6)).ln()).sum::<f64>()
                / scored.len().max(1) as f64;
            if acc > best.2 + 1e-12 || ((acc - best.2).abs() <= 1e-12 && nll < best.3) {
                best = (t, w, acc, nll);
            }
        }
    }
    (best.0, best.1)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Fit the neighbours' side on held-out points. `head`: the head fitted on every
/// example (its held-out probabilities are in the points), with what to say about it.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    points: &[HeldOutPoint],
    labels: LabelSet,
    head: Option<(LogisticHead, HeadInfo)>,
    head_note: Option<String>,
    head_c: Option<f32>,
    settings: &Settings,
    collection_examples: usize,
    fitted_at: u64,
) -> NeighbourModel {
    let has_head = head.is_some() && points.iter().all(|p| p.head.is_some());
    let (t, w) = choose(points, &labels, has_head);
    let votes: Vec<Vec<(usize, f32)>> = points.iter().map(|p| shares(&p.neighbours, t)).collect();
    let scored: Vec<Scored> = points.iter().zip(&votes).map(|(p, v)| score(v, p, &labels, w)).collect();
    let tops: Vec<f32> = points.iter().map(HeldOutPoint::top_similarity).collect();
    let in_scope_gold = |p: &HeldOutPoint| !labels.out_of_scope.get(p.gold).copied().unwrap_or(false);
    let band_points: Vec<BandPoint> = points
        .iter()
        .zip(&scored)
        .zip(&tops)
        .map(|((p, s), top)| BandPoint { score: s.probability, top_similarity: *top, correct: s.label == Some(p.gold) })
        .collect();
    let raw: Vec<(f64, bool)> = band_points.iter().map(|b| (f64::from(b.score), b.correct)).collect();
    let cross: Vec<(f64, bool)> = cross_fitted(&band_points, settings.bands, settings.min_band_points)
        .into_iter()
        .map(|(c, ok)| (f64::from(c), ok))
        .collect();
    let (raw_ece, calibrated_ece) = (round4(ece(&raw, 10).unwrap_or(0.0)), round4(ece(&cross, 10).unwrap_or(0.0)));
    let mut refused = Vec::new();
    let mut bands = fit_bands(&band_points, settings.bands, settings.min_band_points);
    if points.len() < MIN_CALIBRATION_POINTS {
        bands.clear();
        refused.push(format!(
            "confidence map: {} held-out examples, at least {MIN_CALIBRATION_POINTS} needed; confidences stay the raw probability",
            points.len()
        ));
    } else if calibrated_ece > raw_ece {
        bands.clear();
        refused.push(format!(
            "confidence map: its cross-fitted ECE {calibrated_ece:.3} is worse than the raw probability's {raw_ece:.3}; confidences stay the raw probability"
        ));
    }
    let calibrated: Vec<f32> = band_points.iter().map(|b| apply_bands(&bands, b.score, b.top_similarity)).collect();
    let oos_examples = points.iter().filter(|p| !in_scope_gold(p)).count();
    let fitted_oos = (oos_examples >= MIN_OOS_POINTS).then(|| {
        let oos_points: Vec<out_of_scope::Point> = points
            .iter()
            .zip(&scored)
            .zip(&votes)
            .map(|((p, s), v)| out_of_scope::Point {
                signals: signals(&mix(v, p.head.as_deref(), w, labels.len()), &labels.out_of_scope, p.head.as_deref(), &p.neighbours),
                top_is_oos: s.top_is_oos,
                in_scope: in_scope_gold(p),
                right: s.label == Some(p.gold),
            })
            .collect();
        out_of_scope::fit(&oos_points, settings.oos_cost_budget)
    });
    let (oos, flags): (OosRule, Vec<bool>) = if let Some(Ok(f)) = fitted_oos {
        (OosRule::Fitted { score: f.score }, f.flags)
    } else if oos_examples >= MIN_OOS_POINTS {
        // The score could not be fitted (one side only in a fold): a threshold on the
        // in-scope probability alone.
        let data: Vec<(f32, bool, bool, bool)> = points
            .iter()
            .zip(&scored)
            .map(|(p, s)| (s.probability, s.top_is_oos, in_scope_gold(p), s.label == Some(p.gold)))
            .collect();
        let t = fit_oos_threshold(&data, settings.oos_cost_budget);
        (OosRule::Examples { min_probability: t }, data.iter().map(|d| d.1 || d.0 < t).collect())
    } else if settings.oos_quantile > 0.0 {
        match quantile(&tops, settings.oos_quantile) {
            Some(t) => (
                OosRule::Similarity { min_similarity: t, quantile: settings.oos_quantile },
                tops.iter().zip(&scored).map(|(top, s)| s.top_is_oos || *top < t).collect(),
            ),
            None => (OosRule::None, scored.iter().map(|s| s.top_is_oos).collect()),
        }
    } else {
        (OosRule::None, scored.iter().map(|s| s.top_is_oos).collect())
    };
    let kept: Vec<(f32, bool)> = calibrated
        .iter()
        .zip(&band_points)
        .zip(&flags)
        .filter(|(_, f)| !**f)
        .map(|((c, b), _)| (*c, b.correct))
        .collect();
    let shortcut = if settings.shortcut_target > 1.0 {
        None
    } else if points.len() < MIN_CALIBRATION_POINTS {
        refused.push(format!(
            "knn-shortcut: {} held-out examples, at least {MIN_CALIBRATION_POINTS} needed to trust a threshold; the LLM is asked for every ticket",
            points.len()
        ));
        None
    } else {
        shortcut_threshold(&kept, settings.shortcut_target, MIN_SHORTCUT_POINTS)
    };
    let above: Vec<bool> = kept.iter().filter(|(c, _)| shortcut.is_some_and(|t| *c >= t)).map(|(_, ok)| *ok).collect();
    let n = points.len().max(1) as f64;
    let in_scope_flags: Vec<bool> = points.iter().zip(&flags).filter(|(p, _)| in_scope_gold(p)).map(|(_, f)| *f).collect();
    let oos_flags: Vec<bool> = points.iter().zip(&flags).filter(|(p, _)| !in_scope_gold(p)).map(|(_, f)| *f).collect();
    let vote_only: Vec<bool> = points.iter().zip(&votes).map(|(p, v)| score(v, p, &labels, 0.0).overall_correct).collect();
    let head_only: Option<Vec<bool>> =
        has_head.then(|| points.iter().zip(&votes).map(|(p, v)| score(v, p, &labels, 1.0).overall_correct).collect());
    let stats = FitStats {
        held_out: points.len(),
        vote_accuracy: round4(share(vote_only).unwrap_or(0.0)),
        head_accuracy: head_only.and_then(share).map(round4),
        mixed_accuracy: round4(share(scored.iter().map(|s| s.overall_correct)).unwrap_or(0.0)),
        raw_ece,
        calibrated_ece,
        shortcut_coverage: shortcut.map(|_| round4(above.len() as f64 / n)),
        shortcut_accuracy: share(above.iter().copied()).map(round4),
        in_scope_flag_rate: share(in_scope_flags).map(round4),
        oos_flag_recall: share(oos_flags).map(round4),
        oos_examples,
        refused,
    };
    let (head, head_info) = match head.filter(|_| has_head) {
        Some((h, i)) => (Some(h), Some(i)),
        None => (None, None),
    };
    NeighbourModel {
        k: settings.k,
        labels,
        head,
        head_info,
        head_note,
        head_weight: w,
        vote_temperature: t,
        bands,
        oos,
        shortcut_confidence: shortcut,
        shortcut_target: settings.shortcut_target,
        settings: settings.clone(),
        head_c,
        collection_examples,
        fitted_at,
        stats,
        secondary: None,
    }
}

impl NeighbourModel {
    /// The neighbours' answer for a ticket: its vote (`(label, share)` of the k nearest
    /// examples), `(label, similarity)` of those k nearest (most similar first) and the
    /// head's probabilities (from [`Self::head`], `None` when there is no head or it
    /// could not run).
    pub fn judge(&self, shares: &[(String, f32)], nearest: &[(&str, f32)], head: Option<&[f32]>) -> Judgement {
        let top_similarity = nearest.first().map_or(-1.0, |n| n.1);
        // Labels the vote has but the model does not know (examples added since the
        // fit) are appended: the vote speaks for them, the head cannot.
        let mut names: Vec<String> = self.labels.names.clone();
        let mut oos: Vec<bool> = self.labels.out_of_scope.clone();
        let mut index: HashMap<String, usize> = names.iter().enumerate().map(|(i, n)| (label_key(n), i)).collect();
        let mut vote = Vec::with_capacity(shares.len());
        for (label, s) in shares {
            let key = label_key(label);
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    names.push(label.clone());
                    oos.push(false);
                    index.insert(key, names.len() - 1);
                    names.len() - 1
                }
            };
            vote.push((i, *s));
        }
        let head = head.filter(|h| h.len() == self.labels.len());
        let m = mix(&vote, head, self.head_weight, names.len());
        let label = argmax(&m, |i| !oos[i]);
        let top = argmax(&m, |_| true);
        let probability = label.map_or(0.0, |i| m[i]);
        let confidence = if label.is_some() { apply_bands(&self.bands, probability, top_similarity) } else { 0.0 };
        let oos_probability: f32 = m.iter().zip(&oos).filter(|(_, o)| **o).map(|(p, _)| *p).sum();
        let out_of_scope = match (top, &self.oos) {
            (Some(t), _) if oos[t] => Some(oos_label_reason(&names[t], m[t])),
            (_, OosRule::Similarity { min_similarity, .. }) if top_similarity < *min_similarity => Some(format!(
                "out_of_scope: the nearest example's similarity {top_similarity:.3} is below the collection's threshold {min_similarity:.3}"
            )),
            (_, OosRule::Examples { min_probability }) if probability < *min_probability => Some(format!(
                "out_of_scope: the best in-scope label has probability {probability:.3}, below the threshold {min_probability:.3} fitted on the collection's out-of-scope examples"
            )),
            (_, OosRule::Fitted { score }) => {
                let near: Vec<(usize, f32)> =
                    nearest.iter().filter_map(|(l, s)| index.get(&label_key(l)).map(|i| (*i, *s))).collect();
                let sig = signals(&m, &oos, head, &near);
                score.flags(&sig).map(|z| format!(
                    "out_of_scope: the out-of-scope score {z:.2} is at or above the threshold {:.2} fitted on the collection's out-of-scope examples (best in-scope label probability {probability:.3}, out-of-scope mass {:.3})",
                    score.threshold.unwrap_or(z),
                    sig.oos
                ))
            }
            _ => None,
        };
        let label = label.map(|i| names[i].clone());
        let mut distribution: Vec<(String, f32)> = names.into_iter().zip(m).filter(|(_, p)| *p > 0.0).collect();
        distribution.sort_by(|a, b| b.1.total_cmp(&a.1));
        Judgement {
            label,
            probability,
            confidence,
            oos_probability,
            out_of_scope,
            distribution,
        }
    }

    /// A held-out point's mixture over [`Self::labels`] under this fit (the vote at the
    /// fitted temperature, the head at the fitted weight).
    pub fn held_out_mixture(&self, p: &HeldOutPoint) -> Vec<f32> {
        mix(&shares(&p.neighbours, self.vote_temperature), p.head.as_deref(), self.head_weight, self.labels.len())
    }

    /// True when the calibrated confidence is decisive enough to skip the LLM.
    pub fn decisive(&self, confidence: f32) -> bool {
        self.shortcut_confidence.is_some_and(|t| confidence >= t)
    }
}
