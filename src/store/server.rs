//! A Qdrant server or cluster through qdrant-client (gRPC). The collection's
//! `CollectionMeta` is kept in Qdrant's collection metadata under `triage_meta`.
//! Every write waits until it is applied (`wait=true`): an acknowledged write is on
//! the write-consistency number of replicas, not just queued.

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, GetPointsBuilder, PointId, PointStruct, PointsIdsList,
    QuantizationSearchParamsBuilder, QuantizationType, QueryPointsBuilder, ScalarQuantizationBuilder,
    ScrollPointsBuilder, SearchParamsBuilder, UpdateCollectionBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::qdrant::ReplicaState;
use qdrant_client::{Payload, Qdrant};

use super::layout::{CollectionLayout, Quantization};
use super::{
    example_from_payload, example_payload, validate_name, CollectionMeta, ExampleStore, PayloadFilter, ReplicaHealth,
    StoreError, HASH_KEY,
};
use crate::example::{Example, ExamplePoint, ScoredExample};

const META_KEY: &str = "triage_meta";

pub struct ServerStore {
    client: Qdrant,
    /// Applied when this store creates a collection.
    layout: CollectionLayout,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl ServerStore {
    /// Connect to `url` (gRPC port, usually 6334). The API key, if any, comes from
    /// the caller (env `QDRANT_API_KEY`) and is never logged.
    pub fn connect(url: &str, api_key: Option<String>) -> Result<Self, StoreError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .timeout(std::time::Duration::from_secs(30))
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot connect to Qdrant at {url}: {e}")))?;
        Ok(ServerStore { client, layout: CollectionLayout::default() })
    }

    /// Create collections with these shard, replica and memory settings.
    pub fn with_layout(mut self, layout: CollectionLayout) -> Self {
        self.layout = layout;
        self
    }

    fn create_request(&self, meta: &CollectionMeta, metadata: HashMap<String, serde_json::Value>) -> CreateCollectionBuilder {
        let l = &self.layout;
        let vectors = VectorParamsBuilder::new(meta.dim as u64, Distance::Cosine).on_disk(l.on_disk_vectors);
        let mut request =
            CreateCollectionBuilder::new(&meta.name).vectors_config(vectors).metadata(metadata).on_disk_payload(l.on_disk_payload);
        if let Some(n) = l.shards {
            request = request.shard_number(n);
        }
        if let Some(n) = l.replication_factor {
            request = request.replication_factor(n);
        }
        if let Some(n) = l.write_consistency {
            request = request.write_consistency_factor(n);
        }
        if let Some(Quantization::Int8) = l.quantization {
            request = request.quantization_config(
                ScalarQuantizationBuilder::default().r#type(QuantizationType::Int8.into()).quantile(0.99).always_ram(true),
            );
        }
        request
    }

    async fn exists(&self, collection: &str) -> Result<bool, StoreError> {
        validate_name(collection)?;
        self.client.collection_exists(collection).await.map_err(backend)
    }

    async fn indexed_fields(&self, collection: &str) -> Result<Vec<String>, StoreError> {
        let info = self.client.collection_info(collection).await.map_err(backend)?;
        let mut fields: Vec<String> = info.result.map(|r| r.payload_schema.into_keys().collect()).unwrap_or_default();
        fields.sort();
        Ok(fields)
    }
}

/// Every entry must match (keyword equality).
fn server_filter(filter: Option<&PayloadFilter>) -> Option<Filter> {
    let f = filter.filter(|f| !f.is_empty())?;
    Some(Filter::must(f.iter().map(|(k, v)| Condition::matches(k.clone(), v.clone()))))
}

fn num_id(id: Option<PointId>) -> Option<u64> {
    match id?.point_id_options? {
        PointIdOptions::Num(n) => Some(n),
        PointIdOptions::Uuid(_) => None,
    }
}

fn to_json(map: HashMap<String, qdrant_client::qdrant::Value>) -> serde_json::Map<String, serde_json::Value> {
    map.into_iter().map(|(k, v)| (k, v.into_json())).collect()
}

