//! `triage collections list|info|delete`.

use clap::Subcommand;

use super::{store_settings, CommonArgs};
use crate::config;

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


#[derive(serde::Serialize)]
struct CollectionRow {
    name: String,
    backend: String,
    embedding_model: String,
    dim: usize,
    /// `None` when the embedded store is held by another process.
    examples: Option<usize>,
}

pub async fn run(common: &CommonArgs, cmd: CollectionsCommand) -> anyhow::Result<u8> {
    use crate::store::{label_counts, StoreError};
    let store = config::open_store(&store_settings(common))?;
    match cmd {
        CollectionsCommand::List { json } => {
            let mut rows = Vec::new();
            let mut locked = None;
            for name in store.list_collections().await? {
                let Some(meta) = store.get_meta(&name).await? else { continue };
                // Names and models come from metadata; counting opens the store, which
                // another process may hold.
                let examples = match store.count(&name).await {
                    Ok(n) => Some(n),
                    Err(StoreError::Locked(msg)) => {
                        locked = Some(msg);
                        None
                    }
                    Err(e) => return Err(e.into()),
                };
                rows.push(CollectionRow {
                    name,
                    backend: store.backend().into(),
                    embedding_model: meta.embedding_model,
                    dim: meta.dim,
                    examples,
                });
            }
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
            let meta = store.require_meta(&name).await?;
            let examples = store.count(&name).await?;
            let per_label = label_counts(store.as_ref(), &name).await?;
            let indexes = store.payload_indexes(&name).await?;
            if json {
                let v = serde_json::json!({
                    "name": meta.name,
                    "backend": store.backend(),
                    "embedding_model": meta.embedding_model,
                    "dim": meta.dim,
                    "examples": examples,
                    "examples_per_label": per_label,
                    "filter_fields": meta.filter_fields(),
                    "payload_indexes": indexes,
                    "taxonomy": meta.taxonomy,
                    "created_at": meta.created_at,
                    "updated_at": meta.updated_at,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("collection:      {}", meta.name);
                println!("backend:         {}", store.backend());
                println!("embedding model: {} ({} dims)", meta.embedding_model, meta.dim);
                println!("examples:        {examples}");
                println!("filter fields:   {}", meta.filter_fields().join(", "));
                println!("payload indexes: {}", if indexes.is_empty() { "-".into() } else { indexes.join(", ") });
                println!("taxonomy:        {} ({} categories)", meta.taxonomy.name, meta.taxonomy.categories.len());
                for (label, n) in &per_label {
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
            println!("deleted collection {name}");
            Ok(0)
        }
    }
}

