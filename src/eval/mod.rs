//! Accuracy comparison runs (`triage eval`): one labeled test set, several methods
//! (knn, zero-shot, fixed-few-shot, rag), models, k values and repeats, each run
//! through the real [`Classifier`], then scored ([`metrics`]) and written as
//! report.json / report.md / report.html / predictions.jsonl ([`report`]).
//!
//! The train side is an existing collection, a train file indexed into a collection
//! named after its content and the embedding model (reused while unchanged), or a
//! deterministic split of the test file. Test texts are embedded once for the whole
//! run. LLM answers go through an on-disk cache ([`crate::llm::CachedLlm`]): a rerun
//! makes no calls and an interrupted run resumes.

pub mod metrics;
pub mod report;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use indicatif::ProgressBar;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::classifier::{Classifier, ClassifyOptions, Demonstrations, Ticket, TicketResult};
use crate::corpus::{self, Row};
use crate::embed::{EmbedError, Embedder};
use crate::example::{hex, Example, ScoredExample};
use crate::index::{self, Corpus, FieldMap};
use crate::llm::{CachedLlm, LlmClient, Throttle};
use crate::store::ExampleStore;
use crate::taxonomy::{label_key, Taxonomy};
use crate::Error;

use metrics::Outcome;

/// A method compared by `triage eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The LLM without examples in the prompt.
    ZeroShot,
    /// The LLM with the same k examples for every ticket (the first example of the k most frequent labels).
    FixedFewShot,
    /// The LLM with the k retrieved, label-diverse nearest examples; decisive tickets
    /// (calibrated collections) are answered by the vote without calling it (knn-shortcut).
    Rag,
    /// `rag` with the LLM called for every ticket (no knn-shortcut): the baseline
    /// that shows what the shortcut costs in accuracy.
    RagAlways,
    /// The neighbours' similarity-weighted vote; no LLM.
    Knn,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::ZeroShot => "zero-shot",
            Method::FixedFewShot => "fixed-few-shot",
            Method::Rag => "rag",
            Method::RagAlways => "rag-always",
            Method::Knn => "knn",
        }
    }
    pub fn needs_llm(self) -> bool {
        self != Method::Knn
    }
}

/// Where the labeled examples come from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainSource {
    /// An already indexed collection.
    Collection(String),
    /// A corpus file or folder, indexed into `eval-<hash>` for the run.
    Train(PathBuf),
    /// `fraction` of the test file (by seeded hash of the row, or of its group) is
    /// held out for testing, the rest indexed.
    Split { fraction: f64, seed: u64, group_field: Option<String> },
}

/// Per-request and per-token prices (USD). Token prices are per 1M tokens.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Prices {
    pub per_request: f64,
    pub per_million_input_tokens: f64,
    pub per_million_output_tokens: f64,
}

impl Prices {
    pub fn cost(&self, requests: u64, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.per_request * requests as f64
            + self.per_million_input_tokens * prompt_tokens as f64 / 1e6
            + self.per_million_output_tokens * completion_tokens as f64 / 1e6
    }
}

/// Input columns of the labeled files.
#[derive(Debug, Clone, Serialize)]
pub struct Fields {
    pub text: String,
    /// `None`: `label`, else `category`.
    pub label: Option<String>,
    pub urgency: String,
    pub subcategory: String,
    pub is_oos: String,
    pub id: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            text: "text".into(),
            label: None,
            urgency: "urgency".into(),
            subcategory: "subcategory".into(),
            is_oos: "is_oos".into(),
            id: "id".into(),
        }
    }
}

/// Everything a run needs except the embedder, store and LLM clients.
#[derive(Debug, Clone, Serialize)]
pub struct EvalConfig {
    pub test: PathBuf,
    pub source: TrainSource,
    pub fields: Fields,
    pub methods: Vec<Method>,
    pub ks: Vec<usize>,
    pub repeat: usize,
    pub concurrency: usize,
    pub max_rps: Option<f64>,
    /// Evaluate a deterministic sample of N test tickets (after the split), in file order.
    pub limit: Option<usize>,
    /// Seed of the split and of the --limit sample.
    pub seed: u64,
    pub min_confidence: Option<f32>,
    pub prices: Prices,
    pub report_dir: PathBuf,
    /// `None`: LLM answers are not cached (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Why LLM methods cannot run (no LLM configured), if so.
    pub llm_note: Option<String>,
    /// Fit the collection's calibration (leave-one-out, at each k) before the runs
    /// (`--calibrate`); `k` is overridden per run.
    pub calibrate: Option<crate::calibrate::Settings>,
    /// Candidate pre-selection for rag prompts (see `ClassifyOptions::max_prompt_labels`).
    pub max_prompt_labels: usize,
    /// LLM methods ask category and subcategory in two requests (see `ClassifyOptions::two_stage`).
    pub two_stage: bool,
    /// Taxonomy file for the train side of `--train` (overriding a folder's own) and
    /// `--split`; `None`: a train folder's `taxonomy.toml`, else labels from the data.
    pub taxonomy: Option<PathBuf>,
}

