//! Qdrant Edge: the embedded, in-process store. Layout under the data dir:
//! `collections/<name>/meta.json` and `collections/<name>/shard/` (Qdrant segments + WAL),
//! and `.lock`: one process at a time opens shards or writes (see [`super::lock`]).
//! Every write returns once it is on disk: updates share flushes (see [`super::commit`]),
//! `meta.json` is replaced atomically and synced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use qdrant_edge::{
    Condition, CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations, Filter, HnswIndexConfig, JsonPath, Match, NamedQuery, PayloadFieldSchema, PayloadSchemaType, PayloadSelector, PointId, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest, UpdateOperation, ValueVariants, VectorInternal, VectorStructInternal, WithPayloadInterface, WithVector,
};
use tokio::sync::Mutex;

use super::commit::{sync_dir, write_atomic};
use super::journal::{self, JournalFiles, Record};
use super::lock::DataDirLock;
use super::{
    example_from_payload, validate_name, CollectionMeta, ExampleStore, PayloadFilter, StoreError,
    HASH_KEY,
};
use crate::example::{Example, ExamplePoint, ScoredExample};

#[path = "edge_shard.rs"]
mod shard;
use shard::{journal_lines, write_durably, OpenShard};

/// Prefix of a collection folder being deleted (collection names never start with '.').
const TOMBSTONE: &str = ".deleted-";
/// A collection's journal, next to its `shard/` folder.
const JOURNAL: &str = "journal.log";
/// Written by `EdgeShard::new` into the shard folder.
const EDGE_CONFIG: &str = "edge_config.json";

pub struct EdgeStore {
    data_dir: PathBuf,
    root: PathBuf,
    shards: Mutex<HashMap<String, Arc<OpenShard>>>,
    /// Taken on the first shard open or write, kept until the store is dropped.
    lock: std::sync::Mutex<Option<DataDirLock>>,
    /// Wraps the journal files as they are opened (fault-injection tests); `None`: the files themselves.
    journal_files: Option<JournalFiles>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Io(format!("store task failed: {e}")))?
}

