//! One behaviour suite for both store backends. The Qdrant-server half runs only
//! when QDRANT_URL is set and says so plainly when it is skipped.

use std::sync::Arc;

use ticket_triage::example::{Example, ExamplePoint};
use ticket_triage::store::{label_counts, now_secs, CollectionMeta, EdgeStore, ExampleStore, ServerStore};
use ticket_triage::Taxonomy;

fn example(id: &str, text: &str, label: &str) -> Example {
    Example {
        id: id.into(),
        text: text.into(),
        label: label.into(),
        subcategory: None,
        urgency: Some("Low".into()),
        rationale: None,
        lang: Some("en".into()),
    }
}

fn unit(dim: usize, hot: &[(usize, f32)]) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    for (i, x) in hot {
        v[*i] = *x;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

async fn suite(store: Arc<dyn ExampleStore>, name: &str) {
    let dim = 8;
    let _ = store.delete_collection(name).await;
    assert!(store.get_meta(name).await.unwrap().is_none());
    let labels = ["A".to_string(), "B".to_string()].into();
    let meta = CollectionMeta {
        name: name.into(),
        taxonomy: Taxonomy::derived(name, &labels, &Default::default()),
        embedding_model: "test-model".into(),
        dim,
        created_at: now_secs(),
        updated_at: now_secs(),
        calibration: None,
    };
    store.put_meta(&meta).await.unwrap();
    assert_eq!(store.get_meta(name).await.unwrap().unwrap(), meta);
    assert!(store.list_collections().await.unwrap().contains(&name.to_string()));

    let points = vec![
        ExamplePoint { example: example("a1", "alpha one", "A"), vector: unit(dim, &[(0, 1.0)]) },
        ExamplePoint { example: example("a2", "alpha two", "A"), vector: unit(dim, &[(0, 1.0), (1, 0.3)]) },
        ExamplePoint { example: example("b1", "beta", "B"), vector: unit(dim, &[(2, 1.0)]) },
    ];
    store.upsert(name, points.clone()).await.unwrap();
    store.finish_indexing(name).await.unwrap();
    assert_eq!(store.count(name).await.unwrap(), 3);

    let hits = store.search(name, &unit(dim, &[(0, 1.0), (1, 0.1)]), 3).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.example.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "b1"]);
    assert!(hits[0].score > hits[1].score && hits[1].score > hits[2].score);
    assert!((hits[0].score - 0.995).abs() < 0.01, "cosine similarity: {}", hits[0].score);
    assert_eq!(hits[0].example, points[0].example, "payload round-trips");

    // Deterministic ids: the same examples again change nothing.
    store.upsert(name, points.clone()).await.unwrap();
    assert_eq!(store.count(name).await.unwrap(), 3);
    let ids: Vec<u64> = points.iter().map(|p| p.example.point_id()).collect();
    let hashes = store.content_hashes(name, &ids).await.unwrap();
    assert_eq!(hashes.len(), 3);
    assert_eq!(hashes[&ids[0]], points[0].example.content_hash());

    // Scrolling pages through everything, vectors included when asked for.
    let (page, next) = store.scroll(name, None, 2, true).await.unwrap();
    assert_eq!(page.len(), 2);
    let (rest, last) = store.scroll(name, next, 2, true).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(last, None);
    let mut seen: Vec<ExamplePoint> = page.into_iter().chain(rest).collect();
    seen.sort_by(|a, b| a.example.id.cmp(&b.example.id));
    for (got, want) in seen.iter().zip(&points) {
        assert_eq!(got.example, want.example);
        assert_eq!(got.vector.len(), dim);
        for (g, w) in got.vector.iter().zip(&want.vector) {
            assert!((g - w).abs() < 1e-5, "vector round-trips: {:?} vs {:?}", got.vector, want.vector);
        }
    }
    let (bare, _) = store.scroll(name, None, 10, false).await.unwrap();
    assert!(bare.iter().all(|p| p.vector.is_empty()));
    let counts = label_counts(store.as_ref(), name).await.unwrap();
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), [("A".to_string(), 2), ("B".to_string(), 1)]);

    // An example added after the bulk load (no index rebuild) is found at once.
    let late = ExamplePoint { example: example("b2", "beta two", "B"), vector: unit(dim, &[(3, 1.0)]) };
    store.upsert(name, vec![late]).await.unwrap();
    let hits = store.search(name, &unit(dim, &[(3, 1.0)]), 1).await.unwrap();
    assert_eq!(hits[0].example.id, "b2");
    store.delete(name, &[example("b2", "", "B").point_id()]).await.unwrap();

    store.delete(name, &ids[2..]).await.unwrap();
    assert_eq!(store.count(name).await.unwrap(), 2);
    assert!(store.delete_collection(name).await.unwrap());
    assert!(store.get_meta(name).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_store_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(EdgeStore::open(dir.path()).unwrap()), "suite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 4;
    {
        let store = EdgeStore::open(dir.path()).unwrap();
        let meta = CollectionMeta {
            name: "persist".into(),
            taxonomy: Taxonomy::derived("persist", &["A".to_string()].into(), &Default::default()),
            embedding_model: "m".into(),
            dim,
            created_at: 0,
            updated_at: 0,
            calibration: None,
        };
        store.put_meta(&meta).await.unwrap();
        store
            .upsert("persist", vec![ExamplePoint { example: example("x", "kept", "A"), vector: unit(dim, &[(1, 1.0)]) }])
            .await
            .unwrap();
        store.finish_indexing("persist").await.unwrap();
    }
    let store = EdgeStore::open(dir.path()).unwrap();
    let hits = store.search("persist", &unit(dim, &[(1, 1.0)]), 5).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].example.text, "kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_store_behaviour() {
    let Some(url) = std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("SKIPPED server_store_behaviour: QDRANT_URL is not set (no Qdrant server to test against)");
        return;
    };
    let store = ServerStore::connect(&url, std::env::var("QDRANT_API_KEY").ok()).unwrap();
    suite(Arc::new(store), &format!("triage-test-{}", std::process::id())).await;
}
