//! The arbiter: when an LLM has answered, which label wins (the LLM's or the
//! neighbours') and the probability that it is right, fitted on the LLM's answers for
//! held-out examples of the collection (`triage calibrate --llm`), not set by rules.
//!
//! Evidence per answer: whether the LLM agrees with the neighbours' label, the
//! neighbours' calibrated confidence in their label (already a probability, see
//! [`super::neighbours`]), the neighbours' mixture probability of the LLM's label
//! ("support"), and the LLM's own signal (the token probability of its label when the
//! provider returns log-probabilities, else its self-reported confidence; left out when
//! it does not vary). Two bands:
//!
//! - **agree**: P(label right | agree, neighbour confidence), isotonic in the
//!   neighbours' confidence ([`super::isotonic::IsotonicMap`]).
//! - **disagree**: P(LLM label right | evidence) and P(neighbours' label right |
//!   evidence), each a small L2-regularised logistic regression on the logits of the
//!   three figures. The label with the higher probability wins; that probability is the
//!   confidence.
//!
//! A band with fewer than [`MIN_BAND_POINTS`] answers is not fitted (the classifier's
//! default rules apply there), and a fit on fewer than [`MIN_ANSWERS`] answers is refused.

use serde::{Deserialize, Serialize};

use super::isotonic::IsotonicMap;
use super::routing::RoutePoints;
use crate::stats::{ece, share};

/// Fewest held-out LLM answers for a fit.
pub const MIN_ANSWERS: usize = 100;
/// Fewest answers in a band for that band to be fitted.
pub const MIN_BAND_POINTS: usize = 20;
/// L2 penalty of the disagreement regressions (on the summed log-likelihood).
const RIDGE: f64 = 1.0;

/// One held-out example answered by the LLM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArbiterPoint {
    /// The neighbours' calibrated confidence in their label.
    pub vote_confidence: f32,
    pub vote_correct: bool,
    /// `None`: the LLM gave no valid answer (after one repair) or failed.
    pub llm: Option<LlmPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmPoint {
    pub agrees: bool,
    pub correct: bool,
    /// The neighbours' mixture probability of the LLM's label.
    pub support: f32,
    /// The LLM's label probability (log-probabilities) or self-report.
    pub signal: f32,
}

/// A logistic regression on `[1, logit(vote confidence), logit(support), logit(signal)]`
/// (the last only when `uses_signal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logit {
    pub weights: Vec<f64>,
}

fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(0.0025, 0.9975);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn features(vote_confidence: f32, support: f32, signal: f32, uses_signal: bool) -> Vec<f64> {
    let mut x = vec![1.0, logit(vote_confidence), logit(support)];
    if uses_signal {
        x.push(logit(signal));
    }
    x
}

impl Logit {
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.weights.iter().zip(x).map(|(w, v)| w * v).sum())
    }

    /// Newton's method on the L2-penalised log-likelihood (intercept not penalised).
    pub fn fit(xs: &[Vec<f64>], ys: &[bool]) -> Option<Logit> {
        let d = xs.first()?.len();
        let mut w = vec![0.0f64; d];
        for _ in 0..50 {
            let mut grad = vec![0.0f64; d];
            let mut hess = vec![vec![0.0f64; d]; d];
            for (x, &y) in xs.iter().zip(ys) {
                let p = sigmoid(w.iter().zip(x).map(|(a, b)| a * b).sum());
                let r = f64::from(u8::from(y)) - p;
                let s = (p * (1.0 - p)).max(1e-9);
                for i in 0..d {
                    grad[i] += r * x[i];
                    for j in 0..d {
                        hess[i][j] += s * x[i] * x[j];
                    }
                }
            }
            for i in 1..d {
                grad[i] -= RIDGE * w[i];
                hess[i][i] += RIDGE;
            }
            let step = solve(hess, grad)?;
            let size: f64 = step.iter().map(|s| s.abs()).fold(0.0, f64::max);
            for (wi, si) in w.iter_mut().zip(&step) {
                *wi += si;
            }
            if size < 1e-8 {
                break;
            }
        }
        w.iter().all(|v| v.is_finite()).then_some(Logit { weights: w })
    }
}

/// Solve `a · x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// The fitted disagreement band: both candidates' probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    pub llm: Logit,
    pub vote: Logit,
}

/// What the fit measured on the held-out answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArbiterStats {
    pub answers: usize,
    pub valid_rate: f64,
    /// The LLM's own answers (invalid ones wrong), the neighbours' labels, and the
    /// arbiter's choice cross-fitted (each half decided by a fit on the other half).
    pub llm_accuracy: f64,
    pub vote_accuracy: f64,
    pub arbiter_accuracy: Option<f64>,
    pub agree_rate: f64,
    /// Accuracy of the neighbours' label when the LLM agreed / disagreed.
    pub agree_accuracy: Option<f64>,
    pub disagree_llm_accuracy: Option<f64>,
    pub disagree_vote_accuracy: Option<f64>,
    /// ECE of the cross-fitted arbiter confidence.
    pub arbiter_ece: Option<f64>,
}

