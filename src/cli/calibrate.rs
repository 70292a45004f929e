//! `triage calibrate`: fit a collection's neighbours' side (and with `--llm` the
//! arbiter) and store it with the collection (logic in [`crate::calibrate`]).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::progress_bar;
use super::{flag, store_settings, CommonArgs, LlmArgs};
use crate::classifier::ClassifyOptions;
use crate::config;
use crate::progress::on_bar;

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

pub async fn run(common: &CommonArgs, args: CalibrateArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    if args.clear {
        let had = crate::calibrate::clear_fit(store.as_ref(), &args.collection).await?;
        println!("collection {}: fit {}", args.collection, if had { "removed" } else { "was not set" });
        return Ok(0);
    }
    let options = ClassifyOptions {
        two_stage: args.two_stage,
        max_prompt_labels: args.max_prompt_labels,
        ..ClassifyOptions::checked(args.k, None, None).map_err(flag)?
    };
    let llm = if args.llm {
        let client = args.llm_args.client()?.ok_or_else(|| {
            anyhow::anyhow!("--llm needs an LLM: set OXLO_API_KEY (or TRIAGE_LLM_API_KEY, --llm-base-url, --provider)")
        })?;
        Some(client)
    } else {
        None
    };
    store.claim()?;
    let embedder = common.embedder()?;
    let bar = progress_bar("calibrating");
    let started = std::time::Instant::now();
    let model = crate::calibrate::calibrate_collection(
        store.as_ref(),
        Some(embedder.as_ref()),
        &args.collection,
        &args.fit.settings(args.k),
        &args.fit.head(),
        args.max_examples,
        &on_bar(&bar),
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
        let settings = crate::calibrate::llm::LlmFitSettings {
            sample: args.llm_sample,
            seed: args.seed,
            concurrency: args.concurrency.max(1),
            options,
        };
        let bar = progress_bar("arbiter");
        let report =
            crate::calibrate::llm::fit_arbiter(embedder, store.clone(), &args.collection, cached, &settings, &on_bar(&bar)).await?;
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

