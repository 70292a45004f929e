//! The decision once the LLM has answered (or failed): one place that sets the
//! final label, confidence and review flag from the evidence.
//!
//! - The LLM failed or gave no valid answer: the neighbours' label is the suggestion
//!   (`knn-fallback`) and a person decides.
//! - The model does not cover the ticket's language: the LLM's answer stands, with its
//!   own signal (and no more than its held-out accuracy, when an arbiter was fitted).
//! - A fitted arbiter for this model and k: the label with the higher fitted
//!   probability wins, and that probability is the confidence ([`crate::fit::arbiter`]).
//! - Otherwise the fixed rules: the LLM's label, its self-report capped by the
//!   neighbours' support (a label no neighbour backs cannot exceed 0.5), the fitted
//!   neighbours' confidence when both agree, and review when a strong vote disagrees.
//!
//! The neighbours' out-of-scope flag, a failed subcategory request and a confidence
//! below the threshold send the ticket to review in that order.

use crate::example::ScoredExample;
use crate::fit::Arbiter;
use crate::guard::{extractive_summary, Answer};
use crate::llm::{field_probability, LlmRequest, LlmResponse};
use crate::result::{round3, LlmAnswer, ResultMethod, ReviewKind, ReviewReason, TicketResult};
use crate::taxonomy::label_key;

use super::Evidence;

/// The LLM requests for one ticket: the (stage 1) request, and with two-stage prompts
/// the examples stage 2 picks the chosen category's demonstrations from (at most `k`).
pub(super) struct Stages {
    pub request: LlmRequest,
    pub subcategory: Option<Vec<ScoredExample>>,
    pub k: usize,
}

/// What the LLM gave.
pub(super) enum LlmOutcome {
    Failed(ReviewReason),
    Answered { answer: Answer, label_probability: Option<f32>, subcategory_failure: Option<ReviewReason> },
}

/// The probability the model gave the label it wrote, from its token log-probabilities.
pub(super) fn label_probability(response: &LlmResponse) -> Option<f32> {
    response.logprobs.as_deref().and_then(|t| field_probability(&response.text, t, "category"))
}

