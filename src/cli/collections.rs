//! `triage collections list|info|delete`.

use clap::Subcommand;

use super::{store_settings, CommonArgs};
use crate::config;
use crate::store::summary::{self, Listing};

#[derive(Debug, Subcommand)]
pub enum CollectionsCommand {
    /// Collections with their embedding model and size
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One collection: model, dimensions, examples per label, filterable fields, payload indexes, taxonomy
    Info {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a collection and its examples
    Delete {
        name: String,
        /// Confirm the deletion
        #[arg(long)]
        yes: bool,
    },
}


pub async fn run(common: &CommonArgs, cmd: CollectionsCommand) -> anyhow::Result<u8> {
    let store = config::open_store(&store_settings(common))?;
    match cmd {
        CollectionsCommand::List { json } => {
            let Listing { collections: rows, locked } = summary::list(store.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no collections (index some: triage index PATH --collection NAME)");
            } else {
                println!("{:<24} {:<8} {:>9} {:>5}  embedding model", "collection", "backend", "examples", "dim");
                for r in &rows {
                    let n = r.examples.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
                    println!("{:<24} {:<8} {:>9} {:>5}  {}", r.name, r.backend, n, r.dim, r.embedding_model);
                }
            }
            if let Some(msg) = locked {
                eprintln!("note: example counts unknown ({msg})");
            }
            Ok(0)
        }
        CollectionsCommand::Info { name, json } => {
            let info = summary::info(store.as_ref(), &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                let indexes = &info.payload_indexes;
                println!("collection:      {}", info.name);
                println!("backend:         {}", info.backend);
                println!("embedding model: {} ({} dims)", info.embedding_model, info.dim);
                println!("examples:        {}", info.examples);
                println!("filter fields:   {}", info.filter_fields.join(", "));
                println!("payload indexes: {}", if indexes.is_empty() { "-".into() } else { indexes.join(", ") });
                println!("taxonomy:        {} ({} categories)", info.taxonomy.name, info.taxonomy.categories.len());
                for (label, n) in &info.examples_per_label {
                    println!("  {label:<30} {n:>7}");
                }
            }
            Ok(0)
        }
        CollectionsCommand::Delete { name, yes } => {
            crate::store::validate_name(&name)?;
            anyhow::ensure!(
                store.get_meta(&name).await?.is_some(),
                "collection {name:?} does not exist (see triage collections list)"
            );
            anyhow::ensure!(yes, "this deletes collection {name:?} and all its examples: pass --yes to confirm");
            store.claim()?;
            store.delete_collection(&name).await?;
            if crate::review::delete_queue(store.as_ref(), &name).await? {
                println!("deleted its review queue");
            }
            println!("deleted collection {name}");
            Ok(0)
        }
    }
}

