//! Command-line interface: flags (with `--help` from these doc comments) and the
//! command handlers. `main.rs` only parses and dispatches here.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use progress::progress_bar;

use crate::classifier::{Classifier, ClassifyOptions, Ticket, TicketResult};
use crate::config::{self, JsonMode, LlmSettings, Provider, StoreSettings};
use crate::corpus;
use crate::embed::DEFAULT_MODEL;
use crate::index::{self, FieldMap};
use crate::llm::RetryPolicy;
use crate::output::{self, OutputFormat};

pub mod fields;
pub mod progress;
pub mod pull;
pub mod taxonomy;

/// `println!` that hands a write error (a closed pipe: `triage ... | head -1`) back to
/// the caller instead of panicking; `main` ends quietly when stdout is gone.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// Classify support tickets into your own taxonomy with retrieved few-shot examples.
#[derive(Debug, Parser)]
#[command(name = "triage", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Store and embedding settings shared by every command.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Folder of the embedded Qdrant Edge store and the LLM cache [default: $XDG_DATA_HOME/ticket-triage, else ~/.local/share/ticket-triage; the same from any working folder]
    #[arg(long, env = "TRIAGE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Use a Qdrant server (gRPC URL, e.g. http://localhost:6334) instead of the embedded store; API key from QDRANT_API_KEY
    #[arg(long, env = "QDRANT_URL", global = true)]
    pub qdrant_url: Option<String>,
    /// Embedding model: a folder name under --models-dir, a path, or a fastembed hub name (needs internet)
    #[arg(long, env = "TRIAGE_EMBEDDING_MODEL", default_value = DEFAULT_MODEL, global = true)]
    pub embedding_model: String,
    /// Where scripts/setup.sh put the ONNX Runtime and models [default: ./models, else next to the build]
    #[arg(long, env = "TRIAGE_MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
    /// ONNX Runtime threads per embedding worker [default: the cores divided among the workers]
    #[arg(long, env = "TRIAGE_EMBED_THREADS", global = true)]
    pub embed_threads: Option<usize>,
    /// Embedding workers, each with its own model session [default: one per core]
    #[arg(long, env = "TRIAGE_EMBED_WORKERS", global = true)]
    pub embed_workers: Option<usize>,
    /// Log more (-v: info, -vv: debug, which includes ticket text and prompts)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl CommonArgs {
    /// `--data-dir` / `TRIAGE_DATA_DIR`, else the per-user default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| config::default_data_dir(|v| std::env::var_os(v)))
    }

    /// The embedding model named by `--embedding-model`, from `--models-dir`, on
    /// `--embed-workers` workers (default: one per core).
    pub fn embedder(&self) -> anyhow::Result<Arc<dyn crate::embed::Embedder>> {
        let models = config::models_dir(self.models_dir.as_deref());
        let workers = self.embed_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(config::load_embedder(&self.embedding_model, &models, self.embed_threads, workers)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index a corpus (folder with taxonomy.toml + examples.jsonl, or a JSONL/CSV/TSV file) into a collection
    Index(IndexArgs),
    /// Classify tickets given as arguments or in a file
    Classify(ClassifyArgs),
    /// Compare methods, models and k on labeled tickets: accuracy, calibration, coverage, cost, latency
    Eval(EvalArgs),
    /// Run the HTTP classification API (see /openapi.json once it runs)
    Serve(ServeArgs),
    /// Fit a collection's confidence map, out-of-scope and knn-shortcut thresholds by leave-one-out over its examples
    Calibrate(CalibrateArgs),
    /// Check a taxonomy file and print what was understood
    #[command(subcommand)]
    Taxonomy(taxonomy::TaxonomyCommand),
    /// List, inspect or delete collections
    #[command(subcommand)]
    Collections(CollectionsCommand),
    /// Write a collection (examples, vectors, taxonomy, model) as JSON lines, for `triage import`
    Export(ExportArgs),
    /// Load a `triage export` file into a collection of this store, without re-embedding
    Import(ImportArgs),
    /// Pull new and changed tickets from a helpdesk (Zendesk, Freshdesk), classify them and write the results back
    Pull(pull::PullArgs),
    /// Time retrieval alone: embed N tickets once, then search each (for scripts/bench-store.sh)
    #[command(hide = true)]
    BenchSearch(BenchSearchArgs),
    /// Single-ticket latency in one process (no LLM): p50/p99 of classify, embed, search; prints JSON (scripts/bench.sh)
    #[command(hide = true)]
    BenchLatency(BenchLatencyArgs),
}

/// Settings of a calibration fit (shared by `calibrate` and `eval --calibrate`).
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Without out-of-scope examples: quantile of the examples' own nearest-neighbour similarity below which a ticket is out of scope (0: off; it flags that share of in-scope tickets too)
    #[arg(long, default_value_t = 0.0)]
    pub oos_quantile: f64,
    /// With out-of-scope examples: largest share of right in-scope answers the out-of-scope flag may take on held-out examples
    #[arg(long, default_value_t = 0.015)]
    pub oos_cost: f64,
    /// Held-out accuracy required above the knn-shortcut threshold (above 1: never skip the LLM)
    #[arg(long, default_value_t = 0.99)]
    pub shortcut_accuracy: f64,
    /// Bands of nearest similarity, each with its own confidence map (fewer when a band would hold under 500 examples)
    #[arg(long, default_value_t = 3)]
    pub similarity_bands: usize,
    /// Do not fit the logistic head over the embeddings (the neighbours' vote alone)
    #[arg(long)]
    pub no_head: bool,
    /// Inverse regularisation of the head (scikit-learn's C)
    #[arg(long, default_value_t = crate::calibrate::HEAD_C)]
    pub head_c: f32,
}

impl FitArgs {
    pub fn settings(&self, k: usize) -> crate::calibrate::Settings {
        crate::calibrate::Settings {
            k,
            oos_quantile: self.oos_quantile,
            oos_cost_budget: self.oos_cost,
            shortcut_target: self.shortcut_accuracy,
            bands: self.similarity_bands.max(1),
            ..crate::calibrate::Settings::default()
        }
    }

