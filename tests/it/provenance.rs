//! Where examples came from (provenance through index, the API, kill -9, export and
//! import, deletion by source), the label policy (unknown labels refused with the nearest
//! name, `new_label`, retiring a label whose last example went), the flood guard (per-key
//! write limit, one source's share flagged) and rejected rows counted in summaries.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;

/// The id an API key appears under (as the server derives it).
fn key_id(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    format!("key-{}", d[..4].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// `triage examples list --json` of `collection` from `source`: one value per example.
async fn listed(data: &Path, collection: &str, source: &str) -> Vec<Value> {
    let out = run(triage(data).args(["examples", "list", "--collection", collection, "--source", source, "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn serve(data: &Path, args: &[&str], keys: Option<&str>) -> (tokio::process::Child, String) {
    let mut cmd = triage(data);
    cmd.args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"]).args(args);
    if let Some(k) = keys {
        cmd.env("TRIAGE_API_KEY", k);
    }
    spawn_serve(&mut cmd).await
}

async fn post(http: &reqwest::Client, url: &str, key: Option<&str>, body: Value) -> (u16, Value, Option<String>) {
    let mut req = http.post(url).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null), retry)
}

fn examples(tag: &str, n: usize, label: &str) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("{tag}-{i}"), "text": format!("{tag} probe {i}: the invoice for order {} was charged twice", 1000 + i), "label": label}))
        .collect();
    json!({ "examples": list })
}

