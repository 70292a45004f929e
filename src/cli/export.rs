//! `triage export`: a collection as JSON lines (logic in [`crate::store::transfer`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{store_settings, CommonArgs};
use crate::config;

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