impl EdgeStore {
    /// Journal files wrapped by `files` as they are opened: how tests put a file that
    /// fails like a full disk under the journal (see `journal::faults`).
    pub fn with_journal_files(mut self, files: JournalFiles) -> Self {
        self.journal_files = Some(files);
        self
    }

    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("collections");
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::Io(format!("cannot create data dir {}: {e}", root.display())))?;
        Ok(EdgeStore {
            data_dir: data_dir.to_path_buf(),
            root,
            shards: Mutex::new(HashMap::new()),
            lock: std::sync::Mutex::new(None),
            journal_files: None,
        })
    }

    fn take_lock(&self) -> Result<(), StoreError> {
        let mut held = self.lock.lock().map_err(|_| StoreError::Io("lock state poisoned".into()))?;
        if held.is_none() {
            *held = Some(DataDirLock::acquire(&self.data_dir)?);
            self.remove_tombstones();
        }
        Ok(())
    }

    /// Collections a crashed `delete_collection` renamed away but did not finish removing.
    fn remove_tombstones(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TOMBSTONE) {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!("cannot remove {}: {e}", entry.path().display());
                }
            }
        }
    }

    fn dir(&self, collection: &str) -> PathBuf {
        self.root.join(collection)
    }

    fn read_meta(&self, collection: &str) -> Result<Option<CollectionMeta>, StoreError> {
        validate_name(collection)?;
        let path = self.dir(collection).join("meta.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Io(format!("corrupt {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// The open shard for `collection`, opening (or creating) it on first use.
    async fn shard(&self, collection: &str) -> Result<Arc<OpenShard>, StoreError> {
        let mut shards = self.shards.lock().await;
        if let Some(s) = shards.get(collection) {
            return Ok(s.clone());
        }
        let meta = self.read_meta(collection)?.ok_or_else(|| StoreError::NoSuchCollection(collection.to_string()))?;
        self.take_lock()?;
        let dir = self.dir(collection);
        let files = self.journal_files.clone();
        let shard = Arc::new(blocking(move || OpenShard::open(&dir, meta.dim, files.as_ref())).await?);
        shards.insert(collection.to_string(), shard.clone());
        Ok(shard)
    }
}

/// Whether the shard folder holds segments.
fn has_segments(shard: &Path) -> bool {
    std::fs::read_dir(shard.join("segments")).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// Open the shard at `path`, creating it when the collection never had one. A shard
/// that was created (its config, or the collection's journal, exists) but has no
/// segments lost its data: that is an error, never a new empty shard that serves
/// nothing and says it is fine.
fn open_shard(path: &Path, journal: &Path, dim: usize) -> Result<EdgeShard, StoreError> {
    let config = path.join(EDGE_CONFIG);
    let witness = [journal, config.as_path()].into_iter().find(|p| p.exists());
    if let (false, Some(witness)) = (has_segments(path), witness) {
        return Err(StoreError::Io(format!(
            "the segments of this collection are missing from {} (removed or lost) while {} shows it held data: \
             restore the data dir from a backup (or `triage import` an export), or delete the collection and index \
             it again",
            path.join("segments").display(),
            witness.display()
        )));
    }
    std::fs::create_dir_all(path).map_err(io)?;
    if has_segments(path) {
        // `EdgeShard::new` refuses a folder that already holds segments.
        EdgeShard::load(path, None).map_err(backend)
    } else {
        let config = EdgeConfigBuilder::new()
            .vector(DEFAULT_VECTOR_NAME, EdgeVectorParamsBuilder::new(dim, Distance::Cosine).build())
            .hnsw_config(hnsw_config())
            .build();
        EdgeShard::new(path, config).map_err(backend)
    }
}

fn json_path(field: &str) -> Result<JsonPath, StoreError> {
    field.parse().map_err(|_| StoreError::BadFilter(format!("invalid payload field name {field:?}")))
}

/// Every entry must match (keyword equality).
fn edge_filter(filter: Option<&PayloadFilter>) -> Result<Option<Filter>, StoreError> {
    let Some(f) = filter.filter(|f| !f.is_empty()) else { return Ok(None) };
    let must = f
        .iter()
        .map(|(k, v)| {
            Ok(Condition::Field(FieldCondition::new_match(
                json_path(k)?,
                Match::new_value(ValueVariants::String(v.clone())),
            )))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(Filter { must: Some(must), ..Filter::default() }))
}

/// HNSW graph of new collections, stated rather than inherited so it is a choice:
/// m = 16 links per node and ef_construct = 100 keep recall above 0.99 from a few
/// thousand up to millions of 384-dim vectors at a build cost that grows with n log n
/// (BANKING77's 10k examples: about 1.5% of the indexing CPU). Below
/// `full_scan_threshold` (10,000 KB of vectors, about 6,600 examples of 384 floats)
/// search is an exact scan, which is faster than the graph at that size.
fn hnsw_config() -> HnswIndexConfig {
    HnswIndexConfig {
        m: 16,
        ef_construct: 100,
        full_scan_threshold: 10_000,
        max_indexing_threads: 0,
        on_disk: Some(false),
        payload_m: None,
        inline_storage: None,
    }
}

/// The payload key of the content hash, as a path for payload selectors.
fn hash_path() -> Result<JsonPath, StoreError> {
    JsonPath::try_from(HASH_KEY).map_err(|_| StoreError::Backend(format!("invalid payload path {HASH_KEY:?}")))
}

#[async_trait]
impl ExampleStore for EdgeStore {
    fn backend(&self) -> &'static str {
        "edge"
    }

    fn claim(&self) -> Result<(), StoreError> {
        self.take_lock()
    }

    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.path().join("meta.json").is_file() {
                names.push(entry.file_name().to_string_lossy().to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn get_meta(&self, collection: &str) -> Result<Option<CollectionMeta>, StoreError> {
        self.read_meta(collection)
    }

    async fn put_meta(&self, meta: &CollectionMeta) -> Result<(), StoreError> {
        validate_name(&meta.name)?;
        self.take_lock()?;
        let dir = self.dir(&meta.name);
        let new = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(meta).map_err(io)?;
        let path = dir.join("meta.json");
        write_atomic(&path, &json).map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))?;
        if new {
            // The collection's folder itself must survive a crash too.
            sync_dir(&self.root).map_err(io)?;
        }
        Ok(())
    }

    async fn content_hashes(&self, collection: &str, ids: &[u64]) -> Result<HashMap<u64, String>, StoreError> {
        let shard = self.shard(collection).await?;
        let ids: Vec<PointId> = ids.iter().map(|&i| PointId::from(i)).collect();
        blocking(move || {
            let records = shard
                .shard
                .retrieve(&ids, Some(WithPayloadInterface::Fields(vec![hash_path()?])), Some(WithVector::Bool(false)))
                .map_err(backend)?;
            Ok(records
                .into_iter()
                .filter_map(|r| {
                    let id = match r.id {
                        PointId::NumId(n) => n,
                        PointId::Uuid(_) => return None,
                    };
                    let hash = r.payload?.0.get(HASH_KEY)?.as_str()?.to_string();
                    Some((id, hash))
                })
                .collect())
        })
        .await
    }

    async fn get(&self, collection: &str, ids: &[u64]) -> Result<Vec<Example>, StoreError> {
        let shard = self.shard(collection).await?;
        let ids: Vec<PointId> = ids.iter().map(|&i| PointId::from(i)).collect();
        blocking(move || {
            let records = shard
                .shard
                .retrieve(&ids, Some(WithPayloadInterface::Bool(true)), Some(WithVector::Bool(false)))
                .map_err(backend)?;
            records
                .into_iter()
                .map(|r| example_from_payload(r.payload.map(|p| p.0).unwrap_or_default().into_iter().collect()))
                .collect()
        })
        .await
    }

    async fn upsert(&self, collection: &str, points: Vec<ExamplePoint>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let shard = self.shard(collection).await?;
        write_durably(shard, Record::Upsert { points: journal_lines(points) }).await
    }

    async fn delete(&self, collection: &str, ids: &[u64]) -> Result<(), StoreError> {
        let shard = self.shard(collection).await?;
        write_durably(shard, Record::Delete { ids: ids.to_vec() }).await
    }

    async fn apply(&self, collection: &str, points: Vec<ExamplePoint>, ids: &[u64]) -> Result<(), StoreError> {
        if points.is_empty() && ids.is_empty() {
            return Ok(());
        }
        let shard = self.shard(collection).await?;
        write_durably(shard, Record::Batch { points: journal_lines(points), ids: ids.to_vec() }).await
    }

    async fn search(
        &self,
        collection: &str,
        vector: &[f32],
        limit: usize,
        filter: Option<&PayloadFilter>,
    ) -> Result<Vec<ScoredExample>, StoreError> {
        let filter = edge_filter(filter)?;
        let shard = self.shard(collection).await?;
        let vector = vector.to_vec();
        blocking(move || {
            let request = QueryRequest {
                prefetches: vec![],
                query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::default_dense(vector)))),
                filter,
                score_threshold: None,
                limit,
                offset: 0,
                params: None,
                with_vector: WithVector::Bool(false),
                // The prompt and the vote need the example's fields, not the content hash.
                with_payload: WithPayloadInterface::Selector(PayloadSelector::new_exclude(vec![hash_path()?])),
            };
            shard
                .shard
                .query(request)
                .map_err(backend)?
                .into_iter()
                .map(|p| {
                    let payload = p.payload.map(|p| p.0).unwrap_or_default();
                    Ok(ScoredExample { score: p.score, example: example_from_payload(payload.into_iter().collect())? })
                })
                .collect()
        })
        .await
    }

    async fn count(&self, collection: &str) -> Result<usize, StoreError> {
        let shard = self.shard(collection).await?;
        blocking(move || Ok(shard.shard.info().points_count)).await
    }

    async fn scroll(
        &self,
        collection: &str,
        offset: Option<u64>,
        limit: usize,
        with_vectors: bool,
    ) -> Result<(Vec<ExamplePoint>, Option<u64>), StoreError> {
        let shard = self.shard(collection).await?;
        blocking(move || {
            let request = ScrollRequest {
                offset: offset.map(PointId::from),
                limit: Some(limit.max(1)),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(with_vectors),
                order_by: None,
            };
            let (records, next) = shard.shard.scroll(request).map_err(backend)?;
            let points = records
                .into_iter()
                .map(|r| {
                    let payload = r.payload.map(|p| p.0).unwrap_or_default();
                    let example = example_from_payload(payload.into_iter().collect())?;
                    let vector = match r.vector {
                        None => Vec::new(),
                        Some(VectorStructInternal::Single(v)) => v,
                        Some(VectorStructInternal::Named(mut m)) => match m.remove(DEFAULT_VECTOR_NAME) {
                            Some(VectorInternal::Dense(v)) => v,
                            _ => return Err(StoreError::BadPayload("point without a dense vector".into())),
                        },
                        Some(VectorStructInternal::MultiDense(_)) => {
                            return Err(StoreError::BadPayload("unexpected multi-vector point".into()))
                        }
                    };
                    Ok(ExamplePoint { example, vector })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = match next {
                Some(PointId::NumId(n)) => Some(n),
                _ => None,
            };
            Ok((points, next))
        })
        .await
    }

    async fn finish_indexing(&self, collection: &str) -> Result<(), StoreError> {
        let meta = self.read_meta(collection)?.ok_or_else(|| StoreError::NoSuchCollection(collection.to_string()))?;
        let open = self.shard(collection).await?;
        blocking(move || {
            // Index changes and optimisation (which swaps segments) run under the gate,
            // then a checkpoint makes them and every journaled write part of the shard.
            open.gate.apply(|| {
                let indexed = open.shard.info().payload_schema;
                for field in meta.filter_fields() {
                    let path = json_path(&field)?;
                    if indexed.contains_key(&path) {
                        continue;
                    }
                    let index = CreateIndex {
                        field_name: path,
                        field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                    };
                    open.shard
                        .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(index)))
                        .map_err(backend)?;
                }
                open.shard.optimize().map(|_| ()).map_err(backend)
            })?;
            open.checkpoint().map(|_| ())
        })
        .await
    }

    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError> {
        validate_name(collection)?;
        self.take_lock()?;
        let shard = self.shards.lock().await.remove(collection);
        drop(shard);
        let dir = self.dir(collection);
        if !dir.exists() {
            return Ok(false);
        }
        // Renamed away first (atomic), so a crash mid-way never leaves a half-deleted
        // collection that still looks like one; leftovers are removed on the next start.
        let tomb = self.root.join(format!("{TOMBSTONE}{collection}-{}", std::process::id()));
        std::fs::rename(&dir, &tomb).map_err(io)?;
        sync_dir(&self.root).map_err(io)?;
        std::fs::remove_dir_all(&tomb).map_err(io)?;
        Ok(true)
    }

    async fn integrity(&self, collection: &str) -> Result<Vec<String>, StoreError> {
        validate_name(collection)?;
        let dir = self.dir(collection);
        let mut problems = Vec::new();
        if let Some((path, what)) = journal::quarantined(&dir) {
            problems.push(format!(
                "{what} of collection {collection:?} could not be replayed (acknowledged writes that are not in the \
                 store); their bytes are in {}: inspect them (each line is one write: a checksum, then JSON), post \
                 again what can be read, then move or remove the file to clear this",
                path.display()
            ));
        }
        let open = self.shards.lock().await.contains_key(collection);
        if open && !has_segments(&dir.join("shard")) {
            problems.push(format!(
                "the segments of collection {collection:?} are missing from {} (removed while the store is open): \
                 its examples are left only in this process's memory and are lost when it ends; restore the data dir \
                 from a backup",
                dir.join("shard").join("segments").display()
            ));
        }
        Ok(problems)
    }

    async fn payload_indexes(&self, collection: &str) -> Result<Vec<String>, StoreError> {
        let shard = self.shard(collection).await?;
        blocking(move || {
            let mut fields: Vec<String> = shard.shard.info().payload_schema.keys().map(|k| k.to_string()).collect();
            fields.sort();
            Ok(fields)
        })
        .await
    }
}
