//! What a store holds, as `triage collections list|info` and `GET /v1/collections[/{name}]`
//! show it: one typed summary per collection, gathered in one place for both.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{label_counts, ExampleStore, StoreError};
use crate::taxonomy::Taxonomy;

/// One collection of a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CollectionSummary {
    pub name: String,
    /// `edge` (embedded) or `server`.
    pub backend: String,
    pub embedding_model: String,
    pub dim: usize,
    /// Stored examples; null when the embedded store is held by another process (`triage collections list`).
    pub examples: Option<usize>,
    /// Categories of its taxonomy (the HTTP listing shows them; `collections list` never did).
    #[serde(skip)]
    pub labels: usize,
}

/// The store's collections; `locked` says why example counts are missing, if they are.
#[derive(Debug, Default)]
pub struct Listing {
    pub collections: Vec<CollectionSummary>,
    pub locked: Option<String>,
}

/// Every collection with metadata. Names and models come from the metadata; counting
/// opens the store, which another process may hold: the count is then `None`.
pub async fn list(store: &dyn ExampleStore) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    for name in store.list_collections().await? {
        if crate::review::is_queue(&name) {
            continue;
        }
        let Some(meta) = store.get_meta(&name).await? else { continue };
        let examples = match store.count(&name).await {
            Ok(n) => Some(n),
            Err(StoreError::Locked(msg)) => {
                listing.locked = Some(msg);
                None
            }
            Err(e) => return Err(e),
        };
        listing.collections.push(CollectionSummary {
            name,
            backend: store.backend().into(),
            embedding_model: meta.embedding_model,
            dim: meta.dim,
            examples,
            labels: meta.taxonomy.categories.len(),
        });
    }
    Ok(listing)
}

/// One collection in full.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    /// `edge` (embedded) or `server`.
    pub backend: String,
    pub embedding_model: String,
    pub dim: usize,
    pub examples: usize,
    /// Stored examples per label.
    pub examples_per_label: BTreeMap<String, usize>,
    /// Fields a classify `filter` may name: label, subcategory, urgency, lang and the metadata fields.
    pub filter_fields: Vec<String>,
    /// Payload fields with an index (fast filtered retrieval).
    pub payload_indexes: Vec<String>,
    /// The taxonomy: categories, subcategories, urgency levels, rules, review threshold.
    #[schema(value_type = Object)]
    pub taxonomy: Taxonomy,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The collection `name`, or [`StoreError::NoSuchCollection`].
pub async fn info(store: &dyn ExampleStore, name: &str) -> Result<CollectionInfo, StoreError> {
    let meta = store.require_meta(name).await?;
    Ok(CollectionInfo {
        backend: store.backend().into(),
        examples: store.count(name).await?,
        examples_per_label: label_counts(store, name).await?,
        filter_fields: meta.filter_fields(),
        payload_indexes: store.payload_indexes(name).await?,
        name: meta.name,
        embedding_model: meta.embedding_model,
        dim: meta.dim,
        taxonomy: meta.taxonomy,
        created_at: meta.created_at,
        updated_at: meta.updated_at,
    })
}
