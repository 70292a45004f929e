//! The cached classifier of `AppState`: re-read after `meta_refresh`, kept while the
//! store cannot be read, dropped when the collection is gone.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::*;
use crate::embed::HashEmbedder;
use crate::example::{ExamplePoint, ScoredExample};
use crate::store::{CollectionMeta, EdgeStore, PayloadFilter};

/// An embedded store whose metadata reads fail (as a backend error) while `down` is set.
struct Flaky {
    inner: EdgeStore,
    down: AtomicBool,
}

#[async_trait]
impl ExampleStore for Flaky {
    fn backend(&self) -> &'static str {
        "flaky"
    }
    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_collections().await
    }
    async fn get_meta(&self, collection: &str) -> Result<Option<CollectionMeta>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("connection refused".into()));
        }
        self.inner.get_meta(collection).await
    }
    async fn put_meta(&self, meta: &CollectionMeta) -> Result<(), StoreError> {
        self.inner.put_meta(meta).await
    }
    async fn content_hashes(&self, c: &str, ids: &[u64]) -> Result<HashMap<u64, String>, StoreError> {
        self.inner.content_hashes(c, ids).await
    }
    async fn get(&self, c: &str, ids: &[u64]) -> Result<Vec<crate::example::Example>, StoreError> {
        self.inner.get(c, ids).await
    }
    async fn upsert(&self, c: &str, points: Vec<ExamplePoint>) -> Result<(), StoreError> {
        self.inner.upsert(c, points).await
    }
    async fn delete(&self, c: &str, ids: &[u64]) -> Result<(), StoreError> {
        self.inner.delete(c, ids).await
    }
    async fn apply(&self, c: &str, points: Vec<ExamplePoint>, ids: &[u64]) -> Result<(), StoreError> {
        self.inner.apply(c, points, ids).await
    }
    async fn search(
        &self,
        c: &str,
        v: &[f32],
        limit: usize,
        f: Option<&PayloadFilter>,
    ) -> Result<Vec<ScoredExample>, StoreError> {
        self.inner.search(c, v, limit, f).await
    }
    async fn count(&self, c: &str) -> Result<usize, StoreError> {
        self.inner.count(c).await
    }
    async fn scroll(
        &self,
        c: &str,
        offset: Option<u64>,
        limit: usize,
        with_vectors: bool,
    ) -> Result<(Vec<ExamplePoint>, Option<u64>), StoreError> {
        self.inner.scroll(c, offset, limit, with_vectors).await
    }
    async fn finish_indexing(&self, c: &str) -> Result<(), StoreError> {
        self.inner.finish_indexing(c).await
    }
    async fn delete_collection(&self, c: &str) -> Result<bool, StoreError> {
        self.inner.delete_collection(c).await
    }
    async fn payload_indexes(&self, c: &str) -> Result<Vec<String>, StoreError> {
        self.inner.payload_indexes(c).await
    }
}

fn meta(labels: &[&str], updated_at: u64) -> CollectionMeta {
    // From JSON, so the test does not depend on every field of the struct.
    let labels: std::collections::BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
    serde_json::from_value(serde_json::json!({
        "name": "c",
        "taxonomy": crate::Taxonomy::derived("c", &labels, &Default::default()),
        "embedding_model": HashEmbedder::NAME,
        "dim": 16,
        "created_at": 1,
        "updated_at": updated_at,
    }))
    .unwrap()
}

fn state(store: Arc<Flaky>, refresh: Duration) -> Arc<AppState> {
    let cfg = ServeConfig {
        collection: "c".into(),
        options: ClassifyOptions::new(8, None),
        batch_concurrency: 1,
        max_batch: 10,
        max_body: 1 << 20,
        max_inflight: 4,
        api_key: None,
        example_writes_per_minute: 0,
        max_source_share: 0.5,
        loopback_only: true,
        limits: super::ConnLimits::default(),
        webhook: WebhookMapping {
            id_field: "id".into(),
            text_fields: vec!["text".into()],
            category_field: None,
            tags_field: None,
        },
        review_webhook: None,
        ticket_callback: None,
        delivery: RetrySettings::default(),
        meta_refresh: refresh,
        refit_after: None,
    };
    AppState::new(cfg, Arc::new(HashEmbedder::new(16)), store, None, None).unwrap()
}

#[tokio::test]
async fn the_cached_collection_is_re_read_after_the_refresh_interval_and_kept_while_the_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Flaky { inner: EdgeStore::open(dir.path()).unwrap(), down: AtomicBool::new(false) });
    store.put_meta(&meta(&["A"], 1)).await.unwrap();
    let labels = |c: &Classifier| c.meta().taxonomy.labels().into_iter().map(str::to_string).collect::<Vec<_>>();

    // A long interval: another process's change is not seen yet.
    let slow = state(store.clone(), Duration::from_secs(3600));
    assert_eq!(labels(&slow.classifier(None).await.unwrap()), ["A"]);
    store.put_meta(&meta(&["A", "B"], 2)).await.unwrap();
    assert_eq!(labels(&slow.classifier(None).await.unwrap()), ["A"]);

    // No interval: every request re-reads, so the change is seen at once.
    let eager = state(store.clone(), Duration::ZERO);
    assert_eq!(labels(&eager.classifier(None).await.unwrap()), ["A", "B"]);
    store.put_meta(&meta(&["A", "B", "C"], 3)).await.unwrap();
    assert_eq!(labels(&eager.classifier(None).await.unwrap()), ["A", "B", "C"]);

    // The store cannot be read: the cached copy keeps serving...
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(labels(&eager.classifier(None).await.unwrap()), ["A", "B", "C"]);
    // ... but a collection never opened is an error, not a guess.
    assert!(matches!(eager.classifier(Some("other")).await, Err(StoreError::Backend(_))));
    store.down.store(false, Ordering::SeqCst);

    // A deleted collection is gone, not served from the cache.
    assert!(store.delete_collection("c").await.unwrap());
    assert!(matches!(eager.classifier(None).await, Err(StoreError::NoSuchCollection(_))));
}
