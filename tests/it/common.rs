//! Shared fixtures: paths, running the binary, a pre-indexed data dir, fake LLM replies.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::{json, Value};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn models_dir() -> PathBuf {
    let dir = repo().join("models");
    assert!(
        dir.join("all-minilm-l6-v2-int8").join("model.onnx").is_file(),
        "models/ is missing: run ./scripts/setup.sh (./scripts/test.sh does it for you)"
    );
    dir
}

pub fn saas_corpus() -> PathBuf {
    repo().join("examples_store").join("saas-support")
}

/// How many examples the bundled corpus holds (counted, so a corpus edit
/// does not break every test that indexes it).
pub fn saas_examples() -> usize {
    std::fs::read_to_string(saas_corpus().join("examples.jsonl")).unwrap().lines().filter(|l| !l.trim().is_empty()).count()
}

/// The binary with a clean environment: no LLM keys or URLs leak in from the host.
pub fn triage(data_dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_triage"));
    for var in [
        "TRIAGE_LLM_API_KEY",
        "OXLO_API_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "TRIAGE_LLM_PROVIDER",
        "TRIAGE_LLM_BASE_URL",
        "TRIAGE_LLM_MODEL",
        "QDRANT_URL",
        "TRIAGE_LOG",
    ] {
        cmd.env_remove(var);
    }
    // XDG_DATA_HOME too: a test that drops TRIAGE_DATA_DIR still never writes to the user's home.
    cmd.env("TRIAGE_DATA_DIR", data_dir)
        .env("XDG_DATA_HOME", data_dir.join("xdg-data-home"))
        .env("TRIAGE_MODELS_DIR", models_dir())
        .env("TRIAGE_EMBED_THREADS", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

pub async fn run(cmd: &mut tokio::process::Command) -> Output {
    cmd.output().await.expect("the triage binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Parse JSON-lines output.
pub fn results(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `triage classify --format jsonl` of `texts` against `collection` in `data`, with
/// `extra` flags; the results, once it succeeded.
pub async fn classify_jsonl(data: &Path, collection: &str, extra: &[&str], texts: &[&str]) -> Vec<Value> {
    let out = run(triage(data).args(["classify", "--collection", collection, "--format", "jsonl"]).args(extra).args(texts)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    results(&out)
}

/// Which stored fit a result used: the examples it was fitted on and those of its
/// head, each `None` when that part was not used (no fit, another k, no head).
pub fn fit_used(r: &Value) -> (Option<u64>, Option<u64>) {
    (r["fit"]["examples"].as_u64(), r["fit"]["head"]["examples"].as_u64())
}

/// A data dir with `saas` indexed from the bundled corpus, copied fresh for each
/// test so that tests never share a live store.
pub async fn indexed_data_dir() -> tempfile::TempDir {
    static GOLDEN: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    golden_data_dir(&GOLDEN, &LOCK, &saas_corpus(), "saas").await
}

/// A fresh copy of a data dir holding `collection` indexed from `corpus`; the corpus is
/// indexed once per test binary (into `golden`, guarded by `lock`).
pub async fn golden_data_dir(
    golden: &'static OnceLock<PathBuf>,
    lock: &'static tokio::sync::Mutex<()>,
    corpus: &Path,
    collection: &str,
) -> tempfile::TempDir {
    let golden = {
        let _guard = lock.lock().await;
        match golden.get() {
            Some(p) => p.clone(),
            None => {
                let dir = tempfile::tempdir().expect("tempdir").keep();
                let out = run(triage(&dir).args(["index"]).arg(corpus).args(["--collection", collection])).await;
                assert!(out.status.success(), "indexing {} failed: {}", corpus.display(), stderr(&out));
                golden.set(dir.clone()).ok();
                dir
            }
        }
    };
    let fresh = tempfile::tempdir().expect("tempdir");
    copy_dir(&golden, fresh.path());
    fresh
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// An OpenAI chat-completions reply whose message content is `content`.
pub fn openai_reply(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366}
    })
}

pub fn answer(category: &str, urgency: &str, confidence: f64) -> String {
    json!({
        "reasoning": "scripted",
        "category": category,
        "urgency": urgency,
        "summary": "Scripted summary of the ticket",
        "confidence": confidence
    })
    .to_string()
}

/// The label of the first (most similar) demonstration in a user prompt.
pub fn first_demo_label(prompt: &str) -> Option<String> {
    let at = prompt.find("label: ")?;
    let line = prompt[at + 7..].lines().next()?;
    let v: Value = serde_json::from_str(line).ok()?;
    v["category"].as_str().map(str::to_string)
}

pub fn user_prompt(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Spawn a prepared `triage serve ... --addr 127.0.0.1:0` command and wait until it
/// listens; returns the child (killed on drop) and its base URL. Stderr keeps draining
/// so the server never blocks on a full pipe.
pub async fn spawn_serve(cmd: &mut tokio::process::Command) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    cmd.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("triage serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(rest) = line.strip_prefix("listening on ") {
                return rest.split_whitespace().next().expect("address").to_string();
            }
        }
        panic!("triage serve exited before listening");
    })
    .await
    .expect("triage serve listens within 120 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}
