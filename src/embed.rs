//! Embedding: the `Embedder` role, a fastembed implementation that runs the ONNX model
//! on worker threads of its own (never on an async runtime worker) and batches concurrent
//! requests, and a deterministic hashing embedder for tests.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

/// Name of the offline model that `scripts/setup.sh` installs under `models/`.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2-qint8";
/// Texts longer than this are cut before tokenization: the model reads at most
/// 256 tokens, so tokenizing a 1 MB ticket would only burn time.
pub const MAX_EMBED_CHARS: usize = 4096;
/// Largest number of texts the worker takes from the queue at once (one request is
/// never split: a 4,096-ticket request is sorted and run as a whole).
const MAX_BATCH: usize = 256;
/// Texts per ONNX Runtime call (`TRIAGE_EMBED_BATCH` overrides it, for tuning).
/// After sorting by token count, larger batches barely reduce padding further, and
/// the CPU time per text grows with the batch (activations leave the cache).
const MODEL_BATCH: usize = 16;

/// Texts per ONNX Runtime call when only a few texts are queued (concurrent API
/// requests): tickets of mixed lengths, unsorted in any useful way, so one call per
/// ticket wastes nothing on padding. Measured with scripts/bench-api.sh-style runs
/// (saas-support tickets, 2 workers, 8 connections, 10 s): 1 text per call 538 requests/s,
/// p99 34 ms; 2, 475/s, p99 55 ms; 4, 447/s, p99 101 ms.
const SMALL_MODEL_BATCH: usize = 1;
/// Below this many queued texts the small batch applies; bulk loads (sorted, so each
/// batch holds texts of nearly one length) keep `MODEL_BATCH`.
const SMALL_JOB: usize = 64;

fn model_batch(texts: usize) -> usize {
    static N: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let forced = *N.get_or_init(|| std::env::var("TRIAGE_EMBED_BATCH").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0));
    forced.unwrap_or(if texts < SMALL_JOB { SMALL_MODEL_BATCH } else { MODEL_BATCH })
}

/// Cumulative embedding counters of this process, for the timing breakdown that
/// `index` and `classify` log at `-v` (see README "Speed").
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EmbedStats {
    pub texts: u64,
    /// ONNX Runtime calls.
    pub batches: u64,
    /// Tokens of the texts themselves ([CLS] and [SEP] included).
    pub tokens: u64,
    /// Tokens the model computed: each batch is padded to its longest text.
    pub padded_tokens: u64,
    /// Counting tokens to sort by them (a separate tokenizer pass), seconds.
    pub sort_seconds: f64,
    /// fastembed's embed call: tokenization, ONNX Runtime, mean pooling, seconds.
    pub model_seconds: f64,
}

static STATS: std::sync::Mutex<EmbedStats> =
    std::sync::Mutex::new(EmbedStats { texts: 0, batches: 0, tokens: 0, padded_tokens: 0, sort_seconds: 0.0, model_seconds: 0.0 });

