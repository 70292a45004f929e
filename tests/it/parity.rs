//! Parity of the two backends, proven by one scenario run on each: the same corpus indexed
//! into the embedded store and into a Qdrant server gives the same neighbours (ids and
//! similarities), votes, filtered retrieval, calibration, export/import round trips and
//! API answers. Each scenario also checks absolute facts on its own, so two equally broken
//! backends cannot agree their way to a pass.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;
use crate::qdrant::*;

/// Held-out tickets: the bundled sample tickets plus a few written for this test.
fn tickets() -> Vec<String> {
    let mut t: Vec<String> = std::fs::read_to_string(saas_corpus().join("sample_tickets.txt"))
        .expect("sample tickets")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    t.extend(
        [
            "Please refund the annual plan I cancelled yesterday",
            "The export to CSV button does nothing in Firefox",
            "Would love a keyboard shortcut to archive conversations",
            "Our SSO login loops back to the sign-in page since this morning",
            "Can I get an invoice with our new billing address?",
            "Add a Slack integration for new ticket alerts please",
            "Every API call times out after the last deploy, production is down",
        ]
        .map(str::to_string),
    );
    t
}

/// Example id -> its fields in the bundled corpus.
fn corpus_rows() -> BTreeMap<String, Value> {
    std::fs::read_to_string(saas_corpus().join("examples.jsonl"))
        .expect("corpus")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("corpus row");
            (v["id"].as_str().expect("id").to_string(), v)
        })
        .collect()
}

/// A result with what may legitimately differ removed (latency; the fit's time stamp,
/// since each side fits at its own moment), and neighbours of equal similarity (within
/// 1e-5) in id order, since two indexes may break exact ties either way.
fn canonical(r: &Value) -> Value {
    let mut r = without_fit_times(&without(r, &["latency_ms"]));
    if let Some(ns) = r["neighbors"].as_array_mut() {
        ns.sort_by(|a, b| {
            let (x, y) = (a["score"].as_f64().unwrap_or(0.0), b["score"].as_f64().unwrap_or(0.0));
            if (x - y).abs() < 1e-5 {
                a["id"].as_str().cmp(&b["id"].as_str())
            } else {
                y.total_cmp(&x)
            }
        });
    }
    r
}

/// `v` without any `fitted_at` or `seconds` key, at any depth: each side fits at its own
/// moment and speed.
fn without_fit_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().filter(|(k, _)| *k != "fitted_at" && *k != "seconds").map(|(k, v)| (k.clone(), without_fit_times(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(without_fit_times).collect()),
        other => other.clone(),
    }
}

fn canonical_all(rs: &[Value]) -> Value {
    Value::Array(rs.iter().map(canonical).collect())
}

/// Everything the CLI scenario observed on one side.
struct Observed {
    index: Value,
    plain: Vec<Value>,
    urgent_only: Vec<Value>,
    billing_en: Vec<Value>,
    calibration: Value,
    calibrated: Vec<Value>,
    info: Value,
    export: BTreeMap<String, Value>,
    export_meta: Value,
    reimported: Vec<Value>,
}

async fn classify(side: &Side, collection: &str, input: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["classify", "--collection", collection, "--provider", "none", "--format", "jsonl", "--input"];
    let input = input.to_str().expect("utf-8 path");
    args.push(input);
    args.extend_from_slice(extra);
    results(&side.ok(&args).await)
}

/// Export lines by example id, and the header's meta.
fn read_export(path: &Path) -> (Value, BTreeMap<String, Value>) {
    let text = std::fs::read_to_string(path).expect("export file");
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().expect("header")).expect("header JSON");
    let rows = lines
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("export line");
            (v["payload"]["id"].as_str().expect("payload id").to_string(), v)
        })
        .collect();
    (header["meta"].clone(), rows)
}

async fn cli_scenario(side: &Side, name: &str, input: &Path) -> Observed {
    let corpus = saas_corpus();
    let corpus = corpus.to_str().expect("utf-8 path");
    let index = without(&side.json(&["index", corpus, "--collection", name, "--json"]).await, &["seconds", "timings"]);
    let plain = classify(side, name, input, &[]).await;
    let urgent_only = classify(side, name, input, &["--filter", "urgency=High"]).await;
    let billing_en = classify(side, name, input, &["--filter", "label=Billing", "--filter", "lang=en"]).await;
    let calibration = side.json(&["calibrate", "--collection", name, "--json"]).await;
    let calibrated = classify(side, name, input, &[]).await;
    let info = without(&side.json(&["collections", "info", name, "--json"]).await, &["backend", "created_at", "updated_at"]);
    let file = side.dir.path().join("export.jsonl");
    side.ok(&["export", "--collection", name, "--output", file.to_str().expect("utf-8 path")]).await;
    let (export_meta, export) = read_export(&file);
    // Round trip on the same backend, under another name.
    let again = format!("{name}-again");
    let report = side.json(&["import", file.to_str().expect("utf-8 path"), "--collection", &again, "--json"]).await;
    assert_eq!((report["examples"].as_u64(), report["created"].as_bool()), (Some(saas_examples() as u64), Some(true)), "{}: {report}", side.label);
    let reimported = classify(side, &again, input, &[]).await;
    side.drop_collection(&again).await;
    side.drop_collection(name).await;
    Observed { index, plain, urgent_only, billing_en, calibration, calibrated, info, export, export_meta, reimported }
}

