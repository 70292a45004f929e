//! The decision: one pure function ([`decide`]) from the evidence about a ticket and
//! what the LLM gave to what happens to it ([`Verdict`]: routed, review with a typed
//! reason, failed) and the answer reported with it. No I/O, no embedder, no store;
//! the result is built from the [`Decision`] once ([`super::build`]).
//!
//! - The neighbours' answer: the fitted judgement's label and confidence (without a fit
//!   the vote share, shrunk by how many of the neighbours agree: a handful of
//!   neighbours never make a confidence of 1), bounded by the language's held-out
//!   record where the model does not cover the language, and the taxonomy's priority
//!   order among the issues the neighbours see.
//! - Review reasons, first that applies: an untrusted language, no close example, out
//!   of scope, no in-scope label, a disagreement the fixed rules will not settle, a
//!   failed subcategory request, a confidence below the bar ([`super::routing`]).
//! - With an LLM answer: the arbiter fitted for the model decides which label wins and
//!   with what probability; without one, the fixed rules (the LLM's valid answer, its
//!   self-report capped by the neighbours' support; the neighbours' fitted confidence
//!   when both agree; review when a strong vote disagrees).

use crate::fit::Arbiter;
use crate::guard::{extractive_summary, Answer};
use crate::llm::{field_probability, LlmResponse};
use crate::result::{round3, FitRef, LlmAnswer, ResultMethod, ReviewKind, ReviewReason, SecondaryIssue};
use crate::taxonomy::label_key;

use super::evidence::{Evidence, Trust};
use super::routing::{Bar, Source};

/// What the LLM gave for a ticket, or why it was not asked.
#[derive(Debug, Clone)]
pub enum LlmOutcome {
    /// No LLM is configured.
    NotAsked,
    /// The neighbours were decisive: the LLM was not asked (`knn-shortcut`).
    Shortcut { threshold: f32 },
    /// The request failed (kind `llm_*`) or the answer stayed invalid after one repair.
    Failed(ReviewReason),
    Answered {
        answer: Answer,
        /// The model's probability for its label, from token log-probabilities.
        label_probability: Option<f32>,
        /// Two-stage prompts: the subcategory request failed (the category stands).
        subcategory_failure: Option<ReviewReason>,
    },
}

/// The probability the model gave the label it wrote, from its token log-probabilities.
pub fn label_probability(response: &LlmResponse) -> Option<f32> {
    response.logprobs.as_deref().and_then(|t| field_probability(&response.text, t, "category"))
}

/// What happens to the ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Routed without review.
    Routed,
    /// To a person, for this reason; the answer is the suggestion.
    Review(ReviewReason),
    /// No answer at all (bad input, embedding or retrieval failure).
    Failed(String),
}

/// The decision and the answer reported with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub method: ResultMethod,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub secondary: Vec<SecondaryIssue>,
    pub urgency: Option<String>,
    pub summary: String,
    pub reasoning: String,
    pub confidence: f32,
    /// The unfitted figure when `confidence` comes from a fit.
    pub raw_confidence: Option<f32>,
    pub llm_answer: Option<LlmAnswer>,
    pub llm_label_probability: Option<f32>,
    /// The arbiter's fit, when it decided.
    pub arbiter: Option<FitRef>,
    /// What went wrong on the way (an LLM failure), also when the ticket got an answer.
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl Decision {
    /// No answer: the ticket goes to review as an error.
    pub fn failed(detail: impl Into<String>) -> Decision {
        Decision::without_answer(Verdict::Failed(detail.into()))
    }

    /// No answer, for `verdict`.
    pub fn without_answer(verdict: Verdict) -> Decision {
        let error = match &verdict {
            Verdict::Failed(d) => Some(d.clone()),
            _ => None,
        };
        Decision {
            verdict,
            method: ResultMethod::None,
            category: None,
            subcategory: None,
            secondary: Vec::new(),
            urgency: None,
            summary: String::new(),
            reasoning: String::new(),
            confidence: 0.0,
            raw_confidence: None,
            llm_answer: None,
            llm_label_probability: None,
            arbiter: None,
            error,
            warnings: Vec::new(),
        }
    }

    /// The review reason, when the ticket goes to a person.
    pub fn review_reason(&self) -> Option<ReviewReason> {
        match &self.verdict {
            Verdict::Routed => None,
            Verdict::Review(r) => Some(r.clone()),
            Verdict::Failed(d) => Some(ReviewReason::new(ReviewKind::Error, d.clone())),
        }
    }
}

