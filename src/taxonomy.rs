//! The taxonomy: the classifier's versioned config (categories, urgency scale, rules,
//! review threshold), loaded from `taxonomy.toml` or derived from labeled data.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

mod keys;
pub mod policy;
use sha2::{Digest, Sha256};

/// Default review threshold when the taxonomy does not set one.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.85;

#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("cannot read taxonomy file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid taxonomy file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subcategories: Vec<Subcategory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subcategory {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrgencyLevel {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taxonomy {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Below this confidence a result goes to human review.
    #[serde(default, serialize_with = "as_written")]
    pub min_confidence: Option<f32>,
    #[serde(default)]
    pub rules: Vec<String>,
    pub categories: Vec<Category>,
    /// Urgency levels, lowest first. May be empty when the data has no urgency.
    #[serde(default)]
    pub urgency: Vec<UrgencyLevel>,
    /// Labels whose examples show what this taxonomy does not route (e.g. `oos`):
    /// indexed and retrieved like the others, never an answer; a ticket the
    /// neighbours place among them goes to review as out of scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_scope_labels: Vec<String>,
    /// Which issue is primary when a ticket raises several: categories listed here
    /// come first, in this order (e.g. outages before billing); unlisted ones after
    /// them. Empty: the primary is the one the answer names (by the `rules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority: Vec<String>,
    /// True when the taxonomy was derived from the labels present in the data,
    /// not written by a person (no descriptions, label set may grow on re-index).
    #[serde(default)]
    pub derived: bool,
    /// Categories that left the taxonomy when their last example was deleted, kept as
    /// its history (see [`Taxonomy::retire_emptied`]); never answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredLabel>,
}

/// A category that left the active taxonomy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredLabel {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// UTC, RFC 3339.
    pub retired_at: String,
}

/// An `f32` written as its shortest decimal (`0.7`, not `0.699999988079071`): JSON
/// numbers are doubles, and widening the float prints the binary error.
pub fn as_written<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.serialize_f64(x.to_string().parse::<f64>().unwrap_or(f64::from(*x))),
        None => s.serialize_none(),
    }
}

