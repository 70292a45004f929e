//! Fixtures for the tests that need a real Qdrant: the server `scripts/test.sh` starts
//! (QDRANT_URL), a 3-node cluster started here through `scripts/qdrant-cluster.sh`, and the
//! two backends side by side for the parity suite.
//!
//! Those tests are `#[ignore]`d, so a plain `cargo test` reports them as ignored, never as
//! passed. `scripts/test.sh` runs them (`--include-ignored`) when it has a server; run by
//! hand without one, they fail saying what is missing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::common::*;

/// The Qdrant server the tests run against (gRPC URL).
pub fn server_url() -> String {
    std::env::var("QDRANT_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| {
        panic!(
            "this test needs a Qdrant server: set QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334), or run \
             ./scripts/test.sh, which starts one from ../shared/bin/qdrant"
        )
    })
}

/// The Qdrant server binary, for tests that start their own cluster.
pub fn qdrant_bin() -> PathBuf {
    let bin = std::env::var_os("QDRANT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("..").join("shared").join("bin").join("qdrant"));
    assert!(bin.is_file(), "this test needs the Qdrant server binary: set QDRANT_BIN (tried {})", bin.display());
    bin
}

/// A collection name no other test (or earlier run) on the shared server uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `triage` against the Qdrant server at `url`, with `data_dir` as its (unused) data dir.
pub fn triage_on(url: &str, data_dir: &Path) -> tokio::process::Command {
    let mut cmd = triage(data_dir);
    cmd.env("QDRANT_URL", url);
    if let Ok(k) = std::env::var("QDRANT_API_KEY") {
        cmd.env("QDRANT_API_KEY", k);
    }
    cmd
}

pub async fn run_ok(cmd: &mut tokio::process::Command) -> Output {
    let out = run(cmd).await;
    assert!(out.status.success(), "{:?} failed: {}", cmd.as_std(), stderr(&out));
    out
}

/// One store backend with one collection name: the embedded store in a temp dir, or the
/// Qdrant server (the temp dir is then the data dir nothing should be written to).
pub struct Side {
    pub label: &'static str,
    pub dir: tempfile::TempDir,
    pub url: Option<String>,
}

impl Side {
    pub fn edge() -> Side {
        Side { label: "edge", dir: tempfile::tempdir().expect("tempdir"), url: None }
    }

    pub fn server() -> Side {
        Side { label: "server", dir: tempfile::tempdir().expect("tempdir"), url: Some(server_url()) }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self) -> tokio::process::Command {
        match &self.url {
            Some(u) => triage_on(u, &self.data_dir()),
            None => triage(&self.data_dir()),
        }
    }

    pub async fn ok(&self, args: &[&str]) -> Output {
        run_ok(self.cmd().args(args)).await
    }

    pub async fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args).await;
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{} {args:?}: not JSON ({e}): {}", self.label, stdout(&out)))
    }

    /// Best effort: server collections outlive the test otherwise.
    pub async fn drop_collection(&self, name: &str) {
        let _ = run(self.cmd().args(["collections", "delete", name, "--yes"])).await;
    }
}

/// Numbers equal within `tol`, everything else exactly; `path` names the place of a difference.
pub fn assert_close(a: &Value, b: &Value, tol: f64, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            assert!((x - y).abs() <= tol, "{path}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths differ: {a} vs {b}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, tol, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(x), keys(y), "{path}: fields differ");
            for (k, v) in x {
                assert_close(v, &y[k], tol, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// `v` without the named fields, at any depth.
pub fn without(v: &Value, fields: &[&str]) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !fields.contains(&k.as_str())).map(|(k, v)| (k.clone(), without(v, fields))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| without(v, fields)).collect()),
        other => other.clone(),
    }
}

/// A 3-node Qdrant cluster on loopback, started by `scripts/qdrant-cluster.sh` and stopped
/// when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    env: std::collections::HashMap<String, String>,
}

impl Cluster {
    pub fn script() -> PathBuf {
        repo().join("scripts").join("qdrant-cluster.sh")
    }

    fn control(&self, args: &[&str]) {
        let out = std::process::Command::new(Self::script())
            .arg(args[0])
            .arg(self.dir.path().join("c"))
            .args(&args[1..])
            .env("QDRANT_BIN", qdrant_bin())
            .output()
            .expect("qdrant-cluster.sh runs");
        assert!(out.status.success(), "qdrant-cluster.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Cluster { dir, env: Default::default() };
        c.control(&["start"]);
        let text = std::fs::read_to_string(c.dir.path().join("c").join("env")).expect("cluster env file");
        c.env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        c
    }

    /// gRPC URL of node `i` (1-based), what triage takes.
    pub fn grpc(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.env[&format!("NODE{i}_GRPC")])
    }

    /// REST URL of node `i`.
    pub fn http(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.env[&format!("NODE{i}_HTTP")])
    }

    pub fn kill_node(&self, i: usize) {
        self.control(&["node-stop", &i.to_string(), "--kill"]);
    }

    pub fn start_node(&self, i: usize) {
        self.control(&["node-start", &i.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .arg("stop")
            .arg(self.dir.path().join("c"))
            .env("QDRANT_BIN", qdrant_bin())
            .output();
    }
}
