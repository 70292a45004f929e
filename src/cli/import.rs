//! `triage import`: load a `triage export` file (logic in [`crate::store::transfer`]).

use std::path::PathBuf;

use clap::Args;

use super::{creating_store_settings, CommonArgs};
use crate::config;

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


pub async fn run(common: &CommonArgs, args: ImportArgs) -> anyhow::Result<u8> {
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

