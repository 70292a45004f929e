//! `triage serve` black-box: the real binary on 127.0.0.1 port 0, driven over HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::*;

struct Server {
    base: String,
    child: tokio::process::Child,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Start `triage serve` on a pre-indexed copy of the bundled corpus.
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = indexed_data_dir().await;
        let mut cmd = triage(dir.path());
        cmd.args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, base) = spawn_serve(&mut cmd).await;
        Server { base, child, http: reqwest::Client::new(), _dir: dir }
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn post(&self, p: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(self.url(p)).json(&body).send().await.expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, p: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(p))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, p: &str) -> (u16, Value) {
        let r = self.http.get(self.url(p)).send().await.expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> String {
        self.http.get(self.url("/metrics")).send().await.expect("metrics").text().await.expect("text")
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn classify_batch_and_every_input_error() {
    let s = Server::start(&["--provider", "none", "--max-body", "4096", "--max-batch", "5"], &[]).await;

    let (st, r) = s.post("/v1/classify", json!({"text": "I was charged twice on March 1st and I need a refund.", "id": "T-1"})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!((r["id"].as_str(), r["category"].as_str(), r["method"].as_str()), (Some("T-1"), Some("Billing"), Some("knn")));
    assert!(r["neighbors"].as_array().unwrap().len() == 8, "{r}");
    let (_, r3) = s.post("/v1/classify", json!({"text": "I was charged twice on March 1st and I need a refund.", "k": 3})).await;
    assert_eq!(r3["neighbors"].as_array().unwrap().len(), 3, "k per request: {r3}");
    assert!(r3["id"].as_str().unwrap().starts_with("t-"), "generated id: {r3}");

    let (st, b) = s
        .post(
            "/v1/classify/batch",
            json!({"tickets": [
                {"id": "a", "text": "The API returns a 500 error when I upload files larger than 1MB."},
                {"id": "b", "text": 42},
                {"id": "c", "text": "   "},
                "not an object",
                {"text": "Can you add webhook signatures so I can verify events?"}
            ]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let rs = b["results"].as_array().unwrap();
    let ids: Vec<&str> = rs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "4", "5"], "input order, every ticket answered");
    assert_eq!(rs[0]["category"], "Technical");
    assert_eq!(rs[4]["category"], "Feature Request");
    for r in &rs[1..4] {
        assert_eq!(r["needs_review"], true, "{r}");
        assert!(r["error"].is_string(), "{r}");
    }

    // Errors are JSON with a code and the right status.
    let (st, e) = s.post_raw("/v1/classify", "{\"text\": ").await;
    assert_eq!((st, code(&e)), (400, "invalid_json"), "{e}");
    let (st, e) = s.post_raw("/v1/classify", "").await;
    assert_eq!((st, code(&e)), (400, "invalid_json"), "{e}");
    let (st, e) = s.post_raw("/v1/classify", vec![0xffu8, 0xfe, b'{']).await;
    assert_eq!((st, code(&e)), (400, "invalid_json"), "{e}");
    let (st, e) = s.post("/v1/classify", json!({"text": " \n\t "})).await;
    assert_eq!((st, code(&e)), (422, "empty_text"), "{e}");
    let (st, e) = s.post("/v1/classify", json!({"body": "no text field"})).await;
    assert_eq!((st, code(&e)), (422, "invalid_request"), "{e}");
    let (st, e) = s.post("/v1/classify", json!({"text": "x".repeat(5000)})).await;
    assert_eq!((st, code(&e)), (413, "body_too_large"), "{e}");
    let (st, e) = s.post("/v1/classify", json!({"text": "refund please", "collection": "nope"})).await;
    assert_eq!((st, code(&e)), (404, "unknown_collection"), "{e}");
    let (st, e) = s.post("/v1/classify", json!({"text": "refund please", "k": 0})).await;
    assert_eq!((st, code(&e)), (422, "invalid_k"), "{e}");
    let (st, e) = s.post("/v1/classify", json!({"text": "refund please", "min_confidence": 2})).await;
    assert_eq!((st, code(&e)), (422, "invalid_min_confidence"), "{e}");
    let many: Vec<Value> = (0..6).map(|i| json!({"text": format!("ticket {i}")})).collect();
    let (st, e) = s.post("/v1/classify/batch", json!({ "tickets": many })).await;
    assert_eq!((st, code(&e)), (422, "batch_too_large"), "{e}");
    let (st, e) = s.post("/v1/classify/batch", json!({"tickets": []})).await;
    assert_eq!((st, code(&e)), (422, "empty_batch"), "{e}");
    let (st, e) = s.get("/v1/nowhere").await;
    assert_eq!((st, code(&e)), (404, "not_found"), "{e}");
    let (st, e) = s.get("/v1/classify").await;
    assert_eq!((st, code(&e)), (405, "method_not_allowed"), "{e}");

    // Health, readiness, the OpenAPI document, metrics.
    assert_eq!(s.get("/healthz").await, (200, json!({"status": "ok"})));
    let (st, r) = s.get("/readyz").await;
    assert_eq!((st, r["status"].as_str()), (200, Some("ready")), "{r}");
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert!(doc["paths"]["/v1/classify/batch"]["post"].is_object());
    let m = s.metrics().await;
    assert!(m.contains("triage_http_requests_total{endpoint=\"POST /v1/classify\",status=\"200\"} 2"), "{m}");
    assert!(m.contains("triage_http_requests_total{endpoint=\"POST /v1/classify\",status=\"422\"} 4"), "{m}");
    assert!(m.contains("triage_http_requests_total{endpoint=\"POST /v1/classify\",status=\"413\"} 1"), "{m}");
    assert!(m.contains("triage_classifications_total{method=\"knn\"} 4"), "{m}");
    assert!(m.contains("triage_classifications_total{method=\"none\"} 3"), "{m}");
    assert!(m.contains("triage_http_request_duration_seconds_count{endpoint=\"POST /v1/classify/batch\"}"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_guards_v1_routes_only() {
    let s = Server::start(&["--provider", "none"], &[("TRIAGE_API_KEY", "s3cret-key")]).await;
    let body = json!({"text": "I need a refund"});
    let r = s.http.post(s.url("/v1/classify")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let e: Value = r.json().await.unwrap();
    assert_eq!(code(&e), "unauthorized");
    let r = s.http.post(s.url("/v1/classify")).bearer_auth("wrong").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.get(s.url("/v1/collections")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.post(s.url("/v1/classify")).bearer_auth("s3cret-key").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(s.http.get(s.url(open)).send().await.unwrap().status(), 200, "{open} stays open");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_posted_example_is_used_by_the_next_classification() {
    let s = Server::start(&["--provider", "none"], &[]).await;
    let ticket = "Our parrot keeps ordering kale smoothies through the voice assistant integration";
    let (_, before) = s.post("/v1/classify", json!({"text": ticket})).await;
    assert!(before["neighbors"].as_array().unwrap().iter().all(|n| n["id"] != "parrot-1"));

    let (_, info) = s.get("/v1/collections/saas").await;
    let n_before = info["examples"].as_u64().unwrap();
    let fr_before = info["examples_per_label"]["Feature Request"].as_u64().unwrap();
    assert_eq!(info["embedding_model"], "all-minilm-l6-v2-int8");
    assert!(info["taxonomy"]["categories"].is_array(), "{info}");

    let (st, added) = s
        .post(
            "/v1/examples",
            json!({"examples": [
                {"id": "parrot-1", "text": ticket, "label": "feature request", "urgency": "Low"},
                {"text": "something", "label": "Astrology"},
                {"text": "", "label": "Billing"}
            ]}),
        )
        .await;
    assert_eq!(st, 200, "{added}");
    assert_eq!(added["indexed"], 1, "{added}");
    let rejected = added["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{added}");
    assert_eq!(rejected[0]["index"], 1);
    assert!(rejected[0]["reason"].as_str().unwrap().contains("unknown label"), "{added}");
    assert_eq!(added["examples_in_collection"].as_u64().unwrap(), n_before + 1);

    let (_, after) = s.post("/v1/classify", json!({"text": ticket})).await;
    let first = &after["neighbors"][0];
    assert_eq!(first["id"], "parrot-1", "{after}");
    assert!(first["score"].as_f64().unwrap() > 0.99, "{after}");
    assert_eq!(first["label"], "Feature Request", "label normalised to the taxonomy");

    let (_, info) = s.get("/v1/collections/saas").await;
    assert_eq!(info["examples_per_label"]["Feature Request"].as_u64().unwrap(), fr_before + 1);
    let (st, list) = s.get("/v1/collections").await;
    assert_eq!(st, 200);
    assert_eq!(list["collections"][0]["name"], "saas");
    assert_eq!(list["collections"][0]["examples"].as_u64().unwrap(), n_before + 1);

    let (st, e) = s.post("/v1/examples", json!({"examples": [{"text": "x", "label": "Astrology"}]})).await;
    assert_eq!((st, code(&e)), (422, "unknown_label"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("the nearest existing label is"), "{e}");
    let (st, e) = s.post("/v1/examples", json!({"examples": [{"text": "", "label": "Billing"}]})).await;
    assert_eq!((st, code(&e)), (422, "no_valid_examples"), "{e}");
    let (st, e) = s.post("/v1/examples", json!({"examples": [{"text": "x", "label": "Billing"}], "collection": "nope"})).await;
    assert_eq!((st, code(&e)), (404, "unknown_collection"), "{e}");

    let r = s.http.delete(s.url("/v1/examples/parrot-1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.http.delete(s.url("/v1/examples/parrot-1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (_, again) = s.post("/v1/classify", json!({"text": ticket})).await;
    assert!(again["neighbors"].as_array().unwrap().iter().all(|n| n["id"] != "parrot-1"), "{again}");
    let (st, e) = s.get("/v1/collections/nope").await;
    assert_eq!((st, code(&e)), (404, "unknown_collection"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_requests_end_in_200_or_429() {
    // The simulated LLM answers instantly (tickets it does not know get the nearest
    // example's label), so the 200 requests arrive together.
    let sim = crate::sim::SimLlm::start(&[&saas_corpus().join("examples.jsonl")], 1.0, &[]).await;
    let mut args: Vec<String> = sim.args("sim");
    args.extend(["--max-inflight".to_string(), "16".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start(&args, &[]).await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = s
                .http
                .post(s.url("/v1/classify"))
                .json(&json!({"id": i.to_string(), "text": format!("Ticket {i}: I was charged twice and need a refund")}))
                .send()
                .await
                .expect("every request gets an answer");
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.expect("JSON body");
            (status, retry_after, body)
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                assert_eq!(body["method"], "rag", "{body}");
                assert_eq!(body["model"], "sim", "{body}");
            }
            429 => {
                busy += 1;
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert_eq!(code(&body), "busy");
            }
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!(ok + busy, 200);
    assert!(ok >= 16, "at least the first wave is served: {ok} ok, {busy} busy");
    let m = s.metrics().await;
    assert!(m.contains(&format!("triage_rejected_busy_total {busy}")), "{m}");
    assert!(m.contains(&format!("triage_llm_calls_total {ok}")), "{m}");
}

/// A receiver that fails the first `fail` deliveries, then accepts.
struct Flaky {
    fail: usize,
    seen: Arc<AtomicUsize>,
}

impl Respond for Flaky {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(if n < self.fail { 500 } else { 200 })
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn review_webhook_is_retried_until_delivered_without_delaying_the_answer() {
    let receiver = MockServer::start().await;
    let seen = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/review"))
        .respond_with(Flaky { fail: 2, seen: seen.clone() })
        .mount(&receiver)
        .await;
    let hook = format!("{}/review", receiver.uri());
    let s = Server::start(
        &["--provider", "none", "--review-webhook", &hook, "--webhook-retry-base-ms", "1000", "--min-confidence", "1.0"],
        &[],
    )
    .await;
    let started = Instant::now();
    let (st, r) = s.post("/v1/classify", json!({"id": "R-9", "text": "hello? anyone there"})).await;
    assert_eq!(st, 200);
    assert_eq!(r["needs_review"], true, "{r}");
    // Delivery takes at least 1 s + 2 s of backoff; the answer does not wait for it.
    assert!(started.elapsed() < Duration::from_millis(2500), "the answer waited for delivery");
    wait_for("three delivery attempts", || seen.load(Ordering::SeqCst) >= 3).await;
    let requests = receiver.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert!(body["text"].as_str().unwrap().contains("Ticket R-9 needs review"), "{body}");
    assert_eq!(body["triage"]["id"], "R-9");
    // A confident result is not sent.
    let (_, r) = s.post("/v1/classify", json!({"text": "I need a refund", "min_confidence": 0.0})).await;
    assert_eq!(r["needs_review"], false, "{r}");
    let started = Instant::now();
    loop {
        let m = s.metrics().await;
        if m.contains("triage_webhook_deliveries_total{kind=\"review\",outcome=\"delivered\"} 1") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 3, "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn helpdesk_webhook_maps_fields_and_calls_back() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).and(path("/cb")).respond_with(ResponseTemplate::new(204)).mount(&receiver).await;
    let cb = format!("{}/cb", receiver.uri());
    let s = Server::start(&["--provider", "none", "--ticket-callback", &cb], &[]).await;
    let zendesk = json!({"ticket": {"id": 35436, "subject": "Charged twice",
        "description": "I was charged twice on March 1st and I need a refund.", "requester": {"email": "a@b.c"}}});
    let (st, r) = s.post("/v1/webhooks/ticket", zendesk).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!((r["id"].as_str(), r["category"].as_str()), (Some("35436"), Some("Billing")));
    let started = Instant::now();
    let got = loop {
        let got = receiver.received_requests().await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no callback arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["ticket_id"], "35436");
    assert_eq!(body["result"]["category"], "Billing");
    let (st, e) = s.post("/v1/webhooks/ticket", json!({"event": "ping"})).await;
    assert_eq!((st, code(&e)), (422, "no_ticket_text"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_outage_gives_a_flagged_result_not_a_500() {
    let llm = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&llm).await;
    let base = format!("{}/v1", llm.uri());
    let s = Server::start(&["--llm-base-url", &base, "--llm-max-retries", "1", "--llm-retry-base-ms", "10"], &[]).await;
    let (st, r) = s.post("/v1/classify", json!({"text": "I was charged twice on March 1st and I need a refund."})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["method"], "knn-fallback", "{r}");
    assert_eq!(r["needs_review"], true);
    assert_eq!(r["category"], "Billing", "the vote is still the suggestion");
    assert!(r["error"].as_str().unwrap().contains("503"), "{r}");
    let m = s.metrics().await;
    assert!(m.contains("triage_llm_errors_total 1"), "{m}");
}

/// A fake LLM that takes its time, so a request is in flight at shutdown.
struct Slow;

impl Respond for Slow {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_json(openai_reply(&answer("Billing", "High", 0.95)))
            .set_delay(Duration::from_millis(1500))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_requests_in_flight() {
    let llm = MockServer::start().await;
    Mock::given(method("POST")).respond_with(Slow).mount(&llm).await;
    let base = format!("{}/v1", llm.uri());
    let mut s = Server::start(&["--llm-base-url", &base, "--json-mode", "object"], &[]).await;
    let http = s.http.clone();
    let url = s.url("/v1/classify");
    let pending = tokio::spawn(async move {
        let r = http.post(url).json(&json!({"text": "I was charged twice and need a refund."})).send().await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = s.child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let (status, body) = pending.await.unwrap().expect("the request in flight is answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "rag", "{body}");
    let exit = tokio::time::timeout(Duration::from_secs(20), s.child.wait()).await.expect("exits").unwrap();
    assert!(exit.success(), "clean exit after draining: {exit:?}");
    assert!(s.http.get(s.url("/healthz")).send().await.is_err(), "no longer listening");
}
