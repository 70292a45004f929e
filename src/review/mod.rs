//! The review queue: every flagged result (`needs_review`) of `serve` and `pull`, kept
//! per collection until a person accepts, corrects or dismisses it.
//!
//! The queue lives in the example store itself, in a companion collection of each
//! collection ([`queue_name`]): one payload-only point per queued ticket (a constant
//! one-dimensional vector; the store needs one). So it is exactly as durable as examples
//! are (the embedded store's write-ahead journal acknowledges a write once it is on
//! disk), and `serve` replicas on one Qdrant server share it. Point ids come from the
//! item id, itself a hash of the collection, ticket id and text: queueing the same
//! flagged ticket twice keeps one entry.
//!
//! Resolution marks the entry resolved in place (state, action, label, reviewer, time):
//! a second resolution is refused ([`ReviewError::Resolved`]). What accepting or
//! correcting adds to the collection is the caller's part (the HTTP layer adds the
//! example through the same path as `POST /v1/examples`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::example::{hex, point_id_for, Example, ExamplePoint};
use crate::result::TicketResult;
use crate::store::{now_secs, CollectionMeta, ExampleStore, StoreError};

mod page;
pub use page::{list, summary, Filter, Page, Summary};

/// What marks a collection as a review queue (its `embedding_model`).
pub const QUEUE_MODEL: &str = "triage-review-queue";
/// Suffix of the companion collection's name.
pub const QUEUE_SUFFIX: &str = ".review-queue";
const STATE_KEY: &str = "review_state";
const RECORD_KEY: &str = "review_record";
const REASON_KEY: &str = "review_reason";
const OPEN: &str = "open";
const RESOLVED: &str = "resolved";

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no review item {id:?} in the queue of collection {collection:?}")]
    NotFound { collection: String, id: String },
    #[error("review item {id:?} was already resolved ({action} by {reviewer} at {at})")]
    Resolved { id: String, action: String, reviewer: String, at: String },
    #[error("invalid cursor {0:?}: pass the next_cursor of the previous page")]
    BadCursor(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a queued ticket came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewSource {
    /// `classify`, `batch`, `webhook` or `pull`.
    pub via: String,
    /// The helpdesk (`zendesk`, `freshdesk`, `webhook`) when from `pull` or the ticket webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helpdesk: Option<String>,
    /// The API key id of the request that classified it (`serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A neighbour shown with the result: the example, its label and similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewNeighbour {
    pub id: String,
    pub label: String,
    pub score: f32,
    /// The example's text, looked up when the queue is read (absent if it was deleted since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The LLM's answer, when it was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewLlm {
    pub category: Option<String>,
    pub confidence: Option<f32>,
}

/// How an item was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolution {
    /// `accept`, `correct` or `dismiss`.
    pub action: String,
    /// The label given (accept: the predicted one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The reviewer's API key id (or `anonymous`).
    pub reviewer: String,
    /// RFC 3339.
    pub at: String,
    /// The example added, for accept and correct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_id: Option<String>,
}

/// One queued ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewItem {
    pub id: String,
    pub ticket_id: String,
    pub text: String,
    /// The predicted category (none when nothing could be predicted).
    pub category: Option<String>,
    pub confidence: f32,
    /// Why it was flagged: the kind (`low_confidence`, `disagreement`, ...).
    pub review_reason: Option<String>,
    /// Why it was flagged, in words.
    pub review_detail: Option<String>,
    /// The result's reasoning (the LLM's, when it was asked).
    pub reasoning: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_answer: Option<ReviewLlm>,
    pub neighbours: Vec<ReviewNeighbour>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Unix seconds.
    pub created_unix: u64,
    pub source: ReviewSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

