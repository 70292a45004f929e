//! `triage export`: a collection as JSON lines (logic in [`crate::store::transfer`]).

use std::path::PathBuf;

use clap::Args;

use super::{store_settings, CommonArgs};
use crate::config;
use crate::store::transfer;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Collection to export
    #[arg(long)]
    pub collection: String,
    /// Write here instead of stdout
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}


pub async fn run(common: &CommonArgs, args: ExportArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    // Before the header is written: a refused export leaves nothing on stdout.
    store.claim()?;
    let report = match &args.output {
        Some(path) => transfer::export_to_file(store.as_ref(), &args.collection, path).await?,
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            transfer::export(store.as_ref(), &args.collection, &mut out).await?
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

