//! The label policy: which label an example may carry. One function for every path that
//! adds or changes examples (indexing a file, the HTTP API, agents' corrections, a
//! review file), so that they cannot drift apart.
//!
//! - A label of the taxonomy (a category or an out-of-scope label, matched by
//!   [`super::label_key`]) is accepted under its canonical name.
//! - Any other label is refused, naming the nearest existing label, unless the caller
//!   says it means a new one (`new_label: true` in the API; indexing a file into a
//!   collection whose taxonomy is derived from data does, as it always has): then the
//!   caller adds it to the taxonomy ([`super::Taxonomy::absorb`]).

use super::{label_key, Taxonomy};
use crate::fields::edit_distance;

/// An accepted label.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// A category, by its canonical name.
    Category(String),
    /// An out-of-scope label, by its canonical name.
    OutOfScope(String),
    /// Not in the taxonomy yet; the caller asked for a new label.
    New(String),
}

impl Accepted {
    pub fn name(&self) -> &str {
        match self {
            Accepted::Category(n) | Accepted::OutOfScope(n) | Accepted::New(n) => n,
        }
    }
}

/// A refused label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown label {label:?} (not in the taxonomy){}; to add it as a new label, say so (API: \"new_label\": true)",
    .nearest.as_ref().map(|n| format!("; the nearest existing label is {n:?}")).unwrap_or_default())]
pub struct UnknownLabel {
    pub label: String,
    pub nearest: Option<String>,
}

/// The existing label nearest to `label` (by edit distance of their [`label_key`]s; ties
/// by taxonomy order).
pub fn nearest_label(taxonomy: &Taxonomy, label: &str) -> Option<String> {
    let k = label_key(label);
    taxonomy
        .categories
        .iter()
        .map(|c| c.name.as_str())
        .chain(taxonomy.out_of_scope_labels.iter().map(String::as_str))
        .min_by_key(|n| edit_distance(&k, &label_key(n)))
        .map(str::to_string)
}

/// Whether an example may carry `label` (trimmed, non-blank) in `taxonomy`; `new_label`:
/// the caller means a label the taxonomy does not have yet.
pub fn check_label(taxonomy: &Taxonomy, label: &str, new_label: bool) -> Result<Accepted, UnknownLabel> {
    let label = label.trim();
    if let Some(c) = taxonomy.category(label) {
        return Ok(Accepted::Category(c.name.clone()));
    }
    if let Some(o) = taxonomy.out_of_scope_label(label) {
        return Ok(Accepted::OutOfScope(o.to_string()));
    }
    if new_label && !label.is_empty() {
        return Ok(Accepted::New(label.to_string()));
    }
    Err(UnknownLabel { label: label.to_string(), nearest: nearest_label(taxonomy, label) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn taxonomy() -> Taxonomy {
        let mut t = Taxonomy::parse("name = \"t\"\n[[categories]]\nname = \"Hardware\"\n[[categories]]\nname = \"Billing\"\n").unwrap();
        t.out_of_scope_labels.push("Not Support".into());
        t
    }

    #[test]
    fn known_labels_come_back_canonical_and_unknown_ones_name_the_nearest() {
        let t = taxonomy();
        assert_eq!(check_label(&t, " billing ", false), Ok(Accepted::Category("Billing".into())));
        assert_eq!(check_label(&t, "not_support", false), Ok(Accepted::OutOfScope("Not Support".into())));
        let e = check_label(&t, "Hardwre", false).unwrap_err();
        assert_eq!(e.nearest.as_deref(), Some("Hardware"));
        assert!(e.to_string().contains("the nearest existing label is \"Hardware\""), "{e}");
        assert!(e.to_string().contains("new_label"), "{e}");
        assert_eq!(check_label(&t, "Hardwre", true), Ok(Accepted::New("Hardwre".into())));
        assert!(check_label(&t, "  ", true).is_err(), "a blank label is never new");
    }
}