/// Set `result` (the neighbours' answer so far) from the LLM's outcome.
pub(super) fn apply(
    result: &mut TicketResult,
    outcome: LlmOutcome,
    e: &Evidence<'_>,
    arbiter: Option<&Arbiter>,
    method: ResultMethod,
) {
    let (answer, label_probability, subcategory_failure) = match outcome {
        LlmOutcome::Failed(reason) => {
            // Keep the neighbours' label as the suggestion; a person decides.
            result.method = ResultMethod::KnnFallback;
            result.llm_answer = Some(LlmAnswer { category: None, confidence: None, support: None });
            if matches!(reason.kind, ReviewKind::Llm(_)) {
                result.error = Some(reason.to_string());
            }
            result.flag(reason);
            return;
        }
        LlmOutcome::Answered { answer, label_probability, subcategory_failure } => {
            (answer, label_probability, subcategory_failure)
        }
    };
    let j = &e.judgement;
    let support = j.probability_of(&answer.category);
    // The model's signal: its token probability for the label when the provider
    // returned log-probabilities (the lower of that and its self-report), else the
    // self-report.
    let signal = label_probability.map_or(answer.confidence, |p| p.min(answer.confidence));
    let capped = signal.min(0.5 + 0.5 * support);
    let agrees = j.label.as_deref().is_some_and(|v| label_key(v) == label_key(&answer.category));
    result.method = method;
    result.llm_label_probability = label_probability.map(round3);
    result.llm_answer =
        Some(LlmAnswer { category: Some(answer.category.clone()), confidence: Some(answer.confidence), support: Some(round3(support)) });
    result.needs_review = false;
    result.review_reason = None;

    let decision = if e.language.covered { arbiter.and_then(|a| a.decide(j.confidence, agrees, support, signal)) } else { None };
    let mut llm_wins = true;
    let mut disagreement = None;
    let confidence = if !e.language.covered {
        // The vote is not evidence here; the LLM's held-out accuracy bounds its signal.
        let bound = arbiter.map_or(1.0, |a| a.stats.llm_accuracy as f32);
        result.raw_confidence = None;
        result.reasoning = format!(
            "{} (the embedding model does not cover {}: the LLM's answer stands without the neighbours)",
            answer.reasoning,
            e.language.lang.as_deref().unwrap_or("this language")
        );
        signal.min(bound)
    } else if let Some(d) = decision {
        llm_wins = d.llm_wins;
        result.raw_confidence = Some(round3(capped));
        result.reasoning = answer.reasoning.clone();
        if !agrees {
            let (winner, loser) = if d.llm_wins {
                (answer.category.as_str(), j.label.as_deref().unwrap_or("none"))
            } else {
                (j.label.as_deref().unwrap_or("none"), answer.category.as_str())
            };
            result.reasoning.push_str(&format!(
                " [arbiter: {winner} (fitted probability {:.2}) over {loser} ({:.2}), fitted on this model's answers to held-out examples]",
                d.confidence,
                d.other.unwrap_or(0.0)
            ));
        }
        d.confidence
    } else {
        result.raw_confidence = e.model.map(|_| round3(capped));
        result.reasoning = answer.reasoning.clone();
        if !agrees && j.probability >= 0.5 {
            disagreement = Some(ReviewReason::new(
                ReviewKind::Disagreement,
                format!(
                    "the model chose {} but the neighbours vote {} (probability {:.2})",
                    answer.category,
                    j.label.as_deref().unwrap_or("none"),
                    j.probability
                ),
            ));
        }
        // With a fitted neighbours' side, an answer that agrees with it gets its
        // fitted probability; otherwise the capped self-report, which no held-out data
        // has calibrated.
        match e.model {
            Some(_) if agrees => j.confidence,
            _ => capped,
        }
    };
    if llm_wins {
        result.category = Some(answer.category.clone());
        result.subcategory = answer.subcategory.clone();
        result.secondary = answer.secondary.clone();
    }
    // When the neighbours' label wins, their subcategory (already in `result`) stays.
    result.urgency = answer.urgency.clone().or_else(|| e.vote.urgency.clone());
    result.summary = if answer.summary.is_empty() { extractive_summary(e.text) } else { answer.summary.clone() };
    result.confidence = round3(confidence);
    result.warnings.extend(answer.warnings.iter().cloned());

    let out_of_scope = j.out_of_scope.as_ref().filter(|_| e.language.covered).map(|reason| {
        ReviewReason::new(ReviewKind::OutOfScope, reason.strip_prefix("out_of_scope: ").unwrap_or(reason))
    });
    let low = (confidence < e.threshold).then(|| {
        ReviewReason::new(
            ReviewKind::LowConfidence,
            match decision {
                Some(_) => format!("fitted probability {confidence:.2} is below {:.2}", e.threshold),
                None => format!(
                    "{confidence:.2} is below {:.2} (model {signal:.2}, neighbour support {support:.2})",
                    e.threshold
                ),
            },
        )
    });
    if let Some(reason) = out_of_scope.or(disagreement).or(subcategory_failure).or(low) {
        result.flag(reason);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fit::arbiter::{ArbiterPoint, LlmPoint};
    use crate::fit::neighbours::{self, HeldOutPoint, LabelSet, Settings};
    use crate::fit::{Judgement, NeighbourModel};
    use crate::knn::Vote;
    use crate::lang::Assessment;
    use crate::result::TicketResult;
    use std::time::Instant;

    fn vote(label: &str, share: f32) -> Vote {
        Vote {
            label: label.into(),
            share,
            subcategory: None,
            urgency: Some("Low".into()),
            top_score: 0.8,
            shares: vec![(label.into(), share), ("Technical".into(), 1.0 - share)],
        }
    }

    fn judgement(label: &str, p: f32, confidence: f32) -> Judgement {
        Judgement {
            label: Some(label.into()),
            probability: p,
            confidence,
            oos_probability: 0.0,
            out_of_scope: None,
            distribution: vec![(label.into(), p), ("Technical".into(), 1.0 - p)],
        }
    }

    /// A fitted neighbours' side (its figures do not matter here: only that there is one).
    fn model() -> NeighbourModel {
        let labels = LabelSet { names: vec!["Billing".into(), "Technical".into()], out_of_scope: vec![false; 2] };
        let pts: Vec<HeldOutPoint> =
            (0..40).map(|i| HeldOutPoint { gold: i % 2, neighbours: vec![(i % 2, 0.9)], head: None }).collect();
        neighbours::fit(&pts, labels, None, None, None, &Settings::default(), 40, 0)
    }

    fn evidence<'a>(j: Judgement, m: Option<&'a NeighbourModel>, covered: bool) -> Evidence<'a> {
        Evidence {
            text: "I was charged twice",
            language: Assessment { lang: Some(if covered { "en" } else { "es" }.into()), covered },
            vote: vote(j.label.as_deref().unwrap_or("Billing"), j.probability),
            judgement: j,
            model: m,
            candidates: Vec::new(),
            k: 8,
            threshold: 0.85,
        }
    }

    fn answer(category: &str, confidence: f32) -> LlmOutcome {
        LlmOutcome::Answered {
            answer: Answer {
                category: category.into(),
                subcategory: None,
                urgency: Some("High".into()),
                summary: "Charged twice".into(),
                reasoning: "the customer says so".into(),
                confidence,
                secondary: Vec::new(),
                warnings: Vec::new(),
            },
            label_probability: None,
            subcategory_failure: None,
        }
    }

    fn base(e: &Evidence<'_>) -> TicketResult {
        let mut r = TicketResult::failed("t", String::new(), Instant::now());
        r.error = None;
        r.review_reason = None;
        r.needs_review = false;
        r.category = e.judgement.label.clone();
        r.confidence = e.judgement.confidence;
        r.method = ResultMethod::Knn;
        r
    }

    fn decide(e: &Evidence<'_>, outcome: LlmOutcome, arbiter: Option<&Arbiter>) -> TicketResult {
        let mut r = base(e);
        apply(&mut r, outcome, e, arbiter, ResultMethod::Rag);
        r
    }

    /// An arbiter fitted on answers where the LLM is right 60 % of the time and the
    /// neighbours' confidence is informative.
    fn weak_model_arbiter() -> Arbiter {
        let pts: Vec<ArbiterPoint> = (0..400u32)
            .map(|i| {
                let vc = 0.5 + (i % 50) as f32 / 100.0;
                let vote_correct = (i * 7919 % 100) as f32 / 100.0 < vc;
                let llm_correct = i % 5 < 3;
                let agrees = vote_correct && llm_correct;
                ArbiterPoint {
                    vote_confidence: vc,
                    vote_correct,
                    llm: Some(LlmPoint { agrees, correct: llm_correct, support: if agrees { vc } else { 0.1 }, signal: 0.9 }),
                }
            })
            .collect();
        Arbiter::fit("m", 8, &pts, 0).unwrap()
    }

    #[test]
    fn a_failed_llm_falls_back_to_the_neighbours_for_review() {
        let e = evidence(judgement("Billing", 0.9, 0.95), None, true);
        let r = decide(&e, LlmOutcome::Failed(ReviewReason::new(ReviewKind::Llm("llm_unavailable"), "HTTP 503")), None);
        assert_eq!((r.method, r.category.as_deref()), (ResultMethod::KnnFallback, Some("Billing")));
        assert!(r.needs_review && r.error.is_some());
        assert_eq!(r.llm_answer.unwrap().category, None, "no answer of the model's own");
        let r = decide(&e, LlmOutcome::Failed(ReviewReason::new(ReviewKind::InvalidAnswer, "bad label")), None);
        assert_eq!(r.review_kind(), Some(ReviewKind::InvalidAnswer));
        assert!(r.error.is_none(), "an invalid answer is a review, not an error");
    }

    #[test]
    fn without_a_fit_a_strong_vote_against_the_llm_goes_to_review() {
        let e = evidence(judgement("Billing", 0.8, 0.8), None, true);
        let r = decide(&e, answer("Technical", 0.9), None);
        assert_eq!(r.category.as_deref(), Some("Technical"), "the LLM's valid answer is the suggestion");
        assert_eq!(r.review_kind(), Some(ReviewKind::Disagreement));
        // Its self-report is capped by the neighbours' support (0.2): 0.5 + 0.5 × 0.2.
        assert!((r.confidence - 0.6).abs() < 1e-3, "{}", r.confidence);
        // Agreement with a fitted neighbours' side takes their fitted confidence.
        let m = model();
        let e = evidence(judgement("Billing", 0.8, 0.93), Some(&m), true);
        let r = decide(&e, answer("Billing", 0.7), None);
        assert!(!r.needs_review && (r.confidence - 0.93).abs() < 1e-3, "{r:?}");
        assert_eq!(r.urgency.as_deref(), Some("High"), "the LLM's urgency");
    }

    #[test]
    fn a_fitted_arbiter_lets_confident_neighbours_overrule_a_weak_model() {
        let a = weak_model_arbiter();
        let m = model();
        let e = evidence(judgement("Billing", 0.95, 0.98), Some(&m), true);
        let r = decide(&e, answer("Technical", 0.9), Some(&a));
        assert_eq!(r.category.as_deref(), Some("Billing"), "{r:?}");
        assert!(r.reasoning.contains("arbiter: Billing"), "{}", r.reasoning);
        assert_eq!(r.llm_answer.as_ref().unwrap().category.as_deref(), Some("Technical"), "the model's own answer is kept");
        // Agreement: the agree band's fitted probability.
        let r = decide(&e, answer("Billing", 0.9), Some(&a));
        assert_eq!(r.category.as_deref(), Some("Billing"));
        assert!((r.confidence - a.agree.as_ref().unwrap().apply(0.98)).abs() < 1e-3);
        // Without the arbiter, the same weak answer would have won.
        let r = decide(&e, answer("Technical", 0.9), None);
        assert_eq!(r.category.as_deref(), Some("Technical"));
    }

    #[test]
    fn an_uncovered_language_leaves_the_decision_to_the_llm() {
        let a = weak_model_arbiter();
        let m = model();
        let e = evidence(judgement("Billing", 0.95, 0.98), Some(&m), false);
        let r = decide(&e, answer("Technical", 0.95), Some(&a));
        assert_eq!(r.category.as_deref(), Some("Technical"), "the vote is not evidence here");
        // Bounded by the model's held-out accuracy.
        assert!((r.confidence - a.stats.llm_accuracy as f32).abs() < 1e-3, "{}", r.confidence);
        assert_eq!(r.review_kind(), Some(ReviewKind::LowConfidence));
    }

    #[test]
    fn out_of_scope_and_subcategory_failures_send_to_review() {
        let mut j = judgement("Billing", 0.9, 0.95);
        j.out_of_scope = Some("out_of_scope: unlike every example".into());
        let e = evidence(j, None, true);
        let r = decide(&e, answer("Billing", 0.95), None);
        assert_eq!(r.review_kind(), Some(ReviewKind::OutOfScope));
        let e = evidence(judgement("Billing", 0.9, 0.95), None, true);
        let LlmOutcome::Answered { answer: a, .. } = answer("Billing", 0.95) else { unreachable!() };
        let failed = LlmOutcome::Answered {
            answer: a,
            label_probability: None,
            subcategory_failure: Some(ReviewReason::new(ReviewKind::Subcategory, "invalid_answer: x")),
        };
        let r = decide(&e, failed, None);
        assert_eq!(r.review_kind(), Some(ReviewKind::Subcategory));
        let r = decide(&e, answer("Billing", 0.5), None);
        assert_eq!(r.review_kind(), Some(ReviewKind::LowConfidence), "0.5 is below 0.85");
    }
}
