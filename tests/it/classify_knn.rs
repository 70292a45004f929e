use serde_json::Value;

use crate::common::*;

const SAMPLES: [(&str, &str); 5] = [
    ("I was charged twice on March 1st and I need a refund.", "Billing"),
    ("The API returns a 500 error when I upload files larger than 1MB.", "Technical"),
    ("Can you add webhook signatures so I can verify events?", "Feature Request"),
    ("My invoice shows the wrong company name and tax ID.", "Billing"),
    ("Dashboard is completely blank after I log in. I cleared cache already.", "Technical"),
];

fn check_result_shape(r: &Value) {
    for key in [
        "id", "category", "subcategory", "urgency", "summary", "reasoning", "confidence", "needs_review",
        "review_reason", "method", "neighbors", "model", "usage", "latency_ms", "error",
    ] {
        assert!(r.get(key).is_some(), "result lacks {key}: {r}");
    }
    let c = r["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c), "{r}");
    assert!(r["summary"].as_str().unwrap().split_whitespace().count() <= 12, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn knn_mode_classifies_the_sample_tickets() {
    let dir = indexed_data_dir().await;
    let mut cmd = triage(dir.path());
    cmd.args(["classify", "--collection", "saas", "--format", "jsonl"]);
    for (t, _) in SAMPLES {
        cmd.arg(t);
    }
    let out = run(&mut cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no LLM configured"), "knn mode must say how to configure an LLM: {}", stderr(&out));
    let rs = results(&out);
    assert_eq!(rs.len(), SAMPLES.len());
    for (i, (r, (_, expected))) in rs.iter().zip(SAMPLES).enumerate() {
        check_result_shape(r);
        assert_eq!(r["id"], (i + 1).to_string());
        assert_eq!(r["method"], "knn");
        assert_eq!(r["category"], expected, "{r}");
        assert_eq!(r["neighbors"].as_array().unwrap().len(), 8);
        assert!(r["model"].is_null());
        let scores: Vec<f64> = r["neighbors"].as_array().unwrap().iter().map(|n| n["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "neighbours must be most similar first: {scores:?}");
        // needs_review must agree with the threshold.
        assert_eq!(r["needs_review"].as_bool().unwrap(), r["confidence"].as_f64().unwrap() < 0.85, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn table_output_lists_urgency_category_and_summary() {
    let dir = indexed_data_dir().await;
    let out = run(triage(dir.path()).args(["classify", "--collection", "saas", "--format", "table", SAMPLES[0].0])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("URGENCY") && text.contains("CATEGORY") && text.contains("SUMMARY"), "{text}");
    assert!(text.contains("Billing"), "{text}");
    assert!(text.contains("1 tickets"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tickets_get_flagged_results_and_never_sink_the_batch() {
    let dir = indexed_data_dir().await;
    let input = dir.path().join("tickets.jsonl");
    let huge = "my invoice is wrong ".repeat(1024 * 1024 / 20);
    let mut data = Vec::new();
    data.extend_from_slice(b"{\"id\":\"ok-1\",\"text\":\"I was charged twice, refund please\"}\n");
    data.extend_from_slice(b"{\"id\":\"empty\",\"text\":\"\"}\n");
    data.extend_from_slice(b"{\"id\":\"blank\",\"text\":\"   \\n\\t \"}\n");
    data.extend_from_slice(format!("{{\"id\":\"huge\",\"text\":\"{huge}\"}}\n").as_bytes());
    data.extend_from_slice(b"{\"id\":\"latin1\",\"text\":\"caf\xe9 app crashes\"}\n");
    data.extend_from_slice(b"not json at all\n");
    data.extend_from_slice(b"{\"id\":\"ok-2\",\"text\":\"Can you add webhook signatures so I can verify events?\"}\n");
    std::fs::write(&input, data).unwrap();
    let out = run(triage(dir.path()).args(["classify", "--collection", "saas", "--format", "jsonl", "--input"]).arg(&input)).await;
    assert_eq!(out.status.code(), Some(3), "some tickets failed: exit status 3; stderr: {}", stderr(&out));
    let rs = results(&out);
    let ids: Vec<&str> = rs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ok-1", "empty", "blank", "huge", "line-5", "line-6", "ok-2"], "N in, N out, in order");
    assert_eq!(rs[0]["category"], "Billing");
    assert!(rs[0]["error"].is_null());
    for r in &rs[1..3] {
        assert_eq!(r["needs_review"], true);
        assert!(r["error"].as_str().unwrap().contains("empty ticket"), "{r}");
    }
    // A 1 MB ticket is classified (its text is cut for the model), not rejected.
    assert!(rs[3]["error"].is_null(), "{}", rs[3]);
    assert_eq!(rs[3]["category"], "Billing");
    assert!(rs[4]["error"].as_str().unwrap().contains("UTF-8"), "{}", rs[4]);
    assert!(rs[5]["error"].as_str().unwrap().contains("malformed JSON"), "{}", rs[5]);
    assert_eq!(rs[6]["category"], "Feature Request");
    for r in &rs {
        if !r["error"].is_null() {
            assert_eq!(r["needs_review"], true, "{r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_lines_csv_and_stdin_inputs() {
    let dir = indexed_data_dir().await;
    let lines = dir.path().join("t.txt");
    std::fs::write(&lines, "I need a refund for a double charge\r\n\r\nThe dashboard is blank\n").unwrap();
    let out = run(triage(dir.path()).args(["classify", "--collection", "saas", "--format", "jsonl", "--input"]).arg(&lines)).await;
    let rs = results(&out);
    assert_eq!(rs.len(), 2, "blank lines are not tickets");
    assert_eq!(rs[1]["id"], "line-3");

    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "id,text\nA-1,\"Charged twice, need refund\"\n").unwrap();
    let out_file = dir.path().join("out.jsonl");
    let out = run(triage(dir.path())
        .args(["classify", "--collection", "saas", "--input"])
        .arg(&csv)
        .arg("--output")
        .arg(&out_file))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(&out_file).unwrap();
    let r: Value = serde_json::from_str(written.lines().next().unwrap()).unwrap();
    assert_eq!(r["id"], "A-1");
    assert_eq!(r["category"], "Billing");

    let mut cmd = triage(dir.path());
    cmd.args(["classify", "--collection", "saas", "--format", "json", "--input", "-"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"text\":\"Can you add webhook signatures so I can verify events?\"}\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let arr: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["category"], "Feature Request");
}

#[tokio::test(flavor = "multi_thread")]
async fn min_confidence_controls_review() {
    let dir = indexed_data_dir().await;
    let t = "I was charged twice on March 1st and I need a refund.";
    let out = run(triage(dir.path()).args(["classify", "--collection", "saas", "--format", "jsonl", "--min-confidence", "0", t])).await;
    assert_eq!(results(&out)[0]["needs_review"], false);
    let out = run(triage(dir.path()).args(["classify", "--collection", "saas", "--format", "jsonl", "--min-confidence", "1", t])).await;
    let r = &results(&out)[0];
    let below = r["confidence"].as_f64().unwrap() < 1.0;
    assert_eq!(r["needs_review"], below, "{r}");
    assert_eq!(r["review_reason"].as_str().is_some_and(|s| s.starts_with("low_confidence")), below, "{r}");
    let out = run(triage(dir.path()).args(["classify", "--collection", "saas", "--min-confidence", "2", t])).await;
    assert!(!out.status.success());
}
