//! The neighbours' side: the fitted head mixed with the vote, out-of-scope examples,
//! language awareness, and refits while serving.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

fn fixture() -> PathBuf {
    repo().join("tests").join("fixtures").join("banking77-subset")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn index_subset(data: &Path, collection: &str, extra: &[&str]) {
    let out =
        run(triage(data).args(["index"]).arg(fixture().join("train.jsonl")).args(["--collection", collection]).args(extra)).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

fn meta_path(data: &Path, collection: &str) -> PathBuf {
    data.join("collections").join(collection).join("meta.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_head_is_fitted_used_and_refused_from_another_embedding_model() {
    let work = tempfile::tempdir().unwrap();
    index_subset(work.path(), "b", &[]).await;
    let out = run(triage(work.path()).args(["calibrate", "--collection", "b", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let f: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let n = &f["neighbours"];
    assert_eq!(n["head_info"]["examples"], 795);
    assert_eq!(n["head_info"]["embedding_model"], "all-minilm-l6-v2-int8");
    assert!(n["head"]["weights"].as_str().unwrap().len() > 1000, "the head's weights are stored");
    let w = n["head_weight"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&w));
    let head_acc = n["stats"]["head_accuracy"].as_f64().unwrap();
    assert!(head_acc > 0.7, "cross-fitted head accuracy {head_acc}");
    let text = "my card has still not arrived, it has been two weeks";
    let r = &classify_jsonl(work.path(), "b", &[], &[text]).await[0];
    assert_eq!(r["category"], "card_arrival", "{r}");
    assert_eq!(fit_used(r).1, Some(795), "{r}");

    // A head fitted with another embedding model is not used, and the result says so.
    let path = meta_path(work.path(), "b");
    let mut meta: Value = read_json(&path);
    meta["fitted"]["data"]["neighbours"]["head_info"]["embedding_model"] = "some-other-model".into();
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let r = &classify_jsonl(work.path(), "b", &[], &[text]).await[0];
    assert_eq!(fit_used(r).1, None, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("some-other-model") && warnings.contains("not used"), "{warnings}");
}

/// Small labels no longer block the head (its weight in the mixture is chosen on
/// held-out examples); a collection with fewer than two labels of two or more examples
/// gets none, and says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_is_fitted_despite_small_labels_and_refused_only_without_two_usable_labels() {
    let work = tempfile::tempdir().unwrap();
    let write = |name: &str, spec: &[(&str, usize)]| {
        let file = work.path().join(name);
        let mut rows = String::new();
        for (label, n) in spec {
            for i in 0..*n {
                rows.push_str(&format!("{{\"id\": \"{label}-{i}\", \"text\": \"{label} question number {i} about my account\", \"label\": \"{label}\"}}\n"));
            }
        }
        std::fs::write(&file, rows).unwrap();
        file
    };
    let small = write("small.jsonl", &[("Billing", 11), ("Technical", 11), ("Legal", 3)]);
    let out = run(triage(work.path()).args(["index"]).arg(&small).args(["--collection", "small"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &classify_jsonl(work.path(), "small", &[], &["a billing question"]).await[0];
    let (fit, head) = fit_used(r);
    assert!(fit.is_some() && head.is_some(), "a 3-example label does not block the head: {r}");
    let lopsided = write("lopsided.jsonl", &[("Billing", 22), ("Technical", 1), ("Legal", 1)]);
    let out = run(triage(work.path()).args(["index"]).arg(&lopsided).args(["--collection", "lopsided"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(triage(work.path()).args(["calibrate", "--collection", "lopsided"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("no head fitted") && text.contains("1 have"), "{text}");
    let r = &classify_jsonl(work.path(), "lopsided", &[], &["a billing question"]).await[0];
    let (fit, head) = fit_used(r);
    assert_eq!(head, None, "{r}");
    assert!(fit.is_some(), "the calibration itself is used: {r}");
}

/// One of the subset's intents indexed as out-of-scope examples: its test tickets are
/// flagged out of scope, never answered with that label, at a small in-scope cost.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_scope_examples_are_retrieved_but_never_an_answer() {
    let work = tempfile::tempdir().unwrap();
    let report_dir = work.path().join("report");
    let out = run(triage(&work.path().join("data"))
        .args(["eval", "--test"])
        .arg(fixture().join("test.jsonl"))
        .arg("--train")
        .arg(fixture().join("train.jsonl"))
        .args(["--methods", "knn", "--calibrate", "--out-of-scope-label", "card_arrival"])
        .arg("--report-dir")
        .arg(&report_dir))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_json(&report_dir.join("report.json"));
    let knn = &report["methods"][0];
    assert_eq!(report["dataset"]["out_of_scope_rows"], 15, "card_arrival's test tickets are out of scope");
    let recall = knn["oos_flag_recall"].as_f64().unwrap();
    assert!(recall >= 0.8, "flagged out of scope: {recall}");
    let (strict, plain) =
        (knn["in_scope_accuracy"].as_f64().unwrap(), knn["in_scope_accuracy_without_abstention"].as_f64().unwrap());
    assert!(plain - strict <= 0.04, "in-scope cost of the flag: {strict} vs {plain}");
    assert!(knn["in_scope_review_rate"].as_f64().is_some());
    let preds = std::fs::read_to_string(report_dir.join("predictions.jsonl")).unwrap();
    for line in preds.lines() {
        let p: Value = serde_json::from_str(line).unwrap();
        assert_ne!(p["predicted"], "card_arrival", "an out-of-scope label is never an answer: {p}");
    }
    assert_eq!(report["calibrations"][0]["oos"]["rule"], "fitted", "the out-of-scope score fitted on the examples");
    assert!(report["calibrations"][0]["oos"]["score"]["threshold"].is_number(), "{}", report["calibrations"][0]["oos"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tickets_in_a_language_the_model_does_not_cover_go_to_review_without_an_llm() {
    let data = indexed_data_dir().await;
    let out = run(triage(data.path()).args(["calibrate", "--collection", "saas"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(triage(data.path()).args([
        "classify",
        "--collection",
        "saas",
        "--format",
        "jsonl",
        "Mi paquete llegó roto y nadie me responde",
        "Lieferung fehlt",
        "I was charged twice for my subscription this month, please refund one of the payments.",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(&out);
    assert_eq!((r[0]["lang"].as_str(), r[1]["lang"].as_str(), r[2]["lang"].as_str()), (Some("es"), Some("de"), Some("en")));
    for x in &r[..2] {
        assert_eq!(x["needs_review"], true, "{x}");
        assert!(x["review_reason"].as_str().unwrap().starts_with("language:"), "{x}");
    }
    assert!(!r[2]["review_reason"].as_str().unwrap_or("").starts_with("language:"), "{}", r[2]);
}

/// With an LLM, a non-English ticket is never answered by the shortcut: the LLM decides.
#[tokio::test(flavor = "multi_thread")]
async fn with_an_llm_a_non_english_ticket_is_decided_by_the_llm() {
    let data = indexed_data_dir().await;
    let out = run(triage(data.path()).args(["calibrate", "--collection", "saas", "--shortcut-accuracy", "0.5"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let gold = data.path().join("gold.jsonl");
    let es = "Me cobraron dos veces la suscripción de este mes, necesito el reembolso de uno de los pagos.";
    let en = "I was charged twice for my subscription this month, please refund one of the payments.";
    std::fs::write(&gold, format!("{}\n{}\n", serde_json::json!({"text": es, "label": "Billing"}), serde_json::json!({"text": en, "label": "Billing"}))).unwrap();
    let sim = crate::sim::SimLlm::start(&[&gold], 1.0, &[]).await;
    let out = run(triage(data.path()).args(["classify", "--collection", "saas", "--format", "jsonl", es, en]).args(sim.args("sim"))).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(&out);
    assert_eq!(r[0]["lang"], "es");
    assert_eq!(r[0]["method"], "rag", "{}", r[0]);
    assert_eq!(r[0]["category"], "Billing");
    assert_eq!(r[1]["method"], "knn-shortcut", "a decisive English ticket skips the call: {}", r[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refits_on_demand_and_after_enough_new_examples() {
    let work = tempfile::tempdir().unwrap();
    index_subset(work.path(), "b", &[]).await;
    let out = run(triage(work.path()).args(["calibrate", "--collection", "b"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (_child, base) =
        spawn_serve(triage(work.path()).args(["serve", "--collection", "b", "--addr", "127.0.0.1:0", "--refit-after", "5"]))
            .await;
    let http = reqwest::Client::new();
    let r: Value = http.post(format!("{base}/v1/collections/b/calibrate")).json(&serde_json::json!({})).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["examples"], 795, "{r}");
    assert!(r["head_accuracy"].as_f64().is_some(), "{r}");
    // Five new examples: a background refit starts; the next fit counts them.
    let examples: Vec<Value> = (0..5)
        .map(|i| serde_json::json!({"id": format!("new-{i}"), "text": format!("my new card number {i} has not arrived yet"), "label": "card_arrival"}))
        .collect();
    let resp = http.post(format!("{base}/v1/examples")).json(&serde_json::json!({"examples": examples})).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let r: Value = http
            .post(format!("{base}/v1/classify"))
            .json(&serde_json::json!({"text": "my card still has not arrived"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["fit"]["examples"] == 800 {
            assert_eq!(r["fit"]["head"]["examples"], 800, "{r}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no refit within 120 s: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