/// The arbiter for one LLM model at one k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arbiter {
    pub model: String,
    pub k: usize,
    /// Unix seconds.
    pub fitted_at: u64,
    pub agree: Option<IsotonicMap>,
    pub disagree: Option<Disagreement>,
    pub uses_signal: bool,
    /// Why a band was not fitted.
    pub notes: Vec<String>,
    pub stats: ArbiterStats,
    /// Its decisions on the held-out answers, cross-fitted (each half decided by the
    /// arbiter fitted on the other), for precision targets ([`super::routing`]). The
    /// label is not recorded: per-category targets fall back to these answers as a whole.
    #[serde(default)]
    pub routing: RoutePoints,
}

/// The arbiter's decision for one answered ticket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// True when the LLM's label wins (always when they agree).
    pub llm_wins: bool,
    /// Fitted probability that the winning label is right.
    pub confidence: f32,
    /// Fitted probability of the losing label (disagreement only).
    pub other: Option<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArbiterError {
    #[error("{answers} held-out LLM answers; an arbiter needs at least {MIN_ANSWERS}")]
    TooFew { answers: usize },
    #[error("neither band could be fitted: {0}")]
    NoBand(String),
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Fit the bands on `points`, without stats.
fn fit_bands(points: &[ArbiterPoint], uses_signal: bool) -> (Option<IsotonicMap>, Option<Disagreement>, Vec<String>) {
    let mut notes = Vec::new();
    let agree: Vec<(f32, bool)> = points
        .iter()
        .filter_map(|p| p.llm.filter(|l| l.agrees).map(|l| (p.vote_confidence, l.correct)))
        .collect();
    let agree_map = if agree.len() >= MIN_BAND_POINTS {
        IsotonicMap::fit(&agree)
    } else {
        notes.push(format!("agree band: {} answers, fewer than {MIN_BAND_POINTS}: not fitted", agree.len()));
        None
    };
    let dis: Vec<(Vec<f64>, bool, bool)> = points
        .iter()
        .filter_map(|p| {
            p.llm.filter(|l| !l.agrees).map(|l| {
                (features(p.vote_confidence, l.support, l.signal, uses_signal), l.correct, p.vote_correct)
            })
        })
        .collect();
    let disagree = if dis.len() >= MIN_BAND_POINTS {
        let xs: Vec<Vec<f64>> = dis.iter().map(|d| d.0.clone()).collect();
        let llm: Vec<bool> = dis.iter().map(|d| d.1).collect();
        let vote: Vec<bool> = dis.iter().map(|d| d.2).collect();
        match (Logit::fit(&xs, &llm), Logit::fit(&xs, &vote)) {
            (Some(llm), Some(vote)) => Some(Disagreement { llm, vote }),
            _ => {
                notes.push("disagree band: the regression did not converge: not fitted".into());
                None
            }
        }
    } else {
        notes.push(format!("disagree band: {} answers, fewer than {MIN_BAND_POINTS}: not fitted", dis.len()));
        None
    };
    (agree_map, disagree, notes)
}

/// Whether the LLM's signal varies enough over the answers to carry information.
fn signal_varies(points: &[ArbiterPoint]) -> bool {
    let s: Vec<f64> = points.iter().filter_map(|p| p.llm.map(|l| f64::from(l.signal))).collect();
    if s.len() < 2 {
        return false;
    }
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s.len() as f64;
    var.sqrt() > 0.01
}

impl Arbiter {
    pub fn fit(model: &str, k: usize, points: &[ArbiterPoint], fitted_at: u64) -> Result<Arbiter, ArbiterError> {
        if points.len() < MIN_ANSWERS {
            return Err(ArbiterError::TooFew { answers: points.len() });
        }
        let uses_signal = signal_varies(points);
        let (agree, disagree, notes) = fit_bands(points, uses_signal);
        if agree.is_none() && disagree.is_none() {
            return Err(ArbiterError::NoBand(notes.join("; ")));
        }
        // Cross-fitted: each half decided by the bands fitted on the other half.
        let halves: [Vec<ArbiterPoint>; 2] =
            [points.iter().step_by(2).copied().collect(), points.iter().skip(1).step_by(2).copied().collect()];
        let mut cross: Vec<(f64, bool)> = Vec::with_capacity(points.len());
        let mut decided_all = true;
        for (fit_on, score) in [(0, 1), (1, 0)] {
            let (a, d, _) = fit_bands(&halves[fit_on], uses_signal);
            let half = Arbiter {
                model: String::new(),
                k,
                fitted_at,
                agree: a,
                disagree: d,
                uses_signal,
                notes: Vec::new(),
                stats: ArbiterStats::default(),
                routing: RoutePoints::default(),
            };
            for p in &halves[score] {
                match p.llm {
                    None => cross.push((f64::from(p.vote_confidence), p.vote_correct)),
                    Some(l) => match half.decide(p.vote_confidence, l.agrees, l.support, l.signal) {
                        Some(dec) => {
                            let right = if dec.llm_wins { l.correct } else { p.vote_correct };
                            cross.push((f64::from(dec.confidence), right));
                        }
                        None => decided_all = false,
                    },
                }
            }
        }
        let answered: Vec<&LlmPoint> = points.iter().filter_map(|p| p.llm.as_ref()).collect();
        let stats = ArbiterStats {
            answers: points.len(),
            valid_rate: round4(answered.len() as f64 / points.len() as f64),
            llm_accuracy: round4(answered.iter().filter(|l| l.correct).count() as f64 / points.len() as f64),
            vote_accuracy: round4(share(points.iter().map(|p| p.vote_correct)).unwrap_or(0.0)),
            arbiter_accuracy: decided_all.then(|| share(cross.iter().map(|c| c.1)).map(round4)).flatten(),
            agree_rate: round4(answered.iter().filter(|l| l.agrees).count() as f64 / points.len() as f64),
            agree_accuracy: share(answered.iter().filter(|l| l.agrees).map(|l| l.correct)).map(round4),
            disagree_llm_accuracy: share(answered.iter().filter(|l| !l.agrees).map(|l| l.correct)).map(round4),
            disagree_vote_accuracy: share(
                points.iter().filter(|p| p.llm.is_some_and(|l| !l.agrees)).map(|p| p.vote_correct),
            )
            .map(round4),
            arbiter_ece: decided_all.then(|| ece(&cross, 10)).flatten().map(round4),
        };
        let mut routing = RoutePoints::default();
        if decided_all {
            for (confidence, right) in &cross {
                routing.push(*confidence as f32, u32::MAX, *right);
            }
        }
        Ok(Arbiter { model: model.to_string(), k, fitted_at, agree, disagree, uses_signal, notes, stats, routing })
    }

    /// The decision for an answer, or `None` when its band was not fitted.
    pub fn decide(&self, vote_confidence: f32, agrees: bool, support: f32, signal: f32) -> Option<Decision> {
        if agrees {
            let map = self.agree.as_ref()?;
            return Some(Decision { llm_wins: true, confidence: map.apply(vote_confidence), other: None });
        }
        let d = self.disagree.as_ref()?;
        let x = features(vote_confidence, support, signal, self.uses_signal);
        let (pl, pv) = (d.llm.probability(&x) as f32, d.vote.probability(&x) as f32);
        Some(if pl >= pv {
            Decision { llm_wins: true, confidence: pl, other: Some(pv) }
        } else {
            Decision { llm_wins: false, confidence: pv, other: Some(pl) }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random number in [0, 1) from an integer.
    fn u(i: u64, salt: u64) -> f32 {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
        (x >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Simulated answers: the vote is right with probability `vote_confidence` (a
    /// calibrated figure), the LLM right with probability `p`, independently; a wrong
    /// LLM answer agrees with a wrong vote one time in three.
    fn simulate(n: u64, p: f32) -> Vec<ArbiterPoint> {
        (0..n)
            .map(|i| {
                let vc = 0.3 + 0.69 * u(i, 1);
                let vote_correct = u(i, 2) < vc;
                let llm_correct = u(i, 3) < p;
                let agrees = match (vote_correct, llm_correct) {
                    (true, true) => true,
                    (false, false) => u(i, 4) < 0.33,
                    _ => false,
                };
                let support = if agrees { vc } else if llm_correct { 0.6 * (1.0 - vc) } else { 0.3 * (1.0 - vc) };
                ArbiterPoint {
                    vote_confidence: vc,
                    vote_correct,
                    llm: Some(LlmPoint { agrees, correct: llm_correct, support, signal: 0.9 }),
                }
            })
            .collect()
    }

    fn accuracy(a: &Arbiter, pts: &[ArbiterPoint]) -> f64 {
        let right = pts
            .iter()
            .filter(|p| {
                let l = p.llm.unwrap();
                let d = a.decide(p.vote_confidence, l.agrees, l.support, l.signal).unwrap();
                if d.llm_wins { l.correct } else { p.vote_correct }
            })
            .count();
        right as f64 / pts.len() as f64
    }

    #[test]
    fn a_weak_model_does_not_drag_the_answer_below_the_neighbours() {
        let train = simulate(3000, 0.6);
        let test: Vec<ArbiterPoint> = simulate(6000, 0.6).split_off(3000);
        let a = Arbiter::fit("m", 8, &train, 0).unwrap();
        assert!(!a.uses_signal, "a constant self-report carries nothing");
        let vote = test.iter().filter(|p| p.vote_correct).count() as f64 / test.len() as f64;
        let llm = test.iter().filter(|p| p.llm.unwrap().correct).count() as f64 / test.len() as f64;
        let arb = accuracy(&a, &test);
        assert!(arb >= vote.max(llm) + 0.01, "arbiter {arb} vs vote {vote}, llm {llm}");
        // Always taking the LLM's label is what the unfitted rule does: clearly worse.
        assert!(llm < vote - 0.05);
        let cross = a.stats.arbiter_accuracy.unwrap();
        assert!(cross >= a.stats.vote_accuracy, "{:?}", a.stats);
    }

    #[test]
    fn a_strong_model_wins_most_disagreements_and_confidence_is_calibrated() {
        let train = simulate(3000, 0.95);
        let a = Arbiter::fit("m", 8, &train, 0).unwrap();
        let test: Vec<ArbiterPoint> = simulate(6000, 0.95).split_off(3000);
        let vote = test.iter().filter(|p| p.vote_correct).count() as f64 / test.len() as f64;
        let arb = accuracy(&a, &test);
        assert!(arb >= 0.95 + 0.01 && arb > vote, "arbiter {arb}, vote {vote}");
        // Calibration of the decided confidence on the test points.
        let pts: Vec<(f64, bool)> = test
            .iter()
            .map(|p| {
                let l = p.llm.unwrap();
                let d = a.decide(p.vote_confidence, l.agrees, l.support, l.signal).unwrap();
                (f64::from(d.confidence), if d.llm_wins { l.correct } else { p.vote_correct })
            })
            .collect();
        assert!(ece(&pts, 10).unwrap() < 0.03, "{}", ece(&pts, 10).unwrap());
    }

    #[test]
    fn too_few_answers_or_bands_are_refused() {
        assert_eq!(Arbiter::fit("m", 8, &simulate(99, 0.9), 0), Err(ArbiterError::TooFew { answers: 99 }));
        // All agree: the disagreement band has no answers and is not fitted.
        let agreeing: Vec<ArbiterPoint> = (0..150)
            .map(|i| ArbiterPoint {
                vote_confidence: 0.9,
                vote_correct: i % 10 != 0,
                llm: Some(LlmPoint { agrees: true, correct: i % 10 != 0, support: 0.9, signal: 0.9 }),
            })
            .collect();
        let a = Arbiter::fit("m", 8, &agreeing, 0).unwrap();
        assert!(a.disagree.is_none() && a.agree.is_some());
        assert!(a.notes.iter().any(|n| n.starts_with("disagree band: 0 answers")), "{:?}", a.notes);
        assert_eq!(a.decide(0.9, false, 0.1, 0.9), None, "the unfitted band decides nothing");
        let d = a.decide(0.9, true, 0.9, 0.9).unwrap();
        assert!(d.llm_wins && (d.confidence - 135.5 / 151.0).abs() < 1e-4, "{d:?}");
        // No valid answer at all: nothing to fit.
        let invalid: Vec<ArbiterPoint> =
            (0..150).map(|_| ArbiterPoint { vote_confidence: 0.9, vote_correct: true, llm: None }).collect();
        assert!(matches!(Arbiter::fit("m", 8, &invalid, 0), Err(ArbiterError::NoBand(_))));
    }

    #[test]
    fn logistic_regression_recovers_a_known_relation() {
        // y = 1 iff 2x − 1 + noise > 0 with x in [-3, 3]: the slope must come out positive
        // and the probabilities ordered.
        let xs: Vec<Vec<f64>> = (0..400).map(|i| vec![1.0, -3.0 + 6.0 * f64::from(u(i, 9))]).collect();
        let ys: Vec<bool> = xs.iter().enumerate().map(|(i, x)| 2.0 * x[1] - 1.0 + f64::from(u(i as u64, 7) - 0.5) > 0.0).collect();
        let m = Logit::fit(&xs, &ys).unwrap();
        assert!(m.weights[1] > 1.0, "{:?}", m.weights);
        assert!(m.probability(&[1.0, 2.0]) > 0.9 && m.probability(&[1.0, -1.0]) < 0.1);
        assert_eq!(solve(vec![vec![2.0, 0.0], vec![0.0, 4.0]], vec![2.0, 8.0]), Some(vec![1.0, 2.0]));
        assert_eq!(solve(vec![vec![0.0, 0.0], vec![0.0, 0.0]], vec![1.0, 1.0]), None);
    }
}