#[async_trait]
impl ExampleStore for ServerStore {
    fn backend(&self) -> &'static str {
        "server"
    }

    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        let resp = self.client.list_collections().await.map_err(backend)?;
        let mut names = Vec::new();
        for c in resp.collections {
            if self.get_meta(&c.name).await.ok().flatten().is_some() {
                names.push(c.name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn get_meta(&self, collection: &str) -> Result<Option<CollectionMeta>, StoreError> {
        if !self.exists(collection).await? {
            return Ok(None);
        }
        let info = self.client.collection_info(collection).await.map_err(backend)?;
        let meta = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.metadata.get(META_KEY).cloned())
            .map(|v| v.into_json());
        match meta {
            Some(serde_json::Value::String(s)) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| StoreError::Backend(format!("collection {collection}: unreadable {META_KEY}: {e}"))),
            _ => Ok(None),
        }
    }

    async fn put_meta(&self, meta: &CollectionMeta) -> Result<(), StoreError> {
        let json = serde_json::to_string(meta).map_err(backend)?;
        let metadata: HashMap<String, serde_json::Value> =
            HashMap::from([(META_KEY.to_string(), serde_json::Value::String(json))]);
        if self.exists(&meta.name).await? {
            self.client
                .update_collection(UpdateCollectionBuilder::new(&meta.name).metadata(metadata))
                .await
                .map_err(backend)?;
        } else {
            self.client.create_collection(self.create_request(meta, metadata)).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn content_hashes(&self, collection: &str, ids: &[u64]) -> Result<HashMap<u64, String>, StoreError> {
        let ids: Vec<PointId> = ids.iter().map(|&i| PointId::from(i)).collect();
        let resp = self
            .client
            .get_points(GetPointsBuilder::new(collection, ids).with_payload(true))
            .await
            .map_err(backend)?;
        Ok(resp
            .result
            .into_iter()
            .filter_map(|p| {
                let id = num_id(p.id)?;
                let hash = p.payload.get(HASH_KEY)?.as_str()?.to_string();
                Some((id, hash))
            })
            .collect())
    }

    async fn get(&self, collection: &str, ids: &[u64]) -> Result<Vec<Example>, StoreError> {
        let ids: Vec<PointId> = ids.iter().map(|&i| PointId::from(i)).collect();
        let resp = self
            .client
            .get_points(GetPointsBuilder::new(collection, ids).with_payload(true))
            .await
            .map_err(backend)?;
        resp.result.into_iter().map(|p| example_from_payload(to_json(p.payload))).collect()
    }

    async fn upsert(&self, collection: &str, points: Vec<ExamplePoint>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let points: Vec<PointStruct> = points
            .into_iter()
            .map(|p| PointStruct::new(p.example.point_id(), p.vector, Payload::from(example_payload(&p.example))))
            .collect();
        self.client
            .upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete(&self, collection: &str, ids: &[u64]) -> Result<(), StoreError> {
        let list = PointsIdsList { ids: ids.iter().map(|&i| PointId::from(i)).collect() };
        self.client
            .delete_points(DeletePointsBuilder::new(collection).points(list).wait(true))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn apply(&self, collection: &str, points: Vec<ExamplePoint>, ids: &[u64]) -> Result<(), StoreError> {
        use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
        use qdrant_client::qdrant::points_update_operation::{self as op, Operation};
        use qdrant_client::qdrant::{PointsSelector, PointsUpdateOperation, UpdateBatchPointsBuilder};
        let mut ops = Vec::new();
        if !points.is_empty() {
            let points = points
                .into_iter()
                .map(|p| PointStruct::new(p.example.point_id(), p.vector, Payload::from(example_payload(&p.example))))
                .collect();
            ops.push(PointsUpdateOperation { operation: Some(Operation::Upsert(op::PointStructList { points, ..Default::default() })) });
        }
        if !ids.is_empty() {
            let selector = PointsSelector {
                points_selector_one_of: Some(PointsSelectorOneOf::Points(PointsIdsList { ids: ids.iter().map(|&i| PointId::from(i)).collect() })),
            };
            ops.push(PointsUpdateOperation {
                operation: Some(Operation::DeletePoints(op::DeletePoints { points: Some(selector), ..Default::default() })),
            });
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.client.update_points_batch(UpdateBatchPointsBuilder::new(collection, ops).wait(true)).await.map_err(backend)?;
        Ok(())
    }

    async fn search(
        &self,
        collection: &str,
        vector: &[f32],
        limit: usize,
        filter: Option<&PayloadFilter>,
    ) -> Result<Vec<ScoredExample>, StoreError> {
        // With int8 quantisation (--quantization), candidates are found on the int8 copy:
        // twice as many as asked, then rescored with the float32 originals, so the
        // similarities are exact (Qdrant does not always rescore on its own, e.g. with
        // on-disk originals). Without quantisation this changes nothing.
        let rescore = QuantizationSearchParamsBuilder::default().rescore(true).oversampling(2.0);
        let mut request = QueryPointsBuilder::new(collection)
            .query(vector.to_vec())
            .limit(limit as u64)
            .with_payload(true)
            .params(SearchParamsBuilder::default().quantization(rescore));
        if let Some(f) = server_filter(filter) {
            request = request.filter(f);
        }
        let resp = self.client.query(request).await.map_err(backend)?;
        resp.result
            .into_iter()
            .map(|p| Ok(ScoredExample { score: p.score, example: example_from_payload(to_json(p.payload))? }))
            .collect()
    }

    async fn count(&self, collection: &str) -> Result<usize, StoreError> {
        let resp = self.client.count(CountPointsBuilder::new(collection).exact(true)).await.map_err(backend)?;
        Ok(resp.result.map(|r| r.count as usize).unwrap_or(0))
    }

    async fn scroll(
        &self,
        collection: &str,
        offset: Option<u64>,
        limit: usize,
        with_vectors: bool,
    ) -> Result<(Vec<ExamplePoint>, Option<u64>), StoreError> {
        let mut request =
            ScrollPointsBuilder::new(collection).limit(limit.max(1) as u32).with_payload(true).with_vectors(with_vectors);
        if let Some(o) = offset {
            request = request.offset(PointId::from(o));
        }
        let resp = self.client.scroll(request).await.map_err(backend)?;
        let points = resp
            .result
            .into_iter()
            .map(|p| {
                let example = example_from_payload(to_json(p.payload))?;
                let vector = match p.vectors.and_then(|v| v.get_vector()) {
                    None => Vec::new(),
                    Some(qdrant_client::qdrant::vector_output::Vector::Dense(d)) => d.data,
                    Some(_) => return Err(StoreError::BadPayload("point without a dense vector".into())),
                };
                Ok(ExamplePoint { example, vector })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((points, num_id(resp.next_page_offset)))
    }

    async fn finish_indexing(&self, collection: &str) -> Result<(), StoreError> {
        // The server builds its HNSW index in the background; payload indexes are
        // created here, for the fields the meta lists that have none yet.
        let meta = self.require_meta(collection).await?;
        let indexed = self.indexed_fields(collection).await?;
        for field in meta.filter_fields() {
            if indexed.contains(&field) {
                continue;
            }
            self.client
                .create_field_index(CreateFieldIndexCollectionBuilder::new(collection, &field, FieldType::Keyword).wait(true))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn payload_indexes(&self, collection: &str) -> Result<Vec<String>, StoreError> {
        if !self.exists(collection).await? {
            return Err(StoreError::NoSuchCollection(collection.into()));
        }
        self.indexed_fields(collection).await
    }

    async fn replica_health(&self, collection: &str) -> Result<Option<ReplicaHealth>, StoreError> {
        validate_name(collection)?;
        let info = self.client.collection_cluster_info(collection).await.map_err(backend)?;
        let local = info.local_shards.iter().map(|s| (s.shard_id, info.peer_id, s.state));
        let remote = info.remote_shards.iter().map(|s| (s.shard_id, s.peer_id, s.state));
        let replicas = local
            .chain(remote)
            .map(|(shard, peer, state)| {
                let state = ReplicaState::try_from(state).map(|s| s.as_str_name().to_string()).unwrap_or(format!("state {state}"));
                super::ReplicaInfo { shard, peer, state }
            })
            .collect();
        Ok(Some(ReplicaHealth::from_replicas(info.peer_id, replicas, info.shard_transfers.len())))
    }

    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError> {
        if !self.exists(collection).await? {
            return Ok(false);
        }
        self.client.delete_collection(collection).await.map_err(backend)?;
        Ok(true)
    }
}
