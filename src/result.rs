//! What classification returns for one ticket: [`TicketResult`], the JSON object the
//! CLI prints and the API returns, with typed outcomes ([`ResultMethod`],
//! [`ReviewReason`]) that serialise to the documented strings, and the evidence behind
//! the answer (the neighbours' own answer, the LLM's own answer, the fits used).

use std::fmt;
use std::time::Instant;

use serde::{Serialize, Serializer};

use crate::llm::Usage;

/// How the answer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResultMethod {
    /// The LLM with retrieved examples (its answer weighed against the neighbours').
    Rag,
    /// The LLM without examples (evaluation baseline).
    ZeroShot,
    /// The LLM with the same examples for every ticket (evaluation baseline).
    FixedFewShot,
    /// The neighbours (vote and fitted head); no LLM configured.
    Knn,
    /// An LLM is configured but the neighbours were decisive, so it was not called.
    KnnShortcut,
    /// The LLM failed or gave no valid answer; the neighbours' label is the suggestion.
    KnnFallback,
    /// No input to classify, or the pipeline failed before an answer.
    None,
}

impl ResultMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultMethod::Rag => "rag",
            ResultMethod::ZeroShot => "zero-shot",
            ResultMethod::FixedFewShot => "fixed-few-shot",
            ResultMethod::Knn => "knn",
            ResultMethod::KnnShortcut => "knn-shortcut",
            ResultMethod::KnnFallback => "knn-fallback",
            ResultMethod::None => "none",
        }
    }

    /// True when the answer is the LLM's (possibly overruled by the arbiter).
    pub fn asked_llm(self) -> bool {
        matches!(self, ResultMethod::Rag | ResultMethod::ZeroShot | ResultMethod::FixedFewShot | ResultMethod::KnnFallback)
    }
}

impl fmt::Display for ResultMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a result goes to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReviewKind {
    LowConfidence,
    OutOfScope,
    Disagreement,
    InvalidAnswer,
    /// The LLM call failed; the kind of failure (`llm_unavailable`, `llm_auth`, ...).
    Llm(&'static str),
    /// Two-stage prompts: the subcategory request failed.
    Subcategory,
    /// The embedding model does not cover the ticket's language and no LLM answered.
    Language,
    /// The ticket is unlike every example (or is not text): no close example supports any answer.
    NoCloseExample,
    /// No answer at all (bad input, retrieval failure).
    Error,
}

impl ReviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::LowConfidence => "low_confidence",
            ReviewKind::OutOfScope => "out_of_scope",
            ReviewKind::Disagreement => "disagreement",
            ReviewKind::InvalidAnswer => "invalid_answer",
            ReviewKind::Llm(kind) => kind,
            ReviewKind::Subcategory => "subcategory",
            ReviewKind::Language => "language",
            ReviewKind::NoCloseExample => "no_close_example",
            ReviewKind::Error => "error",
        }
    }
}

/// A review reason: serialised as `"<kind>: <detail>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewReason {
    pub kind: ReviewKind,
    pub detail: String,
}

impl ReviewReason {
    pub fn new(kind: ReviewKind, detail: impl Into<String>) -> Self {
        ReviewReason { kind, detail: detail.into() }
    }
}

impl fmt::Display for ReviewReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl Serialize for ReviewReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Neighbor {
    pub id: String,
    pub label: String,
    pub score: f32,
}

/// The neighbours' own answer (vote, and the fitted head when there is one),
/// whatever the final method.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NeighbourAnswer {
    /// Best in-scope label; `None` when nothing supports one.
    pub category: Option<String>,
    /// Probability that `category` is right (calibrated when the collection is).
    pub confidence: f32,
    /// Its probability in the vote (mixed with the head's when fitted), uncalibrated.
    pub probability: f32,
}

/// The LLM's own answer, when it was asked.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LlmAnswer {
    /// Its label; `None` when it gave no valid answer (after one repair) or failed.
    pub category: Option<String>,
    /// Its self-reported confidence.
    pub confidence: Option<f32>,
    /// The neighbours' probability of its label.
    pub support: Option<f32>,
}

/// Which fitted models a result used (`triage calibrate`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FitUsed {
    /// When the neighbours' side was fitted (unix seconds) and on how many examples.
    pub fitted_at: u64,
    pub examples: usize,
    /// The head's fit: unix seconds and examples; absent when the collection has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<FitRef>,
    /// The arbiter's fit for the LLM model used; absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arbiter: Option<FitRef>,
    /// How the neighbours' confidence was calibrated (e.g. "isotonic map on 68 held-out
    /// examples, shrunk toward their accuracy (few examples)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FitRef {
    pub fitted_at: u64,
    /// Examples (head) or held-out LLM answers (arbiter) it was fitted on.
    pub examples: usize,
}

/// A further issue the ticket raises besides `category`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SecondaryIssue {
    /// A category of the taxonomy (never `category` itself, never an out-of-scope label).
    pub category: String,
    /// Why, in a few words: the LLM's, or the neighbours' evidence.
    pub reason: String,
}

/// The result for one ticket: the JSON object the CLI prints and the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketResult {
    pub id: String,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub urgency: Option<String>,
    pub summary: String,
    pub reasoning: String,
    /// Further issues (0 to 2 taxonomy categories) besides the primary `category`,
    /// which is the first by the taxonomy's `priority` order when it has one.
    pub secondary: Vec<SecondaryIssue>,
    /// Probability that `category` is right: fitted on the collection's own examples
    /// (`triage calibrate`; with `--llm`, on the LLM's answers too) when it has been
    /// calibrated, else the raw figure.
    pub confidence: f32,
    /// The unfitted figure (vote share, or the LLM's capped self-report) when
    /// `confidence` comes from a fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_confidence: Option<f32>,
    /// The LLM's own probability for its label, from token log-probabilities, when
    /// the provider returned them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_label_probability: Option<f32>,
    pub needs_review: bool,
    #[schema(value_type = Option<String>)]
    pub review_reason: Option<ReviewReason>,
    /// `rag`, `knn`, `knn-shortcut`, `knn-fallback`, `zero-shot`, `fixed-few-shot`, `none`.
    pub method: ResultMethod,
    pub neighbors: Vec<Neighbor>,
    pub model: Option<String>,
    /// The ticket's language (ISO 639-1 where there is one), when it could be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The neighbours' own answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<NeighbourAnswer>,
    /// The LLM's own answer, when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_answer: Option<LlmAnswer>,
    /// The fits used, when the collection is calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitUsed>,
    /// Tokens of every LLM request made for this ticket (repairs and the subcategory
    /// request of two-stage prompts included).
    pub usage: Usage,
    /// LLM requests made for this ticket, failed ones, repairs and the subcategory
    /// request of two-stage prompts included: what per-request pricing charges.
    pub llm_calls: u32,
    pub latency_ms: f64,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl TicketResult {
    /// True when something went wrong (as opposed to a deliberate review flag).
    pub fn failed_hard(&self) -> bool {
        self.error.is_some()
    }

    /// The review reason's kind, if flagged.
    pub fn review_kind(&self) -> Option<ReviewKind> {
        self.review_reason.as_ref().map(|r| r.kind)
    }
}

/// Milliseconds since `started`, rounded to 0.01.
pub fn ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

pub fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}
