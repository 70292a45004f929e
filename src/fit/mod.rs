//! Models fitted on a collection's own labeled examples, as pure functions of
//! held-out data (no store, no embedder, no LLM client): where `triage calibrate`
//! puts its results and where classification reads them.
//!
//! - [`logistic`]: the multinomial logistic head over the frozen embeddings
//! - [`isotonic`]: isotonic confidence maps per similarity band, shortcut threshold
//! - [`mixture`]: the vote (temperature, cap on one neighbour) mixed with the head
//! - [`neighbours`]: the mixture's fit, its calibration, out-of-scope rule, shortcut;
//!   [`judgement`]: what it says about one ticket (`judge`)
//! - [`closeness`]: "no close example", judged on the collection's own distances
//! - [`routing`]: confidence thresholds for a precision target
//! - [`languages`]: the neighbours' held-out record per language
//! - [`out_of_scope`]: the fitted out-of-scope score and its threshold
//! - [`secondary`]: when a runner-up label counts as a second issue
//! - [`arbiter`]: which of the LLM's and the neighbours' labels wins, and with what
//!   probability, from how each did on held-out examples
//!
//! [`Fitted`] is everything fitted for one collection; the store keeps it as an opaque
//! [`FittedState`] (format [`FORMAT`], version [`VERSION`]).

pub mod arbiter;
pub mod closeness;
mod encoding;
pub mod isotonic;
mod judge;
pub mod judgement;
pub mod languages;
pub mod logistic;
pub mod mixture;
pub mod neighbours;
pub mod out_of_scope;
pub mod routing;
pub mod secondary;
pub mod secondary_rule;
#[cfg(test)]
mod refusal_tests;

use serde::{Deserialize, Serialize};

use crate::store::FittedState;
pub use arbiter::Arbiter;
pub use judgement::{Far, Judgement, OutOfScope};
pub use neighbours::NeighbourModel;

/// The layout name of [`Fitted`] inside a [`FittedState`].
pub const FORMAT: &str = "ticket-triage/fitted";
/// Its revision: bump when a field changes meaning.
pub const VERSION: u32 = 1;

/// Everything fitted for one collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    pub neighbours: NeighbourModel,
    /// One per LLM model name and k (`triage calibrate --llm`).
    #[serde(default)]
    pub arbiters: Vec<Arbiter>,
}

#[derive(Debug, thiserror::Error)]
pub enum FittedError {
    #[error("the collection's fitted state has format {format:?} version {version}; this build reads {FORMAT:?} version {VERSION}: run triage calibrate again")]
    Unknown { format: String, version: u32 },
    #[error("the collection's fitted state is unreadable ({0}): run triage calibrate again")]
    Corrupt(String),
}

impl Fitted {
    pub fn from_state(state: &FittedState) -> Result<Fitted, FittedError> {
        if state.format != FORMAT || state.version != VERSION {
            return Err(FittedError::Unknown { format: state.format.clone(), version: state.version });
        }
        serde_json::from_value(state.data.clone()).map_err(|e| FittedError::Corrupt(e.to_string()))
    }

    pub fn to_state(&self) -> Result<FittedState, FittedError> {
        Ok(FittedState {
            format: FORMAT.into(),
            version: VERSION,
            fitted_at: self.neighbours.fitted_at,
            data: serde_json::to_value(self).map_err(|e| FittedError::Corrupt(e.to_string()))?,
        })
    }

    /// The arbiter fitted for this LLM model at this k, if any.
    pub fn arbiter(&self, model: &str, k: usize) -> Option<&Arbiter> {
        self.arbiters.iter().find(|a| a.model == model && a.k == k)
    }

    /// Figures and settings for reports: everything but the head's weights and the
    /// confidence maps' blocks.
    pub fn summary(&self) -> serde_json::Value {
        let n = &self.neighbours;
        serde_json::json!({
            "k": n.k,
            "fitted_at": n.fitted_at,
            "collection_examples": n.collection_examples,
            "labels": n.labels.len(),
            "head": n.head_info,
            "head_note": n.head_note,
            "head_weight": n.head_weight,
            "bands": n.bands.len(),
            "oos": n.oos,
            "shortcut_confidence": n.shortcut_confidence,
            "shortcut_target": n.shortcut_target,
            "stats": n.stats,
            "arbiters": self.arbiters.iter().map(|a| serde_json::json!({
                "model": a.model, "k": a.k, "fitted_at": a.fitted_at, "uses_signal": a.uses_signal,
                "notes": a.notes, "stats": a.stats,
            })).collect::<Vec<_>>(),
        })
    }

    /// Keep `arbiter`, replacing an earlier one for the same model and k.
    pub fn put_arbiter(&mut self, arbiter: Arbiter) {
        self.arbiters.retain(|a| !(a.model == arbiter.model && a.k == arbiter.k));
        self.arbiters.push(arbiter);
    }
}
