//! `triage examples apply`: act on a collection's stored examples (logic in [`crate::curate`]).

use std::path::PathBuf;

use clap::Subcommand;

use super::{store_settings, CommonArgs};
use crate::config;
use crate::doctor::review;

#[derive(Debug, Subcommand)]
pub enum ExamplesCommand {
    /// Apply an edited review file (from `triage doctor --write-review`): relabel and delete in one durable write, then refit
    Apply {
        /// The edited CSV (columns action,id,label,new_label; action keep, relabel or delete)
        file: PathBuf,
        /// Collection the review file was written for
        #[arg(long)]
        collection: String,
        /// Do not refit the collection afterwards
        #[arg(long)]
        no_refit: bool,
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Rejected rows shown one by one; the rest are counted.
const SHOWN_REJECTIONS: usize = 10;

pub async fn run(common: &CommonArgs, cmd: ExamplesCommand) -> anyhow::Result<u8> {
    use anyhow::Context as _;
    match cmd {
        ExamplesCommand::Apply { file, collection, no_refit, json } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (decisions, rejected) = review::parse(&bytes).with_context(|| file.display().to_string())?;
            let store = config::open_store(&store_settings(common))?;
            store.claim()?;
            let applied = crate::curate::apply_review(store.as_ref(), &collection, &decisions, rejected, !no_refit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&applied)?);
            } else {
                println!(
                    "collection {}: {} relabeled, {} deleted, {} kept, {} rows refused; {} examples in it",
                    applied.collection,
                    applied.relabeled,
                    applied.deleted,
                    applied.kept,
                    applied.rejected.len(),
                    applied.examples_in_collection
                );
                for r in applied.rejected.iter().take(SHOWN_REJECTIONS) {
                    println!("  refused line {}: {}", r.line, r.reason);
                }
                if applied.rejected.len() > SHOWN_REJECTIONS {
                    println!("  ... and {} more refused rows (--json lists them all)", applied.rejected.len() - SHOWN_REJECTIONS);
                }
                match (applied.refit_accuracy, &applied.refit_note) {
                    (Some(a), _) => println!("refitted: held-out accuracy {a:.3}"),
                    (None, Some(n)) => println!("no refit: {n}"),
                    (None, None) => {}
                }
            }
            Ok(if applied.rejected.is_empty() { 0 } else { super::EXIT_SOME_FAILED })
        }
    }
}
