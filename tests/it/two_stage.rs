//! Two-stage category -> subcategory prompts (`--two-stage`) on the bundled
//! hierarchical corpus (support-intents), against a fake OpenAI-compatible server
//! that answers each stage from what its request contains.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::*;

const ORDER_SUBS: [&str; 4] = ["Order Status", "Shipping", "Cancellation", "Returns and Refunds"];
const TICKET: &str = "My parcel with the two card readers was supposed to arrive on Monday and the tracking page has not moved for five days.";

fn intents_corpus() -> std::path::PathBuf {
    repo().join("examples_store").join("support-intents")
}

/// A data dir with `intents` indexed from the bundled support-intents corpus (indexed
/// once, copied fresh for each test).
async fn intents_data_dir() -> tempfile::TempDir {
    static GOLDEN: OnceLock<std::path::PathBuf> = OnceLock::new();
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    golden_data_dir(&GOLDEN, &LOCK, &intents_corpus(), "intents").await
}

fn schema(body: &Value) -> &Value {
    &body["response_format"]["json_schema"]["schema"]
}

fn system(body: &Value) -> &str {
    body["messages"][0]["content"].as_str().unwrap()
}

/// The subcategories a stage 2 schema offers (null left out).
fn offered(body: &Value) -> Vec<String> {
    schema(body)["properties"]["subcategory"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// Stage 1 (the schema has `category`): the first demonstration's category. Stage 2
/// (only `subcategory`): the last subcategory offered, or `bad_subcategory` when set,
/// so the result's subcategory can only have come from a stage 2 answer.
struct TwoStageModel {
    bad_subcategory: Option<&'static str>,
}

impl Respond for TwoStageModel {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let props = &schema(&body)["properties"];
        let content = if props.get("category").is_some() {
            assert!(props.get("subcategory").is_none(), "stage 1 asks for no subcategory: {props}");
            let label = first_demo_label(&user_prompt(&body)).unwrap();
            answer(&label, "Medium", 0.95)
        } else {
            let sub = match self.bad_subcategory {
                Some(s) => s.to_string(),
                None => offered(&body).last().unwrap().clone(),
            };
            json!({"reasoning": "scripted stage 2", "subcategory": sub}).to_string()
        };
        ResponseTemplate::new(200).set_body_json(openai_reply(&content))
    }
}

/// One-stage model: the first demonstration's category.
struct FollowNearest;

impl Respond for FollowNearest {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let label = first_demo_label(&user_prompt(&body)).unwrap();
        ResponseTemplate::new(200).set_body_json(openai_reply(&answer(&label, "Medium", 0.95)))
    }
}

