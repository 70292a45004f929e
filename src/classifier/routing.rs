//! The bar an answer must clear to be routed without a person: a fixed confidence
//! threshold (`--min-confidence`, the taxonomy's `min_confidence`), or a precision target
//! (`--auto-route-precision`, the taxonomy's `auto_route_precision`, per category where
//! set) turned into a threshold on the held-out answers of the fit that produced the
//! confidence ([`crate::fit::routing`]): the neighbours' fit for their answers, the
//! arbiter's for answers it decided. An answer whose confidence no held-out data has
//! measured cannot promise a precision, so under a target it goes to review.

use std::collections::HashMap;
use std::fmt;

use crate::fit::routing::{threshold_for, RoutePoints, Threshold};
use crate::fit::{Arbiter, NeighbourModel};
use crate::taxonomy::{label_key, Taxonomy};

/// Which fit produced a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The neighbours' fitted (or raw) confidence.
    Neighbours,
    /// The arbiter's, weighing the LLM's answer against the neighbours'.
    Arbiter,
    /// Nothing fitted measured it (the LLM's capped self-report under the fixed rules).
    Unmeasured,
}

/// Why the bar is where it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Why {
    Fixed,
    /// Held-out answers at or above the bar were right `precision` of the time.
    Precision { target: f64, precision: f64, own_label: bool },
    /// No confidence reaches the target on the held-out answers.
    Unreachable { target: f64, best: f64 },
    /// A target is set but no held-out answers measured this kind of confidence.
    NoEvidence { target: f64 },
}

/// The confidence an answer needs, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub confidence: f32,
    pub why: Why,
}

impl Bar {
    pub fn clears(&self, confidence: f32) -> bool {
        confidence >= self.confidence
    }
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.why {
            Why::Fixed => write!(f, "{:.2}", self.confidence),
            Why::Precision { target, precision, own_label } => write!(
                f,
                "{:.2}, the confidence at which {} held-out answers were {:.1} % right (target {:.1} %)",
                self.confidence,
                if own_label { "this category's" } else { "the collection's" },
                precision * 100.0,
                target * 100.0
            ),
            Why::Unreachable { target, best } => write!(
                f,
                "any confidence: no threshold reaches {:.1} % precision on the collection's held-out answers (best {:.1} %)",
                target * 100.0,
                best * 100.0
            ),
            Why::NoEvidence { target } => write!(
                f,
                "any confidence: a {:.1} % precision target needs held-out evidence for this kind of answer (run triage calibrate --llm with this model)",
                target * 100.0
            ),
        }
    }
}

/// The bars of one classifier, computed once from its options, taxonomy and fits.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    fixed: f32,
    target: Option<f64>,
    /// Per category (by label key): its target, when the taxonomy sets one.
    targets: HashMap<String, f64>,
    neighbours: Option<Bars>,
    arbiter: Option<Bars>,
}

/// Thresholds of one fit's held-out answers, per target label (and collection-wide).
#[derive(Debug, Clone)]
struct Bars {
    by_label: HashMap<String, Bar>,
    all: HashMap<u64, Bar>,
    points: RoutePoints,
    labels: Vec<String>,
}

fn to_bar(t: Threshold, target: f64) -> Bar {
    match t {
        Threshold::Met { confidence, precision, own_label, .. } => {
            Bar { confidence, why: Why::Precision { target, precision, own_label } }
        }
        Threshold::Unreachable { best_precision, .. } => {
            Bar { confidence: f32::INFINITY, why: Why::Unreachable { target, best: best_precision } }
        }
    }
}

impl Bars {
    fn new(points: &RoutePoints, labels: &[String], targets: impl Iterator<Item = (Option<String>, f64)>) -> Bars {
        let mut b = Bars { by_label: HashMap::new(), all: HashMap::new(), points: points.clone(), labels: labels.to_vec() };
        for (label, target) in targets {
            let index = label.as_deref().and_then(|l| labels.iter().position(|n| label_key(n) == label_key(l)));
            let bar = to_bar(threshold_for(points, target, index.map(|i| i as u32)), target);
            match label {
                Some(l) => {
                    b.by_label.insert(label_key(&l), bar);
                }
                None => {
                    b.all.insert(target.to_bits(), bar);
                }
            }
        }
        b
    }

