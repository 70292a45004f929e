//! A 3-node Qdrant cluster on loopback (`scripts/qdrant-cluster.sh`): `triage index` and
//! `import` create collections with the shard, replica and memory settings given, and a
//! node killed while `triage serve` classifies and takes examples costs no answer and no
//! acknowledged write; `/readyz` says the cluster is degraded while it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticket_triage::example::point_id_for;

use crate::common::*;
use crate::qdrant::*;

async fn rest(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.expect("JSON")
}

/// (shard, peer) of every replica of `collection`, from each node's own local shards.
async fn placement(http: &reqwest::Client, cluster: &Cluster, collection: &str) -> Vec<(u64, u64)> {
    let mut all = Vec::new();
    for i in 1..=3 {
        let v = rest(http, format!("{}/collections/{collection}/cluster", cluster.http(i))).await;
        let peer = v["result"]["peer_id"].as_u64().expect("peer id");
        for s in v["result"]["local_shards"].as_array().expect("local shards") {
            assert_eq!(s["state"], "Active", "node {i}: {s}");
            all.push((s["shard_id"].as_u64().expect("shard id"), peer));
        }
    }
    all.sort();
    all
}

async fn readyz(http: &reqwest::Client, base: &str) -> (u16, Value) {
    match http.get(format!("{base}/readyz")).timeout(Duration::from_secs(10)).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(e) => (0, json!({"error": e.to_string()})),
    }
}