/// A labeled test ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledTicket {
    pub id: String,
    pub text: String,
    /// Canonical taxonomy name when in scope, else the label as written.
    pub label: String,
    pub is_oos: bool,
    pub urgency: Option<String>,
    pub subcategory: Option<String>,
    group: Option<String>,
    line: usize,
}

fn truthy(v: Option<String>) -> bool {
    matches!(v.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref(), Some("true" | "1" | "yes"))
}

/// Labeled rows of a test file; rows without text or label are counted, not used.
pub fn read_labeled(rows: &[Row], fields: &Fields, group_field: Option<&str>) -> (Vec<LabeledTicket>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for row in rows {
        let text = row.text(&fields.text).ok().flatten().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let label = match &fields.label {
            Some(f) => row.get(f),
            None => row.get("label").or_else(|| row.get("category")),
        }
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
        let (Some(text), Some(label)) = (text, label) else {
            skipped += 1;
            continue;
        };
        let opt = |f: &str| row.get(f).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        out.push(LabeledTicket {
            id: opt(&fields.id).unwrap_or_else(|| format!("line-{}", row.line)),
            text,
            label,
            is_oos: truthy(row.get(&fields.is_oos)),
            urgency: opt(&fields.urgency),
            subcategory: opt(&fields.subcategory),
            group: group_field.and_then(opt),
            line: row.line,
        });
    }
    (out, skipped)
}

