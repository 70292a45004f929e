//! The neighbours' answer for one ticket ([`Judgement`]) and the typed reasons it can
//! give for not routing it: [`OutOfScope`] (the ticket looks like what the taxonomy does
//! not route) and [`Far`] (the ticket is unlike every example). They stay types until a
//! result is serialised; their `Display` is the detail after the review reason's kind.

use std::fmt;

use crate::taxonomy::label_key;

/// Why the neighbours place a ticket outside the taxonomy.
#[derive(Debug, Clone, PartialEq)]
pub enum OutOfScope {
    /// An out-of-scope label leads the mixture.
    Favoured { label: String, probability: f32 },
    /// The nearest example is less similar than the collection's threshold
    /// (`calibrate --oos-quantile`).
    Dissimilar { similarity: f32, threshold: f32 },
    /// The best in-scope label's probability is below the threshold fitted on the
    /// collection's out-of-scope examples.
    Improbable { probability: f32, threshold: f32 },
    /// The fitted out-of-scope score is at or above its threshold.
    Scored { score: f32, threshold: f32, probability: f32, oos_mass: f32 },
}

impl fmt::Display for OutOfScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutOfScope::Favoured { label, probability } => {
                write!(f, "the neighbours favour the out-of-scope examples ({label}, probability {probability:.2})")
            }
            OutOfScope::Dissimilar { similarity, threshold } => write!(
                f,
                "the nearest example's similarity {similarity:.3} is below the collection's threshold {threshold:.3}"
            ),
            OutOfScope::Improbable { probability, threshold } => write!(
                f,
                "the best in-scope label has probability {probability:.3}, below the threshold {threshold:.3} fitted on the collection's out-of-scope examples"
            ),
            OutOfScope::Scored { score, threshold, probability, oos_mass } => write!(
                f,
                "the out-of-scope score {score:.2} is at or above the threshold {threshold:.2} fitted on the collection's out-of-scope examples (best in-scope label probability {probability:.3}, out-of-scope mass {oos_mass:.3})"
            ),
        }
    }
}

/// Why a ticket has no close example ([`super::closeness`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Far {
    /// Its nearest example is less similar than the collection's own held-out examples
    /// are to theirs (all but `held_out_below` of them).
    Distant { similarity: f32, limit: f32, held_out_below: f64 },
    /// It is about as close to noise made from the collection's texts as to any example.
    NoiseLike { margin: f32, limit: f32 },
}

impl fmt::Display for Far {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Far::Distant { similarity, limit, held_out_below } => write!(
                f,
                "the nearest example's similarity {similarity:.2} is below {limit:.2}, which all but {:.1} % of the collection's own examples reach",
                held_out_below * 100.0
            ),
            Far::NoiseLike { margin, limit } => write!(
                f,
                "the ticket is as close to scrambled text as to any example (margin {margin:.2}, the collection's own examples: at least {limit:.2})"
            ),
        }
    }
}

/// The neighbours' answer for one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The in-scope label with the largest probability; `None` when no neighbour nor
    /// the head supports any in-scope label.
    pub label: Option<String>,
    /// Mixture probability of `label`.
    pub probability: f32,
    /// Probability that `label` is right: calibrated when fitted, else `probability`.
    pub confidence: f32,
    /// Mixture mass on out-of-scope labels.
    pub oos_probability: f32,
    /// Set when the ticket looks like what the taxonomy does not route.
    pub out_of_scope: Option<OutOfScope>,
    /// Set when the ticket is unlike every example.
    pub far: Option<Far>,
    /// The mixture over labels (out-of-scope ones included), largest first.
    pub distribution: Vec<(String, f32)>,
}

impl Judgement {
    /// Mixture probability of `label` (0 when nothing supports it).
    pub fn probability_of(&self, label: &str) -> f32 {
        let k = label_key(label);
        self.distribution.iter().find(|(l, _)| label_key(l) == k).map(|(_, p)| *p).unwrap_or(0.0)
    }

    /// The vote alone, uncalibrated: for collections without a fitted model.
    /// `is_oos` says which labels are out-of-scope negatives.
    pub fn from_vote(shares: &[(String, f32)], is_oos: impl Fn(&str) -> bool) -> Judgement {
        let mut distribution = shares.to_vec();
        distribution.sort_by(|a, b| b.1.total_cmp(&a.1));
        let best = distribution.iter().find(|(l, _)| !is_oos(l)).cloned();
        let oos_probability: f32 = distribution.iter().filter(|(l, _)| is_oos(l)).map(|(_, p)| *p).sum();
        let out_of_scope = distribution
            .first()
            .filter(|(l, _)| is_oos(l))
            .map(|(l, p)| OutOfScope::Favoured { label: l.clone(), probability: *p });
        let (label, probability) = best.map_or((None, 0.0), |(l, p)| (Some(l), p));
        Judgement { label, probability, confidence: probability, oos_probability, out_of_scope, far: None, distribution }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_before_and_the_vote_alone_flags_a_leading_out_of_scope_label() {
        let j = Judgement::from_vote(&[("Not Support".into(), 0.6), ("Billing".into(), 0.4)], |l| l == "Not Support");
        assert_eq!(j.label.as_deref(), Some("Billing"));
        assert_eq!(
            j.out_of_scope.unwrap().to_string(),
            "the neighbours favour the out-of-scope examples (Not Support, probability 0.60)"
        );
        let far = Far::Distant { similarity: 0.21, limit: 0.38, held_out_below: 0.0 };
        assert!(far.to_string().starts_with("the nearest example's similarity 0.21 is below 0.38"), "{far}");
    }
}
