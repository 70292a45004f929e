//! The decision function on its own: every review reason, every LLM failure kind, the
//! arbiter and the fixed rules, precision targets and fitted language trust, with no
//! embedder and no store.

#![allow(clippy::unwrap_used)]

use super::decide::{decide, shortcut, Decision, LlmOutcome, Verdict};
use super::evidence::{Evidence, Language, Trust};
use super::routing::RoutePolicy;
use crate::example::{Example, ScoredExample};
use crate::fit::arbiter::{ArbiterPoint, LlmPoint};
use crate::fit::neighbours::{self, FitInput, HeldOutPoint, LabelSet, Settings};
use crate::fit::{Arbiter, Far, Judgement, NeighbourModel, OutOfScope};
use crate::guard::Answer;
use crate::knn::Vote;
use crate::result::{ResultMethod, ReviewKind, ReviewReason};
use crate::taxonomy::Taxonomy;

fn taxonomy() -> Taxonomy {
    Taxonomy::parse("name = \"t\"\n[[categories]]\nname = \"Billing\"\n[[categories]]\nname = \"Technical\"\n").unwrap()
}

/// A fitted neighbours' side (its figures do not matter here: only that there is one).
fn model() -> NeighbourModel {
    let labels = LabelSet { names: vec!["Billing".into(), "Technical".into()], out_of_scope: vec![false; 2] };
    let pts: Vec<HeldOutPoint> = (0..40).map(|i| HeldOutPoint::new(i % 2, vec![(i % 2, 0.9)], None)).collect();
    neighbours::fit(FitInput::new(&pts, labels, 40, 0), &Settings::default())
}

fn judgement(label: &str, p: f32, confidence: f32) -> Judgement {
    Judgement {
        label: Some(label.into()),
        probability: p,
        confidence,
        oos_probability: 0.0,
        out_of_scope: None,
        far: None,
        distribution: vec![(label.into(), p), (if label == "Billing" { "Technical" } else { "Billing" }.into(), 1.0 - p)],
    }
}

fn nearest(label: &str, n: usize, other: usize) -> Vec<ScoredExample> {
    let ex = |i: usize, l: &str| ScoredExample { score: 0.9 - i as f32 * 0.01, example: Example::new(format!("e{i}"), "t", l) };
    (0..n).map(|i| ex(i, label)).chain((n..n + other).map(|i| ex(i, "Technical"))).collect()
}

struct Case<'a> {
    judgement: Judgement,
    model: Option<&'a NeighbourModel>,
    trust: Trust,
    candidates: Vec<ScoredExample>,
}

fn case(j: Judgement, model: Option<&NeighbourModel>) -> Case<'_> {
    Case { judgement: j, model, trust: Trust::Covered, candidates: nearest("Billing", 8, 0) }
}

