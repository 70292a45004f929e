//! What [`super::secondary`] fits and [`super::neighbours::NeighbourModel`] stores: its
//! own file, so the fit of the rule (which reads the neighbours' model) and the model
//! (which carries the rule) do not import each other.

use serde::{Deserialize, Serialize};

/// The fitted rule: a runner-up label with at least this probability, supported by a
/// neighbour, is a secondary issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondaryRule {
    pub threshold: f32,
    /// `labeled` or `budget` (see the module docs).
    pub method: String,
    /// Held-out examples and the secondary labels they carry.
    pub held_out: usize,
    pub labeled: usize,
    /// On the held-out examples at the threshold (labeled fit only).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Share of held-out examples that get a secondary label at the threshold.
    pub flag_rate: f64,
}
