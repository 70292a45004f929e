//! The arbiter between the LLM and the neighbours, fitted on the LLM's answers to
//! held-out examples (`calibrate --llm`, `eval --calibrate-llm`), with the simulated
//! LLM (scripts/sim_llm.py): right with probability p per ticket, otherwise a plausible
//! wrong label taken from the retrieved examples.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use crate::sim::SimLlm;

fn fixture() -> PathBuf {
    repo().join("tests").join("fixtures").join("banking77-subset")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn row(report: &Value, method: &str) -> Value {
    report["methods"].as_array().unwrap().iter().find(|r| r["method"] == method).unwrap().clone()
}

async fn eval(data: &Path, report_dir: &Path, sim: &SimLlm, extra: &[&str]) -> Value {
    let out = run(triage(data)
        .args(["eval", "--test"])
        .arg(fixture().join("test.jsonl"))
        .arg("--train")
        .arg(fixture().join("train.jsonl"))
        .args(["--methods", "knn,rag-always", "--calibrate", "--no-cache"])
        .args(sim.args("weak"))
        .args(extra)
        .arg("--report-dir")
        .arg(report_dir))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    read_json(&report_dir.join("report.json"))
}

/// A weak model (right 60 % of the time): without an arbiter its valid answers win and
/// the result falls below the neighbours alone; with the arbiter fitted on its answers
/// to held-out train examples, the combination is at least as good as the neighbours.
#[tokio::test(flavor = "multi_thread")]
async fn a_weak_model_never_drags_results_below_the_neighbours_once_an_arbiter_is_fitted() {
    let work = tempfile::tempdir().unwrap();
    let (train, test) = (fixture().join("train.jsonl"), fixture().join("test.jsonl"));
    let sim = SimLlm::start(&[&train, &test], 0.6, &[]).await;
    let data = work.path().join("data");
    let before = eval(&data, &work.path().join("before"), &sim, &[]).await;
    let (knn, always) = (row(&before, "knn"), row(&before, "rag-always"));
    let vote = knn["accuracy"].as_f64().unwrap();
    assert_eq!(always["arbiter"], false);
    assert!(always["accuracy"].as_f64().unwrap() < vote - 0.05, "fixed rules follow the weak model: {always}");

    let after = eval(&data, &work.path().join("after"), &sim, &["--calibrate-llm", "400"]).await;
    let always = row(&after, "rag-always");
    assert_eq!(always["arbiter"], true);
    let combined = always["accuracy"].as_f64().unwrap();
    // At least the neighbours' accuracy, within one point (3 of 300 tickets: the
    // arbiter is fitted on 400 answers and scored on another 300), and far above the
    // unfitted rules that follow the weak model.
    let fixed = row(&before, "rag-always")["accuracy"].as_f64().unwrap();
    assert!(combined >= vote - 0.01, "with the arbiter {combined} vs the neighbours {vote}");
    assert!(combined >= fixed + 0.15, "with the arbiter {combined} vs the fixed rules {fixed}");
    let own = always["llm_answer_accuracy"].as_f64().unwrap();
    assert!((0.5..0.72).contains(&own), "the model's own answers: {own}");
    assert!(after["calibrations"][0]["arbiters"][0]["stats"]["answers"].as_u64().unwrap() >= 100);
    // The report leads with the story: model + retrieval, neighbours, combined.
    let story = &after["story"][0];
    assert_eq!(story["combined_method"], "rag-always");
    assert_eq!(story["model_with_retrieval"], always["llm_answer_accuracy"]);
    let md = std::fs::read_to_string(work.path().join("after").join("report.md")).unwrap();
    assert!(md.find("## The story").unwrap() < md.find("## All figures").unwrap(), "{md}");
}

/// Eval keeps the model's own answers apart from the neighbours' fallback: with 40 %
/// of tickets answered invalidly even after a repair, the final accuracy stays high
/// (the fallback is the vote) while the model's own accuracy and valid rate show it.
#[tokio::test(flavor = "multi_thread")]
async fn eval_separates_the_models_own_answers_from_the_fallback() {
    let work = tempfile::tempdir().unwrap();
    let (train, test) = (fixture().join("train.jsonl"), fixture().join("test.jsonl"));
    let sim = SimLlm::start(&[&train, &test], 0.9, &["--invalid-rate", "0.4", "--invalid-sticky"]).await;
    let report = eval(&work.path().join("data"), &work.path().join("r"), &sim, &["--methods", "rag-always"]).await;
    let always = row(&report, "rag-always");
    let valid = always["llm_valid_rate"].as_f64().unwrap();
    assert!((0.5..0.7).contains(&valid), "valid answers {valid}");
    let own = always["llm_answer_accuracy"].as_f64().unwrap();
    let accuracy = always["accuracy"].as_f64().unwrap();
    assert!(own < 0.65 && accuracy > own + 0.2, "own {own}, final {accuracy}");
    assert!(always["llm_fallbacks"].as_u64().unwrap() >= 90, "{always}");
    assert!((always["vote_accuracy"].as_f64().unwrap() - row(&report, "knn")["accuracy"].as_f64().unwrap()).abs() < 1e-9);
    // The simulator's own count of right answers agrees with the report's figure.
    let stats = sim.stats().await;
    let right = stats["right"].as_f64().unwrap();
    assert!((right / 300.0 - own).abs() < 0.02, "simulator {right}/300 vs report {own}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_arbiter_fit_is_refused_on_too_few_answers_and_stops_on_an_outage() {
    let work = tempfile::tempdir().unwrap();
    let out = run(triage(work.path()).args(["index"]).arg(fixture().join("train.jsonl")).args(["--collection", "b"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let sim = SimLlm::start(&[&fixture().join("train.jsonl")], 0.9, &[]).await;
    let out = run(triage(work.path())
        .args(["calibrate", "--collection", "b", "--llm", "--llm-sample", "60", "--cache-dir"])
        .arg(work.path().join("cache"))
        .args(sim.args("m")))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("60 held-out LLM answers; an arbiter needs at least 100"), "{}", stderr(&out));

    // An outage during the fit stops it, says what was spent, and keeps the old fit.
    let out = run(triage(work.path())
        .args(["calibrate", "--collection", "b", "--llm", "--llm-sample", "150", "--cache-dir"])
        .arg(work.path().join("cache"))
        .args(sim.args("m")))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("arbiter for model m at k=8: 150 held-out answers"), "{}", stdout(&out));
    let down = SimLlm::start(&[&fixture().join("train.jsonl")], 0.9, &["--fault-5xx", "1.0"]).await;
    let out = run(triage(work.path())
        .args(["calibrate", "--collection", "b", "--llm", "--llm-sample", "150", "--llm-max-retries", "0", "--cache-dir"])
        .arg(work.path().join("cache-2"))
        .args(down.args("m")))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the LLM failed during the fit") && err.contains("previous fit is kept"), "{err}");
    let out = run(triage(work.path()).args(["calibrate", "--collection", "b", "--json"])).await;
    let f: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(f["arbiters"][0]["model"], "m", "the first arbiter is still there: {}", f["arbiters"]);
    assert_eq!(f["arbiters"][0]["stats"]["answers"], 150);
}