fn evidence<'a>(c: Case<'a>, tax: &'a Taxonomy, policy: &'a RoutePolicy) -> Evidence<'a> {
    let label = c.judgement.label.clone().unwrap_or_else(|| "Billing".into());
    let p = c.judgement.probability;
    Evidence {
        text: "I was charged twice",
        language: Language { lang: Some(if matches!(c.trust, Trust::Covered) { "en" } else { "de" }.into()), trust: c.trust },
        vote: Vote {
            label: label.clone(),
            share: p,
            subcategory: None,
            urgency: Some("Low".into()),
            top_score: 0.9,
            shares: vec![(label, p), ("Technical".into(), 1.0 - p)],
        },
        judgement: c.judgement,
        model: c.model,
        candidates: c.candidates,
        k: 8,
        taxonomy: tax,
        policy,
        notes: Vec::new(),
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

fn kind(d: &Decision) -> Option<ReviewKind> {
    d.review_reason().map(|r| r.kind)
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

/// Every way the neighbours' answer alone goes (or does not go) to review, in one table.
#[test]
fn the_neighbours_answer_alone_table() {
    let tax = taxonomy();
    let fixed = RoutePolicy::fixed(0.85);
    let m = model();
    let far = Far::Distant { similarity: 0.2, limit: 0.4, held_out_below: 0.01 };
    let oos = OutOfScope::Favoured { label: "Spam".into(), probability: 0.7 };
    let mut rows: Vec<(&str, Case<'_>, Option<ReviewKind>)> = vec![
        ("confident fitted answer is routed", case(judgement("Billing", 0.95, 0.97), Some(&m)), None),
        ("below the threshold", case(judgement("Billing", 0.6, 0.7), Some(&m)), Some(ReviewKind::LowConfidence)),
        (
            "an unfitted unanimous vote is shrunk below 1 but routed",
            case(judgement("Billing", 1.0, 1.0), None),
            None,
        ),
    ];
    let mut c = case(judgement("Billing", 0.95, 0.97), Some(&m));
    c.judgement.far = Some(far);
    rows.push(("no close example", c, Some(ReviewKind::NoCloseExample)));
    let mut c = case(judgement("Billing", 0.95, 0.97), Some(&m));
    c.judgement.out_of_scope = Some(oos);
    rows.push(("out of scope", c, Some(ReviewKind::OutOfScope)));
    let mut c = case(judgement("Billing", 0.95, 0.97), Some(&m));
    c.judgement.label = None;
    rows.push(("no in-scope label", c, Some(ReviewKind::OutOfScope)));
    let mut c = case(judgement("Billing", 0.95, 0.97), Some(&m));
    c.trust = Trust::Untrusted;
    rows.push(("a language nobody measured", c, Some(ReviewKind::Language)));
    let mut c = case(judgement("Billing", 0.95, 0.97), Some(&m));
    c.trust = Trust::Evidence { bound: 0.9, held_out: 40, accuracy: 0.97 };
    rows.push(("a language the collection's held-out examples vouch for", c, None));
    let mut c = case(judgement("Billing", 0.95, 0.97), Some(&m));
    c.trust = Trust::Evidence { bound: 0.6, held_out: 12, accuracy: 0.75 };
    rows.push(("a language where the neighbours were often wrong", c, Some(ReviewKind::LowConfidence)));
    let mut c = case(judgement("Billing", 0.87, 0.87), None);
    c.candidates = nearest("Billing", 1, 7);
    rows.push(("one near-duplicate does not make an unfitted vote confident", c, Some(ReviewKind::LowConfidence)));
    for (name, c, want) in rows {
        let e = evidence(c, &tax, &fixed);
        let d = decide(&e, &LlmOutcome::NotAsked, None, ResultMethod::Rag);
        assert_eq!(kind(&d), want, "{name}: {d:?}");
        assert_eq!(d.method, ResultMethod::Knn, "{name}");
        assert!(d.confidence < 1.0 || e.model.is_some(), "{name}: an unfitted vote never reaches 1");
        assert!(d.error.is_none(), "{name}: a review is not an error");
    }
}

#[test]
fn every_llm_failure_kind_falls_back_to_the_neighbours_for_review() {
    let (tax, fixed, m) = (taxonomy(), RoutePolicy::fixed(0.85), model());
    let e = evidence(case(judgement("Billing", 0.9, 0.95), Some(&m)), &tax, &fixed);
    for k in ["llm_unavailable", "llm_auth", "llm_rejected", "llm_bad_response"] {
        let d = decide(&e, &LlmOutcome::Failed(ReviewReason::new(ReviewKind::Llm(k), "HTTP 503")), None, ResultMethod::Rag);
        assert_eq!((d.method, d.category.as_deref()), (ResultMethod::KnnFallback, Some("Billing")), "{k}");
        assert_eq!(kind(&d), Some(ReviewKind::Llm(k)));
        assert!(d.error.as_deref().is_some_and(|x| x.starts_with(k)), "{k}: {:?}", d.error);
        assert_eq!(d.llm_answer.as_ref().unwrap().category, None, "no answer of the model's own");
    }
    let d = decide(&e, &LlmOutcome::Failed(ReviewReason::new(ReviewKind::InvalidAnswer, "bad label")), None, ResultMethod::Rag);
    assert_eq!(kind(&d), Some(ReviewKind::InvalidAnswer));
    assert!(d.error.is_none(), "an invalid answer is a review, not an error");
}

#[test]
fn fixed_rules_without_an_arbiter() {
    let (tax, fixed, m) = (taxonomy(), RoutePolicy::fixed(0.85), model());
    // A strong vote against the LLM: review, the LLM's valid answer is the suggestion,
    // its self-report capped by the neighbours' support (0.2): 0.5 + 0.5 × 0.2.
    let e = evidence(case(judgement("Billing", 0.8, 0.8), None), &tax, &fixed);
    let d = decide(&e, &answer("Technical", 0.9), None, ResultMethod::Rag);
    assert_eq!(d.category.as_deref(), Some("Technical"));
    assert_eq!(kind(&d), Some(ReviewKind::Disagreement));
    assert!((d.confidence - 0.6).abs() < 1e-3, "{}", d.confidence);
    // Agreement with a fitted neighbours' side takes their fitted confidence.
    let e = evidence(case(judgement("Billing", 0.8, 0.93), Some(&m)), &tax, &fixed);
    let d = decide(&e, &answer("Billing", 0.7), None, ResultMethod::Rag);
    assert_eq!(d.verdict, Verdict::Routed, "{d:?}");
    assert!((d.confidence - 0.93).abs() < 1e-3);
    assert_eq!((d.urgency.as_deref(), d.method), (Some("High"), ResultMethod::Rag), "the LLM's urgency");
    // A low self-report: below the threshold.
    let e = evidence(case(judgement("Billing", 0.9, 0.95), None), &tax, &fixed);
    assert_eq!(kind(&decide(&e, &answer("Billing", 0.5), None, ResultMethod::Rag)), Some(ReviewKind::LowConfidence));
}

#[test]
fn a_fitted_arbiter_lets_confident_neighbours_overrule_a_weak_model() {
    let (tax, fixed, m) = (taxonomy(), RoutePolicy::fixed(0.85), model());
    let a = weak_model_arbiter();
    let e = evidence(case(judgement("Billing", 0.95, 0.98), Some(&m)), &tax, &fixed);
    let d = decide(&e, &answer("Technical", 0.9), Some(&a), ResultMethod::Rag);
    assert_eq!(d.category.as_deref(), Some("Billing"), "{d:?}");
    assert!(d.reasoning.contains("arbiter: Billing"), "{}", d.reasoning);
    assert_eq!(d.llm_answer.as_ref().unwrap().category.as_deref(), Some("Technical"), "the model's own answer is kept");
    assert!(d.arbiter.is_some());
    let d = decide(&e, &answer("Billing", 0.9), Some(&a), ResultMethod::Rag);
    assert!((d.confidence - a.agree.as_ref().unwrap().apply(0.98)).abs() < 1e-3);
    // Without the arbiter, the same weak answer would have won.
    assert_eq!(decide(&e, &answer("Technical", 0.9), None, ResultMethod::Rag).category.as_deref(), Some("Technical"));
}

#[test]
fn an_uncovered_language_leaves_the_answer_to_the_llm_and_evidence_holds_against_it() {
    let (tax, fixed, m) = (taxonomy(), RoutePolicy::fixed(0.85), model());
    let a = weak_model_arbiter();
    let mut c = case(judgement("Billing", 0.95, 0.98), Some(&m));
    c.trust = Trust::Untrusted;
    let e = evidence(c, &tax, &fixed);
    let d = decide(&e, &answer("Technical", 0.95), Some(&a), ResultMethod::Rag);
    assert_eq!(d.category.as_deref(), Some("Technical"), "the vote is not evidence here");
    assert!((d.confidence - a.stats.llm_accuracy as f32).abs() < 1e-3, "bounded by the model's held-out accuracy");
    assert_eq!(kind(&d), Some(ReviewKind::LowConfidence));
    // No close example holds whatever the LLM answers.
    let mut c = case(judgement("Billing", 0.95, 0.98), Some(&m));
    c.judgement.far = Some(Far::NoiseLike { margin: -0.1, limit: 0.05 });
    let e = evidence(c, &tax, &fixed);
    assert_eq!(kind(&decide(&e, &answer("Billing", 0.99), None, ResultMethod::Rag)), Some(ReviewKind::NoCloseExample));
}

#[test]
fn a_subcategory_failure_sends_to_review_and_reports_an_llm_error() {
    let (tax, fixed) = (taxonomy(), RoutePolicy::fixed(0.85));
    let e = evidence(case(judgement("Billing", 0.9, 0.95), None), &tax, &fixed);
    let LlmOutcome::Answered { answer: a, .. } = answer("Billing", 0.95) else { unreachable!() };
    let failed = LlmOutcome::Answered {
        answer: a,
        label_probability: None,
        subcategory_failure: Some(ReviewReason::new(ReviewKind::Subcategory, "llm_unavailable: x")),
    };
    let d = decide(&e, &failed, None, ResultMethod::Rag);
    assert_eq!(kind(&d), Some(ReviewKind::Subcategory));
    assert_eq!(d.category.as_deref(), Some("Billing"), "the category stands");
}

#[test]
fn a_precision_target_without_evidence_routes_nothing_and_the_shortcut_needs_a_fit() {
    let tax = taxonomy();
    let m = model();
    let policy = RoutePolicy::new(0.85, Some(0.98), &tax, None, None);
    let e = evidence(case(judgement("Billing", 1.0, 1.0), None), &tax, &policy);
    let d = decide(&e, &LlmOutcome::NotAsked, None, ResultMethod::Rag);
    assert_eq!(kind(&d), Some(ReviewKind::LowConfidence));
    assert!(d.review_reason().unwrap().detail.contains("precision target"), "{:?}", d.review_reason());
    let fixed = RoutePolicy::fixed(0.85);
    let e = evidence(case(judgement("Billing", 0.95, 0.97), None), &tax, &fixed);
    assert!(shortcut(&e).is_none(), "no fit, no shortcut");
    let e = evidence(case(judgement("Billing", 0.95, 0.97), Some(&m)), &tax, &fixed);
    let d = decide(&e, &LlmOutcome::Shortcut { threshold: 0.9 }, None, ResultMethod::Rag);
    assert_eq!((d.method, &d.verdict), (ResultMethod::KnnShortcut, &Verdict::Routed));
    assert!(d.reasoning.contains("shortcut threshold"));
}

#[test]
fn failures_before_any_evidence_are_errors() {
    let d = Decision::failed("empty ticket");
    assert_eq!((kind(&d), d.method, d.error.as_deref()), (Some(ReviewKind::Error), ResultMethod::None, Some("empty ticket")));
}