    pub fn head(&self) -> crate::calibrate::HeadSettings {
        crate::calibrate::HeadSettings { enabled: !self.no_head, c: self.head_c }
    }
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Collection to calibrate (the fit is stored with it)
    #[arg(long)]
    pub collection: String,
    /// Neighbours per vote; classification uses the fit only at this k
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Hold out at most this many examples (every n-th), for speed on large collections [default: all]
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Remove the collection's fit instead
    #[arg(long)]
    pub clear: bool,
    #[command(flatten)]
    pub fit: FitArgs,
    /// Also fit the arbiter between the LLM and the neighbours: the LLM answers --llm-sample held-out examples
    #[arg(long)]
    pub llm: bool,
    /// Held-out examples the LLM answers for the arbiter (one or two requests each; cached answers are free)
    #[arg(long, default_value_t = 400)]
    pub llm_sample: usize,
    /// Seed of the held-out sample
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Price per LLM request in USD, for the estimate printed before the LLM is asked
    #[arg(long, default_value_t = 0.0)]
    pub price_per_request: f64,
    /// Tickets classified at once while fitting the arbiter
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Cache of LLM answers (a rerun makes no calls) [default: <data dir>/llm-cache, as eval's]
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Ask category and subcategory in two requests, as classification will
    #[arg(long)]
    pub two_stage: bool,
    /// List at most this many categories in a prompt, as classification will (0: all)
    #[arg(long, default_value_t = crate::classifier::DEFAULT_MAX_PROMPT_LABELS)]
    pub max_prompt_labels: usize,
    #[command(flatten)]
    pub llm_args: LlmArgs,
    /// Print the fitted state as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CollectionsCommand {
    /// Collections with their embedding model and size
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One collection: model, dimensions, examples per label, filterable fields, payload indexes, taxonomy
    Info {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a collection and its examples
    Delete {
        name: String,
        /// Confirm the deletion
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Collection to export
    #[arg(long)]
    pub collection: String,
    /// Write here instead of stdout
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file written by `triage export`
    pub file: PathBuf,
    /// Collection to import into [default: the exported collection's name]; created if missing
    #[arg(long)]
    pub collection: Option<String>,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub layout: crate::store::CollectionLayout,
}

#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    #[arg(long)]
    pub collection: String,
    /// Tickets, one per line (JSONL/CSV with a text field, or plain lines)
    #[arg(long)]
    pub input: PathBuf,
    /// Examples retrieved per search (the classifier asks for 3k candidates)
    #[arg(long, default_value_t = 24)]
    pub limit: usize,
    /// Searches before timing starts
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
}

#[derive(Debug, Args)]
pub struct BenchLatencyArgs {
    /// Indexed collection to classify against
    #[arg(long)]
    pub collection: String,
    /// Tickets to time, one at a time (JSONL/CSV/TSV with a text field, or one per line)
    #[arg(long)]
    pub input: PathBuf,
    /// Time at most this many tickets (the first ones of the file)
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Untimed tickets classified first
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Examples retrieved per ticket
    #[arg(long, default_value_t = 8)]
    pub k: usize,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Corpus folder or file
    pub path: PathBuf,
    /// Collection to index into (created if missing)
    #[arg(long)]
    pub collection: String,
    /// Taxonomy file to use instead of the folder's taxonomy.toml (or for a single file)
    #[arg(long)]
    pub taxonomy: Option<PathBuf>,
    #[command(flatten)]
    pub fields: fields::FieldArgs,
    /// Labels whose examples show what is out of scope (e.g. oos): indexed, never an answer (repeat or comma-separate)
    #[arg(long, value_delimiter = ',')]
    pub out_of_scope_label: Vec<String>,
    /// Extra fields kept with each example for filtered retrieval (e.g. product,tier): `classify --filter tier=gold`
    #[arg(long, value_delimiter = ',')]
    pub meta_fields: Vec<String>,
    /// Examples embedded and upserted per batch
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub layout: crate::store::CollectionLayout,
}

#[derive(Debug, Args)]
pub struct LlmArgs {
    /// LLM provider [default: openai when a key or base URL is set, else anthropic when ANTHROPIC_API_KEY is set, else none (knn)]
    #[arg(long, env = "TRIAGE_LLM_PROVIDER", value_enum)]
    pub provider: Option<Provider>,
    /// Base URL of the LLM API [default: https://api.oxlo.ai/v1 for openai, https://api.anthropic.com for anthropic]
    #[arg(long, env = "TRIAGE_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// Model name [default: llama-3.3-70b for openai, claude-sonnet-4-5 for anthropic]
    #[arg(long, env = "TRIAGE_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Seconds before one LLM request times out
    #[arg(long, env = "TRIAGE_LLM_TIMEOUT", default_value_t = 60.0)]
    pub llm_timeout: f64,
    /// Retries on 429, 5xx, timeouts and connection errors
    #[arg(long, env = "TRIAGE_LLM_MAX_RETRIES", default_value_t = 3)]
    pub llm_max_retries: u32,
    /// First backoff delay in milliseconds (doubles each retry, with jitter; Retry-After wins)
    #[arg(long, env = "TRIAGE_LLM_RETRY_BASE_MS", default_value_t = 500)]
    pub llm_retry_base_ms: u64,
    /// Seconds all LLM requests of one ticket may take, retries and waits included; a retry that would start later (e.g. a long Retry-After) is not made and the ticket falls back to the neighbours' vote
    #[arg(long, env = "TRIAGE_LLM_DEADLINE", default_value_t = 90.0)]
    pub llm_deadline: f64,
    /// How to ask OpenAI-compatible servers for JSON
    #[arg(long, env = "TRIAGE_LLM_JSON_MODE", value_enum, default_value = "schema")]
    pub json_mode: JsonMode,
}

impl LlmArgs {
    /// The configured LLM, or `None` for knn mode (saying so on stderr when that was the default).
    pub fn client(&self) -> anyhow::Result<Option<Arc<dyn crate::llm::LlmClient>>> {
        let (llm, note) = config::build_llm(&self.settings()?)?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        Ok(llm)
    }

    pub fn settings(&self) -> anyhow::Result<LlmSettings> {
        anyhow::ensure!(
            self.llm_timeout.is_finite() && self.llm_timeout > 0.0,
            "--llm-timeout must be a positive number of seconds"
        );
        anyhow::ensure!(
            self.llm_deadline.is_finite() && self.llm_deadline > 0.0,
            "--llm-deadline must be a positive number of seconds"
        );
        Ok(LlmSettings {
            provider: self.provider,
            base_url: self.llm_base_url.clone().filter(|u| !u.trim().is_empty()),
            model: self.llm_model.clone().filter(|m| !m.trim().is_empty()),
            timeout: Duration::from_secs_f64(self.llm_timeout),
            retry: RetryPolicy {
                max_retries: self.llm_max_retries,
                base_delay: Duration::from_millis(self.llm_retry_base_ms),
                max_delay: Duration::from_secs(30),
                deadline: Duration::from_secs_f64(self.llm_deadline),
            },
            json_mode: self.json_mode,
        })
    }
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Ticket texts (each argument is one ticket)
    pub texts: Vec<OsString>,
    /// Collection holding the examples
    #[arg(long)]
    pub collection: String,
    /// Read tickets from a file, or - for stdin: JSONL (text, optional id), CSV/TSV with a header, or one ticket per line
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub fields: fields::FieldArgs,
    /// Write results here (JSON lines unless --format says otherwise) instead of stdout
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Output format [default: table on a terminal, else jsonl]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Examples retrieved per ticket
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Review threshold: lower confidence goes to review [default: the taxonomy's, else 0.85]
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Tickets classified at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// With more categories than this, the prompt lists only those of the retrieved examples (at most this many); 0: all
    #[arg(long, default_value_t = crate::classifier::DEFAULT_MAX_PROMPT_LABELS)]
    pub max_prompt_labels: usize,
    /// Retrieve only examples with this field value, e.g. lang=en or tier=gold (repeat: all must match)
    #[arg(long = "filter", value_name = "FIELD=VALUE", value_parser = parse_filter_entry)]
    pub filters: Vec<(String, String)>,
    /// Two-stage prompts for taxonomies with subcategories: the category first (categories only), then that category's subcategories in a second, short request. Shorter prompts, up to twice the requests
    #[arg(long)]
    pub two_stage: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
}

fn parse_filter_entry(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected FIELD=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("train_side").required(true).args(["collection", "train", "split"])))]
pub struct EvalArgs {
    /// Labeled test tickets (JSONL/CSV/TSV with text and label; optional urgency, is_oos, id)
    #[arg(long)]
    pub test: PathBuf,
    /// Retrieve examples from this already indexed collection
    #[arg(long)]
    pub collection: Option<String>,
    /// Index this labeled file (or corpus folder) for the run, into eval-<hash of its examples and the embedding model>; reused while unchanged
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Hold out this share of --test for testing and index the rest (deterministic for a --seed)
    #[arg(long)]
    pub split: Option<f64>,
    /// Seed of the --split and of the --limit sample
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// With --split: rows sharing this field's value (paraphrase groups) stay on the same side
    #[arg(long)]
    pub group_field: Option<String>,
    #[command(flatten)]
    pub fields: fields::FieldArgs,
    /// Methods to compare
    #[arg(long, value_enum, value_delimiter = ',', default_value = "zero-shot,fixed-few-shot,rag,knn")]
    pub methods: Vec<crate::eval::Method>,
    /// Examples per ticket; several values sweep (e.g. 3,8)
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub k: Vec<usize>,
    /// LLM models to compare, all through the same provider and base URL [default: --llm-model]
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Runs per configuration (consistency is the share of tickets labelled the same in every run)
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Tickets classified at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// At most this many LLM requests per second (cache hits do not count)
    #[arg(long)]
    pub max_rps: Option<f64>,
    /// Evaluate a deterministic sample of N test tickets (after --split; chosen by seeded hash, kept in file order)
    #[arg(long)]
    pub limit: Option<usize>,
    /// Review threshold [default: the taxonomy's, else 0.85]
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Folder for report.json, report.md, report.html and predictions.jsonl
    #[arg(long, default_value = "eval-report")]
    pub report_dir: PathBuf,
    /// Price in USD per LLM request
    #[arg(long, default_value_t = 0.0)]
    pub price_per_request: f64,
    /// Price in USD per 1M input (prompt) tokens, as price lists quote it
    #[arg(long, default_value_t = 0.0)]
    pub price_per_input_token: f64,
    /// Price in USD per 1M output (completion) tokens, as price lists quote it
    #[arg(long, default_value_t = 0.0)]
    pub price_per_output_token: f64,
    /// Neither read nor write the LLM answer cache (<data-dir>/llm-cache)
    #[arg(long)]
    pub no_cache: bool,
    /// Fit the collection's neighbours' side (leave-one-out votes, cross-fitted head, at each --k) before evaluating, as `triage calibrate` does
    #[arg(long)]
    pub calibrate: bool,
    /// Before the rag runs, fit an arbiter per model and k on the LLM's answers to N held-out train examples, as `triage calibrate --llm` does
    #[arg(long, value_name = "N")]
    pub calibrate_llm: Option<usize>,
    /// Labels (and is_oos rows) of the train side that are out-of-scope examples, e.g. oos (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub out_of_scope_label: Vec<String>,
    /// With more categories than this, rag prompts list only those of the retrieved examples (at most this many); 0: all
    #[arg(long, default_value_t = crate::classifier::DEFAULT_MAX_PROMPT_LABELS)]
    pub max_prompt_labels: usize,
    /// LLM methods use two-stage prompts for taxonomies with subcategories: the category first (categories only), then that category's subcategories in a second, short request. Shorter prompts, up to twice the requests
    #[arg(long)]
    pub two_stage: bool,
    /// Taxonomy of the train side for --train and --split (a --train folder's own taxonomy.toml otherwise; none: labels from the data, no subcategories)
    #[arg(long, conflicts_with = "collection")]
    pub taxonomy: Option<PathBuf>,
    #[command(flatten)]
    pub routing: crate::eval::segments::Thresholds,
    #[command(flatten)]
    pub fit: FitArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Collection used when a request names none (checked by /readyz)
    #[arg(long, env = "TRIAGE_COLLECTION")]
    pub collection: String,
    /// Address to listen on; port 0 picks a free port (printed on stderr)
    #[arg(long, env = "TRIAGE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Examples retrieved per ticket (requests may override)
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Review threshold [default: the taxonomy's, else 0.85]
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Two-stage prompts for taxonomies with subcategories: the category first (categories only), then that category's subcategories in a second, short request. Shorter prompts, up to twice the requests
    #[arg(long)]
    pub two_stage: bool,
    /// Most tickets in one /v1/classify/batch request
    #[arg(long, default_value_t = 100)]
    pub max_batch: usize,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// /v1 requests handled at once; beyond it the answer is 429 with Retry-After
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// LLM calls in flight for one batch request
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// POST results that need review here (Slack-compatible JSON with the result under "triage"); retried with backoff
    #[arg(long, env = "TRIAGE_REVIEW_WEBHOOK")]
    pub review_webhook: Option<String>,
    /// POST {ticket_id, result} here for every ticket received on /v1/webhooks/ticket
    #[arg(long, env = "TRIAGE_TICKET_CALLBACK")]
    pub ticket_callback: Option<String>,
    /// Where /v1/webhooks/ticket finds the ticket id (dotted path)
    #[arg(long, default_value = "ticket.id")]
    pub webhook_id_field: String,
    /// Where /v1/webhooks/ticket finds the text (dotted paths, joined in order)
    #[arg(long, value_delimiter = ',', default_value = "ticket.subject,ticket.description")]
    pub webhook_text_fields: Vec<String>,
    /// Where /v1/webhooks/ticket finds a category an agent set (dotted path); another than ours becomes an example
    #[arg(long, default_value = "ticket.category")]
    pub webhook_category_field: String,
    /// Where /v1/webhooks/ticket finds the ticket's tags (array, or a string separated by spaces); a triage_<category> tag other than ours becomes an example
    #[arg(long, default_value = "ticket.tags")]
    pub webhook_tags_field: String,
    /// Attempts per outgoing webhook delivery, the first included
    #[arg(long, default_value_t = 5)]
    pub webhook_attempts: u32,
    /// Delay before retrying a failed webhook delivery, in ms (doubles each time)
    #[arg(long, default_value_t = 1000)]
    pub webhook_retry_base_ms: u64,
    /// Seconds shutdown may take: requests in flight finish and queued webhook deliveries go out within it; connections still open then are closed
    #[arg(long, default_value_t = 10.0)]
    pub drain_seconds: f64,
    /// Refit a calibrated collection (head and calibration) in the background after this many examples were added through the API [default: the larger of 50 and a tenth of its last fit's examples; 0: never]
    #[arg(long)]
    pub refit_after: Option<usize>,
    /// Seconds a cached collection's metadata (taxonomy, calibration) is used before it is read again: how soon a change made through another replica or `triage calibrate` applies here
    #[arg(long, env = "TRIAGE_META_REFRESH", default_value_t = 1.0)]
    pub meta_refresh: f64,
    /// Open connections at most (more wait in the listen backlog)
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive connection stays open)
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's body once its headers arrived (else 408)
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout: f64,
    /// Listen on a non-loopback address without TRIAGE_API_KEY (only behind something that controls access)
    #[arg(long, env = "TRIAGE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// Exit status when the command ran but some tickets failed (their results carry `error`).
pub const EXIT_SOME_FAILED: u8 = 3;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let common = store_settings(&cli.common);
    match dispatch(cli).await {
        Err(e) => Err(where_collections_are(e, &common).await),
        ok => ok,
    }
}

/// A "no such collection" error, told where the store looked, which collections it
/// does hold and the nearest name.
async fn where_collections_are(e: anyhow::Error, settings: &StoreSettings) -> anyhow::Error {
    use crate::store::StoreError::NoSuchCollection;
    let Some(name) = e.chain().find_map(|c| match (c.downcast_ref(), c.downcast_ref()) {
        (Some(NoSuchCollection(n)), _) | (_, Some(crate::Error::Store(NoSuchCollection(n)))) => Some(n.clone()),
        _ => None,
    }) else {
        return e;
    };
    let place = match &settings.qdrant_url {
        Some(url) => format!("the Qdrant server at {url}"),
        None => format!("the data dir {} (--data-dir, TRIAGE_DATA_DIR)", settings.data_dir.display()),
    };
    let existing = match config::open_store(settings) {
        Ok(store) => store.list_collections().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut msg = format!("looked in {place}; ");
    if existing.is_empty() {
        msg.push_str("it holds no collections (create one with triage index)");
    } else {
        msg.push_str(&format!("its collections: {}", existing.join(", ")));
        if let Some(near) = crate::fields::nearest(&name, existing.iter().map(String::as_str)) {
            msg.push_str(&format!("; did you mean {near:?}?"));
        }
    }
    e.context(msg)
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Index(args) => index(&cli.common, args).await,
        Command::Classify(args) => classify(&cli.common, args).await,
        Command::Eval(args) => eval(&cli.common, args).await,
        Command::Serve(args) => serve(&cli.common, args).await,
        Command::Calibrate(args) => calibrate(&cli.common, args).await,
        Command::Collections(cmd) => collections(&cli.common, cmd).await,
        Command::Taxonomy(cmd) => taxonomy::run(cmd),
        Command::Export(args) => export(&cli.common, args).await,
        Command::Import(args) => import(&cli.common, args).await,
        Command::Pull(args) => pull::pull(&cli.common, args).await,
        Command::BenchSearch(args) => bench_search(&cli.common, args).await,
        Command::BenchLatency(args) => bench_latency(&cli.common, args).await,
    }
}

fn store_settings(c: &CommonArgs) -> StoreSettings {
    StoreSettings {
        data_dir: c.data_dir(),
        qdrant_url: c.qdrant_url.clone().filter(|u| !u.trim().is_empty()),
        layout: Default::default(),
    }
}

/// Store settings of a command that may create a server collection with `layout`.
fn creating_store_settings(c: &CommonArgs, layout: &crate::store::CollectionLayout) -> StoreSettings {
    StoreSettings { layout: layout.clone(), ..store_settings(c) }
}

async fn index(common: &CommonArgs, args: IndexArgs) -> anyhow::Result<u8> {
    let fields = FieldMap {
        meta: args.meta_fields.iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect(),
        ..args.fields.field_map()
    };
    for f in &fields.meta {
        crate::store::validate_meta_field(f).map_err(|e| anyhow::anyhow!("--meta-fields: {e}"))?;
    }
    let mut corpus = index::load_corpus_with(&args.path, &fields, args.taxonomy.as_deref(), &args.out_of_scope_label)?;
    index::mark_out_of_scope(&mut corpus, &args.out_of_scope_label, &args.collection);
    let store = config::open_store(&creating_store_settings(common, &args.layout))?;
    // Fail before loading the model if another process owns the embedded store.
    store.claim()?;
    if store.get_meta(&args.collection).await?.is_some() {
        if let Some(note) = args.layout.unused_note(&args.collection) {
            eprintln!("{note}");
        }
    }
    let embedder = common.embedder()?;
    let bar = progress_bar("indexing");
    let report = index::index_corpus(corpus, &args.collection, embedder, store.clone(), args.batch_size, &bar).await?;
    if report.indexed > 0 {
        if let Some(f) = store.get_meta(&args.collection).await?.as_ref().and_then(crate::calibrate::stored_fit) {
            eprintln!(
                "note: the collection was calibrated on {} examples; it now has {}: re-run triage calibrate --collection {} --k {}",
                f.neighbours.collection_examples, report.points_in_collection, args.collection, f.neighbours.k
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "collection {}: {} rows read, {} indexed, {} unchanged, {} rejected; {} examples, {} labels ({:.2} s)",
            report.collection,
            report.rows,
            report.indexed,
            report.unchanged,
            report.rejected.len(),
            report.points_in_collection,
            report.labels,
            report.seconds
        );
        for r in &report.rejected {
            if r.line > 0 {
                println!("  rejected line {}: {}", r.line, r.reason);
            } else {
                println!("  rejected: {}", r.reason);
            }
        }
    }
    Ok(0)
}

async fn bench_latency(common: &CommonArgs, args: BenchLatencyArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let (_, rows) =
        corpus::read_path(&args.input, None).with_context(|| format!("cannot read {}", args.input.display()))?;
    let texts: Vec<String> =
        rows.iter().filter_map(|r| r.get("text")).filter(|t| !t.trim().is_empty()).take(args.n).collect();
    let store = config::open_store(&store_settings(common))?;
    let embedder = common.embedder()?;
    let options = ClassifyOptions::new(args.k.max(1), None);
    let classifier = Classifier::open(embedder.clone(), store.clone(), None, &args.collection, options).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let report =
        crate::bench::latency(&classifier, embedder, store, &texts, args.warmup, load_seconds).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// Tickets from the command line and/or the input file, in order.
fn read_tickets(args: &ClassifyArgs) -> anyhow::Result<Vec<Ticket>> {
    let mut tickets: Vec<Ticket> = args
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| Ticket {
            id: (i + 1).to_string(),
            text: t.to_str().map(str::to_string).ok_or_else(|| "bad encoding: the argument is not valid UTF-8".to_string()),
        })
        .collect();
    if let Some(path) = &args.input {
        tickets.extend(fields::read_input_tickets(path, &args.fields)?);
    }
    anyhow::ensure!(!tickets.is_empty(), "no tickets: give texts as arguments or --input FILE (- for stdin)");
    Ok(tickets)
}

async fn classify(common: &CommonArgs, args: ClassifyArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(args.k >= 1, "--k must be at least 1");
    if let Some(m) = args.min_confidence {
        anyhow::ensure!((0.0..=1.0).contains(&m), "--min-confidence must be in [0, 1]");
    }
    let tickets = read_tickets(&args)?;
    let llm = args.llm.client()?;
    let store = config::open_store(&store_settings(common))?;
    // Searching opens the shard: fail now, not once per ticket, if another process owns the store.
    store.claim()?;
    let embedder = common.embedder()?;
    let filter: crate::store::PayloadFilter = args.filters.iter().cloned().collect();
    anyhow::ensure!(filter.len() == args.filters.len(), "--filter names the same field twice");
    let options = ClassifyOptions {
        max_prompt_labels: args.max_prompt_labels,
        filter,
        two_stage: args.two_stage,
        ..ClassifyOptions::new(args.k, args.min_confidence)
    };
    let classifier = Arc::new(Classifier::open(embedder, store, llm, &args.collection, options).await?);
    classifier.meta().check_filter(&classifier.options().filter)?;

    let format = args.format.unwrap_or(if args.output.is_none() && std::io::stdout().is_terminal() {
        OutputFormat::Table
    } else {
        OutputFormat::Jsonl
    });
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress_bar("classifying");
    bar.set_length(tickets.len() as u64);
    let total = tickets.len();
    let mut all: Vec<TicketResult> = Vec::new();
    let mut failed = 0usize;
    let mut all_written = 0usize;
    // Chunks keep memory flat on big inputs and let JSONL stream out as it is ready.
    // Each chunk is embedded in one call, sorted by length: bigger chunks mean less
    // padding (BANKING77 test: 48k tokens computed in one chunk, 63k in chunks of 512).
    const CHUNK: usize = 4096;
    let started = std::time::Instant::now();
    let mut rest = tickets;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        let n = chunk.len() as u64;
        let results = classifier.classify_batch(chunk, args.concurrency).await;
        failed += results.iter().filter(|r| r.failed_hard()).count();
        bar.inc(n);
        let written = results.len();
        match format {
            OutputFormat::Jsonl => output::write_jsonl(&mut out, &results)?,
            OutputFormat::Csv => output::write_csv(&mut out, &results, all_written == 0)?,
            _ => all.extend(results),
        }
        all_written += written;
    }
    bar.finish_and_clear();
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        embedding = ?crate::embed::embed_stats(),
        "classified {total} tickets (the rest of the time is retrieval, vote and output)"
    );
    match format {
        OutputFormat::Jsonl | OutputFormat::Csv => {}
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
        OutputFormat::Table => output::write_table(&mut out, &all)?,
    }
    out.flush()?;
    if failed > 0 {
        eprintln!("{failed} ticket(s) failed; their results carry \"error\" and needs_review");
        return Ok(EXIT_SOME_FAILED);
    }
    Ok(0)
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

async fn eval(common: &CommonArgs, args: EvalArgs) -> anyhow::Result<u8> {
    use crate::eval::{self, EvalConfig, Prices, TrainSource};
    anyhow::ensure!(!args.k.is_empty() && args.k.iter().all(|k| *k >= 1), "--k values must be at least 1");
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    if let Some(r) = args.max_rps {
        anyhow::ensure!(r.is_finite() && r > 0.0, "--max-rps must be positive");
    }
    for p in [args.price_per_request, args.price_per_input_token, args.price_per_output_token] {
        anyhow::ensure!(p.is_finite() && p >= 0.0, "prices must be non-negative numbers");
    }
    let source = match (&args.collection, &args.train, args.split) {
        (Some(c), None, None) => TrainSource::Collection(c.clone()),
        (None, Some(t), None) => TrainSource::Train(t.clone()),
        (None, None, Some(f)) => {
            anyhow::ensure!(f > 0.0 && f < 1.0, "--split must be between 0 and 1 (the share held out for testing)");
            TrainSource::Split { fraction: f, seed: args.seed, group_field: args.group_field.clone() }
        }
        _ => anyhow::bail!("give exactly one of --collection, --train or --split"),
    };
    anyhow::ensure!(
        args.group_field.is_none() || args.split.is_some(),
        "--group-field only applies to --split"
    );
    let mut methods: Vec<crate::eval::Method> = Vec::new();
    for m in &args.methods {
        if !methods.contains(m) {
            methods.push(*m);
        }
    }
    // One client per model, all with the same provider and base URL.
    let base = args.llm.settings()?;
    let names: Vec<Option<String>> =
        if args.models.is_empty() { vec![base.model.clone()] } else { args.models.iter().cloned().map(Some).collect() };
    let mut models = Vec::new();
    let mut llm_note = None;
    if methods.iter().any(|m| m.needs_llm()) {
        for name in names {
            let mut s = base.clone();
            s.model = name.filter(|m| !m.trim().is_empty()).or(s.model);
            let (client, note) = config::build_llm(&s)?;
            match client {
                Some(c) => models.push(c),
                None => {
                    llm_note = Some(note.unwrap_or_else(|| "--provider none: no LLM".into()));
                    break;
                }
            }
        }
        if models.is_empty() {
            let note = llm_note.clone().unwrap_or_default();
            eprintln!("LLM methods skipped: {note}");
        }
    }
    let store = config::open_store(&store_settings(common))?;
    store.claim()?;
    let embedder = common.embedder()?;
    let cfg = EvalConfig {
        test: args.test.clone(),
        source,
        fields: crate::eval::Fields {
            segment: args.routing.segment_field.clone(),
            edge: args.routing.edge_field.clone(),
            secondary: args.routing.secondary_field.clone(),
            ..args.fields.eval_fields()
        },
        routing: args.routing.clone(),
        methods,
        ks: args.k.clone(),
        repeat: args.repeat,
        concurrency: args.concurrency.max(1),
        max_rps: args.max_rps,
        limit: args.limit,
        seed: args.seed,
        min_confidence: args.min_confidence,
        prices: Prices {
            per_request: args.price_per_request,
            per_million_input_tokens: args.price_per_input_token,
            per_million_output_tokens: args.price_per_output_token,
        },
        report_dir: args.report_dir.clone(),
        cache_dir: (!args.no_cache).then(|| common.data_dir().join("llm-cache")),
        llm_note,
        calibrate: args.calibrate.then(|| args.fit.settings(8)),
        head: args.fit.head(),
        calibrate_llm: args.calibrate_llm.filter(|n| *n > 0),
        out_of_scope_labels: args.out_of_scope_label.clone(),
        max_prompt_labels: args.max_prompt_labels,
        two_stage: args.two_stage,
        taxonomy: args.taxonomy.clone(),
    };
    let evaluation = eval::run(cfg, embedder, store, models, &progress_bar).await?;
    let (rows, paths) = eval::report::write_all(&evaluation, &args.report_dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<15} {:<20} {:>3} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>6} {:>6} {:>9}",
        "method", "model", "k", "accuracy", "macro-F1", "review", "selective", "ECE", "gold@k", "calls", "skip", "p50 ms"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<15} {:<20} {:>3} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>6} {:>6} {:>9}",
            r.method,
            r.model.as_deref().unwrap_or("-"),
            r.k,
            pct(r.accuracy),
            pct(r.macro_f1),
            pct(r.needs_review_rate),
            pct(r.selective_accuracy),
            pct(r.ece),
            pct(r.gold_in_top_k),
            r.llm_calls_sent,
            r.llm_skip_rate.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into()),
            r.latency_ms_p50.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
        )?;
    }
    // One line per reason: "no LLM configured" once, with the methods it skipped.
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in &evaluation.skipped {
        match reasons.iter_mut().find(|(r, _)| *r == s.reason) {
            Some((_, methods)) => methods.push(s.method),
            None => reasons.push((&s.reason, vec![s.method])),
        }
    }
    for (reason, methods) in reasons {
        writeln!(out, "skipped {}: {reason}", methods.join(", "))?;
    }
    for p in paths {
        writeln!(out, "wrote {}", p.display())?;
    }
    Ok(0)
}

