//! The review page driven end to end in a real headless Chromium through WebDriver
//! (Debian's `chromium` and `chromium-driver`; `scripts/setup-chromium.sh` installs them,
//! `scripts/test.sh` then requires this test to run). Flagged tickets are posted through
//! the API; the page signs in with the key, shows them, and each is corrected with the
//! keyboard and the searchable label picker; the queue entries are gone, a paraphrase is
//! then classified with the corrected label, and the examples' provenance names the
//! reviewer. The page must fit a 1,280 px and a phone-width window.
//!
//! WebDriver is JSON over HTTP: spoken here with reqwest, no client crate.
//! Without Chromium or chromedriver the test says SKIPPED and passes, unless
//! TRIAGE_REQUIRE_CHROMIUM is set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;

const KEY: &str = "ui-key-1";
const PARROT: [&str; 3] = [
    "My parrot chewed through the cable of the office printer and now nothing prints from your app",
    "A parrot bit through the printer cable in our office and printing from your app stopped",
    "Our office bird chewed the printer wire, nothing prints from the app now",
];
const PROBE: &str = "The office printer cable got chewed up by my parrot, so nothing from your app prints anymore";

fn on_path(names: &[&str], env: &str) -> Option<PathBuf> {
    if let Some(c) = std::env::var_os(env) {
        return Some(PathBuf::from(c));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
}

struct Driver {
    http: reqwest::Client,
    url: String,
    _child: tokio::process::Child,
}

impl Driver {
    async fn start(driver: &PathBuf, chrome: &PathBuf, profile: &std::path::Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chrome,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display())],
        }}}});
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}"));
        Driver { url: format!("{base}/session/{id}"), http, _child: child }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self.http.request(method, format!("{}{path}", self.url)).json(&body).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "{path}: {v}");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    /// Poll `script` until it returns true.
    async fn wait(&self, script: &str, what: &str) {
        let started = Instant::now();
        while self.js(script).await != json!(true) {
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for ch in text.chars() {
            actions.push(json!({"type": "keyDown", "value": ch.to_string()}));
            actions.push(json!({"type": "keyUp", "value": ch.to_string()}));
        }
        self.post("/actions", json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})).await;
    }
}

fn key_id(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    format!("key-{}", d[..4].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Whether nothing runs past the window's right edge.
const FITS: &str = "return document.documentElement.scrollWidth <= window.innerWidth + 1 \
    && [...document.querySelectorAll('#app *')].every(e => e.getBoundingClientRect().right <= window.innerWidth + 1);";

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_corrects_flagged_tickets_on_the_page() {
    let (Some(chrome), Some(driver)) =
        (on_path(&["chromium", "chromium-browser", "google-chrome"], "CHROMIUM"), on_path(&["chromedriver"], "CHROMEDRIVER"))
    else {
        assert!(std::env::var_os("TRIAGE_REQUIRE_CHROMIUM").is_none(), "TRIAGE_REQUIRE_CHROMIUM is set but chromium or chromedriver is missing");
        eprintln!("SKIPPED: no chromium or chromedriver (scripts/setup-chromium.sh installs them)");
        return;
    };
    let dir = indexed_data_dir().await;
    let mut cmd = triage(dir.path());
    cmd.args(["serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--provider", "none", "--refit-after", "1"]).env("TRIAGE_API_KEY", KEY);
    let (mut serve, base) = spawn_serve(&mut cmd).await;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{base}{p}");
    let classify = |text: &str, extra: Value| {
        let mut body = json!({"text": text});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        http.post(api("/v1/classify")).bearer_auth(KEY).json(&body).send()
    };
    let before: Value = classify(PROBE, json!({"min_confidence": 0.0})).await.unwrap().json().await.unwrap();
    assert_ne!(before["category"], "Billing", "{before}");
    for (i, text) in PARROT.iter().enumerate() {
        let r: Value = classify(text, json!({"id": format!("P-{i}"), "min_confidence": 1.0})).await.unwrap().json().await.unwrap();
        assert_eq!(r["needs_review"], true, "{r}");
    }

    let d = Driver::start(&driver, &chrome, &dir.path().join("chrome-profile")).await;
    d.post("/window/rect", json!({"width": 1280, "height": 900})).await;
    d.post("/url", json!({"url": api("/ui")})).await;
    d.wait("return document.getElementById('login').offsetParent !== null && document.getElementById('app').offsetParent === null", "the sign-in form, alone").await;
    d.js(&format!("document.getElementById('key').value = {KEY:?}; document.getElementById('login-form').requestSubmit(); return true;")).await;
    d.wait("return document.querySelectorAll('#items li').length === 3 && document.getElementById('login').offsetParent === null", "three queued tickets, the sign-in form gone").await;
    assert_eq!(d.js("return document.getElementById('logout').offsetParent !== null").await, json!(true), "sign-out offered");
    let shown = d.js("return document.getElementById('t-text').textContent").await;
    assert!(PARROT.contains(&shown.as_str().unwrap()), "the first ticket is open: {shown}");
    let why = d.js("return [document.getElementById('t-reason').textContent, document.getElementById('t-neighbours').children.length, document.getElementById('t-label').textContent]").await;
    assert_eq!(why[0], "low_confidence", "why it was flagged: {why}");
    assert!(why[1].as_u64().unwrap() > 0 && why[2] != "Billing", "neighbours and the predicted label: {why}");
    assert_eq!(d.js(FITS).await, json!(true), "the page fits 1,280 px");

    for left in (0..3).rev() {
        d.js("document.activeElement && document.activeElement.blur(); return true;").await;
        d.keys("c").await;
        d.wait("return !document.getElementById('picker').hidden && document.activeElement.id === 'picker-input'", "the label picker").await;
        d.keys("bill").await;
        d.wait("const l = document.querySelectorAll('#picker-list li'); return l.length === 1 && l[0].textContent === 'Billing'", "the picker finds Billing").await;
        d.keys("\u{E007}").await;
        d.wait(&format!("return document.querySelectorAll('#items li').length === {left}"), "the corrected ticket leaves the list").await;
        if left > 0 {
            let next = d.js("return document.getElementById('t-text').textContent").await;
            assert!(PARROT.contains(&next.as_str().unwrap()), "the next ticket opens: {next}");
        }
    }
    d.wait("return document.getElementById('empty').hidden === false", "the empty queue").await;
    d.post("/window/rect", json!({"width": 390, "height": 844})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.js(FITS).await, json!(true), "the page fits a phone-width window");

    let q: Value = http.get(api("/v1/review")).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    assert!(q["items"].as_array().unwrap().iter().all(|i| !i["ticket_id"].as_str().unwrap().starts_with("P-")), "{q}");
    // One refit surely after all three corrections, then the paraphrase.
    let started = Instant::now();
    loop {
        let r = http.post(api("/v1/collections/saas/calibrate")).bearer_auth(KEY).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(r.status() == 409 && started.elapsed() < Duration::from_secs(120), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r: Value = classify(PROBE, json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(r["category"], "Billing", "{r}");
    serve.start_kill().unwrap();
    serve.wait().await.unwrap();
    let out = run(triage(dir.path()).args(["examples", "list", "--collection", "saas", "--source", "review", "--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 3);
    for e in &listed {
        assert_eq!((e["label"].as_str(), e["provenance"]["key"].as_str()), (Some("Billing"), Some(key_id(KEY).as_str())), "{e}");
    }
}