/// The neighbours' answer, before any LLM.
struct Neighbours {
    category: Option<String>,
    subcategory: Option<String>,
    secondary: Vec<SecondaryIssue>,
    confidence: f32,
    reasoning: String,
    /// Why their answer alone would not be routed.
    review: Option<ReviewReason>,
}

fn low(confidence: f32, bar: &Bar, what: String) -> Option<ReviewReason> {
    (!bar.clears(confidence)).then(|| ReviewReason::new(ReviewKind::LowConfidence, format!("{what} is below {bar}")))
}

/// Why the neighbours' evidence alone rules the ticket out, before any confidence. No
/// close example comes first: keyboard mashing read as Spanish is noise, not Spanish
/// (a far ticket in an untrusted language says both).
fn ruled_out(e: &Evidence<'_>) -> Option<ReviewReason> {
    let j = &e.judgement;
    let untrusted = !e.language.trust.trusted();
    let lang = e.language.lang.as_deref().unwrap_or("another language");
    if let Some(far) = &j.far {
        let also = if untrusted { format!(" (and the ticket is in {lang}, which the embedding model does not cover)") } else { String::new() };
        return Some(ReviewReason::new(ReviewKind::NoCloseExample, format!("{far}{also}")));
    }
    if untrusted {
        return Some(ReviewReason::new(
            ReviewKind::Language,
            format!(
                "the ticket is in {lang} and neither the embedding model nor the collection's held-out examples cover it, so the neighbours' vote is not trusted"
            ),
        ));
    }
    if let Some(oos) = &j.out_of_scope {
        return Some(ReviewReason::new(ReviewKind::OutOfScope, oos.to_string()));
    }
    j.label.is_none().then(|| ReviewReason::new(ReviewKind::OutOfScope, "no in-scope example among the nearest examples"))
}

fn subcategory_for(e: &Evidence<'_>, label: &str) -> Option<String> {
    if label_key(label) == label_key(&e.vote.label) {
        return e.vote.subcategory.clone();
    }
    let key = label_key(label);
    e.candidates.iter().find(|c| label_key(&c.example.label) == key).and_then(|c| c.example.subcategory.clone())
}

fn neighbours(e: &Evidence<'_>) -> Neighbours {
    let j = &e.judgement;
    let nearest = e.nearest();
    let n_same = |l: &str| nearest.iter().filter(|n| label_key(&n.example.label) == label_key(l)).count();
    let mut reasoning = match &j.label {
        Some(l) => format!(
            "{} of {} nearest examples are {l} (similarity-weighted share {:.2}; nearest similarity {:.2})",
            n_same(l),
            nearest.len(),
            e.vote.share_of(l),
            e.vote.top_score
        ),
        None => format!("none of the {} nearest examples has an in-scope label", nearest.len()),
    };
    let mut confidence = j.confidence;
    match (e.model, &j.label) {
        (Some(m), Some(_)) if m.head.is_some() => reasoning.push_str(&format!(
            "; with the fitted head (weight {:.2}) its probability is {:.2}",
            m.head_weight, j.probability
        )),
        (None, Some(l)) => {
            // No fit: nothing measured this vote, so no more than the share of
            // neighbours that agree (smoothed) supports.
            let agree = (n_same(l) as f32 + 0.5) / (nearest.len() as f32 + 1.0);
            if agree < confidence {
                confidence = agree;
                reasoning.push_str(&format!("; not fitted: confidence shrunk to {agree:.2} by the neighbours that agree"));
            }
        }
        _ => {}
    }
    if let (Trust::Evidence { bound, held_out, accuracy }, Some(lang)) = (e.language.trust, &e.language.lang) {
        if bound < confidence {
            confidence = bound;
        }
        reasoning.push_str(&format!(
            "; {lang} is not covered by the embedding model, but the neighbours were right on {:.0} % of {held_out} held-out {lang} examples (confidence at most {bound:.2})",
            accuracy * 100.0
        ));
    }
    let mut out = Neighbours {
        category: j.label.clone(),
        subcategory: j.label.as_deref().and_then(|l| subcategory_for(e, l)),
        secondary: Vec::new(),
        confidence,
        reasoning,
        review: ruled_out(e),
    };
    // Secondary issues from the fitted rule, and the primary by the taxonomy's priority
    // order: after a swap the confidence is the new label's uncalibrated probability.
    if let (Some(rule), Some(category)) = (e.model.and_then(|m| m.secondary.as_ref()), &j.label) {
        out.secondary = crate::secondary::from_neighbours(e.taxonomy, j, rule, nearest);
        let mut category = category.clone();
        if let Some(note) = crate::secondary::order_by_priority(e.taxonomy, &mut category, &mut out.secondary) {
            let p = j.probability_of(&category);
            out.confidence = out.confidence.min(p);
            out.subcategory = subcategory_for(e, &category);
            out.reasoning.push_str(&format!("; {note} (its probability {p:.2} is the confidence)"));
            out.category = Some(category);
        }
    }
    if out.review.is_none() {
        if let Some(category) = &out.category {
            let bar = e.policy.bar(Source::Neighbours, category);
            let what = match e.model {
                Some(_) => format!("fitted confidence {:.2} (neighbours' probability {:.2})", out.confidence, j.probability),
                None => format!("neighbour confidence {:.2}", out.confidence),
            };
            out.review = low(out.confidence, &bar, what);
        }
    }
    out
}

