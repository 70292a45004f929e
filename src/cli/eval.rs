//! `triage eval`: compare methods, models and k on labeled tickets (logic in [`crate::eval`]).

use std::path::PathBuf;

use clap::Args;

use super::calibrate::FitArgs;
use super::progress::progress_bar;
use super::{fields, flag, store_settings, CommonArgs, LlmArgs};
use crate::{config, options};

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


pub async fn run(common: &CommonArgs, args: EvalArgs) -> anyhow::Result<u8> {
    use crate::eval::{self, EvalConfig, Prices, TrainSource};
    anyhow::ensure!(!args.k.is_empty(), "--k values must be at least 1");
    for k in &args.k {
        options::check_k(*k, None).map_err(flag)?;
    }
    let min_confidence = options::check_min_confidence(args.min_confidence).map_err(flag)?;
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
    let (mut models, mut llm_note) = (Vec::new(), None);
    if methods.iter().any(|m| m.needs_llm()) {
        (models, llm_note) = config::build_llms(&base, &args.models)?;
        if models.is_empty() {
            eprintln!("LLM methods skipped: {}", llm_note.clone().unwrap_or_default());
        }
    }
    let store = config::open_store(&store_settings(common))?;
    store.claim()?;
    let embedder = common.embedder()?;
    let cfg = EvalConfig {
        test: args.test.clone(),
        source,
        fields: crate::eval::Fields {
            columns: args.fields.field_map(),
            segment: args.routing.segment_field.clone(),
            edge: args.routing.edge_field.clone(),
            secondary: args.routing.secondary_field.clone(),
            ..Default::default()
        },
        routing: args.routing.clone(),
        methods,
        ks: args.k.clone(),
        repeat: args.repeat,
        concurrency: args.concurrency.max(1),
        max_rps: args.max_rps,
        limit: args.limit,
        seed: args.seed,
        min_confidence,
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
    print!("{}", eval::rows_summary(&evaluation.dataset));
    let (rows, paths) = eval::report::write_all(&evaluation, &args.report_dir)?;
    eval::report::table::write(&mut std::io::stdout().lock(), &rows, &evaluation.skipped, &paths)?;
    Ok(0)
}