impl ReviewItem {
    /// The queue entry of a flagged result; `None` when the result is not flagged.
    pub fn from_result(collection: &str, text: &str, result: &TicketResult, source: ReviewSource, now: u64) -> Option<Self> {
        if !result.needs_review {
            return None;
        }
        Some(ReviewItem {
            id: item_id(collection, &result.id, text),
            ticket_id: result.id.clone(),
            text: text.to_string(),
            category: result.category.clone(),
            confidence: result.confidence,
            review_reason: result.review_reason.as_ref().map(|r| r.kind.as_str().to_string()),
            review_detail: result.review_reason.as_ref().map(|r| r.detail.clone()),
            reasoning: result.reasoning.clone(),
            method: result.method.as_str().to_string(),
            llm_answer: result.llm_answer.as_ref().map(|a| ReviewLlm { category: a.category.clone(), confidence: a.confidence }),
            neighbours: result
                .neighbors
                .iter()
                .map(|n| ReviewNeighbour { id: n.id.clone(), label: n.label.clone(), score: n.score, text: None })
                .collect(),
            created_at: crate::eval::report::timestamp(now),
            created_unix: now,
            source,
            resolution: None,
        })
    }

    pub fn is_open(&self) -> bool {
        self.resolution.is_none()
    }

    /// The id of the example accepting or correcting this item adds.
    pub fn example_id(&self) -> String {
        format!("review-{}", self.id)
    }

    fn to_point(&self) -> Result<ExamplePoint, StoreError> {
        let record = serde_json::to_string(self).map_err(|e| StoreError::BadPayload(e.to_string()))?;
        let mut example = Example::new(self.id.clone(), self.text.clone(), self.category.clone().unwrap_or_default());
        example.meta = BTreeMap::from([
            (STATE_KEY.to_string(), if self.is_open() { OPEN } else { RESOLVED }.to_string()),
            (RECORD_KEY.to_string(), record),
            (REASON_KEY.to_string(), self.review_reason.clone().unwrap_or_default()),
        ]);
        Ok(ExamplePoint { example, vector: vec![1.0] })
    }

    fn from_example(e: &Example) -> Result<Self, StoreError> {
        let record = e.meta.get(RECORD_KEY).ok_or_else(|| StoreError::BadPayload(format!("review item {} has no record", e.id)))?;
        serde_json::from_str(record).map_err(|e| StoreError::BadPayload(format!("review item: {e}")))
    }
}

/// The queue item id of a ticket: 16 hex digits of a hash of the collection, ticket id and text.
pub fn item_id(collection: &str, ticket_id: &str, text: &str) -> String {
    let mut h = Sha256::new();
    for part in [collection, ticket_id, text] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex(&h.finalize()[..8])
}

/// The companion collection holding `collection`'s queue. Names too long for the
/// suffix are shortened and made unique by a hash.
pub fn queue_name(collection: &str) -> String {
    let name = format!("{collection}{QUEUE_SUFFIX}");
    if name.len() <= 64 {
        return name;
    }
    let hash = hex(&Sha256::digest(collection.as_bytes())[..4]);
    let keep = 64 - QUEUE_SUFFIX.len() - hash.len() - 1;
    let prefix: String = collection.chars().take_while(char::is_ascii).take(keep).collect();
    format!("{prefix}-{hash}{QUEUE_SUFFIX}")
}

/// Whether a stored collection is a review queue, not a collection of examples
/// (listings leave those out).
pub fn is_queue(name: &str) -> bool {
    name.ends_with(QUEUE_SUFFIX)
}

async fn ensure_queue(store: &dyn ExampleStore, collection: &str) -> Result<String, StoreError> {
    let name = queue_name(collection);
    if store.get_meta(&name).await?.is_some() {
        return Ok(name);
    }
    // Created once, however many flagged results arrive at once.
    let _lock = crate::store::meta_lock(&name).await;
    if store.get_meta(&name).await?.is_none() {
        let parent = store.require_meta(collection).await?;
        let now = now_secs();
        let meta = CollectionMeta {
            name: name.clone(),
            taxonomy: parent.taxonomy,
            embedding_model: QUEUE_MODEL.to_string(),
            dim: 1,
            created_at: now,
            updated_at: now,
            fitted: None,
            legacy_calibration: None,
            meta_fields: Vec::new(),
        };
        store.put_meta(&meta).await?;
    }
    Ok(name)
}