/// A snapshot of this process's embedding counters.
pub fn embed_stats() -> EmbedStats {
    *STATS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn add_stats(f: impl FnOnce(&mut EmbedStats)) {
    f(&mut STATS.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
}

/// ONNX Runtime's intra-op threads busy-wait for work between operators by default.
/// This model runs many small operators, so on a machine whose cores are shared
/// (other processes, the tokio runtime, HNSW search) the spinning threads take CPU
/// from the threads with work: measured on 2 shared cores, embedding ran 1.4-2x
/// faster without it. `TRIAGE_ORT_SPIN=1` turns it back on.
fn ort_spinning() -> &'static str {
    match std::env::var("TRIAGE_ORT_SPIN").as_deref() {
        Ok("1") | Ok("true") => "1",
        _ => "0",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{0}")]
    Setup(String),
    #[error("embedding failed: {0}")]
    Inference(String),
    #[error("the embedding worker has stopped")]
    WorkerGone,
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Identifies the model; stored with each collection so a mismatch is caught.
    fn model_name(&self) -> &str;
    fn dim(&self) -> usize;
    /// One L2-normalised vector per text, in order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
}

fn clip(text: &str) -> &str {
    if text.len() <= MAX_EMBED_CHARS {
        return text;
    }
    let mut end = MAX_EMBED_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where the embedding model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A folder holding `model.onnx` and the tokenizer files (offline).
    Local { name: String, dir: PathBuf },
    /// A fastembed hub model (downloaded on first use; needs internet).
    Hub { name: String, model: fastembed::EmbeddingModel },
}

impl ModelSource {
    /// Resolve `--embedding-model`: a folder under `models_dir`, a path to a folder,
    /// or a fastembed model name (`sentence-transformers/all-MiniLM-L6-v2` or `AllMiniLML6V2`).
    pub fn resolve(spec: &str, models_dir: &Path) -> Result<Self, EmbedError> {
        for dir in [models_dir.join(spec), PathBuf::from(spec)] {
            if dir.join("model.onnx").is_file() {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| spec.to_string());
                return Ok(ModelSource::Local { name, dir });
            }
        }
        // Exact hub code or enum name first, then the bare model name, so that
        // "sentence-transformers/all-MiniLM-L6-v2" finds "Qdrant/all-MiniLM-L6-v2-onnx".
        let models = fastembed::TextEmbedding::list_supported_models();
        let bare = |s: &str| {
            let base = s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase();
            base.strip_suffix("-onnx").map(str::to_string).unwrap_or(base)
        };
        let found = models
            .iter()
            .find(|m| m.model_code.eq_ignore_ascii_case(spec) || format!("{:?}", m.model).eq_ignore_ascii_case(spec))
            .or_else(|| models.iter().find(|m| bare(&m.model_code) == bare(spec)))
            .cloned();
        match found {
            Some(info) => Ok(ModelSource::Hub { name: info.model_code.clone(), model: info.model }),
            None if spec == DEFAULT_MODEL => Err(EmbedError::Setup(format!(
                "the default embedding model is not installed in {}: run ./scripts/setup.sh",
                models_dir.join(spec).display()
            ))),
            None => Err(EmbedError::Setup(format!(
                "unknown embedding model {spec:?}: not a folder with model.onnx (looked in {} and the current \
                 directory) and not a fastembed model name",
                models_dir.display()
            ))),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ModelSource::Local { name, .. } | ModelSource::Hub { name, .. } => name,
        }
    }
}

/// Load ONNX Runtime from `ORT_DYLIB_PATH`, else from `models_dir/onnxruntime/`.
/// Must run before the first model is built (ort panics otherwise).
pub fn init_onnx_runtime(models_dir: &Path) -> Result<(), EmbedError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        let path = match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => models_dir.join("onnxruntime").join("libonnxruntime.so"),
        };
        if !path.exists() {
            return Err(format!(
                "ONNX Runtime library not found at {}: run ./scripts/setup.sh or set ORT_DYLIB_PATH",
                path.display()
            ));
        }
        // Loads the library; the returned environment builder is not needed (defaults apply).
        ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
        Ok(())
    })
    .clone()
    .map_err(EmbedError::Setup)
}

type Job = (Vec<String>, oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>);

/// fastembed on dedicated threads (never on an async runtime worker). Concurrent
/// `embed` calls queue on one channel; each worker holds its own model session and takes
/// from the queue: a bulk job whole (up to `MAX_BATCH` texts, sorted by length so short
/// tickets are not padded to the longest), small jobs one model call at a time. One
/// worker using every core suits bulk loads; one single-threaded worker per core suits
/// many small concurrent requests (`serve`): ONNX Runtime spreads a one-ticket call
/// poorly over two threads, while two sessions keep both cores busy.
pub struct FastEmbedder {
    name: String,
    dim: usize,
    tx: mpsc::Sender<Job>,
}