async fn calibrate(common: &CommonArgs, args: CalibrateArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    if args.clear {
        let mut meta = store.require_meta(&args.collection).await?;
        let had = meta.fitted.take().is_some() || meta.legacy_calibration.take().is_some();
        meta.updated_at = crate::store::now_secs();
        store.put_meta(&meta).await?;
        println!("collection {}: fit {}", args.collection, if had { "removed" } else { "was not set" });
        return Ok(0);
    }
    let llm = if args.llm {
        let client = args.llm_args.client()?.ok_or_else(|| {
            anyhow::anyhow!("--llm needs an LLM: set OXLO_API_KEY (or TRIAGE_LLM_API_KEY, --llm-base-url, --provider)")
        })?;
        Some(client)
    } else {
        None
    };
    store.claim()?;
    let bar = progress_bar("calibrating");
    let progress = |step: &str, done: usize, n: usize| {
        bar.set_message(step.to_string());
        bar.set_length(n as u64);
        bar.set_position(done as u64);
    };
    let started = std::time::Instant::now();
    let model = crate::calibrate::calibrate_collection(
        store.as_ref(),
        &args.collection,
        &args.fit.settings(args.k),
        &args.fit.head(),
        args.max_examples,
        &progress,
    )
    .await?;
    bar.finish_and_clear();
    if !args.json {
        print!("{}", crate::calibrate::report::describe_neighbours(&args.collection, &model, started.elapsed().as_secs_f64()));
    }
    if let Some(client) = llm {
        let most = args.llm_sample as f64 * if args.two_stage { 4.0 } else { 2.0 };
        eprintln!(
            "arbiter: the LLM ({}) answers {} held-out examples: {} requests at least, at most {} with repairs{}; cached answers are free",
            client.model(),
            args.llm_sample,
            args.llm_sample,
            most,
            if args.price_per_request > 0.0 {
                format!(" (about ${:.2} to ${:.2} at ${}/request)", args.llm_sample as f64 * args.price_per_request, most * args.price_per_request, args.price_per_request)
            } else {
                String::new()
            }
        );
        let cached: Arc<dyn crate::llm::LlmClient> =
            Arc::new(crate::llm::CachedLlm::new(client, args.cache_dir.clone().unwrap_or_else(|| common.data_dir().join("llm-cache")), String::new(), true));
        let embedder = common.embedder()?;
        let settings = crate::calibrate::llm::LlmFitSettings {
            sample: args.llm_sample,
            seed: args.seed,
            concurrency: args.concurrency.max(1),
            options: ClassifyOptions {
                two_stage: args.two_stage,
                max_prompt_labels: args.max_prompt_labels,
                ..ClassifyOptions::new(args.k, None)
            },
        };
        let bar = progress_bar("arbiter");
        let progress = |step: &str, done: usize, n: usize| {
            bar.set_message(step.to_string());
            bar.set_length(n as u64);
            bar.set_position(done as u64);
        };
        let report =
            crate::calibrate::llm::fit_arbiter(embedder, store.clone(), &args.collection, cached, &settings, &progress).await?;
        bar.finish_and_clear();
        if !args.json {
            print!("{}", crate::calibrate::report::describe_arbiter(&report.arbiter, report.requests));
        }
    }
    if args.json {
        let meta = store.get_meta(&args.collection).await?;
        let fitted = meta.as_ref().and_then(crate::calibrate::stored_fit);
        println!("{}", serde_json::to_string_pretty(&fitted)?);
    }
    Ok(0)
}

