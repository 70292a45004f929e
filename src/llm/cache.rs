//! An `LlmClient` decorator that keeps answers on disk, keyed by model and the full
//! request, so a rerun of the same evaluation makes no calls and an interrupted run
//! resumes: every answer is written (atomically, one JSON file per key) as soon as
//! it arrives. Also `Throttle`, a decorator that spaces requests to a maximum rate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{LlmClient, LlmError, LlmRequest, LlmResponse, Usage};
use crate::example::hex;

/// What is stored per key.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    text: String,
    usage: Usage,
    model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logprobs: Option<Vec<super::TokenLogprob>>,
}

/// Counts of what went through a [`CachedLlm`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Requests answered from disk.
    pub hits: u64,
    /// Requests sent to the wrapped client (cache misses, or every request with the cache off).
    pub calls: u64,
}

pub struct CachedLlm {
    inner: Arc<dyn LlmClient>,
    dir: PathBuf,
    /// Mixed into every key: the same prompt under another salt is another entry
    /// (used for repeated evaluation runs, which must really ask again).
    salt: String,
    /// `false`: read nothing, write nothing (`--no-cache`).
    enabled: bool,
    hits: AtomicU64,
    calls: AtomicU64,
}

impl CachedLlm {
    pub fn new(inner: Arc<dyn LlmClient>, dir: impl Into<PathBuf>, salt: impl Into<String>, enabled: bool) -> Self {
        CachedLlm {
            inner,
            dir: dir.into(),
            salt: salt.into(),
            enabled,
            hits: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Ordering::SeqCst), calls: self.calls.load(Ordering::SeqCst) }
    }

    /// The cache key: provider, model, salt and every field of the request.
    pub fn key(&self, request: &LlmRequest) -> String {
        let mut h = Sha256::new();
        for part in [self.inner.provider(), self.inner.model(), self.salt.as_str(), request.system.as_str()] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        for m in &request.messages {
            h.update(serde_json::to_vec(m).unwrap_or_default());
            h.update([0u8]);
        }
        h.update(request.schema.to_string().as_bytes());
        h.update(request.max_tokens.to_le_bytes());
        h.update(request.temperature.to_le_bytes());
        hex(&h.finalize()[..16])
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    fn read(&self, path: &Path) -> Option<Entry> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, path: &Path, entry: &Entry) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Write then rename: a crash never leaves a half-written entry behind.
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)
    }
}

#[async_trait]
impl LlmClient for CachedLlm {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        if !self.enabled {
            self.calls.fetch_add(1, Ordering::SeqCst);
            return self.inner.complete(request).await;
        }
        let path = self.path(&self.key(request));
        if let Some(e) = self.read(&path) {
            self.hits.fetch_add(1, Ordering::SeqCst);
            return Ok(LlmResponse { text: e.text, usage: e.usage, model: e.model, attempts: 0, logprobs: e.logprobs });
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let response = self.inner.complete(request).await?;
        let entry = Entry {
            text: response.text.clone(),
            usage: response.usage,
            model: response.model.clone(),
            logprobs: response.logprobs.clone(),
        };
        if let Err(e) = self.write(&path, &entry) {
            tracing::warn!("cannot write LLM cache entry {}: {e}", path.display());
        }
        Ok(response)
    }
}

/// Spaces requests so that at most `per_second` start each second.
pub struct Throttle {
    inner: Arc<dyn LlmClient>,
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Throttle {
    /// `per_second` must be positive.
    pub fn new(inner: Arc<dyn LlmClient>, per_second: f64) -> Self {
        let interval = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
        Throttle { inner, interval, next: tokio::sync::Mutex::new(Instant::now()) }
    }
}

#[async_trait]
impl LlmClient for Throttle {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let start = {
            let mut next = self.next.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + self.interval;
            start
        };
        tokio::time::sleep_until(start).await;
        self.inner.complete(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, Role};

    /// A scripted client: answers with the number of the call.
    struct Counter(AtomicU64);

    #[async_trait]
    impl LlmClient for Counter {
        fn model(&self) -> &str {
            "m"
        }
        fn provider(&self) -> &'static str {
            "test"
        }
        async fn complete(&self, _r: &LlmRequest) -> Result<LlmResponse, LlmError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(LlmResponse {
                text: format!("answer {n}"),
                usage: Usage { prompt_tokens: 10 * n, completion_tokens: n },
                model: "m".into(),
                attempts: 1,
                logprobs: None,
            })
        }
    }

    fn request(text: &str) -> LlmRequest {
        LlmRequest {
            system: "sys".into(),
            messages: vec![Message { role: Role::User, content: text.into() }],
            schema: serde_json::json!({}),
            max_tokens: 10,
            temperature: 0.0,
        }
    }

    #[tokio::test]
    async fn second_identical_request_is_served_from_disk_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(Counter(AtomicU64::new(0)));
        let c = CachedLlm::new(inner.clone(), dir.path(), "", true);
        let a = c.complete(&request("x")).await.unwrap();
        let b = c.complete(&request("x")).await.unwrap();
        assert_eq!(a.text, "answer 1");
        assert_eq!(b.text, "answer 1");
        assert_eq!(b.usage, Usage { prompt_tokens: 10, completion_tokens: 1 }, "usage is kept for cost figures");
        assert_eq!(c.complete(&request("y")).await.unwrap().text, "answer 2");
        assert_eq!(c.stats(), CacheStats { hits: 1, calls: 2 });
        // A new process (new instance) over the same folder makes no call.
        let again = CachedLlm::new(inner.clone(), dir.path(), "", true);
        assert_eq!(again.complete(&request("y")).await.unwrap().text, "answer 2");
        assert_eq!(again.stats(), CacheStats { hits: 1, calls: 0 });
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn salt_and_disabled_cache_make_real_calls() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(Counter(AtomicU64::new(0)));
        let a = CachedLlm::new(inner.clone(), dir.path(), "", true);
        let b = CachedLlm::new(inner.clone(), dir.path(), "repeat-1", true);
        assert_ne!(a.key(&request("x")), b.key(&request("x")));
        a.complete(&request("x")).await.unwrap();
        b.complete(&request("x")).await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        let off = CachedLlm::new(inner.clone(), dir.path(), "", false);
        off.complete(&request("x")).await.unwrap();
        assert_eq!(off.stats(), CacheStats { hits: 0, calls: 1 });
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn throttle_spaces_requests() {
        let inner = Arc::new(Counter(AtomicU64::new(0)));
        let t = Arc::new(Throttle::new(inner, 20.0));
        let started = Instant::now();
        let jobs: Vec<_> = (0..5)
            .map(|i| {
                let t = t.clone();
                tokio::spawn(async move { t.complete(&request(&i.to_string())).await })
            })
            .collect();
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        // Five requests at 20/s: the last starts 200 ms after the first.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
    }
}
