//! [`FastEmbedder`]: the ONNX model through fastembed on worker threads of its own
//! (never on an async runtime worker) that concurrent requests share, and the solo
//! session that serves a lone ticket on every core.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{clip, init_onnx_runtime, EmbedError, Embedder, ModelSource, Pooling};

/// An `embed` call with more texts is cut into jobs of this many, so that every worker
/// takes a share of a bulk load and a small request waits behind one job at most.
const CHUNK: usize = 32;
/// Texts per ONNX Runtime call in a full job (bulk loads: `index`, `classify` of a
/// file, `eval`), after sorting by token count: little padding, and larger calls than
/// one text use the matrix kernels better.
const BULK_MODEL_BATCH: usize = 16;

/// Texts per ONNX Runtime call for a job of `texts` texts: `TRIAGE_EMBED_BATCH` if
/// set, else the model's own `texts_per_call` (see [`ModelSource`]), else one for
/// small jobs (concurrent API requests have mixed lengths, so any batch pads short
/// tickets to the longest: with 2 workers at 8 connections, 1 text per call gave 538
/// requests/s, p99 34 ms; 2, 475/s, p99 55 ms; 4, 447/s, p99 101 ms) and
/// `BULK_MODEL_BATCH` for full jobs.
fn model_batch(model_pref: Option<usize>, texts: usize) -> usize {
    static N: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let forced = *N.get_or_init(|| std::env::var("TRIAGE_EMBED_BATCH").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0));
    forced.or(model_pref).unwrap_or(if texts < CHUNK { 1 } else { BULK_MODEL_BATCH })
}

/// Cumulative embedding counters of this process, for the timing breakdown that
/// `index` and `classify` log at `-v` (see docs/speed.md).
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
    spin_setting(env_switch("TRIAGE_ORT_SPIN", false))
}

/// An on/off environment switch: `1`/`true` on, `0`/`false` off, anything else `default`.
fn env_switch(name: &str, default: bool) -> bool {
    match std::env::var(name).as_deref() {
        Ok("1") | Ok("true") => true,
        Ok("0") | Ok("false") => false,
        _ => default,
    }
}

/// ONNX Runtime's value for `session.intra_op.allow_spinning`.
fn spin_setting(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

type Job = (Vec<String>, oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>);

/// An `embed` call of at most this many texts, made while no other call is in flight,
/// runs on the solo session (see [`FastEmbedder`]).
const SOLO_MAX_TEXTS: usize = 4;

/// Counts `embed` calls in flight; the guard gives its place back when dropped (also
/// when the caller stops waiting).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// fastembed on dedicated threads (never on an async runtime worker). `embed` calls
/// are cut into jobs of at most `CHUNK` texts that queue on one channel; each worker
/// holds its own model session (by default one single-threaded worker per core: ONNX
/// Runtime spreads a one-text call poorly over two threads, two sessions keep both cores
/// busy) and takes one job at a time: small jobs one text per model call, full jobs
/// sorted by token count in calls of `BULK_MODEL_BATCH` (see [`model_batch`]).
///
/// A lone ticket leaves all but one core idle on such a session, so when the pool's
/// sessions use fewer threads than there are cores, one more **solo** session uses them
/// all, and a small call made while no other call is in flight goes to it: a single
/// ticket's latency without oversubscribing the cores under concurrent load (then the
/// pool takes the calls). Only long-running processes load it ([`Self::load_serving`]:
/// `serve`, `bench-latency`); a one-shot command would pay its load time for one
/// ticket. `TRIAGE_EMBED_SOLO=0` turns it off.
pub struct FastEmbedder {
    name: String,
    dim: usize,
    tx: mpsc::Sender<Job>,
    solo: Option<mpsc::Sender<Job>>,
    in_flight: AtomicUsize,
    coverage: Option<Arc<crate::lang::Coverage>>,
}

/// The solo session runs only while no other call is in flight, so its threads may
/// busy-wait between the model's many small operators (`TRIAGE_SOLO_SPIN=0`: not).
fn solo_spinning() -> &'static str {
    spin_setting(env_switch("TRIAGE_SOLO_SPIN", true))
}

fn solo_wanted() -> bool {
    env_switch("TRIAGE_EMBED_SOLO", true)
}

/// How a worker calls its model: texts per call (the model's preference) and the prefix
/// put before every text.
struct Calls {
    per_call: Option<usize>,
    prefix: String,
}

fn calls(source: &ModelSource) -> Calls {
    Calls { per_call: source.texts_per_call(), prefix: source.prefix().to_string() }
}

