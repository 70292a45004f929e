//! `triage export`: a collection as JSON lines (logic in [`crate::store::transfer`]).

use std::path::PathBuf;

use clap::Args;

use super::{store_settings, CommonArgs};
use crate::config;
use crate::store::{transfer, StoreError};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Collection to export
    #[arg(long)]
    pub collection: String,
    /// Write here instead of stdout (`-`: stdout)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub async fn run(common: &CommonArgs, args: ExportArgs) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    // Before the header is written: a refused export leaves nothing on stdout.
    store.claim()?;
    let file = args.output.as_ref().filter(|p| p.as_os_str() != "-");
    let report = match file {
        Some(path) => transfer::export_to_file(store.as_ref(), &args.collection, path).await?,
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match transfer::export(store.as_ref(), &args.collection, &mut out).await {
                Ok(r) => r,
                // `triage export | head`: the reader went away. Not an error worth a
                // trace, but not a finished export either: say how far it got.
                Err(StoreError::File { context, source }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
                    let total = store.count(&args.collection).await.map(|n| format!(" of {n}")).unwrap_or_default();
                    eprintln!(
                        "error: the export of collection {} is incomplete: {context}{total}; the reader closed the output \
                         (broken pipe)",
                        args.collection
                    );
                    return Ok(1);
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    eprintln!(
        "exported {} examples of collection {} ({}, {} dims){}",
        report.examples,
        report.collection,
        report.embedding_model,
        report.dim,
        file.map(|p| format!(" to {}", p.display())).unwrap_or_default()
    );
    Ok(0)
}
