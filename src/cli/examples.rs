//! `triage examples list|delete|apply`: a collection's stored examples, where they came
//! from, undoing one source's additions, applying a review file (logic in [`crate::curate`]).

use std::path::PathBuf;

use clap::Subcommand;

use super::{store_settings, CommonArgs};
use crate::config;
use crate::doctor::review;

#[derive(Debug, Subcommand)]
pub enum ExamplesCommand {
    /// List a collection's examples with where each came from
    List {
        #[arg(long)]
        collection: String,
        /// Only those from this source: a kind (index, api, correction, import, unknown) or one source (api:key-1a2b3c4d, index:FILE, correction:zendesk)
        #[arg(long)]
        source: Option<String>,
        /// Only those with this label
        #[arg(long)]
        label: Option<String>,
        /// Print JSON lines (the examples as stored, provenance included)
        #[arg(long)]
        json: bool,
    },
    /// Delete every example of one source (undo one client's additions) in one durable write
    Delete {
        #[arg(long)]
        collection: String,
        /// A kind (index, api, correction, import, unknown) or one source (api:key-1a2b3c4d, index:FILE, ...)
        #[arg(long)]
        source: String,
        /// Confirm the deletion
        #[arg(long)]
        yes: bool,
    },
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
        ExamplesCommand::List { collection, source, label, json } => {
            let store = config::open_store(&store_settings(common))?;
            let examples = crate::curate::list_examples(store.as_ref(), &collection, source.as_deref(), label.as_deref()).await?;
            for e in &examples {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    let (from, at) = match &e.provenance {
                        Some(p) => (p.source_name(), p.at.clone()),
                        None => (crate::provenance::UNKNOWN_SOURCE.to_string(), String::new()),
                    };
                    let text: String = e.text.split_whitespace().collect::<Vec<_>>().join(" ");
                    println!("{}\t{}\t{}\t{}\t{}", e.id, e.label, from, at, crate::input::cap_chars(text, 80));
                }
            }
            eprintln!("{} examples", examples.len());
            Ok(0)
        }
        ExamplesCommand::Delete { collection, source, yes } => {
            let store = config::open_store(&store_settings(common))?;
            store.claim()?;
            let n = crate::curate::list_examples(store.as_ref(), &collection, Some(&source), None).await?.len();
            anyhow::ensure!(yes, "this deletes the {n} examples of source {source:?} from {collection:?}: pass --yes to confirm");
            let removed = crate::curate::delete_by_source(store.as_ref(), &collection, &source).await?;
            println!("deleted {} examples of source {} from {}; {} examples in it", removed.deleted, source, collection, removed.examples_in_collection);
            if !removed.retired_labels.is_empty() {
                println!("labels with no examples left, retired from the taxonomy (kept in its history): {}", removed.retired_labels.join(", "));
            }
            Ok(0)
        }
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
                if !applied.retired_labels.is_empty() {
                    println!("labels with no examples left, retired from the taxonomy: {}", applied.retired_labels.join(", "));
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
