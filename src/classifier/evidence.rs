//! What is known about a ticket before anything is decided: its language and how far
//! the neighbours can be trusted in it, the neighbours' vote and fitted judgement, and
//! the bar an answer must clear to be routed ([`super::routing`]).

use crate::example::ScoredExample;
use crate::fit::{Judgement, NeighbourModel};
use crate::knn::Vote;
use crate::lang::Assessment;
use crate::taxonomy::Taxonomy;

use super::routing::RoutePolicy;

/// How far the neighbours can be trusted in the ticket's language.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trust {
    /// The embedding model covers the language (or it could not be told).
    Covered,
    /// The model does not cover it, but the collection's held-out examples in it show
    /// how right the neighbours are: their confidence is bounded by `bound`.
    Evidence { bound: f32, held_out: usize, accuracy: f64 },
    /// The model does not cover it and the collection has no evidence: not trusted.
    Untrusted,
}

impl Trust {
    pub fn trusted(self) -> bool {
        !matches!(self, Trust::Untrusted)
    }
}

/// The ticket's language and the neighbours' trust in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    /// ISO 639-1 code, when it could be told.
    pub lang: Option<String>,
    pub trust: Trust,
}

impl Language {
    /// The trust `assessment` allows, given the fitted record per language.
    pub fn from_assessment(a: Assessment, model: Option<&NeighbourModel>) -> Language {
        let trust = if a.covered {
            Trust::Covered
        } else {
            let record =
                model.and_then(|m| m.languages.iter().find(|r| Some(r.lang.as_str()) == a.lang.as_deref()));
            match record.and_then(|r| r.bound().map(|b| (r, b))) {
                Some((r, bound)) => Trust::Evidence { bound, held_out: r.held_out, accuracy: r.accuracy() },
                None => Trust::Untrusted,
            }
        };
        Language { lang: a.lang, trust }
    }
}

/// Everything the decision reads about one ticket, gathered before any LLM is asked.
pub struct Evidence<'a> {
    pub text: &'a str,
    pub language: Language,
    pub vote: Vote,
    pub judgement: Judgement,
    /// The fitted neighbours' side used (the collection's fit at this k).
    pub model: Option<&'a NeighbourModel>,
    /// Retrieved examples, most similar first (`k` of them vote).
    pub candidates: Vec<ScoredExample>,
    pub k: usize,
    pub taxonomy: &'a Taxonomy,
    pub policy: &'a RoutePolicy,
    /// Said on the result: the fit cannot be used as stored, or not at this k.
    pub notes: Vec<String>,
}

impl Evidence<'_> {
    /// The `k` nearest examples (the ones that vote).
    pub fn nearest(&self) -> &[ScoredExample] {
        &self.candidates[..self.candidates.len().min(self.k)]
    }
}
