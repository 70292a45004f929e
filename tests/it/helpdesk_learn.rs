//! Agents' corrections become examples: through `triage pull` (a changed category
//! field or `triage_` tag) and through the push path (`POST /v1/webhooks/ticket`
//! carrying another category), each used by the next classification of a paraphrase.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::helpdesk::{pull, report, run_pull};
use crate::helpdesk_fake::{Fake, Flavor, Kind};

const INVOICE: &str = "My invoice shows the wrong company name and tax ID.";
const INVOICE_PARAPHRASE: &str = "The invoice shows the wrong company name and the wrong tax ID.";
const SIGNATURES: &str = "Can you add webhook signatures so I can verify events?";

/// Knn result of one text at k = 1 (the nearest example decides).
async fn nearest(dir: &std::path::Path, text: &str) -> Value {
    let out = run(triage(dir).args(["classify", "--collection", "saas", "--provider", "none", "--k", "1", "--format", "jsonl", text])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    results(&out).remove(0)
}

/// The stored payload of example `id`, from a `triage export`.
async fn stored_example(dir: &std::path::Path, id: &str) -> (Option<Value>, usize) {
    let file = dir.join("export.jsonl");
    let out = run(triage(dir).args(["export", "--collection", "saas", "--output"]).arg(&file)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    let found = lines.iter().find(|l| l["payload"]["id"] == id).map(|l| l["payload"].clone());
    (found, lines.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agents_category_change_becomes_an_example_the_next_ticket_uses() {
    let dir = indexed_data_dir().await;
    let fake = Fake::start(Flavor::Zendesk).await;
    let texts = [INVOICE, SIGNATURES, "I was charged twice on March 1st and I need a refund."];
    fake.add(&texts.iter().map(|t| ("Question".to_string(), t.to_string())).collect::<Vec<_>>(), false);
    let args = ["--once", "--category-field", "360001", "--k", "1"];
    let out = run_pull(&mut pull(dir.path(), &fake, &args)).await;
    assert_eq!(report(&out)["written"], 3, "{}", stderr(&out));
    assert!(fake.ticket(1).tags.contains(&"triage_billing".to_string()), "{:?}", fake.ticket(1).tags);
    assert!(fake.ticket(2).tags.contains(&"triage_feature_request".to_string()), "{:?}", fake.ticket(2).tags);
    let paraphrase = format!("Question\n\n{INVOICE_PARAPHRASE}");
    assert_eq!(nearest(dir.path(), &paraphrase).await["category"], "Billing", "before the correction");

    // Agents move ticket 1 by its category field and ticket 2 by its tags.
    fake.agent_edit(1, |t| {
        t.fields.insert("360001".into(), json!("technical"));
    });
    fake.agent_edit(2, |t| {
        t.tags.retain(|g| g != "triage_feature_request");
        t.tags.push("triage_technical".into());
    });
    let writes = fake.count(Kind::Write);
    let out = run_pull(&mut pull(dir.path(), &fake, &args)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r["corrections"], json!({"Technical": 2}), "{r}");
    assert_eq!(fake.count(Kind::Write), writes, "a corrected ticket is not written over");
    let events: Vec<Value> = results(&out).into_iter().filter(|e| e["event"] == "correction").collect();
    assert_eq!(events.len(), 2, "{}", stdout(&out));
    assert_eq!(events[0]["example_id"], "correction-zendesk-1");
    assert_eq!((events[0]["via"].as_str(), events[0]["previous"].as_str()), (Some("field"), Some("Billing")));
    assert_eq!(events[1]["via"], "tag");

    let (stored, n) = stored_example(dir.path(), "correction-zendesk-1").await;
    let stored = stored.expect("the correction is an example");
    assert_eq!(n, saas_examples() + 2);
    assert_eq!((stored["label"].as_str(), stored["source"].as_str()), (Some("Technical"), Some("agent_correction")));
    assert_eq!(stored["ticket_id"], "1");
    assert!(stored["corrected_at"].as_str().unwrap().ends_with('Z'), "{stored}");
    assert_eq!(stored["text"], format!("Question\n\n{INVOICE}"));

    // The next ticket, a paraphrase, is classified with it.
    let r = nearest(dir.path(), &paraphrase).await;
    assert_eq!((r["category"].as_str(), r["neighbors"][0]["id"].as_str()), (Some("Technical"), Some("correction-zendesk-1")), "{r}");
    fake.add(&[("Question".into(), INVOICE_PARAPHRASE.into())], false);
    let out = run_pull(&mut pull(dir.path(), &fake, &args)).await;
    let r = report(&out);
    assert_eq!((r["written"].as_u64(), r["corrections"].clone()), (Some(1), json!({})), "{r}");
    assert!(fake.ticket(4).tags.contains(&"triage_technical".to_string()), "{:?}", fake.ticket(4).tags);
    assert_eq!(fake.ticket(4).fields["360001"], "technical");

    // A long-running pull exports corrections on /metrics; a second change of the same
    // ticket replaces its example.
    let mut cmd = pull(dir.path(), &fake, &["--every", "1s", "--metrics-addr", "127.0.0.1:0", "--category-field", "360001"]);
    let (mut child, metrics_url) = spawn_with_metrics(&mut cmd).await;
    fake.agent_edit(1, |t| {
        t.fields.insert("360001".into(), json!("feature_request"));
    });
    let started = Instant::now();
    loop {
        let m = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        if m.contains("triage_corrections_total{label=\"Feature Request\"} 1") {
            assert!(m.contains("triage_pull_runs_total{result=\"ok\"}"), "{m}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGTERM ends a long-running pull between runs (the store's shards are flushed on the way out).
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits on SIGTERM").unwrap();
    assert!(exit.success(), "{exit:?}");
    let (stored, n) = stored_example(dir.path(), "correction-zendesk-1").await;
    assert_eq!((stored.unwrap()["label"].as_str(), n), (Some("Feature Request"), saas_examples() + 2), "replaced, not added");
}

/// Spawn `triage pull --every ... --metrics-addr 127.0.0.1:0`; the metrics URL from its stderr.
async fn spawn_with_metrics(cmd: &mut tokio::process::Command) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    cmd.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("triage pull starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("metrics on ") {
                return rest.trim().to_string();
            }
        }
        panic!("triage pull exited before serving metrics");
    })
    .await
    .expect("metrics within 120 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_carrying_another_category_becomes_an_example() {
    let dir = indexed_data_dir().await;
    let mut cmd = triage(dir.path());
    cmd.args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"]);
    let (_child, base) = spawn_serve(&mut cmd).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{base}{path}")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let metrics = || async { http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap() };
    let ticket = |extra: Value| {
        let mut t = json!({"id": 501, "subject": "Question", "description": INVOICE});
        t.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "ticket": t })
    };

    let (st, r) = post("/v1/webhooks/ticket", ticket(json!({}))).await;
    assert_eq!((st, r["category"].as_str()), (200, Some("Billing")), "{r}");
    // The helpdesk sends the ticket again with the category an agent chose.
    let (st, r) = post("/v1/webhooks/ticket", ticket(json!({"category": "Technical"}))).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        r,
        json!({"ticket_id": "501", "collection": "saas", "correction": {"label": "Technical", "previous": "Billing",
            "via": "field", "example_id": "correction-webhook-501"}})
    );
    assert!(metrics().await.contains("triage_corrections_total{label=\"Technical\"} 1\n"));
    let (_, c) = post("/v1/classify", json!({"text": format!("Question\n\n{INVOICE_PARAPHRASE}"), "k": 1})).await;
    assert_eq!((c["category"].as_str(), c["neighbors"][0]["id"].as_str()), (Some("Technical"), Some("correction-webhook-501")), "{c}");

    // The same category again is no new correction; tags naming another one are.
    let (_, r) = post("/v1/webhooks/ticket", ticket(json!({"category": "Technical"}))).await;
    assert!(r.get("correction").is_none() && r["method"] == "knn", "{r}");
    let (_, r) = post("/v1/webhooks/ticket", ticket(json!({"tags": "vip triage_feature_request"}))).await;
    assert_eq!((r["correction"]["label"].as_str(), r["correction"]["via"].as_str()), (Some("Feature Request"), Some("tag")), "{r}");
    // A ticket we never classified: its category is not a correction of ours.
    let (_, r) = post("/v1/webhooks/ticket", json!({"ticket": {"id": 999, "description": INVOICE, "category": "Technical"}})).await;
    assert!(r.get("correction").is_none(), "{r}");
    let m = metrics().await;
    assert!(m.contains("triage_corrections_total{label=\"Technical\"} 1\n"), "{m}");
    assert!(m.contains("triage_corrections_total{label=\"Feature Request\"} 1\n"), "{m}");
}
