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

use serde::{Deserialize, Serialize};

use super::closeness::{Anchors, Closeness};
use super::isotonic::{apply_bands, cross_fitted, fit_bands, shortcut_threshold, Band, BandPoint};
use super::languages::{tally, LanguageRecord};
use super::logistic::LogisticHead;
use super::mixture::{choose, correct_prior, mix, prior_of, score, shares, Scored};
pub use super::mixture::{HeldOutPoint, LabelSet, TEMPERATURES, VOTE_CAPS};
use super::out_of_scope::{self, fit_oos_threshold, signals, OosScore};
use super::routing::RoutePoints;
use crate::stats::{ece, quantile, share};

/// Fewest held-out points above the shortcut threshold for it to be trusted.
pub const MIN_SHORTCUT_POINTS: usize = 20;
/// Fewest out-of-scope examples for fitting the out-of-scope threshold on them.
pub const MIN_OOS_POINTS: usize = 20;
/// Fewest held-out examples for a confidence map or a knn-shortcut threshold at all:
/// below it the fit keeps the raw probability as confidence and always asks the LLM.
pub const MIN_CALIBRATION_POINTS: usize = 100;

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
    /// Share of held-out examples the "no close example" checks flag (their cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_close_rate: Option<f64>,
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
    #[serde(default = "super::mixture::default_temperature")]
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
    pub secondary: Option<super::secondary_rule::SecondaryRule>,
    /// The largest share of the vote one neighbour may carry (1: no cap), fitted with
    /// the temperature.
    #[serde(default = "one")]
    pub vote_cap: f32,
    /// The prior correction (0: none) and the labels' share of the held-out examples it
    /// divides by ([`super::mixture::correct_prior`]).
    #[serde(default)]
    pub prior_alpha: f32,
    #[serde(default)]
    pub prior: Vec<f32>,
    /// How the confidence was calibrated, in words (for results and reports).
    #[serde(default)]
    pub calibration: String,
    /// The "no close example" checks; `None` in fits made before them or on too few examples.
    #[serde(default)]
    pub closeness: Option<Closeness>,
    /// Held-out answers with their cross-fitted confidence, for precision targets.
    #[serde(default)]
    pub routing: RoutePoints,
    /// The neighbours' held-out record per language.
    #[serde(default)]
    pub languages: Vec<LanguageRecord>,
}

fn one() -> f32 {
    1.0
}

/// What [`fit`] is given besides its settings.
pub struct FitInput<'a> {
    pub points: &'a [HeldOutPoint],
    pub labels: LabelSet,
    /// The head fitted on every example (its held-out probabilities are in the points).
    pub head: Option<(LogisticHead, HeadInfo)>,
    pub head_note: Option<String>,
    pub head_c: Option<f32>,
    /// Noise anchors (the points carry their nearest-anchor similarity).
    pub noise: Option<Anchors>,
    pub collection_examples: usize,
    pub fitted_at: u64,
}