/// Queue flagged items (durably: returns once the store acknowledged the write). An
/// item already resolved stays resolved: the same ticket flagged again after a person
/// decided is not asked about twice. Returns how many were queued.
pub async fn enqueue(store: &dyn ExampleStore, collection: &str, items: Vec<ReviewItem>) -> Result<usize, StoreError> {
    if items.is_empty() {
        return Ok(0);
    }
    let queue = ensure_queue(store, collection).await?;
    let ids: Vec<u64> = items.iter().map(|i| point_id_for(&i.id)).collect();
    let resolved: std::collections::HashSet<String> = store
        .get(&queue, &ids)
        .await?
        .iter()
        .filter_map(|e| ReviewItem::from_example(e).ok())
        .filter(|i| !i.is_open())
        .map(|i| i.id)
        .collect();
    let points = items.iter().filter(|i| !resolved.contains(&i.id)).map(ReviewItem::to_point).collect::<Result<Vec<_>, _>>()?;
    let n = points.len();
    store.upsert(&queue, points).await?;
    Ok(n)
}

/// One item, open or resolved.
pub async fn get(store: &dyn ExampleStore, collection: &str, id: &str) -> Result<ReviewItem, ReviewError> {
    let not_found = || ReviewError::NotFound { collection: collection.to_string(), id: id.to_string() };
    let queue = queue_name(collection);
    if store.get_meta(&queue).await?.is_none() {
        store.require_meta(collection).await?;
        return Err(not_found());
    }
    let found = store.get(&queue, &[point_id_for(id)]).await?;
    let example = found.into_iter().find(|e| e.id == id).ok_or_else(not_found)?;
    Ok(ReviewItem::from_example(&example)?)
}

/// An open item, or why it cannot be resolved (404, 409).
pub async fn open_item(store: &dyn ExampleStore, collection: &str, id: &str) -> Result<ReviewItem, ReviewError> {
    let item = get(store, collection, id).await?;
    match &item.resolution {
        None => Ok(item),
        Some(r) => Err(ReviewError::Resolved {
            id: id.to_string(),
            action: r.action.clone(),
            reviewer: r.reviewer.clone(),
            at: r.at.clone(),
        }),
    }
}

/// Mark `item` resolved, durably. The caller checked it was open ([`open_item`]) and
/// holds whatever lock makes that check and this write one step.
pub async fn mark_resolved(
    store: &dyn ExampleStore,
    collection: &str,
    mut item: ReviewItem,
    resolution: Resolution,
) -> Result<ReviewItem, StoreError> {
    item.resolution = Some(resolution);
    store.upsert(&queue_name(collection), vec![item.to_point()?]).await?;
    Ok(item)
}

/// Delete `collection`'s queue with it (a collection made again later under the same
/// name starts with an empty queue). True if there was one.
pub async fn delete_queue(store: &dyn ExampleStore, collection: &str) -> Result<bool, StoreError> {
    let queue = queue_name(collection);
    if store.get_meta(&queue).await?.is_none() {
        return Ok(false);
    }
    store.delete_collection(&queue).await
}

/// Fill in the neighbours' texts from the collection (one lookup for all the items).
pub async fn with_neighbour_texts(store: &dyn ExampleStore, collection: &str, items: &mut [ReviewItem]) -> Result<(), StoreError> {
    let ids: Vec<u64> = items.iter().flat_map(|i| i.neighbours.iter().map(|n| point_id_for(&n.id))).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let texts: std::collections::HashMap<String, String> =
        store.get(collection, &ids).await?.into_iter().map(|e| (e.id, e.text)).collect();
    for n in items.iter_mut().flat_map(|i| i.neighbours.iter_mut()) {
        n.text = texts.get(&n.id).cloned();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