/// Facts each side must show on its own.
fn check_alone(label: &str, o: &Observed, rows: &BTreeMap<String, Value>) {
    assert_eq!(o.index["points_in_collection"], saas_examples(), "{label}: {}", o.index);
    assert_eq!(o.plain.len(), tickets().len());
    assert_eq!(o.plain[0]["category"], "Billing", "{label}: {}", o.plain[0]);
    assert_eq!(o.plain[1]["category"], "Technical", "{label}: {}", o.plain[1]);
    for r in &o.plain {
        assert_eq!(r["neighbors"].as_array().map(Vec::len), Some(8), "{label}: {r}");
        assert!(r["error"].is_null(), "{label}: {r}");
    }
    for (results, field, value) in [(&o.urgent_only, "urgency", "High"), (&o.billing_en, "label", "Billing")] {
        for r in results {
            let ids: Vec<&str> = r["neighbors"].as_array().expect("neighbors").iter().filter_map(|n| n["id"].as_str()).collect();
            assert!(!ids.is_empty(), "{label}: {r}");
            for id in ids {
                assert_eq!(rows[id][field], value, "{label}: filtered neighbour {id} has {field} {}", rows[id][field]);
            }
        }
    }
    assert_eq!(o.calibration["neighbours"]["k"], 8, "{label}: {}", o.calibration);
    assert!(o.calibrated.iter().all(|r| r["raw_confidence"].is_number()), "{label}: calibrated results carry raw_confidence");
    assert_eq!(o.export.len(), saas_examples());
    assert_eq!(o.info["examples"], saas_examples());
    // The round trip answers exactly as the source.
    assert_eq!(canonical_all(&o.reimported), canonical_all(&o.calibrated), "{label}: export/import round trip");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Qdrant server: QDRANT_URL (./scripts/test.sh starts one from ../shared/bin/qdrant)"]
async fn server_parity_cli_index_classify_filter_calibrate_export_import() {
    let edge = Side::edge();
    let server = Side::server();
    let input = edge.dir.path().join("tickets.txt");
    std::fs::write(&input, tickets().join("\n")).expect("write tickets");
    let name = unique("parity-cli");
    let a = cli_scenario(&edge, &name, &input).await;
    let b = cli_scenario(&server, &name, &input).await;
    let rows = corpus_rows();
    check_alone("edge", &a, &rows);
    check_alone("server", &b, &rows);

    assert_eq!(a.index, b.index, "index reports");
    // Similarities agree to float rounding (1e-4); votes and confidences follow from them.
    for (what, x, y) in [
        ("neighbours and votes", &a.plain, &b.plain),
        ("filter urgency=High", &a.urgent_only, &b.urgent_only),
        ("filter label=Billing lang=en", &a.billing_en, &b.billing_en),
        ("calibrated results", &a.calibrated, &b.calibrated),
        ("results after an export/import round trip", &a.reimported, &b.reimported),
    ] {
        assert_close(&canonical_all(x), &canonical_all(y), 1e-4, what);
    }
    assert_close(&without_fit_times(&a.calibration), &without_fit_times(&b.calibration), 1e-4, "calibration");
    assert_close(&a.info, &b.info, 0.0, "collections info");
    assert_close(
        &without_fit_times(&without(&a.export_meta, &["created_at", "updated_at"])),
        &without_fit_times(&without(&b.export_meta, &["created_at", "updated_at"])),
        1e-4,
        "exported meta (taxonomy, model, calibration)",
    );
    // The same examples, payloads and vectors (to float rounding).
    assert_eq!(a.export.keys().collect::<Vec<_>>(), b.export.keys().collect::<Vec<_>>());
    // Provenance's `at` is when each side indexed: the rest of it must match.
    for (id, x) in &a.export {
        assert!(x["payload"]["provenance"]["at"].is_string(), "exported example {id} has its provenance: {x}");
        assert_close(&without(x, &["at"]), &without(&b.export[id], &["at"]), 1e-6, &format!("exported example {id}"));
    }
    // Nothing was written to the server side's data dir.
    assert!(!server.data_dir().exists(), "a server-backed triage wrote to its data dir");
}

/// The same requests against `triage serve` on one side; the answers, with what may differ
/// between backends (latency, backend name, timestamps) removed.
async fn api_scenario(side: &Side, name: &str) -> Vec<(String, u16, Value)> {
    let corpus = saas_corpus();
    side.ok(&["index", corpus.to_str().expect("utf-8 path"), "--collection", name]).await;
    let mut cmd = side.cmd();
    cmd.args(["serve", "--collection", name, "--addr", "127.0.0.1:0", "--provider", "none"]);
    let (mut child, base) = spawn_serve(&mut cmd).await;
    let http = reqwest::Client::new();
    let probe = "Our SSO login with Okta loops back to the sign-in page after the redirect";
    let info = format!("/v1/collections/{name}");
    let requests: Vec<(&str, &str, Value)> = vec![
        ("POST", "/v1/classify", json!({"text": "I was charged twice on March 1st and I need a refund.", "id": "T-1"})),
        ("POST", "/v1/classify", json!({"text": "The app crashes when I upload a photo", "k": 3})),
        ("POST", "/v1/classify", json!({"text": "Please refund me", "filter": {"urgency": "High"}})),
        ("POST", "/v1/classify", json!({"text": "Please refund me", "filter": {"plan": "pro"}})),
        ("POST", "/v1/classify", json!({"text": "Please refund me", "filter": {"urgency": "Nope"}})),
        ("POST", "/v1/classify", json!({"text": "x", "collection": "no-such-collection"})),
        ("POST", "/v1/classify/batch", json!({"tickets": [{"id": "a", "text": "Dark mode please"}, {"id": "b"}, "junk", {"text": "Invoice has the wrong VAT number"}]})),
        ("POST", "/v1/examples", json!({"examples": [{"id": "sso-1", "text": probe, "label": "Technical", "urgency": "High"}, {"text": "no label"}]})),
        ("POST", "/v1/classify", json!({"text": probe})),
        ("DELETE", "/v1/examples/sso-1", Value::Null),
        ("DELETE", "/v1/examples/sso-1", Value::Null),
        ("POST", "/v1/classify", json!({"text": probe})),
        ("GET", "/v1/collections", Value::Null),
        ("GET", &info, Value::Null),
        ("POST", "/v1/webhooks/ticket", json!({"ticket": {"id": 42, "subject": "Refund", "description": "I was billed twice"}})),
    ];
    let mut answers = Vec::new();
    for (m, p, body) in requests {
        let req = match m {
            "POST" => http.post(format!("{base}{p}")).json(&body),
            "DELETE" => http.delete(format!("{base}{p}")),
            _ => http.get(format!("{base}{p}")),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let mut v: Value = resp.json().await.unwrap_or(Value::Null);
        if p == "/v1/collections" {
            // The shared server may hold other tests' collections.
            v["collections"] = Value::Array(
                v["collections"].as_array().cloned().unwrap_or_default().into_iter().filter(|c| c["name"] == name).collect(),
            );
        }
        if let Some(rs) = v["results"].as_array() {
            v["results"] = Value::Array(rs.iter().map(canonical).collect());
        }
        let v = if v.get("neighbors").is_some() { canonical(&v) } else { v };
        answers.push((format!("{m} {p}"), status, without(&v, &["backend", "created_at", "updated_at", "latency_ms"])));
    }
    let (st, ready) = {
        let r = http.get(format!("{base}/readyz")).send().await.expect("readyz");
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    answers.push(("GET /readyz".into(), st, json!({"status": ready["status"]})));
    child.kill().await.expect("kill serve");
    side.drop_collection(name).await;
    answers
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Qdrant server: QDRANT_URL (./scripts/test.sh starts one from ../shared/bin/qdrant)"]
async fn server_parity_http_api() {
    let edge = Side::edge();
    let server = Side::server();
    let name = unique("parity-api");
    let a = api_scenario(&edge, &name).await;
    let b = api_scenario(&server, &name).await;
    // On its own: the statuses each request must get, the probe example found then gone.
    let statuses: Vec<u16> = a.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 422, 200, 404, 200, 200, 200, 200, 404, 200, 200, 200, 200, 200], "{a:#?}");
    assert_eq!(a[0].2["category"], "Billing");
    assert_eq!(a[7].2["indexed"], 1);
    assert_eq!(a[7].2["rejected"][0]["index"], 1);
    assert_eq!(a[8].2["neighbors"][0]["id"], "sso-1", "the posted example is the next nearest neighbour");
    assert!(a[11].2["neighbors"].as_array().expect("neighbors").iter().all(|n| n["id"] != "sso-1"), "deleted");
    assert_eq!(a[13].2["examples"], saas_examples());
    assert_eq!(a[15].2["status"], "ready");
    for ((what, sa, va), (_, sb, vb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb, "{what}: status {sa} (edge) vs {sb} (server): {va} / {vb}");
        assert_close(va, vb, 1e-4, what);
    }
}