/// Deterministic split: a row (or its whole group) goes to the test side when the
/// seeded hash of its group value (else its line number) falls below `fraction`.
pub fn in_test_split(key: &str, seed: u64, fraction: f64) -> bool {
    let d = Sha256::digest(format!("{seed}\u{0}{key}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) as f64 / 18_446_744_073_709_551_616.0) < fraction
}

fn split_key(t: &LabeledTicket) -> String {
    match &t.group {
        Some(g) => format!("group:{g}"),
        None => format!("line:{}", t.line),
    }
}

/// `n` tickets chosen by seeded hash (labeled files are often sorted by label, so the
/// first rows would cover few labels), kept in file order.
pub fn sample(tickets: Vec<LabeledTicket>, n: usize, seed: u64) -> Vec<LabeledTicket> {
    if tickets.len() <= n {
        return tickets;
    }
    let rank = |t: &LabeledTicket| {
        let d = Sha256::digest(format!("sample\u{0}{seed}\u{0}{}", t.line).as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_be_bytes(b)
    };
    let mut ranked: Vec<(u64, LabeledTicket)> = tickets.into_iter().map(|t| (rank(&t), t)).collect();
    ranked.sort_by_key(|(r, _)| *r);
    ranked.truncate(n);
    ranked.sort_by_key(|(_, t)| t.line);
    ranked.into_iter().map(|(_, t)| t).collect()
}

/// The fixed demonstrations for k: the first example (in corpus order) of each of
/// the k most frequent labels (ties: the label seen first). Scores are NaN: they
/// were not retrieved for the ticket.
pub fn fixed_demonstrations(examples: &[Example], k: usize) -> Vec<ScoredExample> {
    let mut order: Vec<String> = Vec::new();
    let mut first: HashMap<String, (usize, &Example)> = HashMap::new();
    for e in examples {
        let key = label_key(&e.label);
        match first.get_mut(&key) {
            Some(entry) => entry.0 += 1,
            None => {
                order.push(key.clone());
                first.insert(key, (1, e));
            }
        }
    }
    let mut labels: Vec<(usize, usize, &Example)> =
        order.iter().enumerate().filter_map(|(i, l)| first.get(l).map(|(n, e)| (*n, i, *e))).collect();
    labels.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    labels.into_iter().take(k).map(|(_, _, e)| ScoredExample { score: f32::NAN, example: e.clone() }).collect()
}

/// An embedder that remembers vectors by text, so each test ticket is embedded once
/// per run however many methods, k values and repeats use it.
struct MemoEmbedder {
    inner: Arc<dyn Embedder>,
    memo: Mutex<HashMap<String, Vec<f32>>>,
}

#[async_trait]
impl Embedder for MemoEmbedder {
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let missing: Vec<String> = {
            let memo = self.memo.lock().map_err(|_| EmbedError::WorkerGone)?;
            let set: BTreeSet<&String> = texts.iter().filter(|t| !memo.contains_key(*t)).collect();
            set.into_iter().cloned().collect()
        };
        if !missing.is_empty() {
            let vectors = self.inner.embed(missing.clone()).await?;
            let mut memo = self.memo.lock().map_err(|_| EmbedError::WorkerGone)?;
            memo.extend(missing.into_iter().zip(vectors));
        }
        let memo = self.memo.lock().map_err(|_| EmbedError::WorkerGone)?;
        texts
            .iter()
            .map(|t| memo.get(t).cloned().ok_or_else(|| EmbedError::Inference("no vector for a text".into())))
            .collect()
    }
}

/// One evaluated configuration: all its repeats.
#[derive(Debug, Clone)]
pub struct Run {
    pub method: Method,
    pub model: Option<String>,
    pub k: usize,
    /// `results[r][t]`: repeat r, ticket t.
    pub results: Vec<Vec<TicketResult>>,
    /// LLM requests answered from the cache / actually sent.
    pub cache_hits: u64,
    pub llm_calls_sent: u64,
    pub seconds: f64,
    /// The collection's calibration was fitted at this k and applied.
    pub calibrated: bool,
}

/// A method that could not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub method: &'static str,
    pub reason: String,
}

/// What a finished evaluation hands to the report writers.
#[derive(Debug)]
pub struct Evaluation {
    pub config: EvalConfig,
    pub collection: String,
    pub embedding_model: String,
    pub taxonomy: Taxonomy,
    pub dataset: DatasetInfo,
    pub tickets: Vec<LabeledTicket>,
    pub runs: Vec<Run>,
    pub skipped: Vec<Skipped>,
    pub embed_seconds: f64,
    /// The calibrations in use (one per k fitted with `--calibrate`, else the
    /// collection's own, if any).
    pub calibrations: Vec<crate::calibrate::Calibration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub sha256: String,
    /// Test tickets evaluated (after split and limit).
    pub rows: usize,
    /// Distinct gold labels among them.
    pub labels: usize,
    pub out_of_scope_rows: usize,
    pub rows_without_text_or_label: usize,
    /// Examples in the collection used for retrieval.
    pub train_examples: usize,
    /// Out-of-scope rows left out of the train side (never indexed).
    pub train_oos_rows_excluded: usize,
}

fn sha256_file(path: &Path) -> Result<(String, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok((hex(&Sha256::digest(&bytes)), bytes))
}

/// A train corpus from rows, leaving out-of-scope rows out; rows are checked against
/// `taxonomy` when there is one.
fn corpus_from_rows(source: &Path, rows: Vec<Row>, fields: &Fields, taxonomy: Option<Taxonomy>) -> (Corpus, usize) {
    let before = rows.len();
    let rows: Vec<Row> = rows.into_iter().filter(|r| !truthy(r.get(&fields.is_oos))).collect();
    let excluded = before - rows.len();
    let map = FieldMap { text: fields.text.clone(), label: fields.label.clone(), ..FieldMap::default() };
    let (examples, rejected) = index::validate_rows(rows, &map, taxonomy.as_ref());
    (Corpus { source: source.to_path_buf(), taxonomy, examples, rejected }, excluded)
}

/// Run the whole evaluation. `models`: one client per `--models` entry (empty: no
/// LLM). `bar` makes a progress bar for a step (hidden off a terminal).
pub async fn run(
    config: EvalConfig,
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    models: Vec<Arc<dyn LlmClient>>,
    bar: &(dyn Fn(&str) -> ProgressBar + Sync),
) -> Result<Evaluation, Error> {
    if config.ks.is_empty() || config.ks.contains(&0) {
        return Err(Error::Config("--k needs values of at least 1".into()));
    }
    let (test_sha, test_bytes) = sha256_file(&config.test)?;
    let taxonomy_file = config.taxonomy.as_deref().map(Taxonomy::load).transpose()?;
    let format = corpus::Format::detect(Some(&config.test), &test_bytes[..test_bytes.len().min(4096)]);
    let rows = corpus::parse(&test_bytes, format);

    // The train side: a collection name and, unless it already exists, a corpus to index.
    let mut train_examples: Option<Vec<Example>> = None;
    let mut train_oos_excluded = 0;
    let (mut tickets, skipped_rows, collection) = match &config.source {
        TrainSource::Collection(name) => {
            let (t, s) = read_labeled(&rows, &config.fields, None);
            (t, s, name.clone())
        }
        TrainSource::Train(path) => {
            let corpus = if path.is_dir() {
                index::load_corpus(path, &FieldMap::default(), config.taxonomy.as_deref())?
            } else {
                let (_, rows) = corpus::read_path(path, None)
                    .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
                let (c, excluded) = corpus_from_rows(path, rows, &config.fields, taxonomy_file.clone());
                train_oos_excluded = excluded;
                c
            };
            let name = collection_name(embedder.model_name(), &corpus, "train");
            let collection = index_if_needed(&corpus, &name, &embedder, &store, bar).await?;
            train_examples = Some(corpus.examples);
            let (t, s) = read_labeled(&rows, &config.fields, None);
            (t, s, collection)
        }
        TrainSource::Split { fraction, seed, group_field } => {
            if !(*fraction > 0.0 && *fraction < 1.0) {
                return Err(Error::Config("--split must be between 0 and 1".into()));
            }
            let (all, s) = read_labeled(&rows, &config.fields, group_field.as_deref());
            let test_lines: BTreeSet<usize> =
                all.iter().filter(|t| in_test_split(&split_key(t), *seed, *fraction)).map(|t| t.line).collect();
            let train_rows: Vec<Row> = rows.iter().filter(|r| !test_lines.contains(&r.line)).cloned().collect();
            let (corpus, excluded) = corpus_from_rows(&config.test, train_rows, &config.fields, taxonomy_file.clone());
            train_oos_excluded = excluded;
            let name = collection_name(embedder.model_name(), &corpus, "split");
            let collection = index_if_needed(&corpus, &name, &embedder, &store, bar).await?;
            train_examples = Some(corpus.examples);
            let test: Vec<LabeledTicket> = all.into_iter().filter(|t| test_lines.contains(&t.line)).collect();
            (test, s, collection)
        }
    };

    let meta = store.get_meta(&collection).await?.ok_or_else(|| crate::store::StoreError::NoSuchCollection(collection.clone()))?;
    meta.check_model(embedder.model_name(), embedder.dim())?;
    let taxonomy = meta.taxonomy.clone();
    let stored_calibration = meta.calibration.clone();
    for t in tickets.iter_mut() {
        match taxonomy.category(&t.label) {
            Some(c) if !t.is_oos => t.label = c.name.clone(),
            _ => t.is_oos = true,
        }
    }
    if let Some(n) = config.limit {
        tickets = sample(tickets, n, config.seed);
    }
    if tickets.is_empty() {
        return Err(Error::Input(format!("{}: no labeled test tickets to evaluate", config.test.display())));
    }
    let dataset = DatasetInfo {
        path: config.test.clone(),
        sha256: test_sha,
        rows: tickets.len(),
        labels: tickets.iter().map(|t| t.label.as_str()).collect::<BTreeSet<_>>().len(),
        out_of_scope_rows: tickets.iter().filter(|t| t.is_oos).count(),
        rows_without_text_or_label: skipped_rows,
        train_examples: store.count(&collection).await?,
        train_oos_rows_excluded: train_oos_excluded,
    };

    // Embed every test text once, up front.
    let memo: Arc<dyn Embedder> = Arc::new(MemoEmbedder { inner: embedder.clone(), memo: Mutex::new(HashMap::new()) });
    let started = Instant::now();
    memo.embed(tickets.iter().map(|t| t.text.clone()).collect()).await?;
    let embed_seconds = round2(started.elapsed().as_secs_f64());

    let mut skipped = Vec::new();
    let mut runs = Vec::new();
    let throttled: Vec<Arc<dyn LlmClient>> = models
        .into_iter()
        .map(|m| match config.max_rps {
            Some(rps) if rps > 0.0 => Arc::new(Throttle::new(m, rps)) as Arc<dyn LlmClient>,
            _ => m,
        })
        .collect();
    let mut calibrations: HashMap<usize, crate::calibrate::Calibration> = HashMap::new();
    for &method in &config.methods {
        if method.needs_llm() && throttled.is_empty() {
            skipped.push(Skipped {
                method: method.name(),
                reason: config.llm_note.clone().unwrap_or_else(|| "no LLM configured".into()),
            });
            continue;
        }
        if method == Method::FixedFewShot && train_examples.is_none() {
            skipped.push(Skipped {
                method: method.name(),
                reason: "fixed-few-shot chooses its examples from the train file: use --train or --split instead of \
                         --collection"
                    .into(),
            });
            continue;
        }
        let clients: Vec<Option<&Arc<dyn LlmClient>>> =
            if method.needs_llm() { throttled.iter().map(Some).collect() } else { vec![None] };
        for client in clients {
            for &k in &config.ks {
                let demonstrations = match method {
                    Method::ZeroShot => Demonstrations::None,
                    Method::FixedFewShot => {
                        Demonstrations::Fixed(fixed_demonstrations(train_examples.as_deref().unwrap_or(&[]), k))
                    }
                    Method::Rag | Method::RagAlways | Method::Knn => Demonstrations::Retrieved,
                };
                if let Some(settings) = &config.calibrate {
                    use_calibration(&store, &collection, settings, k, &mut calibrations, bar).await?;
                }
                let run = run_one(RunSpec {
                    config: &config,
                    method,
                    client,
                    k,
                    demonstrations,
                    embedder: &memo,
                    store: &store,
                    collection: &collection,
                    tickets: &tickets,
                    bar,
                })
                .await?;
                runs.push(run);
            }
        }
    }
    Ok(Evaluation {
        config,
        collection,
        embedding_model: embedder.model_name().to_string(),
        taxonomy,
        dataset,
        tickets,
        runs,
        skipped,
        embed_seconds,
        calibrations: if calibrations.is_empty() {
            stored_calibration.into_iter().collect()
        } else {
            let mut v: Vec<_> = calibrations.into_values().collect();
            v.sort_by_key(|c| c.k);
            v
        },
    })
}

/// Store the collection's calibration for `k`, fitting it (leave-one-out) the first time.
async fn use_calibration(
    store: &Arc<dyn ExampleStore>,
    collection: &str,
    settings: &crate::calibrate::Settings,
    k: usize,
    fitted: &mut HashMap<usize, crate::calibrate::Calibration>,
    bar: &(dyn Fn(&str) -> ProgressBar + Sync),
) -> Result<(), Error> {
    let mut meta = store
        .get_meta(collection)
        .await?
        .ok_or_else(|| crate::store::StoreError::NoSuchCollection(collection.to_string()))?;
    if let Some(c) = fitted.get(&k) {
        if meta.calibration.as_ref() != Some(c) {
            meta.calibration = Some(c.clone());
            store.put_meta(&meta).await?;
        }
        return Ok(());
    }
    let b = bar(&format!("calibrating k={k}"));
    let progress = |done: usize, n: usize| {
        b.set_length(n as u64);
        b.set_position(done as u64);
    };
    let s = crate::calibrate::Settings { k, ..settings.clone() };
    let c = crate::calibrate::calibrate_collection(store.as_ref(), collection, &s, None, &progress).await?;
    b.finish_and_clear();
    tracing::info!(collection, k, ece = c.stats.calibrated_ece, "calibration fitted");
    fitted.insert(k, c);
    Ok(())
}

/// `eval-` + a hash of the embedding model, the examples (ids and content) and the
/// taxonomy when the corpus has one (so another taxonomy is another collection).
fn collection_name(model: &str, corpus: &Corpus, kind: &str) -> String {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(kind.as_bytes());
    if let Some(t) = &corpus.taxonomy {
        h.update([0u8]);
        h.update(t.fingerprint().as_bytes());
    }
    for e in &corpus.examples {
        h.update([0u8]);
        h.update(e.id.as_bytes());
        h.update(e.content_hash().as_bytes());
    }
    format!("eval-{}", hex(&h.finalize()[..6]))
}

async fn index_if_needed(
    corpus: &Corpus,
    name: &str,
    embedder: &Arc<dyn Embedder>,
    store: &Arc<dyn ExampleStore>,
    bar: &(dyn Fn(&str) -> ProgressBar + Sync),
) -> Result<String, Error> {
    let exists = store.get_meta(name).await?.is_some() && store.count(name).await? == corpus.examples.len();
    if !exists {
        let c = Corpus {
            source: corpus.source.clone(),
            taxonomy: corpus.taxonomy.clone(),
            examples: corpus.examples.clone(),
            rejected: corpus.rejected.clone(),
        };
        let report = index::index_corpus(c, name, embedder.clone(), store.clone(), 256, &bar("indexing")).await?;
        tracing::info!(collection = name, indexed = report.indexed, unchanged = report.unchanged, "train side indexed");
    }
    Ok(name.to_string())
}

struct RunSpec<'a> {
    config: &'a EvalConfig,
    method: Method,
    client: Option<&'a Arc<dyn LlmClient>>,
    k: usize,
    demonstrations: Demonstrations,
    embedder: &'a Arc<dyn Embedder>,
    store: &'a Arc<dyn ExampleStore>,
    collection: &'a str,
    tickets: &'a [LabeledTicket],
    bar: &'a (dyn Fn(&str) -> ProgressBar + Sync),
}

