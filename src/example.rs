//! Labeled example tickets and what retrieval returns for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One labeled example ticket, as stored in a collection's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub text: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcategory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Further issues the ticket raises besides `label` (0 to 2 categories), shown to
    /// the LLM with the example; empty for single-issue examples.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "lenient_labels")]
    pub secondary: Vec<String>,
    /// Metadata for filtered retrieval (e.g. `product`, `tier`), stored as top-level
    /// payload fields next to the fixed ones; chosen with `triage index --meta-fields`.
    #[serde(flatten, default, deserialize_with = "lenient_meta")]
    pub meta: BTreeMap<String, String>,
    /// Where the example came from ([`crate::provenance`]); absent on examples stored
    /// before provenance existed. Not part of the content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::provenance::Provenance>,
}

/// Metadata values are text. Numbers and booleans (a payload written by another tool)
/// are kept as text; other values (null, arrays, objects) are skipped rather than
/// making the whole example unreadable.
fn lenient_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// Secondary labels: a list of names, or one comma-separated string (CSV files);
/// anything else counts as none rather than making the example unreadable.
fn lenient_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(labels_from_value(&serde_json::Value::deserialize(d)?))
}

/// Labels from a JSON value: `["A", "B"]` or `"A, B"`; blanks dropped.
pub fn labels_from_value(v: &serde_json::Value) -> Vec<String> {
    let raw: Vec<String> = match v {
        serde_json::Value::String(s) => s.split(',').map(str::to_string).collect(),
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    raw.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

impl Example {
    /// An example with only the required fields; set the others with struct update syntax.
    pub fn new(id: impl Into<String>, text: impl Into<String>, label: impl Into<String>) -> Self {
        Example {
            id: id.into(),
            text: text.into(),
            label: label.into(),
            subcategory: None,
            urgency: None,
            rationale: None,
            lang: None,
            secondary: Vec::new(),
            meta: BTreeMap::new(),
            provenance: None,
        }
    }

    /// Deterministic point id derived from the example id, so indexing the same
    /// corpus twice overwrites instead of duplicating.
    pub fn point_id(&self) -> u64 {
        point_id_for(&self.id)
    }

    /// Hash of everything that is stored but the provenance: equal hashes mean
    /// re-indexing changes nothing (and the example keeps where it first came from).
    pub fn content_hash(&self) -> String {
        let json = match &self.provenance {
            None => serde_json::to_vec(self),
            Some(_) => serde_json::to_vec(&Example { provenance: None, ..self.clone() }),
        }
        .unwrap_or_default();
        hex(&Sha256::digest(&json)[..12])
    }

    /// An id for rows that carry none: a hash of the text, so the same text indexed
    /// twice is the same example.
    pub fn auto_id(text: &str) -> String {
        format!("auto-{}", hex(&Sha256::digest(text.trim().as_bytes())[..8]))
    }
}

pub fn point_id_for(example_id: &str) -> u64 {
    let d = Sha256::digest(example_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // Keep ids below 2^63: some clients treat point ids as signed.
    u64::from_be_bytes(b) >> 1
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A retrieved example with its similarity to the query (cosine, higher is closer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredExample {
    pub score: f32,
    pub example: Example,
}

/// An example together with its embedding, ready to be stored.
#[derive(Debug, Clone)]
pub struct ExamplePoint {
    pub example: Example,
    pub vector: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, label: &str) -> Example {
        Example::new(id, "t", label)
    }

    #[test]
    fn point_ids_are_stable_and_distinct() {
        assert_eq!(ex("a", "x").point_id(), ex("a", "y").point_id());
        assert_ne!(ex("a", "x").point_id(), ex("b", "x").point_id());
        assert!(ex("a", "x").point_id() < (1u64 << 63));
        assert_eq!(Example::auto_id(" hi "), Example::auto_id("hi"));
    }

    #[test]
    fn content_hash_tracks_every_field() {
        assert_eq!(ex("a", "x").content_hash(), ex("a", "x").content_hash());
        assert_ne!(ex("a", "x").content_hash(), ex("a", "y").content_hash());
        let mut tagged = ex("a", "x");
        tagged.meta.insert("tier".into(), "gold".into());
        assert_ne!(tagged.content_hash(), ex("a", "x").content_hash());
        // Provenance is not content: the same example from another source hashes the same.
        let t = crate::Taxonomy::parse("name = \"t\"\n[[categories]]\nname = \"x\"\n").unwrap();
        let mut stamped = ex("a", "x");
        stamped.provenance = Some(crate::provenance::Provenance::new(&crate::provenance::Origin::Api("anonymous".into()), None, &t, 5));
        assert_eq!(stamped.content_hash(), ex("a", "x").content_hash());
        let json = serde_json::to_value(&stamped).unwrap();
        assert_eq!(json["provenance"]["source"], "api");
        assert_eq!(serde_json::from_value::<Example>(json).unwrap(), stamped, "read back, not taken for metadata");
    }

    #[test]
    fn metadata_is_flattened_into_the_payload_and_back() {
        let mut e = ex("a", "x");
        e.meta.insert("product".into(), "mobile".into());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["product"], "mobile");
        let back: Example = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        // Foreign payload fields do not make an example unreadable.
        let odd: Example = serde_json::from_str(
            r#"{"id":"a","text":"t","label":"x","seats":12,"vip":true,"tags":["a"],"note":null,"plan":"pro"}"#,
        )
        .unwrap();
        let kept: Vec<(&str, &str)> = odd.meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(kept, [("plan", "pro"), ("seats", "12"), ("vip", "true")]);
        // Without metadata the JSON (and so every stored content hash) is as before.
        assert_eq!(
            serde_json::to_string(&ex("a", "x")).unwrap(),
            r#"{"id":"a","text":"t","label":"x"}"#
        );
    }
}
