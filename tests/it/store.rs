//! One behaviour suite for both store backends. The Qdrant-server half is `#[ignore]`d
//! unless run against a server (QDRANT_URL; `scripts/test.sh` starts one).

use std::sync::Arc;

use ticket_triage::example::{Example, ExamplePoint};
use ticket_triage::store::{
    label_counts, now_secs, transfer, CollectionMeta, EdgeStore, ExampleStore, PayloadFilter, ServerStore,
};
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
        secondary: Vec::new(),
        meta: Default::default(),
        provenance: None,
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
        fitted: None,
        legacy_calibration: None,
        meta_fields: vec!["tier".into()],
    };
    store.put_meta(&meta).await.unwrap();
    assert_eq!(store.get_meta(name).await.unwrap().unwrap(), meta);
    assert!(store.list_collections().await.unwrap().contains(&name.to_string()));

    let mut gold = example("a2", "alpha two", "A");
    gold.meta.insert("tier".into(), "gold".into());
    let points = vec![
        ExamplePoint { example: example("a1", "alpha one", "A"), vector: unit(dim, &[(0, 1.0)]) },
        ExamplePoint { example: gold, vector: unit(dim, &[(0, 1.0), (1, 0.3)]) },
        ExamplePoint { example: example("b1", "beta", "B"), vector: unit(dim, &[(2, 1.0)]) },
    ];
    store.upsert(name, points.clone()).await.unwrap();
    store.finish_indexing(name).await.unwrap();
    assert_eq!(store.count(name).await.unwrap(), 3);

    let query = unit(dim, &[(0, 1.0), (1, 0.1)]);
    let hits = store.search(name, &query, 3, None).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.example.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "b1"]);
    assert!(hits[0].score > hits[1].score && hits[1].score > hits[2].score);
    assert!((hits[0].score - 0.995).abs() < 0.01, "cosine similarity: {}", hits[0].score);
    assert_eq!(hits[0].example, points[0].example, "payload round-trips");
    assert_eq!(hits[1].example, points[1].example, "metadata round-trips");

    // Keyword payload indexes on the fixed fields and the meta's metadata fields.
    assert_eq!(store.payload_indexes(name).await.unwrap(), ["label", "lang", "subcategory", "tier", "urgency"]);
    // Filtered retrieval: every entry must match.
    let filtered = |pairs: &[(&str, &str)]| -> PayloadFilter {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let search_ids = |f: PayloadFilter| {
        let store = store.clone();
        let query = query.clone();
        async move {
            let hits = store.search(name, &query, 3, Some(&f)).await.unwrap();
            hits.into_iter().map(|h| h.example.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(search_ids(filtered(&[("label", "B")])).await, ["b1"]);
    assert_eq!(search_ids(filtered(&[("tier", "gold")])).await, ["a2"]);
    assert_eq!(search_ids(filtered(&[("lang", "en"), ("label", "A")])).await, ["a1", "a2"]);
    assert!(search_ids(filtered(&[("lang", "fr")])).await.is_empty());
    assert_eq!(search_ids(PayloadFilter::new()).await, ["a1", "a2", "b1"], "an empty filter is no filter");

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
    let hits = store.search(name, &unit(dim, &[(3, 1.0)]), 1, None).await.unwrap();
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
            fitted: None,
            legacy_calibration: None,
            meta_fields: Vec::new(),
        };
        store.put_meta(&meta).await.unwrap();
        store
            .upsert("persist", vec![ExamplePoint { example: example("x", "kept", "A"), vector: unit(dim, &[(1, 1.0)]) }])
            .await
            .unwrap();
        store.finish_indexing("persist").await.unwrap();
    }
    let store = EdgeStore::open(dir.path()).unwrap();
    let hits = store.search("persist", &unit(dim, &[(1, 1.0)]), 5, None).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].example.text, "kept");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Qdrant server: QDRANT_URL (./scripts/test.sh starts one from ../shared/bin/qdrant)"]
async fn server_store_behaviour() {
    let url = crate::qdrant::server_url();
    let store = ServerStore::connect(&url, std::env::var("QDRANT_API_KEY").ok()).unwrap();
    suite(Arc::new(store), &format!("triage-test-{}", std::process::id())).await;
}