async fn serve(common: &CommonArgs, args: ServeArgs) -> anyhow::Result<u8> {
    use crate::serve::{self, AppState, RetrySettings, ServeConfig, WebhookMapping};
    anyhow::ensure!((1..=100).contains(&args.k), "--k must be between 1 and 100");
    if let Some(m) = args.min_confidence {
        anyhow::ensure!((0.0..=1.0).contains(&m), "--min-confidence must be in [0, 1]");
    }
    anyhow::ensure!(args.max_batch >= 1 && args.max_inflight >= 1, "--max-batch and --max-inflight must be at least 1");
    anyhow::ensure!(args.drain_seconds.is_finite() && args.drain_seconds >= 0.0, "--drain-seconds must be >= 0");
    anyhow::ensure!(args.meta_refresh.is_finite() && args.meta_refresh >= 0.0, "--meta-refresh must be >= 0 seconds");
    for (flag, v) in [("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout)] {
        anyhow::ensure!(v.is_finite() && v > 0.0, "{flag} must be a positive number of seconds");
    }
    anyhow::ensure!(args.max_connections >= 1, "--max-connections must be at least 1");
    let api_key = std::env::var("TRIAGE_API_KEY").ok().filter(|k| !k.trim().is_empty());
    let loopback = serve::check_listen_address(&args.addr, api_key.is_some(), args.allow_unauthenticated)
        .map_err(anyhow::Error::msg)?;
    let llm = args.llm.client()?;
    let store = config::open_store(&store_settings(common))?;
    // The embedded store is single-process: own it for as long as the server runs.
    store.claim()?;
    let embedder = common.embedder()?;
    let cfg = ServeConfig {
        collection: args.collection.clone(),
        options: ClassifyOptions { two_stage: args.two_stage, ..ClassifyOptions::new(args.k, args.min_confidence) },
        batch_concurrency: args.concurrency.max(1),
        max_batch: args.max_batch,
        max_body: args.max_body,
        max_inflight: args.max_inflight,
        api_key: api_key.clone(),
        loopback_only: loopback && api_key.is_none(),
        limits: serve::ConnLimits {
            max_connections: args.max_connections,
            header_timeout: Duration::from_secs_f64(args.header_timeout),
            body_timeout: Duration::from_secs_f64(args.body_timeout),
        },
        webhook: WebhookMapping {
            id_field: args.webhook_id_field.clone(),
            text_fields: args.webhook_text_fields.clone(),
            category_field: Some(args.webhook_category_field.clone()).filter(|f| !f.trim().is_empty()),
            tags_field: Some(args.webhook_tags_field.clone()).filter(|f| !f.trim().is_empty()),
        },
        review_webhook: args.review_webhook.clone().filter(|u| !u.trim().is_empty()),
        ticket_callback: args.ticket_callback.clone().filter(|u| !u.trim().is_empty()),
        delivery: RetrySettings {
            attempts: args.webhook_attempts.max(1),
            base_delay: Duration::from_millis(args.webhook_retry_base_ms),
            ..RetrySettings::default()
        },
        refit_after: args.refit_after,
        meta_refresh: Duration::from_secs_f64(args.meta_refresh),
    };
    let ledger = crate::helpdesk::state::open(&store_settings(common))?;
    let state = AppState::new(cfg, embedder, store, llm, Some(ledger))?;
    if let Err(e) = state.ready().await {
        eprintln!("warning: {e} (/readyz answers 503 until it is fixed)");
    }
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "listening on http://{addr} (collection {}, auth {}); OpenAPI at /openapi.json",
        args.collection,
        if api_key.is_some() { "on" } else { "off: set TRIAGE_API_KEY to require a bearer token" }
    );
    serve::run(listener, state, serve::shutdown_signal(), Duration::from_secs_f64(args.drain_seconds)).await?;
    eprintln!("stopped");
    Ok(0)
}


