//! `triage eval` end to end: the real binary and embedding model, a scripted fake
//! OpenAI-compatible server whose answers are known, and figures recomputed here
//! independently of the report code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::*;

/// (text, gold label, is_oos, gold urgency, scripted answer: category, urgency, confidence)
const TICKETS: [(&str, &str, bool, Option<&str>, &str, &str, f64); 6] = [
    ("I was charged twice on March 1st and I need a refund.", "Billing", false, Some("High"), "Billing", "High", 0.95),
    ("The API returns a 500 error when I upload files larger than 1MB.", "Technical", false, Some("High"), "Technical", "High", 0.9),
    ("Can you add webhook signatures so I can verify events?", "Feature Request", false, Some("Low"), "Billing", "Low", 0.9),
    ("My invoice shows the wrong company name and tax ID.", "Billing", false, Some("Low"), "Billing", "Medium", 0.9),
    ("Dashboard is completely blank after I log in. I cleared cache already.", "Technical", false, Some("Medium"), "Feature Request", "Medium", 0.8),
    // Out of scope: the scripted model guesses with low confidence, so it is flagged.
    ("What is the capital of Mongolia?", "oos", true, None, "Technical", "Low", 0.1),
];

fn write_test_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("test.jsonl");
    let lines: Vec<String> = TICKETS
        .iter()
        .enumerate()
        .map(|(i, (text, label, oos, urg, ..))| {
            let mut v = json!({"id": format!("t{i}"), "text": text, "label": label, "is_oos": oos});
            if let Some(u) = urg {
                v["urgency"] = json!(u);
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The ticket text of the (last) fenced ticket in a user prompt.
fn ticket_of(prompt: &str) -> String {
    let at = prompt.rfind("<ticket>\n").unwrap() + "<ticket>\n".len();
    prompt[at..].trim_end_matches("\n</ticket>").to_string()
}

struct Scripted;

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let text = ticket_of(&user_prompt(&body));
        let t = TICKETS.iter().find(|t| t.0 == text).unwrap_or_else(|| panic!("unexpected ticket {text:?}"));
        ResponseTemplate::new(200).set_body_json(openai_reply(&answer(t.4, t.5, t.6)))
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn row<'a>(report: &'a Value, method: &str, k: u64) -> &'a Value {
    report["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == method && m["k"] == k)
        .unwrap_or_else(|| panic!("no {method} k={k} row in {report}"))
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("not a number: {a}"));
    assert!((a - b).abs() < 1e-3, "{a} != {b}");
}

/// Macro-F1 over in-scope gold labels and predicted labels, written out again here.
fn macro_f1(pairs: &[(String, bool, Option<String>)]) -> f64 {
    let mut classes: BTreeSet<String> = pairs.iter().filter(|p| !p.1).map(|p| p.0.clone()).collect();
    classes.extend(pairs.iter().filter_map(|p| p.2.clone()));
    let f1s: Vec<f64> = classes
        .iter()
        .map(|c| {
            let tp = pairs.iter().filter(|p| !p.1 && &p.0 == c && p.2.as_ref() == Some(c)).count() as f64;
            let pred = pairs.iter().filter(|p| p.2.as_ref() == Some(c)).count() as f64;
            let gold = pairs.iter().filter(|p| !p.1 && &p.0 == c).count() as f64;
            let (p, r) = (if pred > 0.0 { tp / pred } else { 0.0 }, if gold > 0.0 { tp / gold } else { 0.0 });
            if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            }
        })
        .collect();
    f1s.iter().sum::<f64>() / f1s.len() as f64
}

/// ECE with 10 equal-width bins, from (confidence, label correct) pairs.
fn ece(points: &[(f64, bool)]) -> f64 {
    let mut bins: BTreeMap<usize, Vec<(f64, bool)>> = BTreeMap::new();
    for p in points {
        bins.entry(((p.0 * 10.0).floor() as usize).min(9)).or_default().push(*p);
    }
    bins.values()
        .map(|b| {
            let n = b.len() as f64;
            let conf = b.iter().map(|p| p.0).sum::<f64>() / n;
            let acc = b.iter().filter(|p| p.1).count() as f64 / n;
            n / points.len() as f64 * (acc - conf).abs()
        })
        .sum()
}

