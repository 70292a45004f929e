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
