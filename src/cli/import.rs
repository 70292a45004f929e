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
    // Fitted from the start: an imported fit made on exactly these examples is kept;
    // otherwise the collection is fitted now (with the noise check when the embedding
    // model is installed here).
    let meta = store.require_meta(&report.collection).await?;
    let count = report.examples_in_collection.unwrap_or(0);
    let current = crate::calibrate::stored_fit(&meta).is_some_and(|f| f.neighbours.collection_examples == count);
    let fit = if current {
        None
    } else {
        let embedder = common.embedder().ok();
        Some(crate::index::fitting::fit_collection(store.as_ref(), embedder.as_deref(), &report.collection, &crate::progress::silent).await?)
    };
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(o) = json.as_object_mut() {
            o.insert("fit".into(), serde_json::to_value(&fit)?);
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
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
        if let Some(f) = &fit {
            println!("{}", crate::index::fitting::describe(f));
        }
    }
    Ok(0)
}

