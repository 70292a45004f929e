//! The durable side of exactly-once: per collection and helpdesk account, the export
//! cursor and a ledger entry per ticket (hash of the text we classified, our
//! category and tags, the write in progress, the agent's label after a correction).
//!
//! Two backends, chosen like the example store: a journal file under the data dir for
//! the embedded store ([`FileState`]; the data-dir lock makes it single-process), and a
//! side collection on the Qdrant server ([`QdrantState`]). Both are keyed by
//! collection name and never touch the collection's own metadata.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Cursor, WriteBack};

mod file;
mod qdrant;

pub use file::FileState;
pub use qdrant::QdrantState;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("helpdesk state I/O error: {0}")]
    Io(String),
    #[error("helpdesk state file {path} is corrupt at line {line}: {detail}")]
    Corrupt { path: String, line: usize, detail: String },
    #[error("helpdesk state on the Qdrant server: {0}")]
    Backend(String),
}

/// Whose state: a collection and one helpdesk account (or `webhook` for the push path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub collection: String,
    /// `zendesk-acme.zendesk.com`, `freshdesk-acme.freshdesk.com`, `webhook`.
    pub source: String,
}

impl StateKey {
    pub fn new(collection: &str, source: &str) -> Self {
        StateKey { collection: collection.to_string(), source: source.to_string() }
    }

    /// The source name as a file name: characters other than letters, digits, `.`, `-`, `_` become `_`.
    pub fn file_name(&self) -> String {
        let safe: String = self
            .source
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
            .collect();
        format!("{}.jsonl", safe.trim_start_matches('.'))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// A write-back was planned and may have been sent; its note is checked before it is sent again.
    Pending,
    /// Written back.
    Done,
    /// The helpdesk refused the write (4xx other than 401/403/429); tried again when the ticket shows up again.
    Failed,
    /// Classified for the push path (the helpdesk writes the result itself).
    Classified,
}

/// What we know about one ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub ticket: String,
    /// Hash of the ticket text this entry is about (see [`text_hash`]).
    pub text_hash: String,
    pub status: EntryStatus,
    /// Our category for that text; `None` when it could not be classified.
    #[serde(default)]
    pub category: Option<String>,
    /// The tags we added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The planned write, kept while it is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteBack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The label an agent gave the ticket after our write-back (the latest correction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_label: Option<String>,
    /// Unix seconds of the last change to this entry.
    pub updated_at: u64,
}

impl LedgerEntry {
    /// The ticket's label as far as we know: the agent's, else ours.
    pub fn effective_label(&self) -> Option<&str> {
        self.agent_label.as_deref().or(self.category.as_deref())
    }
}

/// Hex SHA-256 (first 16 bytes) of a ticket's text: equal hashes mean the text did not change.
pub fn text_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::example::hex(&Sha256::digest(text.as_bytes())[..16])
}

/// The durable cursor and ledger. Every write is durable when the call returns.
#[async_trait]
pub trait HelpdeskState: Send + Sync {
    async fn cursor(&self, key: &StateKey) -> Result<Option<Cursor>, StateError>;
    async fn set_cursor(&self, key: &StateKey, cursor: &Cursor) -> Result<(), StateError>;
    /// The entries of those tickets that have one.
    async fn entries(&self, key: &StateKey, tickets: &[String]) -> Result<HashMap<String, LedgerEntry>, StateError>;
    /// Add or replace entries (by ticket).
    async fn put(&self, key: &StateKey, entries: &[LedgerEntry]) -> Result<(), StateError>;
}

/// The state next to the example store: a journal under `data_dir`, or a side
/// collection on the Qdrant server at `qdrant_url` (key from `QDRANT_API_KEY`).
pub fn open(settings: &crate::config::StoreSettings) -> Result<Arc<dyn HelpdeskState>, StateError> {
    Ok(match &settings.qdrant_url {
        Some(url) => {
            let key = std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.trim().is_empty());
            Arc::new(QdrantState::connect(url, key)?)
        }
        None => Arc::new(FileState::new(&settings.data_dir)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(StateKey::new("saas", "zendesk-acme.zendesk.com").file_name(), "zendesk-acme.zendesk.com.jsonl");
        assert_eq!(StateKey::new("saas", "freshdesk-127.0.0.1:8080/x").file_name(), "freshdesk-127.0.0.1_8080_x.jsonl");
        assert_eq!(StateKey::new("saas", "../etc").file_name(), "_etc.jsonl");
    }

    #[test]
    fn hashes_follow_the_text() {
        assert_eq!(text_hash("a"), text_hash("a"));
        assert_ne!(text_hash("a"), text_hash("a "));
        assert_eq!(text_hash("a").len(), 32);
    }
}