#[tokio::test(flavor = "multi_thread")]
async fn provenance_is_kept_through_kill_9_export_and_import_and_one_source_can_be_undone() {
    let dir = indexed_data_dir().await;
    let data = dir.path();
    let indexed = listed(data, "saas", "index").await;
    assert_eq!(indexed.len(), saas_examples());
    let p = &indexed[0]["provenance"];
    assert!(p["file"].as_str().unwrap().ends_with("examples.jsonl") && p["record"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["taxonomy_fingerprint"].as_str().map(str::len), Some(12), "{p}");

    let (mut child, base) = serve(data, &[], Some("k-alpha, k-beta")).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/examples");
    let (st, a, _) = post(&http, &url, Some("k-alpha"), examples("alpha", 2, "Billing")).await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["source"], format!("api:{}", key_id("k-alpha")));
    let (st, b, _) = post(&http, &url, Some("k-beta"), examples("beta", 1, "Billing")).await;
    assert_eq!(st, 200, "{b}");
    let (st, _, _) = post(&http, &url, Some("k-gamma"), examples("gamma", 1, "Billing")).await;
    assert_eq!(st, 401, "not a configured key");
    // Acknowledged: kill -9, then read the store from disk.
    child.kill().await.unwrap();
    child.wait().await.unwrap();

    let alpha = format!("api:{}", key_id("k-alpha"));
    let from_alpha = listed(data, "saas", &alpha).await;
    assert_eq!(from_alpha.len(), 2, "both acknowledged writes survived kill -9 with their provenance");
    let p = &from_alpha[0]["provenance"];
    assert_eq!((p["source"].as_str(), p["key"].as_str()), (Some("api"), Some(key_id("k-alpha").as_str())), "{p}");
    assert!(p["record"].as_u64().is_some() && p["at"].as_str().unwrap().ends_with('Z'), "{p}");
    assert!(!p.to_string().contains("k-alpha"), "the key itself is never stored: {p}");
    assert_eq!(listed(data, "saas", "api").await.len(), 3);

    // export -> import into another collection: the same provenance.
    let file = data.join("saas.export.jsonl");
    let out = run(triage(data).args(["export", "--collection", "saas", "-o"]).arg(&file)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(triage(data).args(["import"]).arg(&file).args(["--collection", "copy"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let copied = listed(data, "copy", &alpha).await;
    assert_eq!(copied.len(), 2);
    let by_id = |v: &[Value], id: &str| v.iter().find(|e| e["id"] == id).map(|e| e["provenance"].clone());
    assert_eq!(by_id(&copied, "alpha-0"), by_id(&from_alpha, "alpha-0"), "provenance kept as exported");
    assert_eq!(listed(data, "copy", "index").await.len(), saas_examples());

    // Undo one client's additions.
    let out = run(triage(data).args(["examples", "delete", "--collection", "saas", "--source", &alpha])).await;
    assert!(!out.status.success() && stderr(&out).contains("--yes"), "asks for confirmation");
    let out = run(triage(data).args(["examples", "delete", "--collection", "saas", "--source", &alpha, "--yes"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deleted 2 examples"), "{}", stdout(&out));
    assert!(listed(data, "saas", &alpha).await.is_empty());
    assert_eq!(listed(data, "saas", "api").await.len(), 1, "the other key's example stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_labels_are_refused_with_the_nearest_name_and_an_emptied_label_is_retired() {
    let dir = indexed_data_dir().await;
    let (mut child, base) = serve(dir.path(), &[], None).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/examples");
    let one = |label: &str, new_label: Option<bool>| {
        let mut e = json!({"id": "hw-1", "text": "The barcode scanner on till 3 stopped beeping and reads nothing", "label": label});
        if let Some(n) = new_label {
            e["new_label"] = json!(n);
        }
        json!({ "examples": [e] })
    };
    let (st, e, _) = post(&http, &url, None, one("Technicl", None)).await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("unknown_label")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("\"Technical\""), "names the nearest: {e}");
    let (st, e, _) = post(&http, &url, None, one("Hardware", None)).await;
    assert_eq!(st, 422, "a new label needs new_label: {e}");

    let (st, a, _) = post(&http, &url, None, one("Hardware", Some(true))).await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["new_labels"], json!(["Hardware"]));
    let info: Value = http.get(format!("{base}/v1/collections/saas")).send().await.unwrap().json().await.unwrap();
    let names = |info: &Value| -> Vec<String> {
        info["taxonomy"]["categories"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(names(&info).contains(&"Hardware".to_string()), "{info}");

    // Deleting its only example retires the label (kept in the taxonomy's history).
    let d: Value = http.delete(format!("{base}/v1/examples/hw-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["retired_labels"], json!(["Hardware"]), "{d}");
    let info: Value = http.get(format!("{base}/v1/collections/saas")).send().await.unwrap().json().await.unwrap();
    assert!(!names(&info).contains(&"Hardware".to_string()), "{info}");
    assert_eq!(info["taxonomy"]["retired"][0]["name"], "Hardware", "{info}");
    // A retired label is unknown again; classification goes on.
    let (st, _, _) = post(&http, &url, None, one("Hardware", None)).await;
    assert_eq!(st, 422);
    let (st, r, _) = post(&http, &format!("{base}/v1/classify"), None, json!({"text": "I was charged twice"})).await;
    assert_eq!((st, r["category"].as_str()), (200, Some("Billing")), "{r}");
    child.kill().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_keys_flood_is_rate_limited_and_its_share_flagged() {
    let dir = indexed_data_dir().await;
    let (mut child, base) =
        serve(dir.path(), &["--example-writes-per-minute", "30", "--max-source-share", "0.2"], Some("k-flood,k-calm")).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/examples");
    let (st, a, _) = post(&http, &url, Some("k-flood"), examples("flood", 25, "Billing")).await;
    assert_eq!(st, 200, "{a}");
    let flags = a["source_share_flags"].as_array().unwrap();
    assert_eq!(flags.len(), 1, "{a}");
    assert_eq!((flags[0]["label"].as_str(), flags[0]["examples_from_source"].as_u64()), (Some("Billing"), Some(25)));
    assert!(flags[0]["share"].as_f64().unwrap() > 0.2);
    let (st, e, retry) = post(&http, &url, Some("k-flood"), examples("flood2", 10, "Billing")).await;
    assert_eq!((st, e["error"]["code"].as_str()), (429, Some("write_rate_limited")), "{e}");
    assert!(retry.and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)), "Retry-After");
    let (st, c, _) = post(&http, &url, Some("k-calm"), examples("calm", 5, "Feature Request")).await;
    assert_eq!(st, 200, "another key has its own budget: {c}");
    assert!(c["source_share_flags"].as_array().unwrap().is_empty(), "{c}");
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("triage_example_writes_limited_total 1"), "{metrics}");
    assert!(metrics.contains("triage_example_source_share_flags_total{label=\"Billing\"} 1"), "{metrics}");
    child.kill().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn index_and_eval_summaries_count_blank_and_duplicate_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("rows.jsonl");
    let mut rows = vec![
        json!({"text": "I was charged twice for March", "label": "Billing"}),
        json!({"text": "The export button does nothing", "label": ""}),
        json!({"text": "  ", "label": "Technical"}),
        json!({"text": "I was charged twice for March", "label": "Billing"}),
        json!({"text": "Please add dark mode", "label": "Feature Request"}),
    ];
    rows.extend((0..15).map(|i| json!({"text": format!("no label {i}")})));
    std::fs::write(&file, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let out = run(triage(&data).args(["index"]).arg(&file).args(["--collection", "rows"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("rejected rows: 1 blank text, 16 blank label, 1 duplicate"), "{text}");
    assert!(text.contains("rejected line 2: missing label") && text.contains("... and 8 more rejected rows"), "{text}");
    assert!(text.lines().filter(|l| l.starts_with("  rejected line")).count() == 10, "first ten shown: {text}");

    let report = dir.path().join("report");
    let out = run(triage(&data)
        .args(["eval", "--collection", "rows", "--methods", "knn", "--provider", "none", "--test"])
        .arg(&file)
        .arg("--report-dir")
        .arg(&report))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("20 rows read, 3 tickets evaluated; 1 repeat an earlier row's text (kept)"), "{text}");
    assert!(text.contains("rejected rows: 1 blank text, 16 blank label") && text.contains("rejected line 2: missing label"), "{text}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["dataset"]["rows_without_text_or_label"], 17);
    assert_eq!(r["dataset"]["rejected_rows"][0]["kind"], "blank_label");
}
