//! Where every stored example came from: which path added it (a file indexed by
//! `triage index`, the HTTP API with which key, an agent's correction in which helpdesk
//! ticket, an import), when, and against which taxonomy version. Stamped by one function,
//! [`Provenance::new`], that every path that adds examples calls; kept in the example's
//! payload, so `export`/`import` carry it; matched by [`Provenance::matches`] for
//! `triage examples list --source` and for deleting one source's examples.
//!
//! The content hash leaves provenance out ([`crate::example::Example::content_hash`]):
//! re-indexing an unchanged example changes nothing, and it keeps its first provenance.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::taxonomy::Taxonomy;

/// Which path added an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `triage index` of a file.
    Index,
    /// `POST /v1/examples`.
    Api,
    /// An agent's correction seen in a helpdesk (`triage pull`, the ticket webhook).
    Correction,
    /// `triage import` of an export whose examples carried no provenance.
    Import,
    /// A person's decision in the review queue (`POST /v1/review/{id}`, the `/ui` page).
    Review,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Index => "index",
            SourceKind::Api => "api",
            SourceKind::Correction => "correction",
            SourceKind::Import => "import",
            SourceKind::Review => "review",
        }
    }
}

/// Where a write comes from, before it is stamped on its examples.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A file (`triage index PATH`): its path as given.
    File(String),
    /// An API client: its key id ([`key_id`]) or `anonymous`.
    Api(String),
    /// A helpdesk (`zendesk`, `freshdesk`, ...) and the ticket the agent corrected.
    Correction { helpdesk: String, ticket: String },
    /// An export file loaded by `triage import`.
    Import(String),
    /// A reviewer (their API key id, or `anonymous`) who accepted or corrected the
    /// queued result of a ticket.
    Review { reviewer: String, ticket: String },
}

/// Where one example came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provenance {
    pub source: SourceKind,
    /// `index`, `import`: the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `index`: the record's line in the file; `api`: its position in the request (from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<usize>,
    /// `api`: the key id (`key-` and 8 hex digits of the key's SHA-256) or `anonymous`;
    /// `review`: the reviewer's key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `correction`: the helpdesk and its ticket id; `review`: the ticket id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helpdesk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// When it was stored (UTC, RFC 3339).
    pub at: String,
    /// The taxonomy the label was checked against: `version` as written (may be empty)
    /// and its fingerprint ([`Taxonomy::fingerprint`]).
    pub taxonomy_version: String,
    pub taxonomy_fingerprint: String,
}

/// The id under which an API key appears in provenance, metrics and limits: never the
/// key itself.
pub fn key_id(key: &str) -> String {
    format!("key-{}", crate::example::hex(&Sha256::digest(key.trim().as_bytes())[..4]))
}

/// The key id of a request without a configured API key.
pub const ANONYMOUS: &str = "anonymous";

impl Provenance {
    /// The provenance of an example added from `origin` now (`at`, Unix seconds), its
    /// label checked against `taxonomy`; `record`: its line or position, where there is one.
    pub fn new(origin: &Origin, record: Option<usize>, taxonomy: &Taxonomy, at: u64) -> Provenance {
        let mut p = Provenance {
            source: SourceKind::Index,
            file: None,
            record,
            key: None,
            helpdesk: None,
            ticket: None,
            at: crate::eval::report::timestamp(at),
            taxonomy_version: taxonomy.version.clone(),
            taxonomy_fingerprint: taxonomy.fingerprint(),
        };
        match origin {
            Origin::File(f) => p.file = Some(f.clone()),
            Origin::Api(k) => {
                p.source = SourceKind::Api;
                p.key = Some(k.clone());
            }
            Origin::Correction { helpdesk, ticket } => {
                p.source = SourceKind::Correction;
                p.helpdesk = Some(helpdesk.clone());
                p.ticket = Some(ticket.clone());
                p.record = None;
            }
            Origin::Import(f) => {
                p.source = SourceKind::Import;
                p.file = Some(f.clone());
            }
            Origin::Review { reviewer, ticket } => {
                p.source = SourceKind::Review;
                p.key = Some(reviewer.clone());
                p.ticket = Some(ticket.clone());
                p.record = None;
            }
        }
        p
    }

    /// The source as one name: `index:<file>`, `api:<key id>`, `correction:<helpdesk>`,
    /// `import:<file>`.
    pub fn source_name(&self) -> String {
        let detail = match self.source {
            SourceKind::Index | SourceKind::Import => self.file.as_deref(),
            SourceKind::Api | SourceKind::Review => self.key.as_deref(),
            SourceKind::Correction => self.helpdesk.as_deref(),
        };
        format!("{}:{}", self.source.as_str(), detail.unwrap_or(""))
    }

    /// Whether `selector` names this source: a kind (`api`), or a kind and its detail
    /// (`api:key-1a2b3c4d`, `index:corpus/examples.jsonl`, `correction:zendesk`).
    pub fn matches(&self, selector: &str) -> bool {
        let selector = selector.trim();
        selector == self.source.as_str() || selector == self.source_name()
    }
}

/// What `--source` matches for examples stored before provenance existed.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// Whether an example with `provenance` is selected by `selector` (`unknown` selects the
/// examples without provenance).
pub fn selects(provenance: Option<&Provenance>, selector: &str) -> bool {
    match provenance {
        Some(p) => p.matches(selector),
        None => selector.trim() == UNKNOWN_SOURCE,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_origin_is_stamped_and_matched_by_kind_or_name() {
        let t = Taxonomy::parse("name = \"t\"\nversion = \"2.1\"\n[[categories]]\nname = \"A\"\n").unwrap();
        let p = Provenance::new(&Origin::File("corpus/examples.jsonl".into()), Some(7), &t, 0);
        assert_eq!((p.source, p.record, p.at.as_str()), (SourceKind::Index, Some(7), "1970-01-01T00:00:00Z"));
        assert_eq!((p.taxonomy_version.as_str(), p.taxonomy_fingerprint.len()), ("2.1", 12));
        assert!(p.matches("index") && p.matches("index:corpus/examples.jsonl") && !p.matches("api"));
        let k = key_id("secret-1");
        assert!(k.starts_with("key-") && k.len() == 12 && !k.contains("secret"));
        let p = Provenance::new(&Origin::Api(k.clone()), Some(2), &t, 0);
        assert_eq!(p.source_name(), format!("api:{k}"));
        assert!(p.matches("api") && p.matches(&format!("api:{k}")) && !p.matches("api:key-00000000"));
        let p = Provenance::new(&Origin::Correction { helpdesk: "zendesk".into(), ticket: "42".into() }, Some(1), &t, 0);
        assert_eq!((p.ticket.as_deref(), p.record, p.source_name().as_str()), (Some("42"), None, "correction:zendesk"));
        assert!(selects(None, "unknown") && !selects(None, "index") && selects(Some(&p), "correction"));
        // Serialised without empty fields, read back the same.
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("file").is_none() && json["source"] == "correction");
        assert_eq!(serde_json::from_value::<Provenance>(json).unwrap(), p);
        let p = Provenance::new(&Origin::Review { reviewer: k.clone(), ticket: "T-9".into() }, Some(1), &t, 0);
        assert_eq!((p.source_name(), p.ticket.as_deref(), p.record), (format!("review:{k}"), Some("T-9"), None));
        assert!(p.matches("review") && !p.matches("api"));
    }
}
