//! `triage doctor`, its review file and `triage examples apply`, and
//! `GET /v1/collections/{name}/doctor`, on the bundled corpus with planted faults.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Examples of the bundled corpus whose labels the tests flip: (id, wrong label).
const FLIPS: [(&str, &str); 4] =
    [("saas-0001", "Feature Request"), ("saas-0002", "Billing"), ("saas-0090", "Technical"), ("saas-0150", "Billing")];

/// Their labels in the bundled corpus.
fn original(id: &str) -> &'static str {
    match id {
        "saas-0090" => "Billing",
        "saas-0150" => "Feature Request",
        _ => "Technical",
    }
}

/// The bundled corpus with four labels flipped, one text repeated under another label,
/// and one junk row, written as a corpus folder in `dir`.
fn planted_corpus(dir: &Path) -> std::path::PathBuf {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::copy(saas_corpus().join("taxonomy.toml"), corpus.join("taxonomy.toml")).unwrap();
    let mut out = String::new();
    let mut dup_text = String::new();
    for line in std::fs::read_to_string(saas_corpus().join("examples.jsonl")).unwrap().lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        if let Some((_, wrong)) = FLIPS.iter().find(|(i, _)| *i == id) {
            v["label"] = Value::from(*wrong);
        }
        if id == "saas-0040" {
            dup_text = v["text"].as_str().unwrap().to_string();
            assert_eq!(v["label"], "Technical", "the planted duplicate needs a Technical original");
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out.push_str(&serde_json::json!({"id": "dup-1", "text": dup_text, "label": "Billing"}).to_string());
    out.push('\n');
    out.push_str(&serde_json::json!({"id": "junk-1", "text": "asdf", "label": "Technical"}).to_string());
    out.push('\n');
    std::fs::write(corpus.join("examples.jsonl"), out).unwrap();
    corpus
}

async fn doctor_json(data: &Path, extra: &[&str]) -> Value {
    let out = run(triage(data).args(["doctor", "--collection", "planted", "--format", "json"]).args(extra)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)))
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_doctor_finds_planted_faults_and_a_review_file_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let corpus = planted_corpus(dir.path());
    let out = run(triage(&data).args(["index"]).arg(&corpus).args(["--collection", "planted"])).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let report = dir.path().join("report");
    let review = dir.path().join("review.csv");
    let d = doctor_json(&data, &["--report-dir", report.to_str().unwrap(), "--write-review", review.to_str().unwrap()]).await;
    for key in ["mislabeled", "conflicting_duplicates", "small_labels", "similar_labels", "confused_pairs", "uncovered_language", "junk"] {
        assert!(d[key].is_array(), "{key} missing: {d}");
    }
    let flagged = ids(&d["mislabeled"]);
    for (id, _) in FLIPS {
        assert!(flagged.contains(&id.to_string()), "{id} not flagged: {flagged:?}");
    }
    for m in d["mislabeled"].as_array().unwrap() {
        assert!(m["label"].is_string() && m["suggested"].is_string() && m["score"].as_f64().is_some_and(|s| s > 0.0 && s <= 1.0), "{m}");
        assert_ne!(m["label"], m["suggested"]);
        assert_eq!(m["evidence"]["nearest"].as_array().unwrap().len(), 5, "{m}");
    }
    // Three of the four flipped examples at least get their original label suggested back.
    let restored = d["mislabeled"].as_array().unwrap().iter().filter(|m| {
        let id = m["id"].as_str().unwrap();
        FLIPS.iter().any(|(f, _)| *f == id) && m["suggested"] == original(id)
    });
    assert!(restored.count() >= 3, "suggestions: {}", d["mislabeled"]);
    let dups = d["conflicting_duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1, "exactly the planted duplicate: {dups:?}");
    let pair: Vec<&str> = dups[0]["examples"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(pair.contains(&"dup-1") && pair.contains(&"saas-0040") && dups[0]["same_text"] == true, "{dups:?}");
    assert_eq!(ids(&d["junk"]), vec!["junk-1".to_string()]);
    let langs: Vec<&str> = d["uncovered_language"].as_array().unwrap().iter().filter_map(|x| x["lang"].as_str()).collect();
    assert!(langs.contains(&"ja") && langs.contains(&"de") && !langs.contains(&"en"), "{langs:?}");
    assert!(d["confused_pairs"].as_array().unwrap().iter().all(|p| p["gold"] != p["predicted"] && p["count"].as_u64() > Some(0)));
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("saas-0001") && html.contains("Conflicting duplicates"), "the page lists the findings");

    // The review file: every row `keep` until a person says otherwise.
    let csv = std::fs::read_to_string(&review).unwrap();
    assert!(csv.starts_with("action,id,label,new_label,finding,score,text"));
    let unedited = run(triage(&data).args(["examples", "apply"]).arg(&review).args(["--collection", "planted", "--json"])).await;
    assert!(unedited.status.success(), "{}", stderr(&unedited));
    let a: Value = serde_json::from_str(&stdout(&unedited)).unwrap();
    assert_eq!((a["relabeled"].as_u64(), a["deleted"].as_u64()), (Some(0), Some(0)), "nothing changes unasked: {a}");

    // A person relabels the four flipped examples to their original labels and deletes the junk row.
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    w.write_record(r.headers().unwrap()).unwrap();
    for rec in r.records() {
        let mut rec: Vec<String> = rec.unwrap().iter().map(str::to_string).collect();
        if let Some((id, _)) = FLIPS.iter().find(|(i, _)| *i == rec[1].as_str()) {
            rec[0] = "relabel".into();
            rec[3] = original(id).into();
        } else if rec[1] == "junk-1" {
            rec[0] = "delete".into();
        }
        w.write_record(&rec).unwrap();
    }
    std::fs::write(&review, w.into_inner().unwrap()).unwrap();
    let applied = run(triage(&data).args(["examples", "apply"]).arg(&review).args(["--collection", "planted", "--json"])).await;
    assert!(applied.status.success(), "{}", stderr(&applied));
    let a: Value = serde_json::from_str(&stdout(&applied)).unwrap();
    assert_eq!((a["relabeled"].as_u64(), a["deleted"].as_u64()), (Some(4), Some(1)), "{a}");
    assert!(a["refit_accuracy"].as_f64().is_some(), "refitted: {a}");
    // The stored examples carry the labels (export reads the store).
    let export = dir.path().join("export.jsonl");
    let out = run(triage(&data).args(["export", "--collection", "planted", "-o"]).arg(&export)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&export).unwrap();
    for line in text.lines().skip(1) {
        let p: Value = serde_json::from_str(line).unwrap();
        let id = p["payload"]["id"].as_str().unwrap();
        assert_ne!(id, "junk-1", "deleted");
        if FLIPS.iter().any(|(f, _)| *f == id) {
            assert_eq!(p["payload"]["label"], original(id), "{id}");
        }
    }
    // Applying the same file again refuses the rows whose examples changed since.
    let again = run(triage(&data).args(["examples", "apply"]).arg(&review).args(["--collection", "planted", "--json"])).await;
    assert_eq!(again.status.code(), Some(3), "some rows refused: {}", stderr(&again));
    let a: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(a["rejected"].as_array().unwrap().len(), 5, "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_the_doctors_report() {
    let dir = indexed_data_dir().await;
    let (mut child, base) = spawn_serve(triage(dir.path()).args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"])).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/v1/collections/saas/doctor?top=3")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["mislabeled"].as_array().unwrap().len(), 3, "top=3: {d}");
    assert_eq!(d["examples"].as_u64(), Some(saas_examples() as u64));
    assert!(d["conflicting_duplicates"].as_array().unwrap().is_empty(), "the bundled corpus has none: {}", d["conflicting_duplicates"]);
    let r = http.get(format!("{base}/v1/collections/nope/doctor")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    child.kill().await.ok();
}