fn spawn_worker(
    n: &str,
    model: fastembed::TextEmbedding,
    calls: Calls,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
) -> Result<(), EmbedError> {
    std::thread::Builder::new()
        .name(format!("embedder-{n}"))
        .spawn(move || worker(model, &calls, &rx))
        .map(|_| ())
        .map_err(|e| EmbedError::Setup(format!("cannot start the embedding thread: {e}")))
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
        Self::load_with(source, models_dir, threads, workers, false)
    }

    /// [`Self::load`] plus the solo session for lone tickets, for processes that serve
    /// many of them.
    pub fn load_serving(
        source: &ModelSource,
        models_dir: &Path,
        threads: Option<usize>,
        workers: usize,
    ) -> Result<Self, EmbedError> {
        Self::load_with(source, models_dir, threads, workers, true)
    }

    fn load_with(
        source: &ModelSource,
        models_dir: &Path,
        threads: Option<usize>,
        workers: usize,
        solo: bool,
    ) -> Result<Self, EmbedError> {
        init_onnx_runtime(models_dir)?;
        let workers = workers.max(1);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = threads.unwrap_or((cores / workers).max(1));
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut dim = 0;
        let mut coverage = None;
        for n in 0..workers {
            let mut model = build_model(source, models_dir, threads, ort_spinning())?;
            if coverage.is_none() {
                let languages = source.languages();
                // The tokenizer's whole words are evidence of English only for an English
                // model (a multilingual vocabulary knows the words of every language).
                let words = if languages == ["en"] {
                    model
                        .tokenizer
                        .get_vocab(false)
                        .into_keys()
                        .filter(|k| !k.starts_with("##") && k.chars().all(char::is_alphabetic))
                        .map(|k| k.to_lowercase())
                        .collect()
                } else {
                    Default::default()
                };
                coverage = (!languages.is_empty()).then(|| Arc::new(crate::lang::Coverage { languages, words }));
            }
            let probe = model
                .embed(vec!["dimension probe"], None)
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            dim = probe.first().map(Vec::len).unwrap_or(0);
            if dim == 0 {
                return Err(EmbedError::Setup("the embedding model returned an empty vector".into()));
            }
            spawn_worker(&n.to_string(), model, calls(source), Arc::clone(&rx))?;
        }
        // Built here, not on a thread of its own: a process that exits while ONNX Runtime
        // is still building a session on another thread can crash in its exit handlers.
        let solo = if solo && threads < cores && solo_wanted() {
            let (solo_tx, solo_rx) = mpsc::channel::<Job>();
            let model = build_model(source, models_dir, cores, solo_spinning())?;
            spawn_worker("solo", model, calls(source), Arc::new(Mutex::new(solo_rx)))?;
            Some(solo_tx)
        } else {
            None
        };
        Ok(FastEmbedder {
            name: source.name().to_string(),
            dim,
            tx,
            solo,
            in_flight: AtomicUsize::new(0),
            coverage,
        })
    }
}

fn build_model(
    source: &ModelSource,
    models_dir: &Path,
    threads: usize,
    spin: &str,
) -> Result<fastembed::TextEmbedding, EmbedError> {
    match source {
        ModelSource::Local { dir, settings, .. } => {
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
            let pooling = match settings.pooling {
                Pooling::Mean => fastembed::Pooling::Mean,
                Pooling::Cls => fastembed::Pooling::Cls,
            };
            let model = fastembed::UserDefinedEmbeddingModel::new(read("model.onnx")?, tokenizer).with_pooling(pooling);
            let opts = fastembed::InitOptionsUserDefined::new()
                .with_max_length(256)
                .with_intra_threads(threads)
                .with_session_config("session.intra_op.allow_spinning", spin);
            fastembed::TextEmbedding::try_new_from_user_defined(model, opts)
                .map_err(|e| EmbedError::Setup(format!("cannot load the model in {}: {e}", dir.display())))
        }
        ModelSource::Hub { model, name } => {
            let opts = fastembed::TextInitOptions::new(model.clone())
                .with_cache_dir(models_dir.join("fastembed-cache"))
                .with_show_download_progress(false)
                .with_intra_threads(threads)
                .with_session_config("session.intra_op.allow_spinning", spin);
            fastembed::TextEmbedding::try_new(opts).map_err(|e| {
                EmbedError::Setup(format!("cannot load hub model {name} (needs internet on first use): {e}"))
            })
        }
    }
}

