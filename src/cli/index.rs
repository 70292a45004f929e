//! `triage index`: read a corpus and index it into a collection (logic in [`crate::index`]).

use std::path::PathBuf;

use clap::Args;

use super::progress::progress_bar;
use super::{creating_store_settings, fields, CommonArgs};
use crate::config;
use crate::index::FieldMap;
use crate::progress::on_bar;

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Corpus folder or file
    pub path: PathBuf,
    /// Collection to index into (created if missing)
    #[arg(long)]
    pub collection: String,
    /// Taxonomy file to use instead of the folder's taxonomy.toml (or for a single file)
    #[arg(long)]
    pub taxonomy: Option<PathBuf>,
    #[command(flatten)]
    pub fields: fields::FieldArgs,
    /// Labels whose examples show what is out of scope (e.g. oos): indexed, never an answer (repeat or comma-separate)
    #[arg(long, value_delimiter = ',')]
    pub out_of_scope_label: Vec<String>,
    /// Extra fields kept with each example for filtered retrieval (e.g. product,tier): `classify --filter tier=gold`
    #[arg(long, value_delimiter = ',')]
    pub meta_fields: Vec<String>,
    /// Examples embedded and upserted per batch
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub layout: crate::store::CollectionLayout,
}


pub async fn run(common: &CommonArgs, args: IndexArgs) -> anyhow::Result<u8> {
    let fields = FieldMap {
        meta: args.meta_fields.iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect(),
        ..args.fields.field_map()
    };
    for f in &fields.meta {
        crate::store::validate_meta_field(f).map_err(|e| anyhow::anyhow!("--meta-fields: {e}"))?;
    }
    let mut corpus = crate::index::load_corpus_with(&args.path, &fields, args.taxonomy.as_deref(), &args.out_of_scope_label)?;
    crate::index::mark_out_of_scope(&mut corpus, &args.out_of_scope_label, &args.collection);
    let store = config::open_store(&creating_store_settings(common, &args.layout))?;
    // Fail before loading the model if another process owns the embedded store.
    store.claim()?;
    if store.get_meta(&args.collection).await?.is_some() {
        if let Some(note) = args.layout.unused_note(&args.collection) {
            eprintln!("{note}");
        }
    }
    let embedder = common.embedder()?;
    let bar = progress_bar("indexing");
    let report =
        crate::index::index_corpus(corpus, &args.collection, embedder, store.clone(), args.batch_size, &on_bar(&bar)).await?;
    bar.finish_and_clear();
    if report.indexed > 0 {
        if let Some(f) = store.get_meta(&args.collection).await?.as_ref().and_then(crate::calibrate::stored_fit) {
            eprintln!(
                "note: the collection was calibrated on {} examples; it now has {}: re-run triage calibrate --collection {} --k {}",
                f.neighbours.collection_examples, report.points_in_collection, args.collection, f.neighbours.k
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "collection {}: {} rows read, {} indexed, {} unchanged, {} rejected; {} examples, {} labels ({:.2} s)",
            report.collection,
            report.rows,
            report.indexed,
            report.unchanged,
            report.rejected.len(),
            report.points_in_collection,
            report.labels,
            report.seconds
        );
        print!("{}", crate::index::rejection_summary(&report.rejected));
    }
    Ok(0)
}