impl<'a> FitInput<'a> {
    /// Points and labels only (no head, no noise anchors).
    pub fn new(points: &'a [HeldOutPoint], labels: LabelSet, collection_examples: usize, fitted_at: u64) -> Self {
        FitInput { points, labels, head: None, head_note: None, head_c: None, noise: None, collection_examples, fitted_at }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The confidence maps for `band_points` and how they were made: one isotonic map per
/// similarity band, smoothed toward the held-out accuracy (so a handful of right answers
/// never makes a confidence of 1); on fewer than [`MIN_CALIBRATION_POINTS`] examples one
/// map, said to be shrunk; refused when its cross-fitted ECE is worse than the raw
/// probability's on enough examples to tell.
fn calibrate(band_points: &[BandPoint], settings: &Settings, refused: &mut Vec<String>) -> (Vec<Band>, Vec<f32>, String, f64, f64) {
    let raw: Vec<(f64, bool)> = band_points.iter().map(|b| (f64::from(b.score), b.correct)).collect();
    let cross = cross_fitted(band_points, settings.bands, settings.min_band_points);
    let cross64: Vec<(f64, bool)> = cross.iter().map(|(c, ok)| (f64::from(*c), *ok)).collect();
    let (raw_ece, calibrated_ece) = (round4(ece(&raw, 10).unwrap_or(0.0)), round4(ece(&cross64, 10).unwrap_or(0.0)));
    let n = band_points.len();
    let bands = fit_bands(band_points, settings.bands, settings.min_band_points);
    let cross_conf: Vec<f32> = cross.iter().map(|c| c.0).collect();
    if n >= MIN_CALIBRATION_POINTS && calibrated_ece > raw_ece {
        refused.push(format!(
            "confidence map: its cross-fitted ECE {calibrated_ece:.3} is worse than the raw probability's {raw_ece:.3}; confidences stay the raw probability"
        ));
        let raw_conf = band_points.iter().map(|b| b.score).collect();
        return (Vec::new(), raw_conf, "raw mixture probability (the fitted map was worse)".into(), raw_ece, calibrated_ece);
    }
    let how = if n < MIN_CALIBRATION_POINTS {
        format!("isotonic map on {n} held-out examples, shrunk toward their accuracy (few examples)")
    } else {
        format!("isotonic map in {} similarity band(s) on {n} held-out examples", bands.len())
    };
    (bands, cross_conf, how, raw_ece, calibrated_ece)
}

/// Fit the neighbours' side on held-out points.
pub fn fit(input: FitInput<'_>, settings: &Settings) -> NeighbourModel {
    let FitInput { points, labels, head, head_note, head_c, noise, collection_examples, fitted_at } = input;
    let has_head = head.is_some() && points.iter().all(|p| p.head.is_some());
    let prior = prior_of(points, &labels);
    let m = choose(points, &labels, has_head, &prior);
    let (t, cap, w, alpha) = (m.temperature, m.cap, m.weight, m.prior_alpha);
    let votes: Vec<Vec<(usize, f32)>> = points.iter().map(|p| shares(&p.neighbours, t, cap)).collect();
    let scored: Vec<Scored> = points.iter().zip(&votes).map(|(p, v)| score(v, p, &labels, w, (&prior, alpha))).collect();
    let tops: Vec<f32> = points.iter().map(HeldOutPoint::top_similarity).collect();
    let in_scope_gold = |p: &HeldOutPoint| !labels.out_of_scope.get(p.gold).copied().unwrap_or(false);
    let band_points: Vec<BandPoint> = points
        .iter()
        .zip(&scored)
        .zip(&tops)
        .map(|((p, s), top)| BandPoint { score: s.probability, top_similarity: *top, correct: s.label == Some(p.gold) })
        .collect();
    let mut refused = Vec::new();
    let (bands, cross_conf, calibration, raw_ece, calibrated_ece) = calibrate(&band_points, settings, &mut refused);
    let calibrated: Vec<f32> = band_points.iter().map(|b| apply_bands(&bands, b.score, b.top_similarity)).collect();
    let oos_examples = points.iter().filter(|p| !in_scope_gold(p)).count();
    let fitted_oos = (oos_examples >= MIN_OOS_POINTS).then(|| {
        let oos_points: Vec<out_of_scope::Point> = points
            .iter()
            .zip(&scored)
            .zip(&votes)
            .map(|((p, s), v)| out_of_scope::Point {
                signals: {
                    let mut m = mix(v, p.head.as_deref(), w, labels.len());
                    correct_prior(&mut m, &prior, alpha);
                    signals(&m, &labels.out_of_scope, p.head.as_deref(), &p.neighbours)
                },
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
    // "No close example", judged on the in-scope examples' own distances.
    let in_scope_tops: Vec<f32> = points.iter().zip(&tops).filter(|(p, _)| in_scope_gold(p)).map(|(_, t)| *t).collect();
    let in_scope_noise: Option<Vec<f32>> =
        points.iter().filter(|p| in_scope_gold(p)).map(|p| p.noise).collect::<Option<Vec<f32>>>();
    let closeness = Closeness::fit(&in_scope_tops, noise.zip(in_scope_noise.as_deref()));
    let far: Vec<bool> = points
        .iter()
        .zip(&tops)
        .map(|(p, top)| {
            closeness.as_ref().is_some_and(|c| {
                *top < c.min_similarity
                    || c.noise.as_ref().zip(p.noise).is_some_and(|(n, a)| top - a < n.min_margin)
            })
        })
        .collect();
    let kept: Vec<(f32, bool)> = calibrated
        .iter()
        .zip(&band_points)
        .zip(flags.iter().zip(&far))
        .filter(|(_, (f, far))| !**f && !**far)
        .map(|((c, b), _)| (*c, b.correct))
        .collect();
    let mut routing = RoutePoints::default();
    for (i, p) in points.iter().enumerate() {
        if let (Some(label), false, false) = (scored[i].label, flags[i], far[i]) {
            routing.push(cross_conf[i], label as u32, label == p.gold);
        }
    }
    let languages = tally(points.iter().zip(&scored).zip(&cross_conf).filter(|((p, _), _)| in_scope_gold(p)).map(
        |((p, s), c)| (p.lang.as_deref(), s.label == Some(p.gold), *c),
    ));
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
    let vote_only: Vec<bool> =
        points.iter().zip(&votes).map(|(p, v)| score(v, p, &labels, 0.0, (&[], 0.0)).overall_correct).collect();
    let head_only: Option<Vec<bool>> = has_head
        .then(|| points.iter().zip(&votes).map(|(p, v)| score(v, p, &labels, 1.0, (&[], 0.0)).overall_correct).collect());
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
        no_close_rate: closeness.as_ref().and_then(|_| share(far.iter().copied())).map(round4),
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
        vote_cap: cap,
        prior_alpha: alpha,
        prior,
        calibration,
        closeness,
        routing,
        languages,
    }
}

impl NeighbourModel {
    /// A held-out point's mixture over [`Self::labels`] under this fit (the vote at the
    /// fitted temperature, the head at the fitted weight).
    pub fn held_out_mixture(&self, p: &HeldOutPoint) -> Vec<f32> {
        let mut m =
            mix(&shares(&p.neighbours, self.vote_temperature, self.vote_cap), p.head.as_deref(), self.head_weight, self.labels.len());
        correct_prior(&mut m, &self.prior, self.prior_alpha);
        m
    }

    /// True when the calibrated confidence is decisive enough to skip the LLM.
    pub fn decisive(&self, confidence: f32) -> bool {
        self.shortcut_confidence.is_some_and(|t| confidence >= t)
    }
}