/// True when the LLM need not be asked: the neighbours' answer would be routed and their
/// fitted confidence reaches the collection's shortcut threshold.
pub fn shortcut(e: &Evidence<'_>) -> Option<f32> {
    let m = e.model?;
    let nb = neighbours(e);
    let trusted = matches!(e.language.trust, Trust::Covered);
    (trusted && nb.review.is_none() && m.decisive(e.judgement.confidence)).then(|| m.shortcut_confidence.unwrap_or(1.0))
}

/// Decide for one ticket. `method`: what an LLM answer is reported as (`rag`,
/// `zero-shot`, `fixed-few-shot`); `arbiter`: the one fitted for this LLM model and k.
pub fn decide(e: &Evidence<'_>, llm: &LlmOutcome, arbiter: Option<&Arbiter>, method: ResultMethod) -> Decision {
    let nb = neighbours(e);
    let mut d = Decision {
        verdict: nb.review.clone().map_or(Verdict::Routed, Verdict::Review),
        method: ResultMethod::Knn,
        category: nb.category.clone(),
        subcategory: nb.subcategory.clone(),
        secondary: nb.secondary.clone(),
        urgency: e.vote.urgency.clone(),
        summary: extractive_summary(e.text),
        reasoning: nb.reasoning.clone(),
        confidence: round3(nb.confidence),
        raw_confidence: e.model.map(|_| round3(e.judgement.probability)),
        llm_answer: None,
        llm_label_probability: None,
        arbiter: None,
        error: None,
        warnings: e.notes.clone(),
    };
    match llm {
        LlmOutcome::NotAsked => {}
        LlmOutcome::Shortcut { threshold } => {
            d.method = ResultMethod::KnnShortcut;
            d.reasoning.push_str(&format!(
                "; fitted confidence {:.3} is at or above the collection's shortcut threshold {threshold:.3}: the LLM was not called",
                e.judgement.confidence
            ));
        }
        LlmOutcome::Failed(reason) => {
            // The neighbours' label is the suggestion; a person decides.
            d.method = ResultMethod::KnnFallback;
            d.llm_answer = Some(LlmAnswer { category: None, confidence: None, support: None });
            if matches!(reason.kind, ReviewKind::Llm(_)) {
                d.error = Some(reason.to_string());
            }
            d.verdict = Verdict::Review(reason.clone());
        }
        LlmOutcome::Answered { answer, label_probability, subcategory_failure } => {
            with_answer(&mut d, e, &nb, answer, *label_probability, subcategory_failure.as_ref(), arbiter, method);
        }
    }
    d
}

