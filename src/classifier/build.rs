//! The one place a [`TicketResult`] is made: from the [`Decision`], the evidence it was
//! made on (when the pipeline got that far) and what asking the LLM cost.

use crate::result::{round3, FitRef, FitUsed, Neighbor, NeighbourAnswer, TicketResult};

use super::ask::LlmTrace;
use super::decide::{Decision, Verdict};
use super::evidence::Evidence;

/// The result for ticket `id` when it could not be classified at all (`detail` says why):
/// `needs_review`, `review_reason: error`, no category.
pub fn failed(id: &str, detail: impl Into<String>) -> TicketResult {
    result(id, Decision::failed(detail), None, LlmTrace::default(), 0.0)
}

/// The result for ticket `id`.
pub fn result(id: &str, d: Decision, e: Option<&Evidence<'_>>, trace: LlmTrace, latency_ms: f64) -> TicketResult {
    let review_reason = d.review_reason();
    let needs_review = !matches!(d.verdict, Verdict::Routed);
    let neighbors = e
        .map(|e| {
            e.nearest()
                .iter()
                .map(|n| Neighbor { id: n.example.id.clone(), label: n.example.label.clone(), score: round3(n.score) })
                .collect()
        })
        .unwrap_or_default();
    let neighbours = e.map(|e| {
        let j = &e.judgement;
        NeighbourAnswer { category: j.label.clone(), confidence: round3(j.confidence), probability: round3(j.probability) }
    });
    let fit = e.and_then(|e| e.model).map(|m| FitUsed {
        fitted_at: m.fitted_at,
        examples: m.stats.held_out,
        head: m.head_info.as_ref().filter(|_| m.head.is_some()).map(|h| FitRef { fitted_at: h.fitted_at, examples: h.examples }),
        arbiter: d.arbiter.clone(),
        calibration: (!m.calibration.is_empty()).then(|| m.calibration.clone()),
    });
    TicketResult {
        id: id.to_string(),
        category: d.category,
        subcategory: d.subcategory,
        urgency: d.urgency,
        summary: d.summary,
        reasoning: d.reasoning,
        secondary: d.secondary,
        confidence: d.confidence,
        raw_confidence: d.raw_confidence,
        llm_label_probability: d.llm_label_probability,
        needs_review,
        review_reason,
        method: d.method,
        neighbors,
        model: trace.model,
        lang: e.and_then(|e| e.language.lang.clone()),
        neighbours,
        llm_answer: d.llm_answer,
        fit,
        usage: trace.usage,
        llm_calls: trace.calls,
        latency_ms,
        error: d.error,
        warnings: d.warnings,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::result::{ResultMethod, ReviewKind, ReviewReason};

    #[test]
    fn outcomes_serialise_to_the_documented_strings() {
        let r = result("t1", Decision::failed("empty ticket"), None, LlmTrace::default(), 0.5);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["method"], "none");
        assert_eq!(v["review_reason"], "error: empty ticket");
        assert_eq!((v["needs_review"].as_bool(), v["error"].as_str()), (Some(true), Some("empty ticket")));
        let mut d = Decision::without_answer(Verdict::Review(ReviewReason::new(ReviewKind::Llm("llm_unavailable"), "HTTP 503")));
        d.method = ResultMethod::KnnShortcut;
        let v = serde_json::to_value(result("t2", d, None, LlmTrace::default(), 0.0)).unwrap();
        assert_eq!((v["method"].as_str(), v["review_reason"].as_str()), (Some("knn-shortcut"), Some("llm_unavailable: HTTP 503")));
        assert!(v["error"].is_null(), "a review is not an error unless the decision says so");
        for m in [ResultMethod::Rag, ResultMethod::ZeroShot, ResultMethod::FixedFewShot, ResultMethod::KnnFallback, ResultMethod::Knn] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(ReviewReason::new(ReviewKind::OutOfScope, "x").to_string(), "out_of_scope: x");
        assert_eq!(ReviewReason::new(ReviewKind::NoCloseExample, "x").to_string(), "no_close_example: x");
        assert!(v.get("neighbours").is_none() && v.get("lang").is_none(), "absent evidence is left out");
        let mut routed = Decision::without_answer(Verdict::Routed);
        routed.category = Some("Billing".into());
        let r = result("t3", routed, None, LlmTrace::default(), 0.0);
        assert!(!r.needs_review && r.review_reason.is_none() && r.error.is_none());
    }
}
