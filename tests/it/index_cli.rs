use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn reindexing_the_same_corpus_adds_nothing() {
    let dir = indexed_data_dir().await;
    let out = run(triage(dir.path()).args(["index"]).arg(saas_corpus()).args(["--collection", "saas", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let lines = std::fs::read_to_string(saas_corpus().join("examples.jsonl")).unwrap();
    let n = lines.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    assert_eq!(report["indexed"], 0, "{report}");
    assert_eq!(report["unchanged"], n);
    assert_eq!(report["points_in_collection"], n);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_are_reported_with_line_numbers_and_good_rows_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::copy(saas_corpus().join("taxonomy.toml"), corpus.join("taxonomy.toml")).unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(b"{\"id\":\"g1\",\"text\":\"I was billed twice this month\",\"label\":\"Billing\",\"urgency\":\"High\"}\r\n");
    data.extend_from_slice(b"{\"id\":\"b1\",\"text\":\"   \",\"label\":\"Billing\"}\n");
    data.extend_from_slice(b"{\"id\":\"b2\",\"text\":\"Where is my parcel\",\"label\":\"Shipping\"}\n");
    data.extend_from_slice(b"{\"id\":\"b3\",\"text\":\"caf\xe9 broken\",\"label\":\"Technical\"}\n");
    data.extend_from_slice(b"{\"id\": \"b4\", \"text\": \"unterminated\n");
    data.extend_from_slice(b"{\"id\":\"g2\",\"text\":\"Please add dark mode\",\"label\":\"feature request\",\"urgency\":\"low\"}\n");
    std::fs::write(corpus.join("examples.jsonl"), data).unwrap();
    let out = run(triage(&dir.path().join("data")).args(["index"]).arg(&corpus).args(["--collection", "mixed", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["indexed"], 2, "{report}");
    assert_eq!(report["points_in_collection"], 2);
    let rejected: Vec<(u64, String)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert_eq!(rejected[0].0, 2);
    assert!(rejected[0].1.contains("empty text"));
    assert_eq!(rejected[1].0, 3);
    assert!(rejected[1].1.contains("unknown label \"Shipping\""));
    assert_eq!(rejected[2].0, 4);
    assert!(rejected[2].1.contains("UTF-8"));
    assert_eq!(rejected[3].0, 5);
    assert!(rejected[3].1.contains("malformed JSON"));

    // The human-readable summary names the lines too.
    let out = run(triage(&dir.path().join("data")).args(["index"]).arg(&corpus).args(["--collection", "mixed"])).await;
    let text = stdout(&out);
    assert!(text.contains("0 indexed, 2 unchanged, 4 rejected"), "{text}");
    assert!(text.contains("rejected line 3: unknown label"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_and_tsv_with_custom_fields_and_no_taxonomy() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("tickets.csv");
    std::fs::write(
        &csv,
        "body,intent,prio\r\n\"Refund, please: I was charged twice\",billing,high\r\n\"The app \"\"crashes\"\" on start\nevery time\",bug,high\r\nCan you add SSO?,feature,low\r\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = run(triage(&data).args(["index"]).arg(&csv).args([
        "--collection", "custom", "--text-field", "body", "--label-field", "intent", "--urgency-field", "prio", "--json",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["indexed"], 3, "{report}");
    assert_eq!(report["labels"], 3);

    // A TSV adds a new label to the derived taxonomy.
    let tsv = dir.path().join("more.tsv");
    std::fs::write(&tsv, "text\tlabel\n\"tab\there\"\tquestion\n").unwrap();
    let out = run(triage(&data).args(["index"]).arg(&tsv).args(["--collection", "custom", "--json"])).await;
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["indexed"], 1, "{report}");
    assert_eq!(report["labels"], 4);
    assert_eq!(report["points_in_collection"], 4);

    // The labels come from the data: classification can only answer with them.
    let out = run(triage(&data).args(["classify", "my card was charged two times", "--collection", "custom", "--format", "jsonl", "--k", "3"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &results(&out)[0];
    assert!(["billing", "bug", "feature", "question"].contains(&r["category"].as_str().unwrap()), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_embedding_model_is_a_clear_error() {
    let dir = indexed_data_dir().await;
    // The same files under another name count as another model.
    let other = tempfile::tempdir().unwrap();
    let src = models_dir().join("all-minilm-l6-v2-int8");
    let alias = other.path().join("other-model");
    std::fs::create_dir(&alias).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::os::unix::fs::symlink(f.path(), alias.join(f.file_name())).unwrap();
    }
    let out = run(triage(dir.path())
        .args(["classify", "hello", "--collection", "saas", "--embedding-model"])
        .arg(&alias))
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("was indexed with embedding model \"all-minilm-l6-v2-int8\""), "{err}");
    assert!(err.contains("other-model"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_collection_and_missing_corpus_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(triage(dir.path()).args(["classify", "hello", "--collection", "nope"])).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("collection \"nope\" does not exist"), "{}", stderr(&out));
    let out = run(triage(dir.path()).args(["index", "/no/such/path", "--collection", "x"])).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = run(triage(dir.path()).args(["index"]).arg(saas_corpus()).args(["--collection", "../evil"])).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid collection name"), "{}", stderr(&out));
}
