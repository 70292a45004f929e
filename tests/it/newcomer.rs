//! The first hour, second pass (issue 25): what a newcomer with a real helpdesk export
//! tripped on. Each test drives the real binary as the user did.

use std::io::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// A data dir with `helpdesk` indexed from docs/examples/helpdesk-export.csv (three
/// queues, its priority column kept as metadata), the export of the README's first screen.
async fn helpdesk_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run(triage(dir.path())
        .arg("index")
        .arg(repo().join("docs/examples/helpdesk-export.csv"))
        .args(["--collection", "helpdesk", "--text-field", "subject,body", "--id-field", "ticket_id", "--label-field", "queue"])
        .args(["--meta-fields", "priority"]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

fn classify_file(dir: &Path, file: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = triage(dir);
    cmd.args(["classify", "--collection", "helpdesk", "--input"]).arg(file).args(extra);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_file_with_a_named_column_is_read_as_index_reads_it() {
    let dir = helpdesk_data_dir().await;
    // The first line names the column: a header, not a ticket (it was classified, confidence 1.000).
    let txt = dir.path().join("tickets.txt");
    std::fs::write(&txt, "body\nI was charged twice this month\nI cannot sign in since the reset\n").unwrap();
    let out = run(&mut classify_file(dir.path(), &txt, &["--text-field", "body", "--format", "jsonl"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rs = results(&out);
    let cats: Vec<&str> = rs.iter().map(|r| r["category"].as_str().unwrap()).collect();
    assert_eq!(cats, ["billing", "access"], "two tickets, the header is not one: {rs:?}");

    // A plain file whose first line does not name the column: refused, with the same words as index.
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "I was charged twice\nI cannot sign in\n").unwrap();
    let out = run(&mut classify_file(dir.path(), &plain, &["--text-field", "body"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let classify_err = stderr(&out);
    assert!(classify_err.contains("cannot tell the format") && classify_err.contains("\"body\""), "{classify_err}");
    assert!(stdout(&out).is_empty(), "nothing classified");
    let out = run(triage(dir.path()).arg("index").arg(&plain).args(["--collection", "x", "--text-field", "body"])).await;
    assert_eq!(out.status.code(), Some(1));
    let index_err = stderr(&out);
    assert!(index_err.contains("cannot tell the format") && index_err.contains("\"body\""), "{index_err}");
    // Without a column named, a .txt is one ticket per line, as before.
    let out = run(&mut classify_file(dir.path(), &plain, &["--format", "jsonl"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(results(&out).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_ids_are_record_numbers_and_csv_results_carry_the_text() {
    let dir = helpdesk_data_dir().await;
    let file = dir.path().join("new.csv");
    // No id column; the first ticket's body spans three lines.
    std::fs::write(
        &file,
        "subject,body\nRefund please,\"I was billed twice.\n\nPlease refund one.\"\nLogin,I cannot sign in after the reset\nCharts,The dashboard charts stopped loading\n",
    )
    .unwrap();
    let out = run(&mut classify_file(dir.path(), &file, &["--text-field", "subject,body", "--format", "csv"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("3 ticket(s)") && err.contains("row-N") && err.contains("records after the header"), "{err}");
    let mut rdr = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header.last().map(String::as_str), Some("text"), "{header:?}");
    assert_eq!(&header[..2], ["id", "category"], "existing columns keep their places");
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    // Physical lines would be 2, 5 and 6.
    assert_eq!(ids, ["row-1", "row-2", "row-3"]);
    let text = rows[0].get(header.len() - 1).unwrap();
    assert_eq!(text, "Refund please\n\nI was billed twice.\n\nPlease refund one.", "the text as read, to join on");
    assert_eq!(&rows[1][1], "access");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_input_file_is_named_as_empty() {
    let dir = helpdesk_data_dir().await;
    for (name, content, says) in [
        ("empty.txt", "", "is empty"),
        ("empty.csv", "", "is empty"),
        ("blank.jsonl", "\n\n", "is empty"),
        ("header.csv", "subject,body\n", "has a header but no rows"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let out = run(&mut classify_file(dir.path(), &file, &[])).await;
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(err.contains(&format!("{name} {says}")), "{name}: {err}");
        assert!(!err.contains("give texts as arguments"), "{name}: the file was given: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_is_read_through_and_a_binary_file_is_never_a_header() {
    let dir = helpdesk_data_dir().await;
    let gz = dir.path().join("new.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(b"ticket_id,subject,body\nHD-900,Refund,I was billed twice\n").unwrap();
    enc.finish().unwrap();
    let out = run(&mut classify_file(
        dir.path(),
        &gz,
        &["--text-field", "subject,body", "--id-field", "ticket_id", "--format", "jsonl"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rs = results(&out);
    assert_eq!((rs[0]["id"].as_str(), rs[0]["category"].as_str()), (Some("HD-900"), Some("billing")));

    // The triage executable itself, renamed .csv: said to be an executable, no "header".
    let elf = dir.path().join("export.csv");
    std::fs::copy(env!("CARGO_BIN_EXE_triage"), &elf).unwrap();
    for args in [vec!["classify", "--collection", "helpdesk", "--input"], vec!["index", "--collection", "x"]] {
        let mut cmd = triage(dir.path());
        if args[0] == "index" {
            cmd.arg("index").arg(&elf).args(&args[1..]);
        } else {
            cmd.args(&args).arg(&elf);
        }
        let out = run(&mut cmd).await;
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("an executable (ELF), not a text file of tickets"), "{err}");
        assert!(!err.contains("header") && !err.contains("ELF\u{2}"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_ticket_is_noted() {
    let dir = helpdesk_data_dir().await;
    let file = dir.path().join("big.jsonl");
    let big = "my invoice is wrong and I was charged twice ".repeat(5 * 1024 * 1024 / 44);
    std::fs::write(&file, format!("{{\"id\":\"huge\",\"text\":\"{big}\"}}\n{{\"id\":\"small\",\"text\":\"refund please\"}}\n")).unwrap();
    let out = run(&mut classify_file(dir.path(), &file, &["--format", "jsonl"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("1 ticket(s) longer than 4096 bytes were truncated") && err.contains("id huge"), "{err}");
    assert_eq!(results(&out).len(), 2);
    // No note when nothing is cut.
    let out = run(triage(dir.path()).args(["classify", "--collection", "helpdesk", "--format", "jsonl", "refund please"])).await;
    assert!(!stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn index_shows_the_first_rejected_rows_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blank-labels.csv");
    let mut csv = String::from("text,label\n");
    for i in 0..50 {
        csv.push_str(&format!("ticket {i} about a charge on my card,\n"));
    }
    csv.push_str("my invoice is wrong,billing\nI cannot log in,access\n");
    std::fs::write(&file, csv).unwrap();
    let out = run(triage(dir.path()).arg("index").arg(&file).args(["--collection", "b"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("52 rows read, 2 indexed, 0 unchanged, 50 rejected"), "{text}");
    // Not 50 lines: counted by kind, the first ten shown, the rest counted (src/index.rs rejection_summary).
    assert!(text.contains("rejected rows: 50 blank label"), "{text}");
    let shown = text.lines().filter(|l| l.trim_start().starts_with("rejected line")).count();
    assert_eq!(shown, 10, "{text}");
    assert!(text.contains("rejected line 2: missing label (field \"label\")"), "{text}");
    assert!(text.contains("... and 40 more rejected rows"), "{text}");
    assert!(text.lines().count() <= 14, "{text}");
    // --json still lists every one.
    let out = run(triage(dir.path()).arg("index").arg(&file).args(["--collection", "b", "--json"])).await;
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["rejected"].as_array().unwrap().len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_counts_and_shows_rows_with_a_blank_label() {
    let dir = indexed_data_dir().await;
    let test = std::fs::read_to_string(saas_corpus().join("test.jsonl")).unwrap();
    let mut blanked = 0;
    let lines: Vec<String> = test
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if i % 10 == 3 {
                v["label"] = "".into();
                blanked += 1;
            }
            v.to_string()
        })
        .collect();
    let file = dir.path().join("test.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let report_dir = dir.path().join("report");
    let out = run(triage(dir.path())
        .args(["eval", "--collection", "saas", "--methods", "knn", "--test"])
        .arg(&file)
        .arg("--report-dir")
        .arg(&report_dir))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let evaluated = lines.len() - blanked;
    assert!(text.contains(&format!("{} rows read, {evaluated} tickets evaluated", lines.len())), "{text}");
    assert!(text.contains(&format!("rejected rows: {blanked} blank label")), "{text}");
    assert!(text.contains("rejected line 4: missing label (field \"label\")"), "{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap()).unwrap();
    let d = &report["dataset"];
    assert_eq!(d["rows_without_text_or_label"], blanked, "{d}");
    assert_eq!(d["rows"].as_u64().unwrap() as usize, evaluated);
    assert_eq!(d["rejected_rows"][0]["line"], 4, "{d}");
    assert_eq!(d["rejected_rows"].as_array().unwrap().len(), blanked, "{d}");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains(&format!("{blanked} rows of the test file were not evaluated")), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_nothing_matches_names_the_values_its_fields_have() {
    let dir = helpdesk_data_dir().await;
    // The export has no urgency column: no example has one.
    let out = run(triage(dir.path()).args(["classify", "--collection", "helpdesk", "--filter", "urgency=High", "refund please"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("matches the filter urgency=High") && err.contains("no example has a value for \"urgency\""), "{err}");
    // A metadata field with values, none of them the one asked for: the values are named.
    let out = run(triage(dir.path()).args(["classify", "--collection", "helpdesk", "--filter", "priority=gold", "refund please"])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("24 examples have a value for \"priority\": normal (11), high (6), low (6), urgent (1)"), "{err}");
    // A filter that matches: classified.
    let out = run(triage(dir.path()).args(["classify", "--collection", "helpdesk", "--format", "jsonl", "--filter", "priority=high", "refund please"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn classify_progress_moves_before_the_end() {
    let dir = helpdesk_data_dir().await;
    let file = dir.path().join("many.jsonl");
    let n = 2000;
    let body: String = (0..n)
        .map(|i| format!("{{\"id\":\"{i}\",\"text\":\"ticket {i}: invoice {} is wrong and I was charged twice for seat {}\"}}\n", i * 7, i % 13))
        .collect();
    std::fs::write(&file, body).unwrap();
    let out = run(classify_file(dir.path(), &file, &["--format", "jsonl"]).env("TRIAGE_PROGRESS_SECONDS", "0.1")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(results(&out).len(), n);
    let err = stderr(&out);
    let moving: Vec<usize> = err
        .lines()
        .filter_map(|l| l.split("(embedding ").nth(1))
        .filter_map(|l| l.split('/').next()?.parse().ok())
        .collect();
    assert!(moving.iter().any(|m| *m > 0 && *m < n), "no progress line between 0 and {n}:\n{err}");
}

#[tokio::test]
async fn taxonomy_check_help_shows_only_its_own_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(triage(dir.path()).args(["taxonomy", "check", "--help"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    assert!(help.contains("<FILE>"), "{help}");
    for flag in ["--data-dir", "--qdrant-url", "--embedding-model", "--models-dir", "--embed-threads", "--embed-workers"] {
        assert!(!help.contains(flag), "{flag}:\n{help}");
    }
    let out = run(triage(dir.path()).args(["index", "--help"])).await;
    assert!(stdout(&out).contains("--data-dir"), "other commands keep them");
}
