//! The example store: where embedded examples live and are searched. One trait, two
//! implementations: Qdrant Edge in-process (the default) and a Qdrant server through
//! qdrant-client. The store never embeds: callers hand it vectors.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::example::{Example, ExamplePoint, ScoredExample};
use crate::taxonomy::Taxonomy;

pub mod commit;
mod meta_lock;
pub mod filter_values;
mod edge;
mod health;
mod layout;
mod journal;
mod lock;
mod server;
pub mod summary;
pub mod transfer;

pub use edge::EdgeStore;
pub use meta_lock::meta_lock;
#[cfg(any(test, feature = "test-doubles"))]
pub use journal::faults::{Faults as JournalFaults, ENV as JOURNAL_FAULTS_ENV};
pub use journal::{JournalFile, JournalFiles};
pub use health::{ReplicaHealth, ReplicaInfo, ReplicaStatus};
pub use layout::{CollectionLayout, Quantization};
pub use lock::DataDirLock;
pub use server::ServerStore;

/// Payload key holding the example's content hash (for "unchanged" detection).
pub const HASH_KEY: &str = "content_hash";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("collection {0:?} does not exist (index examples into it first: triage index PATH --collection {0})")]
    NoSuchCollection(String),
    #[error("invalid collection name {0:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error(
        "collection {collection:?} was indexed with embedding model {stored:?} ({stored_dim} dims) but this run \
         uses {requested:?} ({requested_dim} dims); pass --embedding-model {stored} or index into a new collection"
    )]
    ModelMismatch { collection: String, stored: String, stored_dim: usize, requested: String, requested_dim: usize },
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    BadFilter(String),
    #[error("{0}")]
    BadImport(String),
    #[error("store I/O error: {0}")]
    Io(String),
    /// A file the store reads or writes for the user (`triage export --output`).
    #[error("{context}")]
    File { context: String, source: std::io::Error },
    #[error("Qdrant error: {0}")]
    Backend(String),
    #[error("a stored point has an unreadable payload: {0}")]
    BadPayload(String),
}

/// What a collection remembers about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionMeta {
    pub name: String,
    pub taxonomy: Taxonomy,
    pub embedding_model: String,
    pub dim: usize,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    /// Models fitted on the collection's own examples by `triage calibrate`; absent in
    /// collections that were never calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<FittedState>,
    /// A calibration written by a version before `fitted` existed: read only to say
    /// that it is no longer used, never written back.
    #[serde(default, rename = "calibration", skip_serializing)]
    pub legacy_calibration: Option<serde_json::Value>,
    /// Metadata fields the examples carry beyond the fixed ones (e.g. `product`,
    /// `tier`): filterable, with a keyword payload index like [`FIXED_FILTER_FIELDS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_fields: Vec<String>,
}

/// State fitted on a collection's examples, kept with the collection. Opaque to the
/// store: `format` names the writer's layout and `version` its revision, so that a
/// reader can refuse a layout it does not know instead of misreading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedState {
    pub format: String,
    pub version: u32,
    /// Unix seconds.
    pub fitted_at: u64,
    pub data: serde_json::Value,
}

/// Example fields every collection can be filtered on (keyword payload indexes).
pub const FIXED_FILTER_FIELDS: [&str; 4] = ["label", "subcategory", "urgency", "lang"];

/// Payload names that metadata fields may not take.
pub const RESERVED_FIELDS: [&str; 8] = ["id", "text", "label", "subcategory", "urgency", "rationale", "lang", HASH_KEY];

/// Retrieval restricted to examples whose payload field equals the value, for every
/// entry (AND). Empty: no restriction.
pub type PayloadFilter = BTreeMap<String, String>;

/// Error unless `name` can be a metadata field: a short identifier, not a fixed field.
pub fn validate_meta_field(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!("invalid metadata field {name:?}: use 1-64 letters, digits or '_'"));
    }
    if RESERVED_FIELDS.contains(&name) {
        return Err(format!("{name:?} is a built-in example field, not a metadata field"));
    }
    Ok(())
}

impl CollectionMeta {
    /// Add metadata field names the collection does not list yet; true if any was new.
    pub fn add_meta_fields(&mut self, fields: &std::collections::BTreeSet<String>) -> bool {
        let mut changed = false;
        for f in fields {
            if !self.meta_fields.contains(f) {
                self.meta_fields.push(f.clone());
                changed = true;
            }
        }
        self.meta_fields.sort();
        changed
    }

    /// Error unless this collection was built with the given embedding model.
    pub fn check_model(&self, model: &str, dim: usize) -> Result<(), StoreError> {
        if self.embedding_model != model || self.dim != dim {
            return Err(StoreError::ModelMismatch {
                collection: self.name.clone(),
                stored: self.embedding_model.clone(),
                stored_dim: self.dim,
                requested: model.to_string(),
                requested_dim: dim,
            });
        }
        Ok(())
    }

    /// The payload fields retrieval can be filtered on (each has a keyword index).
    pub fn filter_fields(&self) -> Vec<String> {
        FIXED_FILTER_FIELDS.iter().map(|f| f.to_string()).chain(self.meta_fields.iter().cloned()).collect()
    }