impl FastEmbedder {
    /// Load the model on `workers` threads (each its own ONNX Runtime session), each
    /// using `threads` intra-op threads [default: the cores divided among the workers].
    pub fn load(
        source: &ModelSource,
        models_dir: &Path,
        threads: Option<usize>,
        workers: usize,
    ) -> Result<Self, EmbedError> {
        init_onnx_runtime(models_dir)?;
        let workers = workers.max(1);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = threads.unwrap_or((cores / workers).max(1));
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut dim = 0;
        for n in 0..workers {
            let mut model = build_model(source, models_dir, threads)?;
            let probe = model
                .embed(vec!["dimension probe"], None)
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            dim = probe.first().map(Vec::len).unwrap_or(0);
            if dim == 0 {
                return Err(EmbedError::Setup("the embedding model returned an empty vector".into()));
            }
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("embedder-{n}"))
                .spawn(move || worker(model, &rx))
                .map_err(|e| EmbedError::Setup(format!("cannot start the embedding thread: {e}")))?;
        }
        Ok(FastEmbedder { name: source.name().to_string(), dim, tx })
    }
}

fn build_model(source: &ModelSource, models_dir: &Path, threads: usize) -> Result<fastembed::TextEmbedding, EmbedError> {
    match source {
        ModelSource::Local { dir, .. } => {
            let read = |f: &str| {
                std::fs::read(dir.join(f))
                    .map_err(|e| EmbedError::Setup(format!("cannot read {}: {e}", dir.join(f).display())))
            };
            let tokenizer = fastembed::TokenizerFiles {
                tokenizer_file: read("tokenizer.json")?,
                config_file: read("config.json")?,
                special_tokens_map_file: read("special_tokens_map.json")?,
                tokenizer_config_file: read("tokenizer_config.json")?,
            };
            let model = fastembed::UserDefinedEmbeddingModel::new(read("model.onnx")?, tokenizer)
                .with_pooling(fastembed::Pooling::Mean);
            let opts = fastembed::InitOptionsUserDefined::new()
                .with_max_length(256)
                .with_intra_threads(threads)
                .with_session_config("session.intra_op.allow_spinning", ort_spinning());
            fastembed::TextEmbedding::try_new_from_user_defined(model, opts)
                .map_err(|e| EmbedError::Setup(format!("cannot load the model in {}: {e}", dir.display())))
        }
        ModelSource::Hub { model, name } => {
            let opts = fastembed::TextInitOptions::new(model.clone())
                .with_cache_dir(models_dir.join("fastembed-cache"))
                .with_show_download_progress(false)
                .with_intra_threads(threads)
                .with_session_config("session.intra_op.allow_spinning", ort_spinning());
            fastembed::TextEmbedding::try_new(opts).map_err(|e| {
                EmbedError::Setup(format!("cannot load hub model {name} (needs internet on first use): {e}"))
            })
        }
    }
}