    fn bar(&self, category: &str, target: f64) -> Bar {
        if let Some(b) = self.by_label.get(&label_key(category)) {
            return *b;
        }
        match self.all.get(&target.to_bits()) {
            Some(b) => *b,
            None => {
                let index = self.labels.iter().position(|n| label_key(n) == label_key(category)).map(|i| i as u32);
                to_bar(threshold_for(&self.points, target, index), target)
            }
        }
    }
}

impl RoutePolicy {
    /// `fixed`: the confidence threshold without a target; `target`: the collection-wide
    /// precision target (the flag's, else the taxonomy's).
    pub fn new(
        fixed: f32,
        target: Option<f64>,
        taxonomy: &Taxonomy,
        model: Option<&NeighbourModel>,
        arbiter: Option<&Arbiter>,
    ) -> RoutePolicy {
        let targets: HashMap<String, f64> = taxonomy
            .categories
            .iter()
            .filter_map(|c| c.auto_route_precision.map(|p| (label_key(&c.name), p)))
            .collect();
        let wanted = || {
            let per: Vec<(Option<String>, f64)> =
                taxonomy.categories.iter().filter_map(|c| c.auto_route_precision.map(|p| (Some(c.name.clone()), p))).collect();
            let global: Vec<(Option<String>, f64)> = target.map(|t| (None, t)).into_iter().collect();
            per.into_iter().chain(global)
        };
        let any_target = target.is_some() || !targets.is_empty();
        let neighbours = model.filter(|_| any_target).map(|m| Bars::new(&m.routing, &m.labels.names, wanted()));
        let arbiter = arbiter
            .filter(|_| any_target)
            .map(|a| Bars::new(&a.routing, &[], wanted().map(|(_, t)| (None::<String>, t))));
        RoutePolicy { fixed, target, targets, neighbours, arbiter }
    }

    /// A fixed threshold only (no fit, no target).
    pub fn fixed(threshold: f32) -> RoutePolicy {
        RoutePolicy { fixed: threshold, target: None, targets: HashMap::new(), neighbours: None, arbiter: None }
    }

    /// The precision target for `category`, if any.
    pub fn target(&self, category: &str) -> Option<f64> {
        self.targets.get(&label_key(category)).copied().or(self.target)
    }

    /// The bar for an answer of `category` whose confidence came from `source`.
    pub fn bar(&self, source: Source, category: &str) -> Bar {
        let Some(target) = self.target(category) else { return Bar { confidence: self.fixed, why: Why::Fixed } };
        let bars = match source {
            Source::Neighbours => self.neighbours.as_ref(),
            Source::Arbiter => self.arbiter.as_ref(),
            Source::Unmeasured => None,
        };
        match bars {
            Some(b) => b.bar(category, target),
            None => Bar { confidence: f32::INFINITY, why: Why::NoEvidence { target } },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn without_a_target_the_fixed_threshold_holds_and_without_evidence_a_target_cannot() {
        let t = Taxonomy::parse("name = \"t\"\n[[categories]]\nname = \"Billing\"\n[[categories]]\nname = \"Technical\"\n").unwrap();
        let p = RoutePolicy::new(0.85, None, &t, None, None);
        assert_eq!(p.bar(Source::Neighbours, "Billing"), Bar { confidence: 0.85, why: Why::Fixed });
        let p = RoutePolicy::new(0.85, Some(0.98), &t, None, None);
        let bar = p.bar(Source::Neighbours, "Billing");
        assert!(!bar.clears(0.999) && matches!(bar.why, Why::NoEvidence { .. }), "{bar}");
        assert!(bar.to_string().contains("98.0 %"), "{bar}");
    }

    #[test]
    fn a_category_target_in_the_taxonomy_overrides_the_collection_target() {
        let t = Taxonomy::parse(
            "name = \"t\"\n[[categories]]\nname = \"Billing\"\nauto_route_precision = 0.99\n[[categories]]\nname = \"Technical\"\n",
        )
        .unwrap();
        let p = RoutePolicy::new(0.85, None, &t, None, None);
        assert_eq!(p.target("billing"), Some(0.99));
        assert_eq!(p.target("Technical"), None);
        assert_eq!(p.bar(Source::Neighbours, "Technical").why, Why::Fixed);
    }
}
