//! Command-line interface: one file per command, each with its flags (`--help` comes
//! from their doc comments) and a thin handler; flag groups shared by several commands
//! (`fields`, `llm`, `progress`) have their own files. `main.rs` only parses and
//! dispatches here.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, StoreSettings};
use crate::embed::DEFAULT_MODEL;

// Declared before the `println!` below: these keep the standard one.
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

pub mod bench_latency;
pub mod bench_search;
pub mod calibrate;
pub mod classify;
pub mod collections;
pub mod doctor;
pub mod eval;
pub mod examples;
pub mod export;
pub mod import;
pub mod index;
pub mod llm;
pub mod serve;

pub use llm::LlmArgs;

/// Classify support tickets into your own taxonomy with retrieved few-shot examples.
#[derive(Debug, Parser)]
#[command(name = "triage", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The command line, parsed (exits with usage or `--help` text as clap does), with
/// the global store and model flags hidden from the help of the subcommands that never
/// use them (`taxonomy check`).
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = taxonomy::hide_unused_globals(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
        self.load_embedder(false)
    }

    /// [`Self::embedder`] for a long-running process: also the solo session that
    /// serves a lone ticket on every core.
    pub fn serving_embedder(&self) -> anyhow::Result<Arc<dyn crate::embed::Embedder>> {
        self.load_embedder(true)
    }

    fn load_embedder(&self, serving: bool) -> anyhow::Result<Arc<dyn crate::embed::Embedder>> {
        let models = config::models_dir(self.models_dir.as_deref());
        let workers = self.embed_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(config::load_embedder(&self.embedding_model, &models, self.embed_threads, workers, serving)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index a corpus (folder with taxonomy.toml + examples.jsonl, or a JSONL/CSV/TSV file) into a collection
    Index(index::IndexArgs),
    /// Classify tickets given as arguments or in a file
    Classify(classify::ClassifyArgs),
    /// Compare methods, models and k on labeled tickets: accuracy, calibration, coverage, cost, latency
    Eval(eval::EvalArgs),
    /// Run the HTTP classification API (see /openapi.json once it runs)
    Serve(serve::ServeArgs),
    /// Fit a collection's confidence map, out-of-scope and knn-shortcut thresholds by leave-one-out over its examples
    Calibrate(calibrate::CalibrateArgs),
    /// Check a taxonomy file and print what was understood
    #[command(subcommand)]
    Taxonomy(taxonomy::TaxonomyCommand),
    /// List, inspect or delete collections
    #[command(subcommand)]
    Collections(collections::CollectionsCommand),
    /// Find likely mislabeled examples, conflicting duplicates, weak labels and junk in a collection
    Doctor(doctor::DoctorArgs),
    /// List a collection's examples by source, delete one source's examples, apply a doctor review file
    #[command(subcommand)]
    Examples(examples::ExamplesCommand),
    /// Write a collection (examples, vectors, taxonomy, model) as JSON lines, for `triage import`
    Export(export::ExportArgs),
    /// Load a `triage export` file into a collection of this store, without re-embedding
    Import(import::ImportArgs),
    /// Pull new and changed tickets from a helpdesk (Zendesk, Freshdesk), classify them and write the results back
    Pull(pull::PullArgs),
    /// Time retrieval alone: embed N tickets once, then search each (for scripts/bench-store.sh)
    #[command(hide = true)]
    BenchSearch(bench_search::BenchSearchArgs),
    /// Single-ticket latency in one process (no LLM): p50/p99 of classify, embed, search; prints JSON (scripts/bench.sh)
    #[command(hide = true)]
    BenchLatency(bench_latency::BenchLatencyArgs),
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
        Ok(store) => {
            let names = store.list_collections().await.unwrap_or_default();
            names.into_iter().filter(|n| !crate::review::is_queue(n)).collect()
        }
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
    let common = &cli.common;
    match cli.command {
        Command::Index(args) => index::run(common, args).await,
        Command::Classify(args) => classify::run(common, args).await,
        Command::Eval(args) => eval::run(common, args).await,
        Command::Serve(args) => serve::run(common, args).await,
        Command::Calibrate(args) => calibrate::run(common, args).await,
        Command::Collections(cmd) => collections::run(common, cmd).await,
        Command::Taxonomy(cmd) => taxonomy::run(cmd),
        Command::Doctor(args) => doctor::run(common, args).await,
        Command::Examples(cmd) => examples::run(common, cmd).await,
        Command::Export(args) => export::run(common, args).await,
        Command::Import(args) => import::run(common, args).await,
        Command::Pull(args) => pull::pull(common, args).await,
        Command::BenchSearch(args) => bench_search::run(common, args).await,
        Command::BenchLatency(args) => bench_latency::run(common, args).await,
    }
}

/// An option error in the words of the command line (`--k must be at least 1`).
fn flag(e: crate::options::OptionError) -> anyhow::Error {
    anyhow::anyhow!(e.flag_message())
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
