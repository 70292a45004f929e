//! Day one: what `index` then `classify` give with nothing else run: a fitted
//! collection, no answer far from every example routed, language trust from the
//! collection's own held-out examples, routing by a precision target.

use serde_json::Value;

use crate::common::*;

fn fixture(path: &str) -> std::path::PathBuf {
    repo().join("tests").join("fixtures").join(path)
}

async fn index(data: &std::path::Path, corpus: &std::path::Path, collection: &str) -> String {
    let out = run(triage(data).args(["index"]).arg(corpus).args(["--collection", collection])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Classify a file; exit 3 (some lines failed: undecodable bytes) is expected of a binary.
async fn classify_file(data: &std::path::Path, collection: &str, input: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let out = run(triage(data)
        .args(["classify", "--collection", collection, "--format", "jsonl", "--input"])
        .arg(input)
        .args(extra))
    .await;
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    results(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn index_fits_the_collection_and_every_result_says_which_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let said = index(tmp.path(), &saas_corpus(), "saas").await;
    assert!(said.contains("fitted on") && said.contains("held-out examples"), "{said}");
    let r = classify_jsonl(tmp.path(), "saas", &[], &["I was charged twice for my subscription this month, please refund one"]).await;
    let fit = &r[0]["fit"];
    assert!(fit["examples"].as_u64().unwrap() > 100, "{fit}");
    assert!(!fit["calibration"].as_str().unwrap().is_empty(), "{fit}");
    assert_eq!(r[0]["category"], "Billing", "{}", r[0]);
    assert!(r[0]["confidence"].as_f64().unwrap() < 1.0, "a fitted confidence is never 1: {}", r[0]);
    assert!(r[0]["warnings"].is_null() || !r[0]["warnings"].to_string().contains("not fitted"), "{}", r[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_collection_is_not_fitted_and_says_so_and_never_reports_certainty() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tiny.jsonl");
    let rows: Vec<String> = (0..6)
        .map(|i| {
            let (label, text) = if i % 2 == 0 { ("Billing", "I was charged twice, please refund") } else { ("Technical", "The app crashes on login") };
            serde_json::json!({"id": format!("t{i}"), "text": format!("{text} ({i})"), "label": label}).to_string()
        })
        .collect();
    std::fs::write(&file, rows.join("\n")).unwrap();
    let said = index(tmp.path(), &file, "tiny").await;
    assert!(said.contains("not fitted: 6 examples"), "{said}");
    let r = classify_jsonl(tmp.path(), "tiny", &[], &["I was charged twice, please refund"]).await;
    assert!(r[0]["confidence"].as_f64().unwrap() < 1.0, "{}", r[0]);
    assert!(r[0]["warnings"].to_string().contains("not fitted"), "{}", r[0]);
}

/// Lines of a binary, random strings and texts from unrelated domains: none is routed,
/// and the collection's own distances say why ("no close example").
#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_never_auto_routed_and_is_flagged_no_close_example() {
    let data = indexed_data_dir().await;
    let garbage = classify_file(data.path(), "saas", &fixture("garbage/garbage.jsonl"), &[]).await;
    assert_eq!(garbage.len(), 60);
    // The lines of a real binary, as a user might pass one: the first 200 KB of triage.
    let binary = data.path().join("binary.bin");
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_triage")).unwrap();
    std::fs::write(&binary, &bytes[..bytes.len().min(200_000)]).unwrap();
    // Given as it is, the file is refused whole, named for what it is.
    let out = run(triage(data.path()).args(["classify", "--collection", "saas", "--format", "jsonl", "--input"]).arg(&binary)).await;
    assert!(!out.status.success() && stdout(&out).trim().is_empty(), "{}", stdout(&out));
    assert!(stderr(&out).contains("executable"), "{}", stderr(&out));
    // Its lines as ticket texts (undecodable bytes replaced): each one is classified.
    let texts: Vec<String> = bytes[..bytes.len().min(200_000)]
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|t| !t.trim().is_empty())
        .map(|t| serde_json::json!({"text": t}).to_string())
        .collect();
    let as_jsonl = data.path().join("binary-lines.jsonl");
    std::fs::write(&as_jsonl, texts.join("\n")).unwrap();
    let lines = classify_file(data.path(), "saas", &as_jsonl, &[]).await;
    assert!(lines.len() > 20, "{} lines", lines.len());
    let mut routed = Vec::new();
    let mut other = Vec::new();
    for r in garbage.iter().chain(&lines) {
        let reason = r["review_reason"].as_str().unwrap_or_default();
        if r["needs_review"] == false {
            routed.push(r.to_string());
        } else if !reason.starts_with("no_close_example") && !reason.starts_with("error") {
            other.push(format!("{}: {reason}", r["id"]));
        }
    }
    assert!(routed.is_empty(), "auto-routed garbage: {routed:?}");
    assert!(other.is_empty(), "flagged for another reason: {other:?}");
    // A real ticket is not.
    let r = classify_jsonl(data.path(), "saas", &[], &["I was charged twice for my subscription this month, please refund one"]).await;
    assert!(!r[0]["review_reason"].as_str().unwrap_or_default().starts_with("no_close_example"), "{}", r[0]);
}

/// A collection whose held-out German examples show the neighbours get German right
/// routes German tickets (the English model does not cover German); one with no German
/// examples sends them to review.
#[tokio::test(flavor = "multi_thread")]
async fn language_trust_comes_from_the_collections_own_held_out_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let said = index(tmp.path(), &fixture("bilingual/examples.jsonl"), "both").await;
    assert!(said.contains("fitted on"), "{said}");
    index(tmp.path(), &fixture("bilingual/english-only.jsonl"), "en").await;
    let test = fixture("bilingual/test.jsonl");
    let german: Vec<Value> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|t| t["lang"] == "de")
        .collect();
    let texts: Vec<&str> = german.iter().map(|t| t["text"].as_str().unwrap()).collect();
    let both = classify_jsonl(tmp.path(), "both", &[], &texts).await;
    let routed_right = both.iter().zip(&german).filter(|(r, t)| r["needs_review"] == false && r["category"] == t["label"]).count();
    let routed_wrong = both.iter().zip(&german).filter(|(r, t)| r["needs_review"] == false && r["category"] != t["label"]).count();
    assert!(routed_right * 2 >= german.len(), "{routed_right} of {} German tickets routed right: {both:?}", german.len());
    assert_eq!(routed_wrong, 0, "{both:?}");
    assert!(both.iter().all(|r| r["lang"] == "de"), "{both:?}");
    let en = classify_jsonl(tmp.path(), "en", &[], &texts).await;
    for r in &en {
        assert_eq!(r["needs_review"], true, "{r}");
        // Untrusted language; when the ticket is also far from every example, that
        // comes first and the language is said with it.
        let reason = r["review_reason"].as_str().unwrap();
        assert!(reason.starts_with("language") || reason.contains("the ticket is in de"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_precision_target_replaces_the_threshold_and_is_checked() {
    let data = indexed_data_dir().await;
    let out = run(triage(data.path()).args(["classify", "--collection", "saas", "--auto-route-precision", "0.98", "--min-confidence", "0.9", "x"])).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
    let out = run(triage(data.path()).args(["classify", "--collection", "saas", "--auto-route-precision", "1.5", "x"])).await;
    assert!(!out.status.success() && stderr(&out).contains("--auto-route-precision must be at least 0.5"), "{}", stderr(&out));
    // At a target the collection's held-out answers never reach, nothing is routed, and
    // the reason says so; at a modest one, confident answers are.
    let text = "I was charged twice for my subscription this month, please refund one";
    let strict = classify_jsonl(data.path(), "saas", &["--auto-route-precision", "0.999"], &[text]).await;
    assert_eq!(strict[0]["needs_review"], true, "{}", strict[0]);
    assert!(strict[0]["review_reason"].as_str().unwrap().contains("precision"), "{}", strict[0]);
    let modest = classify_jsonl(data.path(), "saas", &["--auto-route-precision", "0.6"], &[text]).await;
    assert_eq!(modest[0]["category"], "Billing");
    assert_eq!(modest[0]["needs_review"], false, "{}", modest[0]);
}