/// The LLM answered: weigh its answer against the neighbours'.
#[allow(clippy::too_many_arguments)]
fn with_answer(
    d: &mut Decision,
    e: &Evidence<'_>,
    nb: &Neighbours,
    answer: &Answer,
    label_probability: Option<f32>,
    subcategory_failure: Option<&ReviewReason>,
    arbiter: Option<&Arbiter>,
    method: ResultMethod,
) {
    let j = &e.judgement;
    let support = j.probability_of(&answer.category);
    // The model's signal: its token probability for the label when the provider
    // returned log-probabilities (the lower of that and its self-report), else the
    // self-report.
    let signal = label_probability.map_or(answer.confidence, |p| p.min(answer.confidence));
    let capped = signal.min(0.5 + 0.5 * support);
    let agrees = nb.category.as_deref().is_some_and(|v| label_key(v) == label_key(&answer.category));
    let trusted = e.language.trust.trusted();
    d.method = method;
    d.llm_label_probability = label_probability.map(round3);
    d.llm_answer =
        Some(LlmAnswer { category: Some(answer.category.clone()), confidence: Some(answer.confidence), support: Some(round3(support)) });
    d.reasoning = answer.reasoning.clone();
    let decided = if trusted { arbiter.and_then(|a| a.decide(j.confidence, agrees, support, signal).map(|x| (a, x))) } else { None };
    let mut llm_wins = true;
    let mut disagreement = None;
    let (confidence, source) = if !trusted {
        // The vote is not evidence here; the LLM's held-out accuracy bounds its signal.
        d.raw_confidence = None;
        d.reasoning.push_str(&format!(
            " (the embedding model does not cover {}: the LLM's answer stands without the neighbours)",
            e.language.lang.as_deref().unwrap_or("this language")
        ));
        (signal.min(arbiter.map_or(1.0, |a| a.stats.llm_accuracy as f32)), Source::Unmeasured)
    } else if let Some((a, x)) = decided {
        llm_wins = x.llm_wins;
        d.raw_confidence = Some(round3(capped));
        d.arbiter = Some(FitRef { fitted_at: a.fitted_at, examples: a.stats.answers });
        if !agrees {
            let none = "none";
            let (winner, loser) = if x.llm_wins {
                (answer.category.as_str(), nb.category.as_deref().unwrap_or(none))
            } else {
                (nb.category.as_deref().unwrap_or(none), answer.category.as_str())
            };
            d.reasoning.push_str(&format!(
                " [arbiter: {winner} (fitted probability {:.2}) over {loser} ({:.2}), fitted on this model's answers to held-out examples]",
                x.confidence,
                x.other.unwrap_or(0.0)
            ));
        }
        (x.confidence, Source::Arbiter)
    } else {
        d.raw_confidence = e.model.map(|_| round3(capped));
        if !agrees && j.probability >= 0.5 {
            disagreement = Some(ReviewReason::new(
                ReviewKind::Disagreement,
                format!(
                    "the model chose {} but the neighbours vote {} (probability {:.2})",
                    answer.category,
                    nb.category.as_deref().unwrap_or("none"),
                    j.probability
                ),
            ));
        }
        // With a fitted neighbours' side, an answer that agrees with it gets their
        // confidence; otherwise the capped self-report, which no held-out data measured.
        match e.model {
            Some(_) if agrees => (nb.confidence, Source::Neighbours),
            _ => (capped, Source::Unmeasured),
        }
    };
    let confidence = match e.language.trust {
        Trust::Evidence { bound, .. } => confidence.min(bound),
        _ => confidence,
    };
    if llm_wins {
        d.category = Some(answer.category.clone());
        d.subcategory = answer.subcategory.clone();
        d.secondary = answer.secondary.clone();
    }
    // When the neighbours' label wins, their subcategory (already in `d`) stays.
    d.urgency = answer.urgency.clone().or_else(|| e.vote.urgency.clone());
    if !answer.summary.is_empty() {
        d.summary = answer.summary.clone();
    }
    d.confidence = round3(confidence);
    d.warnings.extend(answer.warnings.iter().cloned());
    if let Some(f) = subcategory_failure.filter(|f| matches!(f.kind, ReviewKind::Llm(_))) {
        d.error = Some(f.to_string());
    }
    let category = d.category.clone().unwrap_or_default();
    let bar = e.policy.bar(source, &category);
    let below = low(
        confidence,
        &bar,
        match source {
            Source::Arbiter => format!("fitted probability {confidence:.2}"),
            _ => format!("{confidence:.2} (model {signal:.2}, neighbour support {support:.2})"),
        },
    );
    // The neighbours' evidence against any answer (far, out of scope) holds whatever
    // the LLM says, where their language is trusted.
    let evidence = e.judgement.far.as_ref().filter(|_| trusted).map(|f| ReviewReason::new(ReviewKind::NoCloseExample, f.to_string())).or_else(|| {
        e.judgement.out_of_scope.as_ref().filter(|_| trusted).map(|o| ReviewReason::new(ReviewKind::OutOfScope, o.to_string()))
    });
    d.verdict = match evidence.or(disagreement).or(subcategory_failure.cloned()).or(below) {
        Some(r) => Verdict::Review(r),
        None => Verdict::Routed,
    };
}