/// One embedding worker: takes one job at a time from the shared queue (while one
/// worker runs the model, the next one waits on the queue).
fn worker(mut model: fastembed::TextEmbedding, calls: &Calls, rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting, not while the model runs.
        let Ok((texts, reply)) = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv() else { return };
        let prefixed = model_texts(&texts, &calls.prefix);
        let texts: Vec<&str> = prefixed.iter().map(|s| s.as_ref()).collect();
        let result =
            embed_sorted(&mut model, &texts, model_batch(calls.per_call, texts.len())).map_err(EmbedError::Inference);
        let _ = reply.send(result);
    }
}

/// The texts as the model reads them: clipped, after the model's prefix.
fn model_texts<'a>(texts: &'a [String], prefix: &str) -> Vec<std::borrow::Cow<'a, str>> {
    texts
        .iter()
        .map(|t| if prefix.is_empty() { clip(t).into() } else { format!("{prefix}{}", clip(t)).into() })
        .collect()
}

/// The token ids the model reads for each text (its prefix, special tokens and
/// truncation included), from the same tokenizer set-up as [`FastEmbedder`]'s sessions:
/// for checking a converted model's tokenizer against a reference.
pub fn token_ids(source: &ModelSource, models_dir: &Path, texts: &[String]) -> Result<Vec<Vec<u32>>, EmbedError> {
    init_onnx_runtime(models_dir)?;
    let model = build_model(source, models_dir, 1, "0")?;
    model_texts(texts, source.prefix())
        .iter()
        .map(|t| {
            model
                .tokenizer
                .encode(t.as_ref(), true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| EmbedError::Inference(e.to_string()))
        })
        .collect()
}

/// Embed in token-count order, so each call of `batch` texts is padded to a length
/// close to its own texts' (BANKING77 train: 165k tokens computed for 162k real ones,
/// against 375k in unsorted batches of 32), and return the vectors in input order.
/// Counting the tokens costs a second tokenizer pass, about 1% of the model's time.
fn embed_sorted(model: &mut fastembed::TextEmbedding, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>, String> {
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
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&self.in_flight);
        if let Some(solo) = self.solo.as_ref().filter(|_| alone && texts.len() <= SOLO_MAX_TEXTS) {
            let (reply, rx) = oneshot::channel();
            solo.send((texts, reply)).map_err(|_| EmbedError::WorkerGone)?;
            return rx.await.map_err(|_| EmbedError::WorkerGone)?;
        }
        // Cut into jobs of CHUNK texts, all queued at once, so every worker takes a share.
        // Bulk calls are ordered by length first (characters: a cheap stand-in for
        // tokens), so each job holds texts of similar length; the vectors go back in
        // input order.
        let total = texts.len();
        let mut order: Vec<usize> = (0..total).collect();
        if total > CHUNK {
            order.sort_by_key(|&i| clip(&texts[i]).len());
        }
        let mut slots: Vec<Option<String>> = texts.into_iter().map(Some).collect();
        let mut replies = Vec::with_capacity(total.div_ceil(CHUNK));
        for ids in order.chunks(CHUNK) {
            let job: Vec<String> = ids.iter().map(|&i| slots[i].take().unwrap_or_default()).collect();
            let (reply, rx) = oneshot::channel();
            self.tx.send((job, reply)).map_err(|_| EmbedError::WorkerGone)?;
            replies.push(rx);
        }
        let mut out = vec![Vec::new(); total];
        for (ids, rx) in order.chunks(CHUNK).zip(replies) {
            let vectors = rx.await.map_err(|_| EmbedError::WorkerGone)??;
            for (&i, v) in ids.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn coverage(&self) -> Option<Arc<crate::lang::Coverage>> {
        self.coverage.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_one_text_for_small_jobs_and_follow_the_model_setting() {
        if std::env::var_os("TRIAGE_EMBED_BATCH").is_some() {
            return; // the override wins everywhere; nothing else to check
        }
        assert_eq!(model_batch(None, 1), 1);
        assert_eq!(model_batch(None, CHUNK - 1), 1);
        assert_eq!(model_batch(None, CHUNK), BULK_MODEL_BATCH);
        assert_eq!(model_batch(Some(1), CHUNK), 1);
        assert_eq!(model_batch(Some(8), 3), 8);
    }

    #[test]
    fn the_prefix_goes_before_the_clipped_text() {
        let long = "x".repeat(super::super::MAX_EMBED_CHARS + 10);
        let texts = vec!["Wo ist mein Paket?".to_string(), long];
        let read = model_texts(&texts, "query: ");
        assert_eq!(read[0], "query: Wo ist mein Paket?");
        assert_eq!(read[1].len(), "query: ".len() + super::super::MAX_EMBED_CHARS);
        assert_eq!(model_texts(&texts, "")[0], "Wo ist mein Paket?");
    }
}
