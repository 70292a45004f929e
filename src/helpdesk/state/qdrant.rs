//! The Qdrant server's helpdesk state: a side collection, `triage_helpdesk_state`,
//! with one point per ledger entry and one per cursor (a 1-dimensional placeholder
//! vector; only the payload matters). Point ids are derived from (collection,
//! source, ticket), so a write replaces the previous one; writes wait for the
//! server's acknowledgement (`wait: true`). The side collection carries no
//! `triage_meta`, so it is not listed among the example collections.

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, GetPointsBuilder, PointId, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant};
use tokio::sync::OnceCell;

use super::{HelpdeskState, LedgerEntry, StateError, StateKey};
use crate::example::point_id_for;
use crate::helpdesk::Cursor;

/// The side collection's name.
pub const STATE_COLLECTION: &str = "triage_helpdesk_state";
/// Payload key of the JSON record.
const RECORD: &str = "record";

pub struct QdrantState {
    client: Qdrant,
    ready: OnceCell<()>,
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

/// Point id of a ticket's entry (`Some`) or of the cursor (`None`).
fn point(key: &StateKey, ticket: Option<&str>) -> u64 {
    match ticket {
        Some(t) => point_id_for(&format!("{}\u{1f}{}\u{1f}ticket\u{1f}{t}", key.collection, key.source)),
        None => point_id_for(&format!("{}\u{1f}{}\u{1f}cursor", key.collection, key.source)),
    }
}

impl QdrantState {
    /// Connect to `url` (gRPC); the API key comes from the caller and is never logged.
    pub fn connect(url: &str, api_key: Option<String>) -> Result<Self, StateError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .timeout(std::time::Duration::from_secs(30))
            .skip_compatibility_check()
            .build()
            .map_err(|e| StateError::Backend(format!("cannot connect to Qdrant at {url}: {e}")))?;
        Ok(QdrantState { client, ready: OnceCell::new() })
    }

    /// Create the side collection on first use.
    async fn ensure(&self) -> Result<(), StateError> {
        self.ready
            .get_or_try_init(|| async {
                if !self.client.collection_exists(STATE_COLLECTION).await.map_err(backend)? {
                    let created = self
                        .client
                        .create_collection(
                            CreateCollectionBuilder::new(STATE_COLLECTION)
                                .vectors_config(VectorParamsBuilder::new(1, Distance::Dot)),
                        )
                        .await;
                    // Another process may have created it meanwhile.
                    if let Err(e) = created {
                        if !self.client.collection_exists(STATE_COLLECTION).await.map_err(backend)? {
                            return Err(backend(e));
                        }
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn get(&self, ids: Vec<u64>) -> Result<Vec<serde_json::Value>, StateError> {
        self.ensure().await?;
        let ids: Vec<PointId> = ids.into_iter().map(PointId::from).collect();
        let resp = self
            .client
            .get_points(GetPointsBuilder::new(STATE_COLLECTION, ids).with_payload(true))
            .await
            .map_err(backend)?;
        resp.result
            .into_iter()
            .filter_map(|p| p.payload.get(RECORD).and_then(|v| v.as_str().map(|s| s.to_string())))
            .map(|s| serde_json::from_str(&s).map_err(|e| StateError::Backend(format!("unreadable state record: {e}"))))
            .collect()
    }

    async fn upsert(&self, key: &StateKey, records: Vec<(u64, serde_json::Value)>) -> Result<(), StateError> {
        self.ensure().await?;
        let points: Vec<PointStruct> = records
            .into_iter()
            .map(|(id, record)| {
                let payload = serde_json::json!({
                    "collection": key.collection,
                    "source": key.source,
                    RECORD: record.to_string(),
                });
                let map = match payload {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                PointStruct::new(id, vec![1.0f32], Payload::from(map))
            })
            .collect();
        self.client
            .upsert_points(UpsertPointsBuilder::new(STATE_COLLECTION, points).wait(true))
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl HelpdeskState for QdrantState {
    async fn cursor(&self, key: &StateKey) -> Result<Option<Cursor>, StateError> {
        Ok(self.get(vec![point(key, None)]).await?.into_iter().next().map(Cursor))
    }

    async fn set_cursor(&self, key: &StateKey, cursor: &Cursor) -> Result<(), StateError> {
        self.upsert(key, vec![(point(key, None), cursor.0.clone())]).await
    }

    async fn entries(&self, key: &StateKey, tickets: &[String]) -> Result<HashMap<String, LedgerEntry>, StateError> {
        if tickets.is_empty() {
            return Ok(HashMap::new());
        }
        let records = self.get(tickets.iter().map(|t| point(key, Some(t))).collect()).await?;
        records
            .into_iter()
            .map(|r| {
                serde_json::from_value::<LedgerEntry>(r)
                    .map(|e| (e.ticket.clone(), e))
                    .map_err(|e| StateError::Backend(format!("unreadable ledger entry: {e}")))
            })
            .collect()
    }

    async fn put(&self, key: &StateKey, entries: &[LedgerEntry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let records = entries
            .iter()
            .map(|e| serde_json::to_value(e).map(|v| (point(key, Some(&e.ticket)), v)).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        self.upsert(key, records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_separate_collections_sources_and_the_cursor() {
        let a = StateKey::new("saas", "zendesk-a");
        let b = StateKey::new("saas", "zendesk-b");
        assert_eq!(point(&a, Some("1")), point(&a, Some("1")));
        assert_ne!(point(&a, Some("1")), point(&b, Some("1")));
        assert_ne!(point(&a, Some("1")), point(&StateKey::new("other", "zendesk-a"), Some("1")));
        assert_ne!(point(&a, None), point(&a, Some("cursor")));
    }
}