fn eval_cmd(data: &Path, test: &Path, report: &Path, server: &MockServer) -> tokio::process::Command {
    let mut cmd = triage(data);
    cmd.args(["eval", "--test"])
        .arg(test)
        .arg("--train")
        .arg(saas_corpus())
        .args(["--k", "3", "--concurrency", "2", "--price-per-request", "0.001", "--price-per-input-token", "2"])
        .args(["--price-per-output-token", "10", "--report-dir"])
        .arg(report)
        .env("TRIAGE_LLM_BASE_URL", format!("{}/v1", server.uri()))
        .env("TRIAGE_LLM_MODEL", "fake-model");
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_reports_figures_that_match_the_scripted_answers_and_reruns_from_cache() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let test = write_test_file(work.path());
    let report_dir = work.path().join("report");
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(Scripted).mount(&server).await;

    let out = run(&mut eval_cmd(&data, &test, &report_dir, &server)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["report.json", "report.md", "report.html", "predictions.jsonl"] {
        assert!(report_dir.join(f).is_file(), "{f} missing");
    }
    let report = read_json(&report_dir.join("report.json"));
    assert_eq!(report["dataset"]["rows"], 6);
    assert_eq!(report["dataset"]["out_of_scope_rows"], 1);
    assert_eq!(report["dataset"]["train_examples"], saas_examples());
    assert!(report["collection"].as_str().unwrap().starts_with("eval-"));
    assert!(report["prompt_template_hash"].as_str().unwrap().len() >= 8);

    // One request per ticket for each of the three LLM methods, each method's prompt as it should be.
    let bodies: Vec<Value> =
        server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(bodies.len(), 3 * TICKETS.len());
    let prompts: Vec<String> = bodies.iter().map(user_prompt).collect();
    let zero = prompts.iter().filter(|p| !p.contains("<example")).count();
    let fixed = prompts.iter().filter(|p| p.starts_with("Labeled examples:\n") && !p.contains("similarity=")).count();
    let rag = prompts.iter().filter(|p| p.starts_with("Labeled examples, most similar first")).count();
    assert_eq!((zero, fixed, rag), (6, 6, 6), "one prompt shape per method");
    // Fixed few-shot: the same three examples for every ticket.
    let demo_sets: BTreeSet<String> = prompts
        .iter()
        .filter(|p| p.starts_with("Labeled examples:\n"))
        .map(|p| p[..p.find("Classify this ticket").unwrap()].to_string())
        .collect();
    assert_eq!(demo_sets.len(), 1);
    assert_eq!(demo_sets.iter().next().unwrap().matches("<example rank=").count(), 3);

    // Expected figures from the script, for every LLM method.
    let pairs: Vec<(String, bool, Option<String>)> =
        TICKETS.iter().map(|t| (t.1.to_string(), t.2, Some(t.4.to_string()))).collect();
    let in_scope_right = TICKETS.iter().filter(|t| !t.2 && t.1 == t.4).count() as f64;
    let urgency_right = TICKETS.iter().filter(|t| t.3 == Some(t.5)).count() as f64;
    let predictions = read_jsonl(&report_dir.join("predictions.jsonl"));
    for m in ["zero-shot", "fixed-few-shot", "rag"] {
        let r = row(&report, m, 3);
        assert_eq!(r["model"], "fake-model");
        // The oos ticket (confidence 0.1) is flagged, so it counts as correct.
        close(&r["accuracy"], (in_scope_right + 1.0) / 6.0);
        close(&r["in_scope_accuracy"], in_scope_right / 5.0);
        close(&r["oos_recall"], 1.0);
        close(&r["macro_f1"], macro_f1(&pairs));
        close(&r["urgency_accuracy"], urgency_right / 5.0);
        assert_eq!(r["llm_calls"], 6);
        assert_eq!(r["llm_calls_sent"], 6);
        close(&r["prompt_tokens_per_ticket"], 321.0);
        close(&r["completion_tokens_per_ticket"], 45.0);
        close(&r["cost"], 6.0 * 0.001 + 6.0 * 321.0 * 2.0 / 1e6 + 6.0 * 45.0 * 10.0 / 1e6);
        assert!(r["consistency"].is_null(), "one run: no consistency figure");
        assert_eq!(r["confusion"]["Feature Request"]["Billing"], 1);
        assert_eq!(r["per_class"]["Feature Request"]["f1"], 0.0);
        // Calibration and selective accuracy recomputed from the per-ticket predictions.
        let preds: Vec<&Value> = predictions.iter().filter(|p| p["method"] == m).collect();
        assert_eq!(preds.len(), 6);
        let points: Vec<(f64, bool)> = preds
            .iter()
            .map(|p| (p["confidence"].as_f64().unwrap(), !p["is_oos"].as_bool().unwrap() && p["predicted"] == p["gold"]))
            .collect();
        close(&r["ece"], ece(&points));
        let brier = points.iter().map(|(c, ok)| if *ok { (1.0 - c).powi(2) } else { c * c }).sum::<f64>() / 6.0;
        close(&r["brier"], brier);
        let kept: Vec<&(f64, bool)> = points.iter().zip(&preds).filter(|(_, p)| p["needs_review"] == false).map(|(x, _)| x).collect();
        close(&r["needs_review_rate"], 1.0 - kept.len() as f64 / 6.0);
        if !kept.is_empty() {
            close(&r["selective_accuracy"], kept.iter().filter(|x| x.1).count() as f64 / kept.len() as f64);
        }
        assert_eq!(r["coverage"].as_array().unwrap().len(), 21);
        close(&r["coverage"][0]["coverage"], 1.0);
    }
    // knn: accuracy recomputed from its predictions; gold_in_top_k from the neighbours.
    let knn = row(&report, "knn", 3);
    assert_eq!(knn["llm_calls"], 0);
    assert!(knn["model"].is_null());
    let kp: Vec<&Value> = predictions.iter().filter(|p| p["method"] == "knn").collect();
    let right = kp
        .iter()
        .filter(|p| if p["is_oos"] == true { p["needs_review"] == true } else { p["predicted"] == p["gold"] })
        .count();
    close(&knn["accuracy"], right as f64 / 6.0);
    let top = kp
        .iter()
        .filter(|p| p["is_oos"] == false)
        .filter(|p| p["neighbors"].as_array().unwrap().iter().any(|n| n[0] == p["gold"]))
        .count();
    close(&knn["gold_in_top_k"], top as f64 / 5.0);
    assert!(kp.iter().all(|p| p["neighbors"].as_array().unwrap().len() == 3));

    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Reliability diagram") && html.contains("Coverage curve"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "no external assets");
    assert!(!html.contains("<script src") && !html.contains("<link"), "self-contained");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| fixed-few-shot | fake-model | 3 |"), "{md}");

    // Second run: every answer comes from the cache, same figures, no request.
    let before = server.received_requests().await.unwrap().len();
    let report2_dir = work.path().join("report2");
    let out = run(&mut eval_cmd(&data, &test, &report2_dir, &server)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.received_requests().await.unwrap().len(), before, "a rerun makes no LLM calls");
    let report2 = read_json(&report2_dir.join("report.json"));
    for m in ["zero-shot", "fixed-few-shot", "rag", "knn"] {
        let (a, b) = (row(&report, m, 3), row(&report2, m, 3));
        assert_eq!(a["accuracy"], b["accuracy"], "{m}");
        assert_eq!(a["ece"], b["ece"], "{m}");
        assert_eq!(a["llm_calls"], b["llm_calls"], "{m}: cost figures still count cached calls");
        assert_eq!(b["llm_calls_sent"], 0, "{m}");
    }
    assert_eq!(row(&report2, "rag", 3)["cache_hits"], 6);
    assert_eq!(report["collection"], report2["collection"], "the train collection is reused");

    // --no-cache asks again.
    let out = run(eval_cmd(&data, &test, &work.path().join("report3"), &server).args(["--no-cache", "--methods", "rag"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.received_requests().await.unwrap().len(), before + 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_without_an_llm_runs_knn_and_says_why_the_rest_is_skipped() {
    let work = tempfile::tempdir().unwrap();
    let data = indexed_data_dir().await;
    let test = write_test_file(work.path());
    let report_dir = work.path().join("r");
    let out = run(triage(data.path())
        .args(["eval", "--test"])
        .arg(&test)
        .args(["--collection", "saas", "--k", "3,8", "--repeat", "2", "--report-dir"])
        .arg(&report_dir))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("LLM methods skipped"), "{}", stderr(&out));
    // The notice once on stderr, and one summary line for the three methods it skipped.
    assert_eq!(stderr(&out).matches("no LLM configured").count(), 1, "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("no LLM configured").count(), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("skipped zero-shot, fixed-few-shot, rag: "), "{}", stdout(&out));
    let report = read_json(&report_dir.join("report.json"));
    let methods = report["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2, "knn at k=3 and k=8 only");
    assert!(methods.iter().all(|m| m["method"] == "knn"));
    let skipped: Vec<&str> = report["skipped"].as_array().unwrap().iter().map(|s| s["method"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["zero-shot", "fixed-few-shot", "rag"]);
    assert!(report["skipped"][0]["reason"].as_str().unwrap().contains("no LLM configured"));
    for k in [3, 8] {
        let r = row(&report, "knn", k);
        assert_eq!(r["runs"], 2);
        close(&r["consistency"], 1.0); // the vote is deterministic
        assert_eq!(r["llm_calls"], 0);
        // Two runs of six tickets pooled: twelve predictions.
        let preds: Vec<Value> = read_jsonl(&report_dir.join("predictions.jsonl"))
            .into_iter()
            .filter(|p| p["k"] == k)
            .collect();
        assert_eq!(preds.len(), 12);
        let right = preds
            .iter()
            .filter(|p| if p["is_oos"] == true { p["needs_review"] == true } else { p["predicted"] == p["gold"] })
            .count();
        close(&r["accuracy"], right as f64 / 12.0);
    }
    assert!(stdout(&out).contains("knn"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn split_keeps_groups_together_and_is_deterministic() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // The bundled corpus with a group field: every pair of rows shares a group.
    let corpus = std::fs::read_to_string(saas_corpus().join("examples.jsonl")).unwrap();
    let rows: Vec<String> = corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["group"] = json!(format!("g{}", i / 2));
            v.to_string()
        })
        .collect();
    let file = work.path().join("all.jsonl");
    std::fs::write(&file, rows.join("\n") + "\n").unwrap();
    let mut ids = Vec::new();
    for dir in ["a", "b"] {
        let out = run(triage(&data)
            .args(["eval", "--test"])
            .arg(&file)
            .args(["--split", "0.2", "--seed", "7", "--group-field", "group", "--methods", "knn", "--report-dir"])
            .arg(work.path().join(dir)))
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let preds = read_jsonl(&work.path().join(dir).join("predictions.jsonl"));
        ids.push(preds.iter().map(|p| p["id"].as_str().unwrap().to_string()).collect::<Vec<_>>());
        let report = read_json(&work.path().join(dir).join("report.json"));
        let n = preds.len();
        assert_eq!(report["dataset"]["rows"], n);
        assert_eq!(report["dataset"]["train_examples"].as_u64().unwrap() as usize + n, rows.len());
    }
    assert_eq!(ids[0], ids[1], "same seed, same split");
    let held: BTreeSet<String> = ids[0].iter().cloned().collect();
    assert!(held.len() > 10 && held.len() < 80, "about a fifth held out: {}", held.len());
    // Groups are never split: both rows of a group are on the same side.
    let id_of = |l: &String| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string();
    for pair in rows.chunks(2).filter(|c| c.len() == 2) {
        assert_eq!(held.contains(&id_of(&pair[0])), held.contains(&id_of(&pair[1])), "{pair:?}");
    }
}
