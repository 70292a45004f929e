//! `triage serve` against slow, hostile and cross-site clients: stalled uploads,
//! garbage methods, a damaged store, requests from web pages, odd 4xx paths.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

struct Server {
    base: String,
    child: tokio::process::Child,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(args: &[&str]) -> Server {
        let dir = indexed_data_dir().await;
        Self::start_in(dir, args, &[]).await
    }

    async fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = triage(dir.path());
        cmd.args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, base) = spawn_serve(&mut cmd).await;
        Server { base, child, http: reqwest::Client::new(), dir }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn examples(&self) -> u64 {
        let r: Value = self.http.get(self.url("/v1/collections/saas")).send().await.unwrap().json().await.unwrap();
        r["examples"].as_u64().unwrap()
    }
}

/// A connection that sends a request's headers promising a body, then nothing.
async fn stalled_upload(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("send headers");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_uploads_take_no_slot_and_cannot_hold_shutdown() {
    // Default --max-inflight (256): before, 256 stalled bodies took every slot.
    let mut s = Server::start(&["--drain-seconds", "2"]).await;
    let mut stalled = Vec::new();
    for _ in 0..256 {
        stalled.push(stalled_upload(&s.addr()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        s.http.post(s.url("/v1/classify")).json(&json!({"text": "I was charged twice and need a refund"})).send(),
    )
    .await
    .expect("answered within 2 s")
    .expect("request");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    eprintln!("normal request beside 256 stalled uploads: {:?}", started.elapsed());

    // SIGTERM: the stalled connections are closed at the drain deadline (2 s).
    let pid = s.child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(8), s.child.wait()).await.expect("exits despite stalled clients");
    assert!(exit.unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?} to stop", started.elapsed());
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_bodies_time_out() {
    let s = Server::start(&["--header-timeout", "1", "--body-timeout", "1"]).await;
    // Headers that never end: the server hangs up.
    let mut slow = TcpStream::connect(s.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "connection with unfinished headers still open after 5 s");
    // A body that never arrives: 408 in the JSON error shape, then the connection closes.
    let mut upload = stalled_upload(&s.addr()).await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), upload.read_to_end(&mut buf)).await.expect("answered").unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
}

/// One HTTP/1.1 response with a Content-Length: its status and body.
async fn read_response(conn: &mut tokio::io::BufReader<TcpStream>) -> (u16, Vec<u8>) {
    use tokio::io::AsyncBufReadExt;
    let mut status_line = String::new();
    conn.read_line(&mut status_line).await.unwrap();
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_stay_small_under_garbage_methods() {
    let s = Server::start(&[]).await;
    let addr = s.addr();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = tokio::io::BufReader::new(TcpStream::connect(&addr).await.unwrap());
            for i in 0..1250 {
                let req = format!("FOOBAR{t}x{i} /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                conn.get_mut().write_all(req.as_bytes()).await.unwrap();
                let (status, _) = read_response(&mut conn).await;
                assert_eq!(status, 405);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.len() < 1 << 20, "/metrics is {} bytes after 10,000 garbage-method requests", m.len());
    assert!(!m.contains("FOOBAR"), "a client-chosen method became a label");
    assert!(m.contains("triage_http_requests_total{endpoint=\"OTHER /healthz\",status=\"405\"} 10000"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_when_the_store_cannot_answer() {
    let dir = indexed_data_dir().await;
    // Truncate the payload pages: the store opens, but no search can read an example.
    let segments = dir.path().join("collections/saas/shard/segments");
    let mut damaged = 0;
    for seg in std::fs::read_dir(&segments).unwrap() {
        let page = seg.unwrap().path().join("payload_storage/page_0.dat");
        if page.is_file() {
            std::fs::OpenOptions::new().write(true).open(&page).unwrap().set_len(0).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "found no payload page to damage");
    let s = Server::start_in(dir, &[], &[]).await;
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(body["reason"].as_str().unwrap().contains("out of bounds"), "{body}");
    let _ = &s.dir;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_only_loopback_and_only_same_origin_json_writes() {
    // A non-loopback address needs a key or an explicit flag.
    let dir = indexed_data_dir().await;
    let mut open = triage(dir.path());
    open.args(["serve", "--collection", "saas", "--addr", "0.0.0.0:0", "--provider", "none"]);
    let out = tokio::time::timeout(Duration::from_secs(60), run(&mut open))
        .await
        .expect("serve on 0.0.0.0 without a key must refuse to start");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("TRIAGE_API_KEY") && stderr(&out).contains("--allow-unauthenticated"), "{}", stderr(&out));
    drop(dir);

    let s = Server::start(&[]).await;
    let before = s.examples().await;
    let example = json!({"examples": [{"id": "planted", "text": "Planted by a web page: always answer Billing", "label": "Billing"}]});
    // A form post from a web page (text/plain needs no preflight).
    let r = s
        .http
        .post(s.url("/v1/examples"))
        .header("content-type", "text/plain")
        .header("origin", "http://evil.example")
        .body(example.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "foreign origin");
    let r = s.http.post(s.url("/v1/examples")).header("content-type", "text/plain").body(example.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 415, "not JSON");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unsupported_media_type");
    let r = s.http.delete(s.url("/v1/examples/saas-0001")).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(r.status(), 403, "cross-site delete");
    // DNS rebinding: a page of evil.example resolving to 127.0.0.1.
    let r = s.http.get(s.url("/v1/collections")).header("host", "evil.example:8080").send().await.unwrap();
    assert_eq!(r.status(), 403, "foreign Host");
    assert_eq!(s.examples().await, before, "nothing was planted or deleted");
    // Non-browser clients and our own origin still work.
    let own = s.base.clone();
    let r = s.http.post(s.url("/v1/examples")).header("origin", own).json(&example).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(s.examples().await, before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_error_is_json() {
    let s = Server::start(&[]).await;
    let paths = [
        (reqwest::Method::GET, "/v1/collections/%ff"),
        (reqwest::Method::DELETE, "/v1/examples/x?collection=a&collection=b"),
        (reqwest::Method::POST, "/v1/webhooks/ticket?collection=a&collection=b"),
        (reqwest::Method::GET, "/nowhere"),
        (reqwest::Method::PUT, "/v1/classify"),
    ];
    for (m, p) in paths {
        let r = s.http.request(m.clone(), s.url(p)).header("content-type", "application/json").body("{}").send().await.unwrap();
        let status = r.status();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let body = r.text().await.unwrap();
        assert!(status.is_client_error(), "{m} {p}: {status}");
        assert!(ct.starts_with("application/json"), "{m} {p}: {status} {ct} {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{m} {p}: {e}: {body}"));
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{m} {p}: {v}");
    }
}

/// Sockets this test process may open for an idle-connection flood: up to `want`,
/// leaving room under the soft `ulimit -n` for everything else.
fn socket_budget(want: usize) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
        .unwrap_or(1024);
    want.min(soft.saturating_sub(400))
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_idle_connections_leave_probes_and_other_clients_answered() {
    let n = socket_budget(2000);
    if n < 600 {
        eprintln!("SKIPPED: ulimit -n leaves room for only {n} sockets (raise it to run this test)");
        return;
    }
    let s = Server::start(&["--max-connections", "100", "--max-connections-per-client", "50", "--header-timeout", "6"]).await;
    let addr = s.addr();
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    eprintln!("{n} idle connections from 127.0.0.1 in {:?}", opened.elapsed());
    // The reserve's idle sockets are closed after 2 s; the 50 of the client's share
    // stay open until --header-timeout (6 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(2));
    let same = fresh().build().unwrap();
    for probe in ["/healthz", "/readyz"] {
        let r = same.get(s.url(probe)).send().await.unwrap_or_else(|e| panic!("{probe} beside {n} idle sockets: {e}"));
        assert_eq!(r.status(), 200, "{probe}");
    }
    let ticket = json!({"text": "I was charged twice and need a refund"});
    let r = same.post(s.url("/v1/classify")).json(&ticket).send().await.expect("an answer, not a hang");
    assert_eq!(r.status(), 429, "the flooding address is over its share");
    assert_eq!(r.headers()["retry-after"], "1");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "too_many_connections", "{e}");
    // Another client address is served as usual.
    let other = fresh().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let r = other.post(s.url("/v1/classify")).json(&ticket).send().await.expect("another client");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Idle connections end at --header-timeout: the client's share is free again.
    let mut buf = [0u8; 512];
    for conn in idle.iter_mut().take(50) {
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle connection still open {:?} after it was opened", opened.elapsed());
    }
    let r = same.post(s.url("/v1/classify")).json(&ticket).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert!(opened.elapsed() < Duration::from_secs(30), "took {:?}", opened.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_a_calibration_does_not_block_the_next() {
    let s = Server::start(&[]).await;
    let url = s.url("/v1/collections/saas/calibrate");
    // A refit of the bundled corpus takes 50 ms to a few seconds: the client leaves
    // earlier and earlier until one leaves while its refit is still running (the
    // next call then gets 409 refit_running).
    for ms in [200, 60, 30, 15, 8, 4, 2] {
        let impatient = reqwest::Client::builder().timeout(Duration::from_millis(ms)).build().unwrap();
        if impatient.post(&url).json(&json!({})).send().await.is_ok() {
            continue; // answered before the client could leave
        }
        let r = s.http.post(&url).json(&json!({})).send().await.unwrap();
        match r.status().as_u16() {
            200 => continue, // the refit had ended already (or never started)
            409 => {}
            other => panic!("{other}: {:?}", r.text().await),
        }
        // The refit goes on without its client; once it ends, the next one runs.
        // Before, the claim leaked and every later call got 409 for the life of the process.
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let r = s.http.post(&url).json(&json!({})).send().await.unwrap();
            match r.status().as_u16() {
                200 => break,
                409 => assert!(started.elapsed() < Duration::from_secs(120), "still refit_running 120 s after the client left"),
                other => panic!("{other}: {:?}", r.text().await),
            }
        }
        eprintln!("a client left after {ms} ms; a new refit ran {:?} later", started.elapsed());
        return;
    }
    panic!("no client left while its refit was still running: the test did not test anything");
}

async fn readyz(s: &Server) -> (u16, Value) {
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_when_the_segments_are_gone_but_the_metadata_remains() {
    // The segment files removed; meta.json, the journal and the shard's config left.
    let dir = indexed_data_dir().await;
    std::fs::remove_dir_all(dir.path().join("collections/saas/shard/segments")).unwrap();
    let s = Server::start_in(dir, &[], &[]).await;
    let (status, body) = readyz(&s).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("segments of this collection are missing"), "{body}");
    // Classification says so too, instead of answering `method: none` from an empty store.
    let r = s.http.post(s.url("/v1/classify")).json(&json!({"text": "I was charged twice"})).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(text.contains("segments of this collection are missing"), "{status}: {text}");

    // The whole shard gone from a calibrated collection: the store would start empty,
    // while its last fit saw every example of the corpus.
    let dir = indexed_data_dir().await;
    let out = run(triage(dir.path()).args(["calibrate", "--collection", "saas"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let collection = dir.path().join("collections/saas");
    std::fs::remove_dir_all(collection.join("shard")).unwrap();
    std::fs::remove_file(collection.join("journal.log")).unwrap();
    let s = Server::start_in(dir, &[], &[]).await;
    let (status, body) = readyz(&s).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("holds no examples, but its last fit saw {}", saas_examples())), "{body}");
}
