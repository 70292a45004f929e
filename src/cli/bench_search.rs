//! `triage bench-search` (hidden): retrieval alone, for scripts/bench-store.sh
//! (logic in [`crate::bench`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{store_settings, CommonArgs};
use crate::{config, corpus};

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


pub async fn run(common: &CommonArgs, args: BenchSearchArgs) -> anyhow::Result<u8> {
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
