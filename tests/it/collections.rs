//! Collection lifecycle against the real binary: list/info/delete, export/import
//! (embedded store to embedded store, and to a Qdrant server: `#[ignore]`d unless
//! QDRANT_URL is set), model-mismatch refusal, filtered retrieval, and the
//! single-process lock.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;

const TICKETS: [&str; 3] = [
    "I was charged twice for my subscription this month",
    "The mobile app crashes every time I upload a photo",
    "Could you add a dark mode to the dashboard?",
];

/// Knn results (no LLM) for TICKETS against `collection`.
async fn classify(dir: &Path, collection: &str, extra: &[&str]) -> Vec<Value> {
    let out = run(triage(dir)
        .args(["classify", "--collection", collection, "--provider", "none", "--format", "jsonl"])
        .args(extra)
        .args(TICKETS))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    results(&out)
}

/// What must be equal between two stores holding the same examples.
fn essence(results: &[Value]) -> Vec<Value> {
    results.iter().map(|r| json!({"category": r["category"], "confidence": r["confidence"], "neighbors": r["neighbors"]})).collect()
}

async fn export(dir: &Path, collection: &str, file: &Path) {
    let out = run(triage(dir).args(["export", "--collection", collection, "--output"]).arg(file)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("exported {} examples", saas_examples())), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_gives_the_same_answers_without_re_embedding() {
    let src = indexed_data_dir().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("saas.jsonl");
    export(src.path(), "saas", &file).await;

    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["format"], "ticket-triage-export");
    assert_eq!(header["version"], 1);
    assert_eq!(header["meta"]["embedding_model"], "all-minilm-l6-v2-int8");
    assert_eq!(header["meta"]["dim"], 384);
    let first: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(first["vector"].as_array().unwrap().len(), 384);
    assert!(first["payload"]["text"].is_string() && first["payload"]["label"].is_string());
    assert_eq!(lines.count(), saas_examples() - 1);

    // Into a fresh data dir, under another name. The models dir is pointed at an
    // empty folder: import must not need the embedding model.
    let dst = tmp.path().join("dst");
    let out = run(triage(&dst)
        .env("TRIAGE_MODELS_DIR", tmp.path().join("no-models"))
        .args(["import"])
        .arg(&file)
        .args(["--collection", "moved", "--json"]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["examples"], saas_examples(), "{report}");
    assert_eq!(report["examples_in_collection"], saas_examples());
    assert_eq!(report["created"], true);

    let before = classify(src.path(), "saas", &[]).await;
    let after = classify(&dst, "moved", &[]).await;
    assert_eq!(essence(&before), essence(&after));
    assert_eq!(before[0]["category"], "Billing");

    // A second import of the same file overwrites: still the same count.
    let out = run(triage(&dst).args(["import"]).arg(&file).args(["--collection", "moved", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["examples_in_collection"], saas_examples());
    assert_eq!(report["created"], false);

    // A re-export of the imported collection holds the same examples and vectors.
    let again = tmp.path().join("again.jsonl");
    let out = run(triage(&dst).args(["export", "--collection", "moved", "--output"]).arg(&again)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let sorted = |t: &str| {
        let mut v: Vec<String> = t.lines().skip(1).map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&text), sorted(&std::fs::read_to_string(&again).unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn import_refuses_another_embedding_model_and_bad_files_and_writes_nothing() {
    let src = indexed_data_dir().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("saas.jsonl");
    export(src.path(), "saas", &file).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let (head, body) = text.split_once('\n').unwrap();

    // Same dimensions, other model: its vectors must not join saas.
    let mut header: Value = serde_json::from_str(head).unwrap();
    header["meta"]["embedding_model"] = json!("other-model");
    let other = tmp.path().join("other.jsonl");
    std::fs::write(&other, format!("{header}\n{body}")).unwrap();
    let out = run(triage(src.path()).args(["import"]).arg(&other).args(["--collection", "saas"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("all-minilm-l6-v2-int8") && err.contains("other-model"), "{err}");
    // ... but it may become a collection of its own.
    let out = run(triage(src.path()).args(["import"]).arg(&other).args(["--collection", "other"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Classifying it with this run's model is refused too.
    let out = run(triage(src.path()).args(["classify", "--collection", "other", "--provider", "none", "x"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("other-model"), "{}", stderr(&out));

    // A vector of the wrong length on line 5: refused with the line, nothing created.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut bad: Value = serde_json::from_str(&lines[4]).unwrap();
    bad["vector"].as_array_mut().unwrap().pop();
    lines[4] = bad.to_string();
    let broken = tmp.path().join("broken.jsonl");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let fresh = tmp.path().join("fresh");
    let out = run(triage(&fresh).args(["import"]).arg(&broken).args(["--collection", "half"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 5: 383-dim vector"), "{}", stderr(&out));
    let out = run(triage(&fresh).args(["collections", "list", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), json!([]));

    // Not an export at all.
    let out = run(triage(&fresh).args(["import"]).arg(saas_corpus().join("examples.jsonl"))).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a ticket-triage export header"), "{}", stderr(&out));

    // saas itself is untouched.
    let out = run(triage(src.path()).args(["collections", "info", "saas", "--json"])).await;
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["examples"], saas_examples());
}

#[tokio::test(flavor = "multi_thread")]
async fn collections_list_info_and_delete() {
    let dir = indexed_data_dir().await;
    let out = run(triage(dir.path()).args(["collections", "list", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        list,
        json!([{"name": "saas", "backend": "edge", "embedding_model": "all-minilm-l6-v2-int8", "dim": 384, "examples": saas_examples()}])
    );

    let out = run(triage(dir.path()).args(["collections", "info", "saas", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["embedding_model"], "all-minilm-l6-v2-int8");
    assert_eq!(info["examples"], saas_examples());
    let per_label = info["examples_per_label"].as_object().unwrap();
    assert_eq!(per_label.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), saas_examples() as u64);
    assert_eq!(info["payload_indexes"], json!(["label", "lang", "subcategory", "urgency"]));
    let out = run(triage(dir.path()).args(["collections", "info", "saas"])).await;
    assert!(stdout(&out).contains("embedding model: all-minilm-l6-v2-int8 (384 dims)"), "{}", stdout(&out));

    let out = run(triage(dir.path()).args(["collections", "info", "nope"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    // Delete wants confirmation, then deletes.
    let out = run(triage(dir.path()).args(["collections", "delete", "saas"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(dir.path().join("collections/saas/meta.json").is_file());
    let out = run(triage(dir.path()).args(["collections", "delete", "saas", "--yes"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.path().join("collections/saas").exists());
    let out = run(triage(dir.path()).args(["collections", "list", "--json"])).await;
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), json!([]));
    let out = run(triage(dir.path()).args(["collections", "delete", "saas", "--yes"])).await;
    assert_eq!(out.status.code(), Some(1));
}

/// A small corpus whose examples carry a `tier` metadata field.
fn tiered_corpus(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiered.jsonl");
    let rows = [
        ("g1", "I was charged twice this month, please refund", "Billing", "gold"),
        ("g2", "The invoice shows the wrong VAT number", "Billing", "gold"),
        ("g3", "The app crashes when I open settings", "Technical", "gold"),
        ("s1", "Refund the double charge on my card", "Billing", "silver"),
        ("s2", "Payment failed but money left my account", "Billing", "silver"),
        ("s3", "Login page shows a blank screen", "Technical", "silver"),
    ];
    let text: String = rows
        .iter()
        .map(|(id, t, l, tier)| format!("{}\n", json!({"id": id, "text": t, "label": l, "tier": tier, "lang": "en"})))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_retrieval_by_metadata_in_classify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let corpus = tiered_corpus(tmp.path());
    let out = run(triage(&data).args(["index"]).arg(&corpus).args(["--collection", "t", "--meta-fields", "tier"])).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(triage(&data).args(["collections", "info", "t", "--json"])).await;
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["filter_fields"], json!(["label", "subcategory", "urgency", "lang", "tier"]));
    assert_eq!(info["payload_indexes"], json!(["label", "lang", "subcategory", "tier", "urgency"]));

    let ids = |r: &Value| -> Vec<String> {
        r["neighbors"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
    };
    let all = classify(&data, "t", &["--k", "6"]).await;
    assert_eq!(ids(&all[0]).len(), 6);
    let gold = classify(&data, "t", &["--k", "6", "--filter", "tier=gold"]).await;
    for r in &gold {
        let got = ids(r);
        assert_eq!(got.len(), 3, "{r}");
        assert!(got.iter().all(|i| i.starts_with('g')), "{got:?}");
    }
    let both = classify(&data, "t", &["--k", "6", "--filter", "tier=silver", "--filter", "label=Billing"]).await;
    let mut got = ids(&both[0]);
    got.sort();
    assert_eq!(got, ["s1", "s2"]);

    // A field the collection does not have is refused up front.
    let out = run(triage(&data).args(["classify", "--collection", "t", "--provider", "none", "--filter", "plan=pro", "x"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot be filtered on \"plan\""), "{}", stderr(&out));
    let out = run(triage(&data).args(["classify", "--collection", "t", "--provider", "none", "--filter", "tier", "x"])).await;
    assert_eq!(out.status.code(), Some(2), "clap rejects a filter without '='");

    // Metadata travels with an export.
    let file = tmp.path().join("t.jsonl");
    let out = run(triage(&data).args(["export", "--collection", "t", "--output"]).arg(&file)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let other = tmp.path().join("other");
    let out = run(triage(&other).args(["import"]).arg(&file)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let gold_again = classify(&other, "t", &["--k", "6", "--filter", "tier=gold"]).await;
    assert_eq!(essence(&gold), essence(&gold_again));
}

/// `triage serve` on `dir`; returns the child (killed on drop) and its base URL.
async fn serve(dir: &Path, collection: &str) -> (tokio::process::Child, String) {
    let mut cmd = triage(dir);
    cmd.args(["serve", "--collection", collection, "--addr", "127.0.0.1:0", "--provider", "none"]);
    spawn_serve(&mut cmd).await
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_retrieval_in_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let corpus = tiered_corpus(tmp.path());
    let out = run(triage(&data).args(["index"]).arg(&corpus).args(["--collection", "t", "--meta-fields", "tier"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (_child, base) = serve(&data, "t").await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{base}/v1/classify");
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let info: Value = http.get(format!("{base}/v1/collections/t")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["filter_fields"], json!(["label", "subcategory", "urgency", "lang", "tier"]), "{info}");
    let (status, r) = post(json!({"text": TICKETS[0], "k": 6, "filter": {"tier": "silver"}})).await;
    assert_eq!(status, 200, "{r}");
    let ids: Vec<&str> = r["neighbors"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{r}");
    assert!(ids.iter().all(|i| i.starts_with('s')), "{ids:?}");
    let (status, r) = post(json!({"text": TICKETS[0], "filter": {"plan": "pro"}})).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"]["code"], "invalid_filter");
    let (status, r) = post(json!({"text": TICKETS[0], "filter": {"tier": "bronze"}})).await;
    assert_eq!(status, 200);
    assert!(r["error"].as_str().unwrap().contains("no example matches the filter tier=bronze"), "{r}");
    let r = http
        .post(format!("{base}/v1/classify/batch"))
        .json(&json!({"tickets": [{"text": TICKETS[1]}], "k": 6, "filter": {"tier": "gold"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    let ids: Vec<&str> =
        body["results"][0]["neighbors"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i.starts_with('g')), "{ids:?}");

    // An example posted through the API keeps its metadata and is found by the filter.
    let r = http
        .post(format!("{base}/v1/examples"))
        .json(&json!({"examples": [{"id": "p1", "text": "Refund my annual plan, I cancelled", "label": "Billing", "tier": "bronze"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let (status, r) = post(json!({"text": TICKETS[0], "filter": {"tier": "bronze"}})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["neighbors"][0]["id"], "p1", "{r}");
    assert_eq!(r["neighbors"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_on_a_served_data_dir_gets_a_clear_error_and_the_data_survives() {
    let dir = indexed_data_dir().await;
    let (mut child, base) = serve(dir.path(), "saas").await;
    let pid = child.id().unwrap();

    let out = run(triage(dir.path()).args(["index"]).arg(saas_corpus()).args(["--collection", "saas"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "names the holder: {err}");
    assert!(err.contains("--qdrant-url") && err.contains("POST /v1/examples"), "{err}");

    for args in [
        vec!["classify", "--collection", "saas", "--provider", "none", "refund please"],
        vec!["collections", "delete", "saas", "--yes"],
        vec!["collections", "info", "saas"],
    ] {
        let out = run(triage(dir.path()).args(&args)).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("in use by another process"), "{args:?}: {}", stderr(&out));
    }
    // Listing reads only metadata and still works, without counts.
    let out = run(triage(dir.path()).args(["collections", "list", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["name"], "saas");
    assert_eq!(list[0]["examples"], Value::Null);

    // The server is unaffected.
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/classify"))
        .json(&json!({"text": TICKETS[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["category"], "Billing");

    // Once it stops, the data dir is whole and usable by the next process.
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let out = run(triage(dir.path()).args(["collections", "info", "saas", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["examples"], saas_examples());
    let out = run(triage(dir.path()).args(["index"]).arg(saas_corpus()).args(["--collection", "saas", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["unchanged"], saas_examples(), "nothing was lost or changed: {report}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Qdrant server: QDRANT_URL (./scripts/test.sh starts one from ../shared/bin/qdrant)"]
async fn server_a_collection_moves_from_the_embedded_store_in_two_commands() {
    let url = crate::qdrant::server_url();
    let src = indexed_data_dir().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("saas.jsonl");
    export(src.path(), "saas", &file).await;
    let name = crate::qdrant::unique("triage-moved");
    let server = || crate::qdrant::triage_on(&url, tmp.path());
    let out = run(server().args(["import"]).arg(&file).args(["--collection", &name])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = classify(src.path(), "saas", &[]).await;
    let out = run(server()
        .args(["classify", "--collection", &name, "--provider", "none", "--format", "jsonl"])
        .args(TICKETS))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let after = results(&out);
    // HNSW on the server and in Edge may order exact ties differently; labels and
    // the top neighbour must agree.
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b["category"], a["category"]);
        assert_eq!(b["neighbors"][0]["id"], a["neighbors"][0]["id"]);
    }
    let out = run(server().args(["collections", "delete", &name, "--yes"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
}
