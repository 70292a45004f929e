use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn bench_latency_reports_percentiles_for_single_tickets() {
    let dir = indexed_data_dir().await;
    let tickets = saas_corpus().join("sample_tickets.txt");
    let out = run(triage(dir.path())
        .args(["bench-latency", "--collection", "saas", "--n", "5", "--warmup", "2", "--input"])
        .arg(&tickets))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["tickets"], 5, "{report}");
    for step in ["classify", "embed", "search"] {
        let p = &report[step];
        let (p50, p99) = (p["p50_ms"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= p["max_ms"].as_f64().unwrap(), "{step}: {p}");
    }
    assert!(report["load_seconds"].as_f64().unwrap() > 0.0);
    // Hidden: not in the help text.
    let help = run(triage(dir.path()).arg("--help")).await;
    assert!(!stdout(&help).contains("bench-latency"));
}

#[tokio::test(flavor = "multi_thread")]
async fn index_report_breaks_the_time_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(triage(dir.path()).args(["index"]).arg(saas_corpus()).args(["--collection", "t", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let t = &report["timings"];
    let e = &t["embedding"];
    assert_eq!(e["texts"], report["indexed"], "{report}");
    assert!(e["tokens"].as_u64().unwrap() > 0);
    assert!(e["padded_tokens"].as_u64().unwrap() >= e["tokens"].as_u64().unwrap());
    assert!(t["embed_seconds"].as_f64().unwrap() > 0.0, "{t}");
}
