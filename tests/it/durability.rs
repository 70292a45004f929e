//! Acknowledged writes survive `kill -9`: examples posted or deleted through the API
//! (answered 200) are there, or gone, after the process is killed at a random point
//! and the store is opened again; a killed `triage index` keeps the batches it
//! committed and a re-run embeds only the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::*;

/// Seed of the kill points and the write mix: `TRIAGE_KILL_SEED`, else fixed.
fn seed() -> u64 {
    std::env::var("TRIAGE_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261126)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Post,
    Delete,
}

/// One write as the client saw it: acknowledged (200) or not (no answer: killed).
#[derive(Debug, Clone)]
struct Write {
    id: String,
    op: Op,
    acked: bool,
}

/// The ids of the examples in the collection, read by `triage export` (a fresh
/// process opening the store from disk).
async fn stored_ids(dir: &std::path::Path) -> BTreeSet<String> {
    let out = run(triage(dir).args(["export", "--collection", "saas"])).await;
    assert!(out.status.success(), "export after kill -9 failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .skip(1)
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("export line");
            v["payload"]["id"].as_str().expect("example id").to_string()
        })
        .collect()
}

/// A writer: posts new examples and deletes some of those it posted (and of the
/// corpus ids it was given) until the server stops answering.
async fn writer(base: String, tag: String, mut corpus: Vec<String>, seed: u64, log: Arc<Mutex<Vec<Write>>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut mine: Vec<String> = Vec::new();
    let labels = ["Billing", "Technical", "Feature Request"];
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let delete_pool = if rng.gen_bool(0.5) { &mut mine } else { &mut corpus };
        let (id, op, sent) = if !delete_pool.is_empty() && rng.gen_bool(0.3) {
            let id = delete_pool.swap_remove(rng.gen_range(0..delete_pool.len()));
            let url = format!("{base}/v1/examples/{id}");
            (id, Op::Delete, http.delete(url).send().await)
        } else {
            let id = format!("{tag}-{i}");
            let text = format!("Durability probe {tag} number {i}: my invoice {} shows a charge I do not recognise", rng.gen::<u32>());
            let body = json!({"examples": [{"id": id, "text": text, "label": labels[i % 3]}]});
            (id, Op::Post, http.post(format!("{base}/v1/examples")).json(&body).send().await)
        };
        let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
        // A 200 whose body never arrived is not an acknowledgement the client saw.
        let acked = match sent {
            Ok(r) if r.status() == 200 => r.json::<Value>().await.is_ok(),
            _ => false,
        };
        log.lock().unwrap().push(Write { id: id.clone(), op, acked });
        if acked && op == Op::Post {
            mine.push(id);
        }
        match status {
            Some(200) | None => {}
            Some(other) => panic!("{op:?} {tag}: unexpected status {other}"),
        }
        if !acked {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_and_deletes_survive_kill_9() {
    let seed = seed();
    eprintln!("kill -9 test seed {seed} (set TRIAGE_KILL_SEED to repeat another)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = indexed_data_dir().await;
    let corpus: Vec<String> = stored_ids(dir.path()).await.into_iter().collect();
    assert!(corpus.len() > 100, "the bundled corpus is indexed");
    let mut expected_present: BTreeSet<String> = corpus.iter().cloned().collect();
    let mut expected_absent: BTreeSet<String> = BTreeSet::new();
    let (mut acked_posts, mut acked_deletes) = (0, 0);
    const ROUNDS: usize = 3;
    const WRITERS: usize = 4;
    for round in 0..ROUNDS {
        let (mut child, base) =
            spawn_serve(triage(dir.path()).args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"]))
                .await;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            // Each writer may delete its own share of corpus examples (disjoint per round and writer).
            let share: Vec<String> = corpus.iter().skip(round * WRITERS + w).step_by(ROUNDS * WRITERS).cloned().collect();
            let tag = format!("dur-r{round}-w{w}");
            tasks.push(tokio::spawn(writer(base.clone(), tag, share, rng.gen(), log.clone(), stop.clone())));
        }
        let kill_after = Duration::from_millis(rng.gen_range(400..2500));
        tokio::time::sleep(kill_after).await;
        child.start_kill().expect("kill -9");
        child.wait().await.expect("killed");
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("writer");
        }
        let log = log.lock().unwrap().clone();
        let acked_now = log.iter().filter(|w| w.acked).count();
        assert!(acked_now >= 4, "round {round}: only {acked_now} writes acknowledged before the kill at {kill_after:?}");
        // Per id, its last write decides; a write without an answer leaves it open.
        let mut last: BTreeMap<&str, &Write> = BTreeMap::new();
        for w in &log {
            last.insert(&w.id, w);
        }
        for (id, w) in last {
            expected_present.remove(id);
            expected_absent.remove(id);
            match (w.acked, w.op) {
                (true, Op::Post) => {
                    expected_present.insert(id.to_string());
                }
                (true, Op::Delete) => {
                    expected_absent.insert(id.to_string());
                }
                (false, _) => {}
            }
        }
        acked_posts += log.iter().filter(|w| w.acked && w.op == Op::Post).count();
        acked_deletes += log.iter().filter(|w| w.acked && w.op == Op::Delete).count();

        let stored = stored_ids(dir.path()).await;
        let lost: Vec<&String> = expected_present.iter().filter(|id| !stored.contains(*id)).collect();
        let back: Vec<&String> = expected_absent.iter().filter(|id| stored.contains(*id)).collect();
        eprintln!(
            "round {round}: killed after {kill_after:?}, {acked_now} writes acknowledged, {} unanswered; lost {}, deleted but back {}",
            log.len() - acked_now,
            lost.len(),
            back.len()
        );
        assert!(lost.is_empty(), "round {round}: acknowledged examples lost after kill -9: {lost:?}");
        assert!(back.is_empty(), "round {round}: acknowledged deletes undone by kill -9: {back:?}");
    }
    assert!(acked_posts > 0 && acked_deletes > 0, "{acked_posts} posts, {acked_deletes} deletes acknowledged");
}

/// A corpus folder of `n` examples (the bundled taxonomy, variants of its texts).
fn big_corpus(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(saas_corpus().join("taxonomy.toml"), dir.path().join("taxonomy.toml")).expect("taxonomy");
    let source = std::fs::read_to_string(saas_corpus().join("examples.jsonl")).expect("corpus");
    let rows: Vec<Value> = source.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut out = String::new();
    for i in 0..n {
        let r = &rows[i % rows.len()];
        let text = format!("{} (case {i}, account {})", r["text"].as_str().unwrap(), i * 7919 % 10007);
        out.push_str(&json!({"id": format!("gen-{i}"), "text": text, "label": r["label"]}).to_string());
        out.push('\n');
    }
    std::fs::write(dir.path().join("examples.jsonl"), out).expect("write corpus");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_index_keeps_its_committed_batches() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    const N: usize = 1000;
    let corpus = big_corpus(N);
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = triage(data.path());
    cmd.args(["-v", "index"]).arg(corpus.path()).args(["--collection", "big", "--batch-size", "64"]);
    cmd.env("NO_COLOR", "1").stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("index starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // Kill once a few batches are committed, well before the end.
    let committed = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.expect("stderr") {
            if let Some(n) = line.split("committed=").nth(1).and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
            {
                if n >= 192 {
                    return n;
                }
            }
        }
        panic!("index ended before committing 192 examples");
    })
    .await
    .expect("index commits batches");
    child.start_kill().expect("kill -9");
    child.wait().await.expect("killed");
    assert!(committed < N, "killed before the end ({committed} of {N})");

    let out = run(triage(data.path()).args(["index"]).arg(corpus.path()).args(["--collection", "big", "--json"])).await;
    assert!(out.status.success(), "re-run: {}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON report");
    eprintln!("killed after {committed} committed; re-run: {}", report);
    let (indexed, unchanged) = (report["indexed"].as_u64().unwrap() as usize, report["unchanged"].as_u64().unwrap() as usize);
    assert!(unchanged >= committed, "the killed run committed {committed} examples, the re-run found {unchanged}");
    assert_eq!(indexed + unchanged, N, "{report}");
    assert_eq!(report["timings"]["embedding"]["texts"].as_u64().unwrap() as usize, indexed, "only the rest is embedded");
    assert_eq!(report["points_in_collection"].as_u64().unwrap() as usize, N);
    let indexes = run(triage(data.path()).args(["collections", "info", "big", "--json"])).await;
    let info: Value = serde_json::from_str(&stdout(&indexes)).expect("info");
    assert_eq!(info["payload_indexes"], json!(["label", "lang", "subcategory", "urgency"]), "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_journal_record_is_quarantined_the_rest_replayed_and_readyz_says_why() {
    let dir = indexed_data_dir().await;
    let serve = || {
        let mut cmd = triage(dir.path());
        cmd.args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"]);
        cmd
    };
    let http = reqwest::Client::new();
    let (mut child, base) = spawn_serve(&mut serve()).await;
    let ids: Vec<String> = (0..20).map(|i| format!("jr-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let body = json!({"examples": [{"id": id, "text": format!("Journal probe {i}: my invoice shows a charge I do not know"), "label": "Billing"}]});
        let r = http.post(format!("{base}/v1/examples")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    child.start_kill().expect("kill -9");
    child.wait().await.expect("killed");

    // One byte of the fourth record changed on disk: 20 acknowledged writes, one unreadable.
    let collection = dir.path().join("collections/saas");
    let journal = collection.join("journal.log");
    let mut bytes = std::fs::read(&journal).unwrap();
    let needle = b"\"jr-3\"";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the fourth record is in the journal");
    bytes[at + 2] = b'X';
    std::fs::write(&journal, &bytes).unwrap();

    let (mut child, base) = spawn_serve(&mut serve()).await;
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    let quarantine = collection.join("journal.quarantine");
    assert!(reason.contains("1 damaged journal record(s)") && reason.contains(&quarantine.display().to_string()), "{body}");
    assert!(reason.contains("move or remove the file"), "{body}");
    let held = std::fs::read_to_string(&quarantine).unwrap();
    assert!(held.contains("\"jX-3\""), "the damaged record's bytes are kept: {}", &held[..held.len().min(200)]);
    // The operator has looked at it: moving the file away clears readiness.
    std::fs::rename(&quarantine, collection.join("journal.quarantine.seen")).unwrap();
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    child.start_kill().expect("kill -9");
    child.wait().await.expect("killed");

    let stored = stored_ids(dir.path()).await;
    let missing: Vec<&String> = ids.iter().filter(|id| !stored.contains(*id)).collect();
    assert_eq!(missing, [&ids[3]], "only the damaged record's write is missing; the 16 after it are replayed");
}