#[derive(serde::Serialize)]
struct CollectionRow {
    name: String,
    backend: String,
    embedding_model: String,
    dim: usize,
    /// `None` when the embedded store is held by another process.
    examples: Option<usize>,
}

async fn collections(common: &CommonArgs, cmd: CollectionsCommand) -> anyhow::Result<u8> {
    use crate::store::{label_counts, StoreError};
    let store = config::open_store(&store_settings(common))?;
    match cmd {
        CollectionsCommand::List { json } => {
            let mut rows = Vec::new();
            let mut locked = None;
            for name in store.list_collections().await? {
                let Some(meta) = store.get_meta(&name).await? else { continue };
                // Names and models come from metadata; counting opens the store, which
                // another process may hold.
                let examples = match store.count(&name).await {
                    Ok(n) => Some(n),
                    Err(StoreError::Locked(msg)) => {
                        locked = Some(msg);
                        None
                    }
                    Err(e) => return Err(e.into()),
                };
                rows.push(CollectionRow {
                    name,
                    backend: store.backend().into(),
                    embedding_model: meta.embedding_model,
                    dim: meta.dim,
                    examples,
                });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no collections (index some: triage index PATH --collection NAME)");
            } else {
                println!("{:<24} {:<8} {:>9} {:>5}  embedding model", "collection", "backend", "examples", "dim");
                for r in &rows {
                    let n = r.examples.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
                    println!("{:<24} {:<8} {:>9} {:>5}  {}", r.name, r.backend, n, r.dim, r.embedding_model);
                }
            }
            if let Some(msg) = locked {
                eprintln!("note: example counts unknown ({msg})");
            }
            Ok(0)
        }
        CollectionsCommand::Info { name, json } => {
            let meta = store.require_meta(&name).await?;
            let examples = store.count(&name).await?;
            let per_label = label_counts(store.as_ref(), &name).await?;
            let indexes = store.payload_indexes(&name).await?;
            if json {
                let v = serde_json::json!({
                    "name": meta.name,
                    "backend": store.backend(),
                    "embedding_model": meta.embedding_model,
                    "dim": meta.dim,
                    "examples": examples,
                    "examples_per_label": per_label,
                    "filter_fields": meta.filter_fields(),
                    "payload_indexes": indexes,
                    "taxonomy": meta.taxonomy,
                    "created_at": meta.created_at,
                    "updated_at": meta.updated_at,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("collection:      {}", meta.name);
                println!("backend:         {}", store.backend());
                println!("embedding model: {} ({} dims)", meta.embedding_model, meta.dim);
                println!("examples:        {examples}");
                println!("filter fields:   {}", meta.filter_fields().join(", "));
                println!("payload indexes: {}", if indexes.is_empty() { "-".into() } else { indexes.join(", ") });
                println!("taxonomy:        {} ({} categories)", meta.taxonomy.name, meta.taxonomy.categories.len());
                for (label, n) in &per_label {
                    println!("  {label:<30} {n:>7}");
                }
            }
            Ok(0)
        }
        CollectionsCommand::Delete { name, yes } => {
            crate::store::validate_name(&name)?;
            anyhow::ensure!(
                store.get_meta(&name).await?.is_some(),
                "collection {name:?} does not exist (see triage collections list)"
            );
            anyhow::ensure!(yes, "this deletes collection {name:?} and all its examples: pass --yes to confirm");
            store.claim()?;
            store.delete_collection(&name).await?;
            println!("deleted collection {name}");
            Ok(0)
        }
    }
}

async fn export(common: &CommonArgs, args: ExportArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    // Before the header is written: a refused export leaves nothing on stdout.
    store.claim()?;
    let report = match &args.output {
        Some(path) => {
            // Written next to the target and renamed, so a failed export leaves no partial file.
            let tmp = path.with_extension("export-tmp");
            let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let report = crate::store::transfer::export(store.as_ref(), &args.collection, &mut out).await;
            drop(out);
            match report {
                Ok(r) => {
                    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
                    r
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            }
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            crate::store::transfer::export(store.as_ref(), &args.collection, &mut out).await?
        }
    };
    eprintln!(
        "exported {} examples of collection {} ({}, {} dims){}",
        report.examples,
        report.collection,
        report.embedding_model,
        report.dim,
        args.output.as_ref().map(|p| format!(" to {}", p.display())).unwrap_or_default()
    );
    Ok(0)
}

async fn import(common: &CommonArgs, args: ImportArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&creating_store_settings(common, &args.layout))?;
    store.claim()?;
    let report = crate::store::transfer::import_file(store.as_ref(), &args.file, args.collection.as_deref()).await?;
    if !report.created {
        if let Some(note) = args.layout.unused_note(&report.collection) {
            eprintln!("{note}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "imported {} examples into {} collection {} ({}, {} dims); {} examples in it",
            report.examples,
            if report.created { "new" } else { "existing" },
            report.collection,
            report.embedding_model,
            report.dim,
            report.examples_in_collection.unwrap_or(0)
        );
    }
    Ok(0)
}

async fn bench_search(common: &CommonArgs, args: BenchSearchArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    let meta = store.require_meta(&args.collection).await?;
    let embedder = common.embedder()?;
    meta.check_model(embedder.model_name(), embedder.dim())?;
    let (_, rows) = corpus::read_path(&args.input, None).with_context(|| format!("cannot read {}", args.input.display()))?;
    let texts: Vec<String> = rows.iter().filter_map(|r| r.get("text")).filter(|t| !t.trim().is_empty()).collect();
    anyhow::ensure!(!texts.is_empty(), "no tickets in {}", args.input.display());
    let report = crate::bench::search(embedder.as_ref(), store.as_ref(), &args.collection, &texts, args.limit, args.warmup).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(0)
}
