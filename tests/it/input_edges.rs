//! Input and LLM edge cases: invisible-only tickets, non-string text fields, a closed
//! stdout, oversized LLM answers, a long Retry-After, and LLM HTTP requests counted.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const INVISIBLE: &str = "\u{200B}\u{0}\u{200D}\u{FEFF}\u{202E}";

#[tokio::test(flavor = "multi_thread")]
async fn invisible_and_non_string_tickets_get_an_error_result_and_no_llm_call() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_reply(&answer("Billing", "High", 0.87))))
        .mount(&llm)
        .await;
    let dir = indexed_data_dir().await;
    let input = dir.path().join("tickets.jsonl");
    let lines = [
        json!({"id": "inv", "text": INVISIBLE}),
        json!({"id": "bool", "text": true}),
        json!({"id": "num", "text": 42}),
        json!({"id": "ok", "text": "I was charged twice and need a refund"}),
    ];
    std::fs::write(&input, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let base = format!("{}/v1", llm.uri());
    let out = run(triage(dir.path())
        .args(["classify", "--collection", "saas", "--no-shortcut", "--llm-base-url", &base, "--json-mode", "object", "--input"])
        .arg(&input))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rs = results(&out);
    let by_id = |id: &str| rs.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no result for {id}")).clone();
    let inv = by_id("inv");
    assert_eq!((inv["method"].as_str(), inv["needs_review"].as_bool()), (Some("none"), Some(true)), "{inv}");
    assert!(inv["error"].as_str().unwrap().contains("invisible"), "{inv}");
    for id in ["bool", "num"] {
        let r = by_id(id);
        assert_eq!(r["method"], "none", "{r}");
        assert!(r["error"].as_str().unwrap().contains("not a string"), "{r}");
    }
    assert_eq!(by_id("ok")["method"], "rag");
    assert_eq!(llm.received_requests().await.unwrap().len(), 1, "only the visible ticket reached the LLM");

    // The API: the same result for /v1/classify and in a batch.
    let (mut child, url) = spawn_serve(triage(dir.path()).args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"])).await;
    let http = reqwest::Client::new();
    let r: Value = http.post(format!("{url}/v1/classify")).json(&json!({"text": INVISIBLE})).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["method"], "none", "{r}");
    assert!(r["error"].as_str().unwrap().contains("invisible"), "{r}");
    let b: Value = http
        .post(format!("{url}/v1/classify/batch"))
        .json(&json!({"tickets": [{"text": INVISIBLE}, {"text": "refund please"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["results"][0]["method"], "none", "{b}");
    assert_eq!(b["results"][1]["method"], "knn", "{b}");
    child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn index_rejects_non_string_and_invisible_text_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ex.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n{}\n",
            json!({"text": "refund please", "label": "Billing"}),
            json!({"text": true, "label": "Billing"}),
            json!({"text": INVISIBLE, "label": "Billing"})
        ),
    )
    .unwrap();
    let out = run(triage(dir.path()).args(["index"]).arg(&file).args(["--collection", "c", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["indexed"], 1, "{report}");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["line"], 2);
    assert!(rejected[0]["reason"].as_str().unwrap().contains("not a string"), "{report}");
    assert_eq!(rejected[1]["line"], 3);
    assert!(rejected[1]["reason"].as_str().unwrap().contains("invisible"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_commands_quietly() {
    let dir = indexed_data_dir().await;
    for args in [&["collections", "info", "saas"][..], &["collections", "list"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // every write to stdout fails with EPIPE
        // spawn, not output(): tokio's output() would replace stdout with its own pipe.
        let child = triage(dir.path()).args(args).stdout(writer).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }
}

/// `triage export ... | head -n 3`: the reader takes three lines and leaves.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_cut_short_by_its_reader_says_it_is_incomplete() {
    use std::io::BufRead;
    let dir = indexed_data_dir().await;
    let cwd = tempfile::tempdir().unwrap();
    for output in [&[][..], &["--output", "-"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        let child = triage(dir.path())
            .current_dir(cwd.path())
            .args(["export", "--collection", "saas"])
            .args(output)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let head = tokio::task::spawn_blocking(move || {
            let lines: Vec<String> = std::io::BufReader::new(reader).lines().take(3).map(|l| l.unwrap()).collect();
            lines
        })
        .await
        .unwrap();
        assert_eq!(head.len(), 3, "{output:?}: the export went to stdout");
        let out = child.wait_with_output().await.unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{output:?}: {err}");
        assert!(err.contains("is incomplete") && err.contains("broken pipe"), "{output:?}: {err}");
        assert!(err.contains(&format!(" of {} ", saas_examples())) || err.contains(&format!(" of {};", saas_examples())), "{err}");
        assert!(!err.contains("exported "), "{output:?}: no claim of success: {err}");
        assert!(!cwd.path().join("-").exists(), "`--output -` wrote a file named -");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_answer_fields_are_capped() {
    let llm = MockServer::start().await;
    let huge = json!({"reasoning": "because ".repeat(200_000), "category": "Billing", "urgency": "High",
        "summary": "Charged twice", "confidence": 0.95})
    .to_string();
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_json(openai_reply(&huge))).mount(&llm).await;
    let dir = indexed_data_dir().await;
    let base = format!("{}/v1", llm.uri());
    let out = run(triage(dir.path()).args([
        "classify", "--collection", "saas", "--no-shortcut", "--llm-base-url", &base, "--json-mode", "object", "I was charged twice",
    ]))
    .await;
    let r = &results(&out)[0];
    assert_eq!(r["method"], "rag", "{}", stderr(&out));
    assert!(r["reasoning"].as_str().unwrap().chars().count() <= 2000, "reasoning of {} chars", r["reasoning"].as_str().unwrap().len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_retry_after_falls_back_at_once() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "100").set_body_string("slow down"))
        .mount(&llm)
        .await;
    let dir = indexed_data_dir().await;
    let base = format!("{}/v1", llm.uri());
    let started = Instant::now();
    let out = run(triage(dir.path()).args([
        "classify", "--collection", "saas", "--no-shortcut", "--llm-base-url", &base, "--json-mode", "object", "I was charged twice",
    ]))
    .await;
    let r = &results(&out)[0];
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!((r["method"].as_str(), r["category"].as_str()), (Some("knn-fallback"), Some("Billing")), "{r}");
    assert!(r["error"].as_str().unwrap().contains("retry after 100 s"), "{r}");
    assert_eq!(llm.received_requests().await.unwrap().len(), 1, "no retry was waited for");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ticket_deadline_bounds_retries_and_hung_requests() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_reply(&answer("Billing", "High", 0.9))).set_delay(Duration::from_secs(10)))
        .mount(&llm)
        .await;
    let dir = indexed_data_dir().await;
    let base = format!("{}/v1", llm.uri());
    let out = run(triage(dir.path()).args([
        "classify", "--collection", "saas", "--no-shortcut", "--llm-base-url", &base, "--json-mode", "object", "--llm-deadline", "1.5",
        "--format", "jsonl", "I was charged twice",
    ]))
    .await;
    let r = &results(&out)[0];
    assert_eq!(r["method"], "knn-fallback", "{r}");
    let latency = r["latency_ms"].as_f64().unwrap();
    assert!(latency < 4000.0, "one ticket took {latency} ms with a 1.5 s deadline");
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_calls_metric_counts_http_requests() {
    let llm = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&llm).await;
    let dir = indexed_data_dir().await;
    let base = format!("{}/v1", llm.uri());
    let (mut child, url) = spawn_serve(triage(dir.path()).args([
        "serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--no-shortcut", "--llm-base-url", &base, "--llm-max-retries", "3",
        "--llm-retry-base-ms", "1",
    ]))
    .await;
    let http = reqwest::Client::new();
    let r: Value = http.post(format!("{url}/v1/classify")).json(&json!({"text": "I was charged twice"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["method"], "knn-fallback", "{r}");
    let sent = llm.received_requests().await.unwrap().len();
    assert_eq!(sent, 4, "one request and three retries");
    assert_eq!(r["llm_calls"], 4, "the result counts every request sent, retries included: {r}");
    let m = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains(&format!("triage_llm_calls_total {sent}")), "{m}");
    child.start_kill().unwrap();
}

/// Retry-After values that panicked (`1e20`, a 20-digit integer) or were ignored (an
/// HTTP date far ahead): each falls back at once, with the reason, after one request.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_too_long_or_as_a_date_falls_back_at_once() {
    let far = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
    for value in ["1e20", "99999999999999999999", far.as_str()] {
        let llm = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", value).set_body_string("slow down"))
            .mount(&llm)
            .await;
        let dir = indexed_data_dir().await;
        let base = format!("{}/v1", llm.uri());
        let out = run(triage(dir.path()).args([
            "classify", "--collection", "saas", "--llm-base-url", &base, "--json-mode", "object", "--format", "jsonl",
            "I was charged twice",
        ]))
        .await;
        // 3: the ticket's result carries the LLM error (before: 101, a panic, no result).
        assert_eq!(out.status.code(), Some(3), "Retry-After {value}: {}", stderr(&out));
        let r = &results(&out)[0];
        assert_eq!(r["method"], "knn-fallback", "Retry-After {value}: {r}");
        assert!(r["error"].as_str().unwrap().contains("asked to retry after"), "Retry-After {value}: {r}");
        assert_eq!(llm.received_requests().await.unwrap().len(), 1, "Retry-After {value}: not waited for");
        assert_eq!(r["llm_calls"], 1);
    }
}
