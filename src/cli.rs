//! Command-line interface: flags (with `--help` from these doc comments) and the
//! command handlers. `main.rs` only parses and dispatches here.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::classifier::{Classifier, ClassifyOptions, Ticket, TicketResult};
use crate::config::{self, JsonMode, LlmSettings, Provider, StoreSettings};
use crate::corpus::{self, Format};
use crate::embed::DEFAULT_MODEL;
use crate::index::{self, FieldMap};
use crate::llm::RetryPolicy;
use crate::output::{self, OutputFormat};

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
    /// Folder of the embedded Qdrant Edge store
    #[arg(long, env = "TRIAGE_DATA_DIR", default_value = ".triage", global = true)]
    pub data_dir: PathBuf,
    /// Use a Qdrant server (gRPC URL, e.g. http://localhost:6334) instead of the embedded store; API key from QDRANT_API_KEY
    #[arg(long, env = "QDRANT_URL", global = true)]
    pub qdrant_url: Option<String>,
    /// Embedding model: a folder name under --models-dir, a path, or a fastembed hub name (needs internet)
    #[arg(long, env = "TRIAGE_EMBEDDING_MODEL", default_value = DEFAULT_MODEL, global = true)]
    pub embedding_model: String,
    /// Where scripts/setup.sh put the ONNX Runtime and models [default: ./models, else next to the build]
    #[arg(long, env = "TRIAGE_MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
    /// ONNX Runtime threads for embedding [default: all cores]
    #[arg(long, env = "TRIAGE_EMBED_THREADS", global = true)]
    pub embed_threads: Option<usize>,
    /// Log more (-v: info, -vv: debug, which includes ticket text and prompts)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index a corpus (folder with taxonomy.toml + examples.jsonl, or a JSONL/CSV/TSV file) into a collection
    Index(IndexArgs),
    /// Classify tickets given as arguments or in a file
    Classify(ClassifyArgs),
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
    /// Field holding the ticket text
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Field holding the label [default: label, else category]
    #[arg(long)]
    pub label_field: Option<String>,
    /// Field holding the urgency
    #[arg(long, default_value = "urgency")]
    pub urgency_field: String,
    /// Examples embedded and upserted per batch
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
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
    /// How to ask OpenAI-compatible servers for JSON
    #[arg(long, env = "TRIAGE_LLM_JSON_MODE", value_enum, default_value = "schema")]
    pub json_mode: JsonMode,
}

impl LlmArgs {
    pub fn settings(&self) -> anyhow::Result<LlmSettings> {
        anyhow::ensure!(
            self.llm_timeout.is_finite() && self.llm_timeout > 0.0,
            "--llm-timeout must be a positive number of seconds"
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
    /// Field holding the ticket text in JSONL/CSV input
    #[arg(long, default_value = "text")]
    pub text_field: String,
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
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// Exit status when the command ran but some tickets failed (their results carry `error`).
pub const EXIT_SOME_FAILED: u8 = 3;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Index(args) => index(&cli.common, args).await,
        Command::Classify(args) => classify(&cli.common, args).await,
    }
}

fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(&format!("{what} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})")) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn store_settings(c: &CommonArgs) -> StoreSettings {
    StoreSettings { data_dir: c.data_dir.clone(), qdrant_url: c.qdrant_url.clone().filter(|u| !u.trim().is_empty()) }
}

async fn index(common: &CommonArgs, args: IndexArgs) -> anyhow::Result<u8> {
    let fields = FieldMap {
        text: args.text_field.clone(),
        label: args.label_field.clone(),
        urgency: args.urgency_field.clone(),
        ..FieldMap::default()
    };
    let corpus = index::load_corpus(&args.path, &fields, args.taxonomy.as_deref())?;
    let store = config::open_store(&store_settings(common))?;
    let models = config::models_dir(common.models_dir.as_deref());
    let embedder = config::load_embedder(&common.embedding_model, &models, common.embed_threads)?;
    let bar = progress_bar("indexing");
    let report = index::index_corpus(corpus, &args.collection, embedder, store, args.batch_size, &bar).await?;
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
        let (format, rows) =
            corpus::read_path(path, None).with_context(|| format!("cannot read {}", path.display()))?;
        for row in rows {
            let id = row.get("id").filter(|s| !s.trim().is_empty()).unwrap_or_else(|| format!("line-{}", row.line));
            let text = match (&row.fields, format) {
                (Err(e), _) => Err(format!("line {}: {e}", row.line)),
                (Ok(_), Format::Lines) => Ok(row.get("text").unwrap_or_default()),
                (Ok(_), _) => row
                    .get(&args.text_field)
                    .ok_or_else(|| format!("line {}: no {:?} field", row.line, args.text_field)),
            };
            tickets.push(Ticket { id, text });
        }
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
    let (llm, note) = config::build_llm(&args.llm.settings()?)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let store = config::open_store(&store_settings(common))?;
    let models = config::models_dir(common.models_dir.as_deref());
    let embedder = config::load_embedder(&common.embedding_model, &models, common.embed_threads)?;
    let options = ClassifyOptions { k: args.k, min_confidence: args.min_confidence };
    let classifier = Arc::new(Classifier::open(embedder, store, llm, &args.collection, options).await?);

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
    let mut all: Vec<TicketResult> = Vec::new();
    let mut failed = 0usize;
    // Chunks keep memory flat on big inputs and let JSONL stream out as it is ready.
    const CHUNK: usize = 512;
    let mut rest = tickets;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        let n = chunk.len() as u64;
        let results = classifier.classify_batch(chunk, args.concurrency).await;
        failed += results.iter().filter(|r| r.failed_hard()).count();
        bar.inc(n);
        if format == OutputFormat::Jsonl {
            output::write_jsonl(&mut out, &results)?;
        } else {
            all.extend(results);
        }
    }
    bar.finish_and_clear();
    match format {
        OutputFormat::Jsonl => {}
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