fn classify_cmd(dir: &Path, server: &MockServer, collection: &str) -> tokio::process::Command {
    let mut cmd = triage(dir);
    cmd.args(["classify", "--collection", collection, "--format", "jsonl", "--llm-retry-base-ms", "10"])
        .env("TRIAGE_LLM_BASE_URL", format!("{}/v1", server.uri()))
        .env("TRIAGE_LLM_MODEL", "fake-model")
        .env("TRIAGE_NO_SHORTCUT", "1");
    cmd
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_stage_asks_the_category_then_only_its_subcategories() {
    let dir = intents_data_dir().await;
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(TwoStageModel { bad_subcategory: None }).mount(&server).await;
    let out = run(classify_cmd(dir.path(), &server, "intents").arg("--two-stage").arg(TICKET)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &results(&out)[0];

    let reqs = bodies(&server).await;
    assert_eq!(reqs.len(), 2, "one category request, one subcategory request: {reqs:?}");
    let (stage1, stage2) = (&reqs[0], &reqs[1]);
    // Stage 1: all twelve categories, no subcategory anywhere.
    assert_eq!(schema(stage1)["properties"]["category"]["enum"].as_array().unwrap().len(), 12);
    // (The taxonomy's rules, all kept in stage 1, name a few subcategories in passing.)
    for sub in ORDER_SUBS.iter().chain(&["Bug Report", "GDPR Request"]) {
        assert!(!system(stage1).contains(&format!("- {sub}:")), "stage 1 lists subcategory {sub}");
    }
    assert!(!system(stage1).contains("- subcategory "), "{}", system(stage1));
    assert!(!system(stage1).contains("\"subcategory\""), "stage 1 asks for no subcategory: {}", system(stage1));
    assert!(!user_prompt(stage1).contains("\"subcategory\""), "stage 1 demonstrations show categories only");
    // Stage 2: the chosen category's subcategories and nothing else, its examples only.
    assert_eq!(r["category"], "Order Related", "{r}");
    assert_eq!(offered(stage2), ORDER_SUBS);
    assert!(schema(stage2)["properties"].get("category").is_none());
    let sys2 = system(stage2);
    assert!(sys2.contains("already decided: Order Related"), "{sys2}");
    for sub in ORDER_SUBS {
        assert!(sys2.contains(&format!("- {sub}: ")), "{sub} missing: {sys2}");
    }
    for other in ["Bug Report", "Outage", "Billing Correction", "Technical Issue:", "- Low:"] {
        assert!(!sys2.contains(other), "stage 2 lists {other:?}: {sys2}");
    }
    let prompt2 = user_prompt(stage2);
    let demos: Vec<Value> = prompt2
        .lines()
        .filter_map(|l| l.strip_prefix("label: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!demos.is_empty() && demos.len() <= 8, "{prompt2}");
    for d in &demos {
        assert!(d.get("category").is_none(), "{d}");
        assert!(ORDER_SUBS.contains(&d["subcategory"].as_str().unwrap()), "an example of another category: {d}");
    }
    assert!(prompt2.ends_with(&format!("{TICKET}\n</ticket>")));

    // The result: stage 1's category and urgency, stage 2's subcategory, both calls counted.
    assert_eq!(r["method"], "rag");
    assert_eq!(r["subcategory"], "Returns and Refunds", "only stage 2 answers this: {r}");
    assert_eq!(r["urgency"], "Medium");
    assert_eq!(r["llm_calls"], 2);
    assert_eq!(r["usage"]["prompt_tokens"], 642, "both calls' tokens");
    assert_eq!(r["usage"]["completion_tokens"], 90);
    assert!(r["reasoning"].as_str().unwrap().contains("scripted stage 2"), "{r}");
    // The vote's guardrails still apply: the model followed the nearest example,
    // which the neighbours back, so nothing is flagged.
    assert_eq!(r["needs_review"], false, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stage_is_the_default_and_flat_taxonomies_never_get_a_second_call() {
    let dir = intents_data_dir().await;
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(FollowNearest).mount(&server).await;
    let out = run(classify_cmd(dir.path(), &server, "intents").arg(TICKET)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &results(&out)[0];
    assert_eq!(r["llm_calls"], 1);
    let reqs = bodies(&server).await;
    assert_eq!(reqs.len(), 1);
    assert!(system(&reqs[0]).contains("subcategory Shipping:"), "one stage lists every subcategory");
    assert!(schema(&reqs[0])["properties"].get("subcategory").is_some());

    // saas-support has no subcategories: --two-stage changes nothing.
    let saas = indexed_data_dir().await;
    let flat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_reply(&answer("Billing", "High", 0.95))))
        .mount(&flat)
        .await;
    let out = run(classify_cmd(saas.path(), &flat, "saas").args(["--two-stage", "I was charged twice, refund please"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(results(&out)[0]["llm_calls"], 1);
    assert_eq!(bodies(&flat).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_subcategory_keeps_the_category_and_goes_to_review() {
    let dir = intents_data_dir().await;
    let server = MockServer::start().await;
    // "Outage" is a subcategory of Technical Issue, not of Order Related.
    Mock::given(method("POST")).respond_with(TwoStageModel { bad_subcategory: Some("Outage") }).mount(&server).await;
    let out = run(classify_cmd(dir.path(), &server, "intents").arg("--two-stage").arg(TICKET)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &results(&out)[0];
    let reqs = bodies(&server).await;
    assert_eq!(reqs.len(), 3, "stage 1, stage 2 and one repair of stage 2");
    let repair = reqs[2]["messages"].as_array().unwrap();
    assert_eq!(repair.len(), 4, "system, stage 2 prompt, the bad answer, the repair request");
    assert!(repair[2]["content"].as_str().unwrap().contains("\"Outage\""), "the repair shows the bad answer");
    assert!(repair[3]["content"].as_str().unwrap().contains("not a subcategory of Order Related"));
    assert_eq!(offered(&reqs[2]), ORDER_SUBS, "the repair keeps the stage 2 prompt");
    assert_eq!(r["method"], "rag");
    assert_eq!(r["category"], "Order Related");
    assert!(ORDER_SUBS.contains(&r["subcategory"].as_str().unwrap()), "the nearest Order Related example's: {r}");
    assert_eq!(r["needs_review"], true);
    let reason = r["review_reason"].as_str().unwrap();
    assert!(reason.starts_with("subcategory: invalid_answer"), "{reason}");
    assert_eq!(r["llm_calls"], 3);
    assert_eq!(r["usage"]["prompt_tokens"], 3 * 321);
    assert!(r["error"].is_null(), "an invalid answer is a review, not an error: {r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_counts_both_calls_with_the_taxonomy_of_a_split() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let sim = crate::sim::SimLlm::start(&[&intents_corpus().join("examples.jsonl")], 1.0, &[]).await;
    let report = |two: bool| {
        let mut cmd = triage(&data);
        let dir = work.path().join(if two { "two" } else { "one" });
        cmd.args(["eval", "--test"])
            .arg(intents_corpus().join("examples.jsonl"))
            .args(["--split", "0.2", "--seed", "42", "--taxonomy"])
            .arg(intents_corpus().join("taxonomy.toml"))
            .args(["--methods", "rag-always", "--no-cache"])
            .args(sim.args("sim"))
            .arg("--report-dir")
            .arg(&dir);
        if two {
            cmd.arg("--two-stage");
        }
        (cmd, dir)
    };
    let mut figures = Vec::new();
    for two in [false, true] {
        let (mut cmd, dir) = report(two);
        let out = run(&mut cmd).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let rep: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(rep["config"]["two_stage"], two);
        let row = rep["methods"][0].clone();
        let tickets = row["tickets"].as_f64().unwrap();
        assert!(tickets > 30.0, "{row}");
        // Every support-intents category has subcategories: two calls per ticket.
        let expected = if two { 2.0 } else { 1.0 };
        assert_eq!(row["llm_calls"].as_f64().unwrap(), expected * tickets, "{}", row["llm_calls"]);
        assert_eq!(row["llm_calls_per_ticket"].as_f64().unwrap(), expected);
        assert!(row["subcategory_accuracy"].as_f64().is_some(), "the split kept the taxonomy's subcategories");
        let preds = std::fs::read_to_string(dir.join("predictions.jsonl")).unwrap();
        let first: Value = serde_json::from_str(preds.lines().next().unwrap()).unwrap();
        assert_eq!(first["llm_calls"].as_f64().unwrap(), expected);
        assert!(first["subcategory"].is_string(), "{first}");
        figures.push(row);
    }
    // The same split and collection both times: the same test tickets.
    assert_eq!(figures[0]["tickets"], figures[1]["tickets"]);
}