/// One embedding worker: takes whatever has queued up (the queue is shared; while one
/// worker runs the model, the next one waits on the queue) and embeds it as one job.
fn worker(mut model: fastembed::TextEmbedding, rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let jobs = {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Ok(first) = rx.recv() else { return };
            // Small jobs (API requests): take one model call's worth, so replies go out
            // after one call and other workers take the rest. Bulk jobs: up to MAX_BATCH.
            let mut n = first.0.len();
            let limit = if n < SMALL_JOB { model_batch(n) } else { MAX_BATCH };
            let mut jobs = vec![first];
            while n < limit {
                match rx.try_recv() {
                    Ok(job) => {
                        n += job.0.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let texts: Vec<&str> = jobs.iter().flat_map(|(t, _)| t.iter().map(|s| clip(s))).collect();
        match embed_sorted(&mut model, &texts) {
            Ok(vectors) => {
                let mut rest = vectors.into_iter();
                for (t, reply) in jobs {
                    let mine: Vec<Vec<f32>> = rest.by_ref().take(t.len()).collect();
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for (_, reply) in jobs {
                    let _ = reply.send(Err(EmbedError::Inference(e.clone())));
                }
            }
        }
    }
}

/// Embed in token-count order, so each batch of `MODEL_BATCH` is padded to a length
/// close to its own texts' (BANKING77 train: 165k tokens computed for 162k real ones,
/// against 375k in unsorted batches of 32), and return the vectors in input order.
/// Counting the tokens costs a second tokenizer pass, about 1% of the model's time.
fn embed_sorted(model: &mut fastembed::TextEmbedding, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
    let started = std::time::Instant::now();
    // Batch encoding runs on all cores; fastembed's tokenizer pads, so count the mask.
    let lengths: Vec<usize> = match model.tokenizer.encode_batch_fast(texts.to_vec(), true) {
        Ok(encodings) => {
            encodings.iter().map(|e| e.get_attention_mask().iter().map(|&m| m as usize).sum()).collect()
        }
        Err(_) => texts.iter().map(|t| t.len()).collect(),
    };
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let sorted: Vec<&str> = order.iter().map(|&i| texts[i]).collect();
    let sort_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let batch = model_batch(texts.len());
    let vectors = model.embed(sorted, Some(batch)).map_err(|e| e.to_string())?;
    let model_seconds = started.elapsed().as_secs_f64();
    let sorted_lengths: Vec<usize> = order.iter().map(|&i| lengths[i]).collect();
    add_stats(|s| {
        s.texts += texts.len() as u64;
        s.batches += sorted_lengths.chunks(batch).count() as u64;
        s.tokens += sorted_lengths.iter().sum::<usize>() as u64;
        s.padded_tokens +=
            sorted_lengths.chunks(batch).map(|c| c.iter().max().unwrap_or(&0) * c.len()).sum::<usize>() as u64;
        s.sort_seconds += sort_seconds;
        s.model_seconds += model_seconds;
    });
    let mut out = vec![Vec::new(); texts.len()];
    for (v, &i) in vectors.into_iter().zip(&order) {
        out[i] = v;
    }
    Ok(out)
}

#[async_trait]
impl Embedder for FastEmbedder {
    fn model_name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.dim
    }
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send((texts, reply)).map_err(|_| EmbedError::WorkerGone)?;
        rx.await.map_err(|_| EmbedError::WorkerGone)?
    }
}

/// Deterministic bag-of-words hashing embedder: texts sharing words get similar
/// vectors. For tests and for trying the pipeline without a model; not for accuracy.
pub struct HashEmbedder {
    dim: usize,
}

impl HashEmbedder {
    pub const NAME: &'static str = "hash";
    pub fn new(dim: usize) -> Self {
        HashEmbedder { dim }
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model_name(&self) -> &str {
        Self::NAME
    }
    fn dim(&self) -> usize {
        self.dim
    }
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        use sha2::{Digest, Sha256};
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; self.dim];
                for w in clip(t).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                    let h = Sha256::digest(w.to_lowercase().as_bytes());
                    let i = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize % self.dim;
                    v[i] += if h[4] & 1 == 0 { 1.0 } else { -1.0 };
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                } else {
                    v[0] = 1.0;
                }
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_embedder_is_deterministic_and_normalised() {
        let e = HashEmbedder::new(64);
        let v = e.embed(vec!["refund my money".into(), "refund my money".into(), "".into()]).await.unwrap();
        assert_eq!(v[0], v[1]);
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v[2].len(), 64);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(MAX_EMBED_CHARS);
        let c = clip(&s);
        assert!(c.len() <= MAX_EMBED_CHARS && c.is_char_boundary(c.len()));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn unknown_model_name_is_a_clear_error() {
        let err = ModelSource::resolve("no-such-model", Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("unknown embedding model"));
        let err = ModelSource::resolve(DEFAULT_MODEL, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("setup.sh"));
        assert!(matches!(
            ModelSource::resolve("sentence-transformers/all-MiniLM-L6-v2", Path::new("/x")),
            Ok(ModelSource::Hub { .. })
        ));
    }
}