async fn run_one(s: RunSpec<'_>) -> Result<Run, Error> {
    let started = Instant::now();
    let model = s.client.map(|c| c.model().to_string());
    let mut results = Vec::with_capacity(s.config.repeat);
    let (mut hits, mut sent) = (0, 0);
    let mut calibrated = false;
    for r in 0..s.config.repeat.max(1) {
        let label = format!(
            "{} {}k={}{}",
            s.method.name(),
            model.as_deref().map(|m| format!("{m} ")).unwrap_or_default(),
            s.k,
            if s.config.repeat > 1 { format!(" run {}/{}", r + 1, s.config.repeat) } else { String::new() }
        );
        // Repeats after the first are salted: they must really ask the model again.
        let cached: Option<Arc<CachedLlm>> = s.client.map(|c| {
            let salt = if r == 0 { String::new() } else { format!("repeat-{r}") };
            let dir = s.config.cache_dir.clone().unwrap_or_default();
            Arc::new(CachedLlm::new(c.clone(), dir, salt, s.config.cache_dir.is_some()))
        });
        let llm = cached.clone().map(|c| c as Arc<dyn LlmClient>);
        let options = ClassifyOptions {
            shortcut: s.method != Method::RagAlways,
            max_prompt_labels: s.config.max_prompt_labels,
            two_stage: s.config.two_stage,
            ..ClassifyOptions::new(s.k, s.config.min_confidence)
        };
        let classifier = Classifier::open(s.embedder.clone(), s.store.clone(), llm, s.collection, options)
            .await?
            .with_demonstrations(s.demonstrations.clone());
        calibrated = classifier.meta().calibration.as_ref().is_some_and(|c| c.k == s.k);
        let bar = (s.bar)(&label);
        bar.set_length(s.tickets.len() as u64);
        let chunk_size = (s.config.concurrency.max(1) * 4).max(16);
        let mut run_results: Vec<TicketResult> = Vec::with_capacity(s.tickets.len());
        let mut correct = 0usize;
        for chunk in s.tickets.chunks(chunk_size) {
            let batch: Vec<Ticket> =
                chunk.iter().map(|t| Ticket { id: t.id.clone(), text: Ok(t.text.clone()) }).collect();
            let out = classifier.classify_batch(batch, s.config.concurrency).await;
            correct += chunk.iter().zip(&out).filter(|(t, r)| outcome(t, r).correct()).count();
            run_results.extend(out);
            bar.set_position(run_results.len() as u64);
            bar.set_message(format!("accuracy {:.3}", correct as f64 / run_results.len() as f64));
        }
        bar.finish_and_clear();
        if let Some(c) = &cached {
            let st = c.stats();
            hits += st.hits;
            sent += st.calls;
        }
        results.push(run_results);
    }
    Ok(Run {
        method: s.method,
        model,
        k: s.k,
        results,
        cache_hits: hits,
        llm_calls_sent: sent,
        seconds: round2(started.elapsed().as_secs_f64()),
        calibrated,
    })
}