/// Export a collection from an embedded store and import it into `target`: same
/// examples, vectors, metadata and search results.
async fn transfer_suite(target: Arc<dyn ExampleStore>, name: &str) {
    let dim = 8;
    let dir = tempfile::tempdir().unwrap();
    let source = EdgeStore::open(&dir.path().join("src")).unwrap();
    let labels = ["A".to_string(), "B".to_string()].into();
    let meta = CollectionMeta {
        name: "origin".into(),
        taxonomy: Taxonomy::derived("origin", &labels, &Default::default()),
        embedding_model: "test-model".into(),
        dim,
        created_at: 1,
        updated_at: 1,
        meta_fields: vec!["tier".into()],
        fitted: None,
        legacy_calibration: None,
    };
    source.put_meta(&meta).await.unwrap();
    let points: Vec<ExamplePoint> = (0..600)
        .map(|i| {
            let mut e = example(&format!("e{i}"), &format!("text {i}"), if i % 3 == 0 { "B" } else { "A" });
            e.meta.insert("tier".into(), if i % 2 == 0 { "gold".into() } else { "silver".into() });
            // Distinct pseudo-random directions: no ties between neighbours.
            let hot: Vec<(usize, f32)> = (0..dim).map(|j| (j, ((i * 31 + j * 17) as f32 * 0.37).sin())).collect();
            ExamplePoint { example: e, vector: unit(dim, &hot) }
        })
        .collect();
    source.upsert("origin", points).await.unwrap();
    source.finish_indexing("origin").await.unwrap();

    let file = dir.path().join("origin.jsonl");
    let mut out = std::fs::File::create(&file).unwrap();
    let report = transfer::export(&source, "origin", &mut out).await.unwrap();
    assert_eq!(report.examples, 600);
    drop(out);

    let _ = target.delete_collection(name).await;
    let report = transfer::import_file(target.as_ref(), &file, Some(name)).await.unwrap();
    assert_eq!((report.examples, report.examples_in_collection, report.created), (600, Some(600), true));
    let imported = target.get_meta(name).await.unwrap().unwrap();
    assert_eq!((imported.embedding_model.as_str(), imported.dim), ("test-model", dim));
    assert_eq!(imported.meta_fields, ["tier"]);
    assert_eq!(imported.taxonomy, meta.taxonomy);
    assert!(target.payload_indexes(name).await.unwrap().contains(&"tier".to_string()));
    let filter: PayloadFilter = [("tier".to_string(), "gold".to_string())].into();
    for q in 0..dim {
        let query = unit(dim, &[(q, 1.0), ((q + 3) % dim, 0.4)]);
        for f in [None, Some(&filter)] {
            let a = source.search("origin", &query, 10, f).await.unwrap();
            let b = target.search(name, &query, 10, f).await.unwrap();
            let scores = |v: &[ticket_triage::ScoredExample]| v.iter().map(|h| (h.score * 1e4).round() as i64).collect::<Vec<_>>();
            assert_eq!(scores(&a[..]), scores(&b[..]), "same similarities for query {q} filter {f:?}");
            // Examples that came without provenance are marked as imported from the file.
            let got = &b[0].example;
            let prov = got.provenance.as_ref().expect("an imported example without provenance is marked as imported");
            assert_eq!(prov.source, ticket_triage::provenance::SourceKind::Import);
            assert_eq!(prov.file.as_deref(), Some(file.to_string_lossy().as_ref()));
            assert_eq!(a[0].example, ticket_triage::Example { provenance: None, ..got.clone() });
            if f.is_some() {
                assert!(b.iter().all(|h| h.example.meta["tier"] == "gold"));
            }
        }
    }

    // Another model's vectors cannot join: the whole file is refused.
    let text = std::fs::read_to_string(&file).unwrap();
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, text.replacen("\"test-model\"", "\"other-model\"", 1)).unwrap();
    let err = transfer::import_file(target.as_ref(), &other, Some(name)).await.unwrap_err();
    assert!(err.to_string().contains("cannot be mixed"), "{err}");
    assert_eq!(target.count(name).await.unwrap(), 600);
    assert!(target.delete_collection(name).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_to_edge_transfer() {
    let dir = tempfile::tempdir().unwrap();
    transfer_suite(Arc::new(EdgeStore::open(dir.path()).unwrap()), "moved").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Qdrant server: QDRANT_URL (./scripts/test.sh starts one from ../shared/bin/qdrant)"]
async fn server_edge_to_server_transfer() {
    let url = crate::qdrant::server_url();
    let store = ServerStore::connect(&url, std::env::var("QDRANT_API_KEY").ok()).unwrap();
    transfer_suite(Arc::new(store), &format!("triage-moved-{}", std::process::id())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_embedded_stores_on_one_data_dir_cannot_both_open_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = EdgeStore::open(dir.path()).unwrap();
    let meta = CollectionMeta {
        name: "c".into(),
        taxonomy: Taxonomy::derived("c", &["A".to_string()].into(), &Default::default()),
        embedding_model: "m".into(),
        dim: 4,
        created_at: 0,
        updated_at: 0,
        meta_fields: Vec::new(),
        fitted: None,
        legacy_calibration: None,
    };
    first.put_meta(&meta).await.unwrap();
    let second = EdgeStore::open(dir.path()).unwrap();
    // Metadata reads need no lock; opening the shard or writing does.
    assert_eq!(second.get_meta("c").await.unwrap().unwrap(), meta);
    let err = second.count("c").await.unwrap_err();
    assert!(err.to_string().contains("in use by another process"), "{err}");
    assert!(second.put_meta(&meta).await.is_err());
    assert!(second.delete_collection("c").await.is_err());
    drop(first);
    assert_eq!(second.count("c").await.unwrap(), 0);
}
