//! `triage calibrate` and what it changes: calibrated confidence, out-of-scope
//! review, and the knn-shortcut that skips the LLM for decisive tickets.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn calibrate_stores_a_fit_that_classify_uses() {
    let data = indexed_data_dir().await;
    let out = run(triage(data.path()).args(["calibrate", "--collection", "saas", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let f: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let n = &f["neighbours"];
    assert_eq!(n["k"], 8);
    assert_eq!(n["stats"]["held_out"], saas_examples(), "every example held out once");
    assert_eq!(n["collection_examples"], saas_examples());
    // On this corpus a confidence map fitted on half the held-out examples scores worse
    // (cross-fitted ECE) than the raw probability: the map is refused and says so.
    let (raw_ece, cal_ece) = (n["stats"]["raw_ece"].as_f64().unwrap(), n["stats"]["calibrated_ece"].as_f64().unwrap());
    assert!(cal_ece > raw_ece, "raw {raw_ece} vs cross-fitted {cal_ece}");
    assert_eq!(n["bands"].as_array().unwrap().len(), 0, "no map: {}", n["stats"]);
    let refused = n["stats"]["refused"][0].as_str().unwrap();
    assert!(refused.starts_with("confidence map: its cross-fitted ECE") && refused.contains("confidences stay the raw probability"), "{refused}");
    let text = run(triage(data.path()).args(["calibrate", "--collection", "saas"])).await;
    assert!(stdout(&text).contains("refused                     confidence map: its cross-fitted ECE"), "{}", stdout(&text));
    // The corpus's "Not Support" examples are out-of-scope negatives: the rule is fitted on them.
    assert_eq!(n["labels"]["out_of_scope"].as_array().unwrap().iter().filter(|b| b.as_bool().unwrap()).count(), 1);
    assert_eq!(n["oos"]["rule"], "fitted", "{}", n["oos"]);
    assert_eq!(n["oos"]["score"]["weights"].as_array().unwrap().len(), 8, "{}", n["oos"]);
    assert_eq!(n["stats"]["oos_examples"], 30);
    assert_eq!(n["head_info"]["examples"], saas_examples());
    let (vote, mixed) = (n["stats"]["vote_accuracy"].as_f64().unwrap(), n["stats"]["mixed_accuracy"].as_f64().unwrap());
    assert!(mixed >= vote, "the fitted mixture is never below the vote it was chosen against: {mixed} vs {vote}");
    assert!(vote > 0.5, "held-out vote accuracy {vote}");
    assert_eq!(f["arbiters"].as_array().unwrap().len(), 0);
    // The corpus's two-issue examples set the secondary threshold (labeled, not the budget).
    let sec = &n["secondary"];
    assert_eq!(sec["method"], "labeled", "{sec}");
    let labeled = std::fs::read_to_string(saas_corpus().join("examples.jsonl")).unwrap().matches("\"secondary\"").count();
    assert_eq!(sec["labeled"].as_u64().unwrap() as usize, labeled, "{sec}");
    let t = sec["threshold"].as_f64().unwrap();
    assert!(t > 0.0 && t < 1.0 && sec["precision"].is_number() && sec["recall"].is_number(), "{sec}");

    // The fit is stored with the collection: classify now reports fitted confidence.
    let r = classify_jsonl(data.path(), "saas", &[], &[
        "I was charged twice for my subscription this month, please refund one of the payments.",
        "Hi, I am a recruiter with two senior engineers available right now who would fit your team well. Open to a quick call this week?",
    ])
    .await;
    assert_eq!(r[0]["category"], "Billing");
    assert_eq!(r[0]["method"], "knn");
    let n = Some(saas_examples() as u64);
    assert_eq!(fit_used(&r[0]), (n, n), "{}", r[0]);
    let raw = r[0]["raw_confidence"].as_f64().expect("raw_confidence when calibrated");
    let conf = r[0]["confidence"].as_f64().unwrap();
    assert!((conf - raw).abs() < 1e-6, "no map: the confidence is the raw probability ({conf} vs {raw})");
    assert_eq!(r[0]["neighbours"]["category"], "Billing");
    // Not a support request: the neighbours place it among the out-of-scope examples;
    // their label is never the answer.
    assert_eq!(r[1]["needs_review"], true, "{}", r[1]);
    let reason = r[1]["review_reason"].as_str().unwrap();
    assert!(reason.starts_with("out_of_scope:"), "{reason}");
    assert_ne!(r[1]["category"], "Not Support");

    // At another k the fit is not applied, and the result says so.
    let r = classify_jsonl(data.path(), "saas", &["--k", "3"], &["refund please, charged twice"]).await;
    assert!(r[0].get("raw_confidence").is_none());
    assert!(r[0]["warnings"][0].as_str().unwrap().contains("calibrated at k=8"), "{}", r[0]);

    // Indexing new examples refits with the same settings (fitted from the start).
    let extra = data.path().join("extra.jsonl");
    std::fs::write(&extra, "{\"id\": \"new-1\", \"text\": \"Please send me a copy of last month's invoice as a PDF.\", \"label\": \"Billing\"}\n").unwrap();
    let out = run(triage(data.path()).args(["index"]).arg(&extra).args(["--collection", "saas"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("fitted on {} held-out examples", saas_examples() + 1)), "{}", stdout(&out));

    // Human-readable summary, and --clear removes the fit.
    let out = run(triage(data.path()).args(["calibrate", "--collection", "saas"])).await;
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("ECE calibrated (cross-fit)") && text.contains("held-out accuracy: head"), "{text}");
    assert!(text.contains("out of scope") && text.contains("out-of-scope examples flagged"), "{text}");
    let out = run(triage(data.path()).args(["calibrate", "--collection", "saas", "--clear"])).await;
    assert!(stdout(&out).contains("fit removed"), "{}", stdout(&out));
    let r = classify_jsonl(data.path(), "saas", &[], &["refund please"]).await;
    assert!(r[0].get("raw_confidence").is_none());
    assert_eq!(fit_used(&r[0]), (None, None), "{}", r[0]);
    let out = run(triage(data.path()).args(["calibrate", "--collection", "nope"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Similarity rule (no out-of-scope examples; on request): a ticket unlike every
/// example is flagged out of scope.
#[tokio::test(flavor = "multi_thread")]
async fn the_similarity_rule_flags_tickets_unlike_every_example_on_request() {
    let work = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests").join("fixtures").join("banking77-subset");
    let out = run(triage(work.path()).args(["index"]).arg(fixture.join("train.jsonl")).args(["--collection", "b"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(triage(work.path()).args(["calibrate", "--collection", "b", "--oos-quantile", "0.05", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let f: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(f["neighbours"]["oos"]["rule"], "similarity");
    let t = f["neighbours"]["oos"]["min_similarity"].as_f64().unwrap();
    let out = run(triage(work.path())
        .args(["classify", "--collection", "b", "--format", "jsonl"])
        .arg("What is the capital of Mongolia and how many people live there?"))
    .await;
    let r = &results(&out)[0];
    assert!(r["review_reason"].as_str().unwrap().starts_with("out_of_scope:"), "{r}");
    assert!(r["neighbors"][0]["score"].as_f64().unwrap() < t);
    // By default (no out-of-scope examples) nothing is flagged as such.
    let out = run(triage(work.path()).args(["calibrate", "--collection", "b", "--json"])).await;
    let f: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(f["neighbours"]["oos"]["rule"], "none");
}

/// With a simulated LLM that is right 90 % of the time, the knn-shortcut skips at
/// least 40 % of calls, and what it costs against calling for every ticket is at most
/// half a point. Data: a 20-label BANKING77 subset (tests/fixtures/banking77-subset).
#[tokio::test(flavor = "multi_thread")]
async fn knn_shortcut_skips_calls_without_losing_accuracy() {
    let work = tempfile::tempdir().unwrap();
    let report_dir = work.path().join("report");
    let fixture = repo().join("tests").join("fixtures").join("banking77-subset");
    let (train, test) = (fixture.join("train.jsonl"), fixture.join("test.jsonl"));
    let sim = crate::sim::SimLlm::start(&[&train, &test], 0.9, &[]).await;
    let out = run(triage(&work.path().join("data"))
        .args(["eval", "--test"])
        .arg(&test)
        .arg("--train")
        .arg(&train)
        .args(["--methods", "knn,rag,rag-always", "--k", "8", "--calibrate", "--no-cache"])
        .args(sim.args("sim-90"))
        .arg("--report-dir")
        .arg(&report_dir))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_json(&report_dir.join("report.json"));
    let row = |m: &str| report["methods"].as_array().unwrap().iter().find(|r| r["method"] == m).unwrap().clone();
    let (knn, rag, always) = (row("knn"), row("rag"), row("rag-always"));
    assert_eq!(report["calibrations"].as_array().unwrap().len(), 1);
    for r in [&knn, &rag, &always] {
        assert_eq!(r["calibrated"], true);
    }
    assert!(knn["llm_skip_rate"].is_null());
    assert_eq!(always["llm_skip_rate"], 0.0);
    let skip = rag["llm_skip_rate"].as_f64().unwrap();
    let tickets = rag["tickets"].as_f64().unwrap();
    assert!(skip >= 0.4, "skip rate {skip}");
    let calls = rag["llm_calls"].as_f64().unwrap();
    assert!((calls - (1.0 - skip) * tickets).abs() < 0.5, "one call per ticket not skipped");
    let (a, b) = (rag["accuracy"].as_f64().unwrap(), always["accuracy"].as_f64().unwrap());
    assert!(a >= b - 0.005, "accuracy with shortcut {a} vs always calling {b}");
    assert!((rag["accuracy_delta_vs_always"].as_f64().unwrap() - (a - b)).abs() < 1e-4);
    assert!(always["accuracy_delta_vs_always"].is_null());
    assert!(rag["prompt_tokens_per_ticket"].as_f64().unwrap() < always["prompt_tokens_per_ticket"].as_f64().unwrap());
    // The simulated model is not a copy of the vote: its own answers are measurably worse.
    let own = always["llm_answer_accuracy"].as_f64().unwrap();
    assert!((0.8..0.97).contains(&own), "the model's own accuracy {own}");
    let preds: Vec<Value> = std::fs::read_to_string(report_dir.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let short: Vec<&Value> = preds.iter().filter(|p| p["method"] == "rag" && p["result_method"] == "knn-shortcut").collect();
    assert_eq!(short.len() as f64, (skip * tickets).round());
    assert!(short.iter().all(|p| p["llm_answer"].is_null()), "shortcut tickets never asked the model");
}