    /// Error unless every key of `filter` is a filterable field of this collection.
    pub fn check_filter(&self, filter: &PayloadFilter) -> Result<(), StoreError> {
        let fields = self.filter_fields();
        for key in filter.keys() {
            if !fields.contains(key) {
                return Err(StoreError::BadFilter(format!(
                    "collection {:?} cannot be filtered on {key:?}; filterable fields: {}",
                    self.name,
                    fields.join(", ")
                )));
            }
        }
        Ok(())
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_string()))
    }
}

#[async_trait]
pub trait ExampleStore: Send + Sync {
    /// "edge" or "server", for logs and `collections info`.
    fn backend(&self) -> &'static str;
    /// Take exclusive use of the store for this process, where the backend needs it
    /// (the embedded store is single-process: see [`DataDirLock`]). Every access that
    /// opens a shard or writes claims it anyway; long-running processes call this at
    /// start so that a second process fails at once. Idempotent.
    fn claim(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list_collections(&self) -> Result<Vec<String>, StoreError>;
    async fn get_meta(&self, collection: &str) -> Result<Option<CollectionMeta>, StoreError>;
    /// The collection's metadata; `NoSuchCollection` when it does not exist.
    async fn require_meta(&self, collection: &str) -> Result<CollectionMeta, StoreError> {
        self.get_meta(collection).await?.ok_or_else(|| StoreError::NoSuchCollection(collection.to_string()))
    }
    /// Create the collection if it does not exist, and store `meta` with it.
    async fn put_meta(&self, meta: &CollectionMeta) -> Result<(), StoreError>;
    /// Stored content hashes of those point ids that exist.
    async fn content_hashes(&self, collection: &str, ids: &[u64]) -> Result<HashMap<u64, String>, StoreError>;
    /// The stored examples of those point ids that exist (no vectors), in no set order.
    async fn get(&self, collection: &str, ids: &[u64]) -> Result<Vec<Example>, StoreError>;
    async fn upsert(&self, collection: &str, points: Vec<ExamplePoint>) -> Result<(), StoreError>;
    async fn delete(&self, collection: &str, ids: &[u64]) -> Result<(), StoreError>;
    /// Upsert `points` and delete `ids` as one write: acknowledged once durable, and
    /// after a crash either both took effect or neither (the embedded store journals them
    /// as one record; a Qdrant server gets them as one batch request).
    async fn apply(&self, collection: &str, points: Vec<ExamplePoint>, ids: &[u64]) -> Result<(), StoreError>;
    /// The `limit` most similar examples, most similar first, among those matching
    /// `filter` (`None` or empty: all).
    async fn search(
        &self,
        collection: &str,
        vector: &[f32],
        limit: usize,
        filter: Option<&PayloadFilter>,
    ) -> Result<Vec<ScoredExample>, StoreError>;
    async fn count(&self, collection: &str) -> Result<usize, StoreError>;
    /// One page of stored examples in point-id order, starting at `offset` (a point id;
    /// `None` for the first page), with their vectors when `with_vectors` (else empty
    /// vectors). Returns the page and the offset of the next page, `None` after the last.
    async fn scroll(
        &self,
        collection: &str,
        offset: Option<u64>,
        limit: usize,
        with_vectors: bool,
    ) -> Result<(Vec<ExamplePoint>, Option<u64>), StoreError>;
    /// Called after a bulk load: create the keyword payload indexes of the meta's
    /// [`CollectionMeta::filter_fields`] that are missing, build the vector index, flush.
    async fn finish_indexing(&self, collection: &str) -> Result<(), StoreError>;
    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError>;
    /// Payload fields that have an index, sorted.
    async fn payload_indexes(&self, collection: &str) -> Result<Vec<String>, StoreError>;
    /// The collection's shard replicas as the backend sees them (a Qdrant cluster's
    /// dead or recovering copies); `None` where there are none to see (embedded store).
    async fn replica_health(&self, _collection: &str) -> Result<Option<ReplicaHealth>, StoreError> {
        Ok(None)
    }
    /// Problems with the collection's stored data the backend can see cheaply, each a
    /// sentence saying what to do (acknowledged writes its journal could not replay,
    /// segment files gone); empty when there are none. `/readyz` is not ready while
    /// there are any.
    async fn integrity(&self, _collection: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// The payload stored for an example: its fields plus the content hash.
pub fn example_payload(example: &Example) -> serde_json::Map<String, serde_json::Value> {
    let mut map = match serde_json::to_value(example) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    map.insert(HASH_KEY.to_string(), serde_json::Value::String(example.content_hash()));
    map
}

pub fn example_from_payload(mut map: serde_json::Map<String, serde_json::Value>) -> Result<Example, StoreError> {
    // Not an example field: it would land among the metadata.
    map.remove(HASH_KEY);
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| StoreError::BadPayload(e.to_string()))
}

/// Number of stored examples per label, by scrolling the whole collection.
pub async fn label_counts(
    store: &dyn ExampleStore,
    collection: &str,
) -> Result<std::collections::BTreeMap<String, usize>, StoreError> {
    let mut counts = std::collections::BTreeMap::new();
    let mut offset = None;
    loop {
        let (page, next) = store.scroll(collection, offset, 1024, false).await?;
        for p in page {
            *counts.entry(p.example.label).or_insert(0) += 1;
        }
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(counts),
        }
    }
}
