//! Writes through the HTTP API with the journal's disk failing under them
//! (`store::JournalFaults`, the fault-injection file): a failed append answers 503,
//! writes acknowledged after it survive a crash, and a journal that cannot be cut back
//! refuses writes until it is reopened.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::{json, Value};

use super::refresh_tests::{meta, state};
use super::*;
use crate::store::{EdgeStore, JournalFaults as Faults};

/// The serve loop on 127.0.0.1:0 over `store`; returns its base URL and the sender that stops it.
async fn start(store: Arc<dyn ExampleStore>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let st = state(store, Duration::from_secs(3600));
    tokio::spawn(run(listener, st, async { let _ = stopped.await; }, Duration::from_secs(1)));
    (base, stop)
}

async fn post(http: &reqwest::Client, base: &str, id: &str) -> (u16, Value) {
    let body = json!({"examples": [{"id": id, "text": format!("example {id} about invoices"), "label": "A"}]});
    let r = http.post(format!("{base}/v1/examples")).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// What a `kill -9` at this moment leaves on disk: a copy of the data dir (the
/// journal's appends are in the page cache, which a killed process leaves behind).
fn crash_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            crash_copy(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The example ids stored in collection `c` of the data dir at `dir`, opened afresh
/// (its journal replayed).
async fn stored_ids(dir: &Path) -> Vec<String> {
    let store = EdgeStore::open(dir).unwrap();
    let (page, _) = store.scroll("c", None, 1000, false).await.unwrap();
    let mut ids: Vec<String> = page.into_iter().map(|p| p.example.id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_answers_503_and_writes_acknowledged_after_it_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let store = Arc::new(EdgeStore::open(dir.path()).unwrap().with_journal_files(faults.files()));
    store.put_meta(&meta(&["A", "B"], 1)).await.unwrap();
    let (base, stop) = start(store.clone()).await;
    let http = reqwest::Client::new();

    assert_eq!(post(&http, &base, "one").await.0, 200);
    // The disk has 30 bytes left: the record stops part-way.
    faults.set_space(Some(30));
    let (status, body) = post(&http, &base, "two").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert_eq!(faults.injected()[0], 1);
    // Space again: these are acknowledged after the failed one.
    faults.set_space(None);
    assert_eq!(post(&http, &base, "three").await.0, 200);
    assert_eq!(post(&http, &base, "four").await.0, 200);
    let r = http.delete(format!("{base}/v1/examples/one")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A sync that fails undoes what it was to cover: 503 (outcome unknown to the
    // client: it stays applied in memory), and later writes go on.
    faults.set_fail_sync(true);
    assert_eq!(post(&http, &base, "five").await.0, 503);
    faults.set_fail_sync(false);
    assert_eq!(post(&http, &base, "six").await.0, 200);

    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let journal = std::fs::read(crashed.path().join("collections/c/journal.log")).unwrap();
    assert!(!journal.is_empty(), "the writes are in the journal, not yet checkpointed");
    let ids = stored_ids(crashed.path()).await;
    for acked in ["three", "four", "six"] {
        assert!(ids.contains(&acked.to_string()), "acknowledged {acked} lost: {ids:?}");
    }
    assert!(!ids.contains(&"one".to_string()), "acknowledged delete undone: {ids:?}");
    assert!(!ids.contains(&"two".to_string()), "a failed append was kept: {ids:?}");
    assert!(!crashed.path().join("collections/c/journal.quarantine").exists(), "nothing was damaged");

    // A failed append that cannot be cut back: every later write is refused, with why.
    faults.set_space(Some(30));
    faults.set_fail_truncate(true);
    let (status, body) = post(&http, &base, "seven").await;
    assert_eq!(status, 503, "{body}");
    faults.set_space(None);
    faults.set_fail_truncate(false);
    let (status, body) = post(&http, &base, "eight").await;
    assert_eq!(status, 503, "refused until reopened: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("refusing writes until the process restarts"), "{body}");
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let ids = stored_ids(crashed.path()).await;
    for acked in ["three", "four", "six"] {
        assert!(ids.contains(&acked.to_string()), "acknowledged {acked} lost: {ids:?}");
    }
    assert!(!ids.contains(&"seven".to_string()) && !ids.contains(&"eight".to_string()), "{ids:?}");
    let _ = stop.send(());
}
