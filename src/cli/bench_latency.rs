//! `triage bench-latency` (hidden): single-ticket latency in one process, for
//! scripts/bench.sh (logic in [`crate::bench`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{store_settings, CommonArgs};
use crate::classifier::{Classifier, ClassifyOptions};
use crate::{config, corpus};

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


pub async fn run(common: &CommonArgs, args: BenchLatencyArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let (_, rows) =
        corpus::read_path(&args.input, None).with_context(|| format!("cannot read {}", args.input.display()))?;
    let texts: Vec<String> =
        rows.iter().filter_map(|r| r.get("text")).filter(|t| !t.trim().is_empty()).take(args.n).collect();
    let store = config::open_store(&store_settings(common))?;
    let embedder = common.serving_embedder()?;
    let options = ClassifyOptions::new(args.k.max(1), None);
    let classifier = Classifier::open(embedder.clone(), store.clone(), None, &args.collection, options).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let report =
        crate::bench::latency(&classifier, embedder, store, &texts, args.warmup, load_seconds).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