/// A result scored against its gold label.
pub fn outcome(t: &LabeledTicket, r: &TicketResult) -> Outcome {
    Outcome {
        gold: t.label.clone(),
        in_scope: !t.is_oos,
        predicted: r.category.clone(),
        confidence: f64::from(r.confidence),
        needs_review: r.needs_review,
        abstained: r.review_reason.as_deref().is_some_and(|x| x.starts_with("out_of_scope")),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, label: &str) -> Example {
        Example::new(id, format!("text {id}"), label)
    }

    #[test]
    fn fixed_demonstrations_take_the_first_example_of_the_most_frequent_labels() {
        let e = vec![ex("1", "A"), ex("2", "B"), ex("3", "B"), ex("4", "C"), ex("5", "C"), ex("6", "A"), ex("7", "D")];
        let d = fixed_demonstrations(&e, 3);
        let ids: Vec<&str> = d.iter().map(|d| d.example.id.as_str()).collect();
        // A, B and C have two each (ties in order of first appearance); D has one.
        assert_eq!(ids, ["1", "2", "4"]);
        assert!(d.iter().all(|d| d.score.is_nan()));
        assert_eq!(fixed_demonstrations(&e, 10).len(), 4, "one per label at most");
        assert!(fixed_demonstrations(&e, 0).is_empty());
    }

    #[test]
    fn split_is_deterministic_and_near_the_fraction() {
        let keys: Vec<String> = (0..2000).map(|i| format!("line:{i}")).collect();
        let a: Vec<bool> = keys.iter().map(|k| in_test_split(k, 42, 0.2)).collect();
        let b: Vec<bool> = keys.iter().map(|k| in_test_split(k, 42, 0.2)).collect();
        let c: Vec<bool> = keys.iter().map(|k| in_test_split(k, 7, 0.2)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c, "another seed gives another split");
        let share = a.iter().filter(|x| **x).count() as f64 / a.len() as f64;
        assert!((0.17..0.23).contains(&share), "{share}");
    }

    #[test]
    fn labeled_rows_with_groups_and_oos() {
        let rows = corpus::parse(
            b"{\"text\":\"a\",\"label\":\"X\",\"g\":\"1\",\"is_oos\":false}\n{\"text\":\"b\",\"label\":\"oos\",\"is_oos\":true,\"urgency\":\"High\"}\n{\"text\":\"\",\"label\":\"X\"}\n{\"text\":\"c\"}\n",
            corpus::Format::Jsonl,
        );
        let (t, skipped) = read_labeled(&rows, &Fields::default(), Some("g"));
        assert_eq!(skipped, 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].group.as_deref(), Some("1"));
        assert!(!t[0].is_oos && t[1].is_oos);
        assert_eq!(t[1].urgency.as_deref(), Some("High"));
        assert_eq!(t[1].id, "line-2");
        assert_eq!(split_key(&t[0]), "group:1");
        assert_eq!(split_key(&t[1]), "line:2");
    }

    #[test]
    fn limit_samples_across_the_file_deterministically() {
        let rows: Vec<LabeledTicket> = (1..=100)
            .map(|i| LabeledTicket {
                id: i.to_string(),
                text: "t".into(),
                label: format!("L{}", i / 10),
                is_oos: false,
                urgency: None,
                subcategory: None,
                group: None,
                line: i,
            })
            .collect();
        let a = sample(rows.clone(), 20, 42);
        assert_eq!(a.len(), 20);
        assert_eq!(a, sample(rows.clone(), 20, 42));
        assert_ne!(a, sample(rows.clone(), 20, 1));
        assert!(a.windows(2).all(|w| w[0].line < w[1].line), "file order kept");
        assert!(a.iter().any(|t| t.line > 50), "not just the first rows");
        assert_eq!(sample(rows, 200, 42).len(), 100);
    }

    #[test]
    fn prices_are_per_request_and_per_million_tokens() {
        let p = Prices { per_request: 0.001, per_million_input_tokens: 2.0, per_million_output_tokens: 10.0 };
        assert!((p.cost(10, 500_000, 100_000) - (0.01 + 1.0 + 1.0)).abs() < 1e-12);
    }
}
