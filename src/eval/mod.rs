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

mod data;
pub mod figures;
pub mod glance;
pub mod html;
mod fitting;
pub mod metrics;
pub mod report;
pub mod report_sections;
pub mod segments;

pub use data::{fixed_demonstrations, in_test_split, read_labeled, rows_summary, sample, LabeledTicket};

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use serde::Serialize;

use crate::classifier::{Classifier, ClassifyOptions, Demonstrations, Ticket, TicketResult};
use crate::corpus::{self, Row};
use crate::embed::{Embedder, MemoEmbedder};
use crate::example::Example;
use crate::fit::Fitted;
use crate::index::{self, FieldMap};
use crate::llm::{CachedLlm, LlmClient, Throttle};
use crate::store::ExampleStore;
use crate::taxonomy::Taxonomy;
use crate::Error;

use data::{collection_name, corpus_from_rows, sha256_file, split_key};

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

/// Input columns of the labeled files: the columns an index reads (text, label,
/// urgency, subcategory, id, language, delimiter) and those only an evaluation has.
#[derive(Debug, Clone, Serialize)]
pub struct Fields {
    #[serde(flatten)]
    pub columns: FieldMap,
    pub is_oos: String,
    /// Fields to report figures by (`--segment-field`), the boolean edge-case field
    /// (`--edge-field`) and the field listing secondary issues.
    pub segment: Vec<String>,
    pub edge: Option<String>,
    pub secondary: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            columns: FieldMap::default(),
            is_oos: "is_oos".into(),
            segment: Vec::new(),
            edge: None,
            secondary: "secondary".into(),
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
    /// Route by this precision target instead of a threshold (`--auto-route-precision`).
    pub auto_route_precision: Option<f64>,
    pub prices: Prices,
    pub report_dir: PathBuf,
    /// `None`: LLM answers are not cached (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Why LLM methods cannot run (no LLM configured), if so.
    pub llm_note: Option<String>,
    /// Fit the collection's neighbours' side (leave-one-out votes, cross-fitted head,
    /// at each k) before the runs (`--calibrate`); `k` is overridden per run.
    pub calibrate: Option<crate::calibrate::Settings>,
    pub head: crate::calibrate::HeadSettings,
    /// Fit an arbiter per model and k on this many held-out train examples before the
    /// LLM runs (`--calibrate-llm N`).
    pub calibrate_llm: Option<usize>,
    /// Labels whose train rows (and `is_oos` rows) are out-of-scope examples.
    pub out_of_scope_labels: Vec<String>,
    /// Candidate pre-selection for rag prompts (see `ClassifyOptions::max_prompt_labels`).
    pub max_prompt_labels: usize,
    /// LLM methods ask category and subcategory in two requests (see `ClassifyOptions::two_stage`).
    pub two_stage: bool,
    /// Taxonomy file for the train side of `--train` (overriding a folder's own) and
    /// `--split`; `None`: a train folder's `taxonomy.toml`, else labels from the data.
    pub taxonomy: Option<PathBuf>,
    /// Thresholds of the segment, edge-case and context-budget sections.
    pub routing: segments::Thresholds,
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
    /// Summaries of the fits in use (one per k fitted with `--calibrate`, else the
    /// collection's own, if any): figures and settings, not the head's weights.
    pub calibrations: Vec<serde_json::Value>,
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
    /// Rows of the test file (every line or record, unusable ones included).
    pub rows_read: usize,
    pub rows_without_text_or_label: usize,
    /// The test rows not used: blank text, blank label, unreadable (line and reason).
    pub rejected_rows: Vec<index::Rejection>,
    /// Test tickets whose text repeats an earlier one's (kept).
    pub duplicate_text_rows: usize,
    /// Examples in the collection used for retrieval.
    pub train_examples: usize,
    /// Out-of-scope rows left out of the train side (never indexed).
    pub train_oos_rows_excluded: usize,
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
    let (_, rows) = corpus::parse_file(Some(&config.test), &test_bytes, None, config.fields.columns.delimiter)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", config.test.display())))?;
    crate::fields::check_columns(&rows, &config.fields.columns.needed())
        .map_err(|e| Error::Input(format!("{}: {e}", config.test.display())))?;

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
                let oos = &config.out_of_scope_labels;
                let mut c = index::load_corpus_with(path, &config.fields.columns, config.taxonomy.as_deref(), oos)?;
                index::mark_out_of_scope(&mut c, oos, "eval");
                c
            } else {
                let (_, rows) = corpus::read_path_with(path, None, config.fields.columns.delimiter)
                    .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
                let (c, excluded) = corpus_from_rows(
                    path,
                    rows,
                    &config.fields,
                    taxonomy_file.clone(),
                    &config.out_of_scope_labels,
                    "eval",
                );
                train_oos_excluded = excluded;
                c
            };
            let name = collection_name(embedder.model_name(), &corpus, "train");
            let collection = fitting::index_if_needed(&corpus, &name, &embedder, &store, bar).await?;
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
            let (corpus, excluded) = corpus_from_rows(
                &config.test,
                train_rows,
                &config.fields,
                taxonomy_file.clone(),
                &config.out_of_scope_labels,
                "eval",
            );
            train_oos_excluded = excluded;
            let name = collection_name(embedder.model_name(), &corpus, "split");
            let collection = fitting::index_if_needed(&corpus, &name, &embedder, &store, bar).await?;
            train_examples = Some(corpus.examples);
            let test: Vec<LabeledTicket> = all.into_iter().filter(|t| test_lines.contains(&t.line)).collect();
            (test, s, collection)
        }
    };

    let meta = store.require_meta(&collection).await?;
    meta.check_model(embedder.model_name(), embedder.dim())?;
    let taxonomy = meta.taxonomy.clone();
    let stored_fit = crate::calibrate::stored_fit(&meta);
    for t in tickets.iter_mut() {
        match taxonomy.category(&t.label) {
            Some(c) if !t.is_oos => t.label = c.name.clone(),
            _ => t.is_oos = true,
        }
        if let Some(s) = t.secondary.as_mut() {
            for l in s.iter_mut() {
                if let Some(c) = taxonomy.category(l) {
                    *l = c.name.clone();
                }
            }
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
        rows_read: rows.len(),
        rows_without_text_or_label: skipped_rows.len(),
        rejected_rows: skipped_rows,
        duplicate_text_rows: data::duplicate_texts(&tickets),
        train_examples: store.count(&collection).await?,
        train_oos_rows_excluded: train_oos_excluded,
    };

    // Embed every test text once, up front.
    let memo: Arc<dyn Embedder> = Arc::new(MemoEmbedder::new(embedder.clone()));
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
    let mut fits: HashMap<usize, Fitted> = HashMap::new();
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
                fitting::use_fit(&memo, &store, &collection, &config, k, &mut fits, bar).await?;
                if let (Some(c), Method::Rag | Method::RagAlways) = (client, method) {
                    // The arbiter sees the model as the runs do (cached, throttled).
                    let dir = config.cache_dir.clone().unwrap_or_default();
                    let cached: Arc<dyn LlmClient> =
                        Arc::new(CachedLlm::new(c.clone(), dir, String::new(), config.cache_dir.is_some()));
                    fitting::use_arbiter(&memo, &store, &collection, &config, cached, k, &mut fits, bar).await?;
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
        calibrations: {
            let mut v: Vec<Fitted> = if fits.is_empty() { stored_fit.into_iter().collect() } else { fits.into_values().collect() };
            v.sort_by_key(|f| f.neighbours.k);
            v.iter().map(Fitted::summary).collect()
        },
    })
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
            auto_route_precision: s.config.auto_route_precision,
            ..ClassifyOptions::new(s.k, s.config.min_confidence)
        };
        let classifier = Classifier::open(s.embedder.clone(), s.store.clone(), llm, s.collection, options)
            .await?
            .with_demonstrations(s.demonstrations.clone());
        calibrated = classifier.fitted().is_some_and(|f| f.neighbours.k == s.k);
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
        abstained: r.review_kind() == Some(crate::result::ReviewKind::OutOfScope),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_per_request_and_per_million_tokens() {
        let p = Prices { per_request: 0.001, per_million_input_tokens: 2.0, per_million_output_tokens: 10.0 };
        assert!((p.cost(10, 500_000, 100_000) - (0.01 + 1.0 + 1.0)).abs() < 1e-12);
    }
}