/// Poll `/readyz` until its status is `want`; what it said then.
async fn until_status(http: &reqwest::Client, base: &str, want: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = readyz(http, base).await;
        if v["status"] == want {
            return v;
        }
        assert!(started.elapsed() < limit, "/readyz not {want} after {limit:?}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Default)]
struct Log {
    /// (seconds since start, HTTP status, the result had no error and 8 neighbours)
    classified: Vec<(f64, u16, bool)>,
    /// (example id, HTTP status)
    written: Vec<(String, u16)>,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Qdrant server binary: QDRANT_BIN or ../shared/bin/qdrant (./scripts/test.sh finds it)"]
async fn cluster_node_killed_while_serving_keeps_answers_and_acknowledged_writes() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.expect("cluster starts");
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = cluster.grpc(1);
    let http = reqwest::Client::new();
    let name = "kill-test";

    // triage creates the collection with the settings asked for.
    run_ok(triage_on(&url, &tmp.path().join("d")).args(["index"]).arg(saas_corpus()).args([
        "--collection",
        name,
        "--shards",
        "3",
        "--replication-factor",
        "2",
        "--write-consistency",
        "1",
    ]))
    .await;
    let info = rest(&http, format!("{}/collections/{name}", cluster.http(2))).await;
    let params = &info["result"]["config"]["params"];
    assert_eq!((&params["shard_number"], &params["replication_factor"], &params["write_consistency_factor"]), (&json!(3), &json!(2), &json!(1)), "{params}");
    let replicas = placement(&http, &cluster, name).await;
    assert_eq!(replicas.len(), 6, "3 shards x 2 replicas: {replicas:?}");
    for shard in 0..3u64 {
        let peers: Vec<u64> = replicas.iter().filter(|(s, _)| *s == shard).map(|(_, p)| *p).collect();
        assert!(peers.len() == 2 && peers[0] != peers[1], "shard {shard} on two distinct peers: {replicas:?}");
    }

    // import takes the same flags, plus the memory settings.
    let file = tmp.path().join("saas.jsonl");
    run_ok(triage_on(&url, &tmp.path().join("d")).args(["export", "--collection", name, "--output"]).arg(&file)).await;
    let out = run_ok(triage_on(&url, &tmp.path().join("d")).args(["import"]).arg(&file).args([
        "--collection",
        "imported",
        "--shards",
        "2",
        "--replication-factor",
        "3",
        "--write-consistency",
        "2",
        "--on-disk-vectors",
        "--on-disk-payload",
        "--quantization",
        "int8",
    ]))
    .await;
    assert!(stdout(&out).contains(&format!("imported {} examples into new collection imported", saas_examples())), "{}", stdout(&out));
    let config = rest(&http, format!("{}/collections/imported", cluster.http(3))).await["result"]["config"].clone();
    assert_eq!(config["params"]["shard_number"], 2);
    assert_eq!(config["params"]["replication_factor"], 3);
    assert_eq!(config["params"]["write_consistency_factor"], 2);
    assert_eq!(config["params"]["on_disk_payload"], true);
    assert_eq!(config["params"]["vectors"]["on_disk"], true, "{config}");
    assert_eq!(config["quantization_config"]["scalar"]["type"], "int8", "{config}");
    assert_eq!(config["quantization_config"]["scalar"]["always_ram"], true);
    // A second import with settings says they did not apply.
    let out = run_ok(triage_on(&url, &tmp.path().join("d")).args(["import"]).arg(&file).args(["--collection", "imported", "--shards", "5"])).await;
    assert!(stderr(&out).contains("already existed: --shards 5 apply only when triage creates a collection"), "{}", stderr(&out));

    // serve on node 1 while node 3 dies and comes back.
    let mut cmd = triage_on(&url, &tmp.path().join("serve"));
    cmd.args(["serve", "--collection", name, "--addr", "127.0.0.1:0", "--provider", "none"]);
    let (mut child, base) = spawn_serve(&mut cmd).await;
    let ready = until_status(&http, &base, "ready", Duration::from_secs(30)).await;
    assert_eq!(ready["replicas"]["active_replicas"], 6, "{ready}");

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let started = Instant::now();
    let classifier = tokio::spawn({
        let (stop, log, http, base) = (stop.clone(), log.clone(), http.clone(), base.clone());
        async move {
            let texts = ["I was charged twice and need a refund", "The dashboard is blank after login", "Please add dark mode"];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = http.post(format!("{base}/v1/classify")).json(&json!({"text": texts[i % 3]})).timeout(Duration::from_secs(30)).send().await;
                let (status, good) = match r {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        (s, v["error"].is_null() && v["neighbors"].as_array().map(Vec::len) == Some(8))
                    }
                    Err(_) => (0, false),
                };
                log.lock().expect("log").classified.push((started.elapsed().as_secs_f64(), status, good));
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let writer = tokio::spawn({
        let (stop, log, http, base) = (stop.clone(), log.clone(), http.clone(), base.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("w-{i}");
                let body = json!({"examples": [{"id": id, "text": format!("Invoice {i} lists a charge I do not recognise"), "label": "Billing"}]});
                let status = match http.post(format!("{base}/v1/examples")).json(&body).timeout(Duration::from_secs(30)).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                log.lock().expect("log").written.push((id, status));
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster.kill_node(3));
    let killed_at = started.elapsed().as_secs_f64();
    let degraded = until_status(&http, &base, "degraded", Duration::from_secs(30)).await;
    eprintln!("/readyz with node 3 down: {degraded}");
    assert!(degraded["reason"].as_str().unwrap_or_default().contains("Dead"), "{degraded}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let back_at = started.elapsed().as_secs_f64();
    let relaunched = Instant::now();
    tokio::task::block_in_place(|| cluster.start_node(3));
    let ready = until_status(&http, &base, "ready", Duration::from_secs(90)).await;
    let recovery = relaunched.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    classifier.await.expect("classifier task");
    writer.await.expect("writer task");
    assert_eq!(ready["replicas"]["active_replicas"], 6, "{ready}");

    let log = std::mem::take(&mut *log.lock().expect("log"));
    let during: Vec<_> = log.classified.iter().filter(|(t, _, _)| *t >= killed_at && *t <= back_at).collect();
    let bad: Vec<_> = log.classified.iter().filter(|(_, s, good)| *s != 200 || !good).collect();
    let acked: Vec<&str> = log.written.iter().filter(|(_, s)| *s == 200).map(|(id, _)| id.as_str()).collect();
    let refused = log.written.len() - acked.len();
    eprintln!(
        "node 3 down for {:.1} s: {} classifications ({} during the outage), {} failed; {} writes acknowledged, {} refused; \
         /readyz ready again {:.1} s after node 3 was relaunched",
        back_at - killed_at,
        log.classified.len(),
        during.len(),
        bad.len(),
        acked.len(),
        refused,
        recovery.as_secs_f64()
    );
    assert!(during.len() >= 20, "classification kept going during the outage: {}", during.len());
    assert!(bad.is_empty(), "every classification answered, with neighbours: {bad:?}");
    assert!(acked.len() >= 20, "writes went on: {:?}", log.written);

    // Every acknowledged write is on every replica: read with consistency "all" through
    // each node (a point comes back only if all replicas of its shard have it).
    let ids: Vec<u64> = acked.iter().map(|id| point_id_for(id)).collect();
    for i in 1..=3 {
        let r = http
            .post(format!("{}/collections/{name}/points?consistency=all", cluster.http(i)))
            .json(&json!({"ids": ids, "with_payload": ["id"]}))
            .send()
            .await
            .expect("retrieve");
        assert!(r.status().is_success(), "node {i}: {}", r.status());
        let v: Value = r.json().await.expect("JSON");
        let mut got: Vec<&str> = v["result"].as_array().expect("points").iter().filter_map(|p| p["payload"]["id"].as_str()).collect();
        got.sort();
        let mut want = acked.clone();
        want.sort();
        assert_eq!(got, want, "node {i}: acknowledged writes missing after node 3 came back");
    }
    // ... and through triage itself, on the node that was down.
    let out = run_ok(triage_on(&cluster.grpc(3), &tmp.path().join("d")).args(["collections", "info", name, "--json"])).await;
    let info: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert!(info["examples"].as_u64().unwrap_or(0) >= saas_examples() as u64 + acked.len() as u64, "{info}");
    child.kill().await.expect("kill serve");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn layout_flags_need_a_qdrant_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(triage(dir.path()).args(["index"]).arg(saas_corpus()).args(["--collection", "c", "--shards", "3"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--shards 3 set how a Qdrant server lays out a collection"), "{}", stderr(&out));
    let out = run(triage(dir.path())
        .env("QDRANT_URL", "http://127.0.0.1:9")
        .args(["import", "x.jsonl", "--replication-factor", "1", "--write-consistency", "2"]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--write-consistency 2 exceeds the replication factor 1"), "{}", stderr(&out));
    assert!(!dir.path().join("collections").exists());
}