/// Normalise a label for comparison: trimmed, lowercase, inner whitespace,
/// `_` and `-` folded to one space. "feature_request" matches "Feature Request".
pub fn label_key(s: &str) -> String {
    s.trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '_' || c == '-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Taxonomy {
    pub fn load(path: &Path) -> Result<Self, TaxonomyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TaxonomyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| TaxonomyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        let unknown = keys::unknown_keys(&doc);
        if !unknown.is_empty() {
            return Err(unknown.join("; "));
        }
        let t: Taxonomy = toml::from_str(text).map_err(|e| e.to_string())?;
        t.validate()?;
        Ok(t)
    }

    /// A taxonomy made from the labels seen in data (no descriptions).
    pub fn derived(name: &str, labels: &BTreeSet<String>, urgencies: &BTreeSet<String>) -> Self {
        Taxonomy {
            name: name.to_string(),
            version: String::new(),
            description: String::new(),
            min_confidence: None,
            rules: Vec::new(),
            categories: labels
                .iter()
                .map(|l| Category { name: l.clone(), description: String::new(), subcategories: vec![] })
                .collect(),
            urgency: urgencies
                .iter()
                .map(|u| UrgencyLevel { name: u.clone(), description: String::new() })
                .collect(),
            out_of_scope_labels: Vec::new(),
            priority: Vec::new(),
            derived: true,
            retired: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        if self.categories.is_empty() {
            return Err("no `[[categories]]`".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.categories {
            if c.name.trim().is_empty() {
                return Err("a category has an empty name".into());
            }
            if !seen.insert(label_key(&c.name)) {
                return Err(format!("category {:?} is listed twice", c.name));
            }
            let mut subs = BTreeSet::new();
            for s in &c.subcategories {
                if !subs.insert(label_key(&s.name)) {
                    return Err(format!("subcategory {:?} of {:?} is listed twice", s.name, c.name));
                }
            }
        }
        let mut urg = BTreeSet::new();
        for u in &self.urgency {
            if !urg.insert(label_key(&u.name)) {
                return Err(format!("urgency level {:?} is listed twice", u.name));
            }
        }
        let mut oos = BTreeSet::new();
        for l in &self.out_of_scope_labels {
            if l.trim().is_empty() {
                return Err("an out-of-scope label is empty".into());
            }
            if self.category(l).is_some() {
                return Err(format!("{l:?} is both a category and an out-of-scope label"));
            }
            if !oos.insert(label_key(l)) {
                return Err(format!("out-of-scope label {l:?} is listed twice"));
            }
        }
        let mut ranked = BTreeSet::new();
        for p in &self.priority {
            if self.category(p).is_none() {
                return Err(format!("priority names {p:?}, which is not a category"));
            }
            if !ranked.insert(label_key(p)) {
                return Err(format!("priority lists {p:?} twice"));
            }
        }
        if let Some(m) = self.min_confidence {
            if !(0.0..=1.0).contains(&m) {
                return Err(format!("min_confidence {m} is outside [0, 1]"));
            }
        }
        Ok(())
    }

    /// The canonical category name for `label`, if it is in the taxonomy.
    pub fn category(&self, label: &str) -> Option<&Category> {
        let k = label_key(label);
        self.categories.iter().find(|c| label_key(&c.name) == k)
    }

    /// True when `label` is one of the out-of-scope labels (never an answer).
    pub fn is_out_of_scope(&self, label: &str) -> bool {
        let k = label_key(label);
        self.out_of_scope_labels.iter().any(|l| label_key(l) == k)
    }

    /// The canonical out-of-scope label for `label`, if it is one.
    pub fn out_of_scope_label(&self, label: &str) -> Option<&str> {
        let k = label_key(label);
        self.out_of_scope_labels.iter().find(|l| label_key(l) == k).map(String::as_str)
    }

    /// The canonical subcategory name under `category`.
    pub fn subcategory(&self, category: &str, sub: &str) -> Option<&str> {
        let k = label_key(sub);
        self.category(category)?
            .subcategories
            .iter()
            .find(|s| label_key(&s.name) == k)
            .map(|s| s.name.as_str())
    }

    pub fn urgency_level(&self, u: &str) -> Option<&str> {
        let k = label_key(u);
        self.urgency.iter().find(|l| label_key(&l.name) == k).map(|l| l.name.as_str())
    }

    pub fn has_subcategories(&self) -> bool {
        self.categories.iter().any(|c| !c.subcategories.is_empty())
    }

    pub fn labels(&self) -> Vec<&str> {
        self.categories.iter().map(|c| c.name.as_str()).collect()
    }

    /// Rank of `label` in the priority order (0 first); unlisted labels rank after
    /// every listed one.
    pub fn priority_rank(&self, label: &str) -> usize {
        let k = label_key(label);
        self.priority.iter().position(|p| label_key(p) == k).unwrap_or(self.priority.len())
    }

    pub fn review_threshold(&self) -> f32 {
        self.min_confidence.unwrap_or(DEFAULT_MIN_CONFIDENCE)
    }

    /// Merge labels seen in new data into a derived taxonomy. Returns whether it changed.
    pub fn absorb(&mut self, labels: &BTreeSet<String>, urgencies: &BTreeSet<String>) -> bool {
        let mut changed = false;
        for l in labels {
            if self.category(l).is_none() && !self.is_out_of_scope(l) {
                self.categories.push(Category { name: l.clone(), description: String::new(), subcategories: vec![] });
                changed = true;
            }
        }
        for u in urgencies {
            if self.urgency_level(u).is_none() {
                self.urgency.push(UrgencyLevel { name: u.clone(), description: String::new() });
                changed = true;
            }
        }
        changed
    }

    /// Move the categories among `touched` that have no examples left (`count` of a
    /// category's examples) out of the active taxonomy into its history; returns their
    /// names. A category no example ever had is left alone (a person may have written it
    /// ahead of its examples), and so is the last category.
    pub fn retire_emptied(&mut self, touched: &[String], count: impl Fn(&str) -> usize, at: u64) -> Vec<String> {
        let mut retired = Vec::new();
        for t in touched {
            let Some(pos) = self.categories.iter().position(|c| label_key(&c.name) == label_key(t)) else { continue };
            if self.categories.len() == 1 || count(&self.categories[pos].name) > 0 {
                continue;
            }
            let c = self.categories.remove(pos);
            self.priority.retain(|p| label_key(p) != label_key(&c.name));
            retired.push(c.name.clone());
            self.retired.push(RetiredLabel { name: c.name, description: c.description, retired_at: crate::eval::report::timestamp(at) });
        }
        retired
    }

    /// A short content hash, recorded with results so a result can be traced to the
    /// exact taxonomy version that produced it.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
name = "demo"
version = "1.0.0"
min_confidence = 0.8
rules = ["Focus on intent."]
[[categories]]
name = "Billing"
description = "Money"
[[categories.subcategories]]
name = "Refund"
[[categories]]
name = "Feature Request"
[[urgency]]
name = "Low"
[[urgency]]
name = "High"
"#;

    #[test]
    fn min_confidence_serialises_as_written() {
        let t = Taxonomy::parse("name = \"t\"\nmin_confidence = 0.7\n[[categories]]\nname = \"A\"\n").unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["min_confidence"].to_string(), "0.7");
        let back: Taxonomy = serde_json::from_value(json).unwrap();
        assert_eq!(back.min_confidence, Some(0.7));
        let err = Taxonomy::parse("name = \"t\"\nmin_confidense = 0.7\n[[categories]]\nname = \"A\"\n").unwrap_err();
        assert!(err.contains("did you mean \"min_confidence\""), "{err}");
    }

    #[test]
    fn parses_and_matches_labels_loosely() {
        let t = Taxonomy::parse(SAMPLE).unwrap();
        assert_eq!(t.category("feature_request").unwrap().name, "Feature Request");
        assert_eq!(t.category(" BILLING ").unwrap().name, "Billing");
        assert!(t.category("Billing2").is_none());
        assert_eq!(t.subcategory("billing", "refund"), Some("Refund"));
        assert_eq!(t.subcategory("Feature Request", "refund"), None);
        assert_eq!(t.urgency_level("HIGH"), Some("High"));
        assert_eq!(t.review_threshold(), 0.8);
        assert!(t.has_subcategories());
    }

    #[test]
    fn rejects_duplicates_and_bad_threshold() {
        let dup = SAMPLE.replace("name = \"Feature Request\"", "name = \"billing\"");
        assert!(Taxonomy::parse(&dup).unwrap_err().contains("twice"));
        let bad = SAMPLE.replace("min_confidence = 0.8", "min_confidence = 1.5");
        assert!(Taxonomy::parse(&bad).unwrap_err().contains("outside"));
        assert!(Taxonomy::parse("name = \"x\"\ncategories = []").is_err());
    }

    #[test]
    fn priority_orders_listed_categories_first_and_is_checked() {
        let t = Taxonomy::parse(&SAMPLE.replace("rules = [", "priority = [\"feature request\"]\nrules = [")).unwrap();
        assert_eq!((t.priority_rank("Feature Request"), t.priority_rank("Billing")), (0, 1));
        assert_eq!(Taxonomy::parse(SAMPLE).unwrap().priority_rank("Billing"), 0, "no order: all equal");
        let bad = SAMPLE.replace("rules = [", "priority = [\"Sales\"]\nrules = [");
        assert!(Taxonomy::parse(&bad).unwrap_err().contains("not a category"));
        let twice = SAMPLE.replace("rules = [", "priority = [\"Billing\", \"billing\"]\nrules = [");
        assert!(Taxonomy::parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_category_whose_last_example_went_is_retired_into_the_history() {
        let mut t = Taxonomy::parse(&SAMPLE.replace("rules = [", "priority = [\"billing\"]\nrules = [")).unwrap();
        let before = t.fingerprint();
        let counts = |l: &str| if l == "Billing" { 0 } else { 3 };
        assert!(t.retire_emptied(&["Feature Request".into()], counts, 0).is_empty(), "it still has examples");
        assert_eq!(t.retire_emptied(&["billing".into(), "Nope".into()], counts, 0), vec!["Billing".to_string()]);
        assert_eq!(t.labels(), vec!["Feature Request"]);
        assert!(t.priority.is_empty() && t.retired[0].name == "Billing" && t.retired[0].description == "Money");
        assert_ne!(t.fingerprint(), before);
        assert!(t.retire_emptied(&["Feature Request".into()], |_| 0, 0).is_empty(), "the last category stays");
        // The history survives a round trip; an unknown label is no category any more.
        let back: Taxonomy = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(back.category("Billing").is_none());
    }

    #[test]
    fn derived_taxonomy_absorbs_new_labels_once() {
        let mut t = Taxonomy::derived("d", &["a".into()].into(), &BTreeSet::new());
        assert!(t.absorb(&["A".into(), "b".into()].into(), &["low".into()].into()));
        assert_eq!(t.labels(), vec!["a", "b"]);
        assert!(!t.absorb(&["b".into()].into(), &["Low".into()].into()));
    }
}
