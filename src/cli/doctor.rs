//! `triage doctor`: examine a collection's examples (logic in [`crate::doctor`], evidence
//! from [`crate::calibrate::doctor`]).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::progress::progress_bar;
use super::{store_settings, CommonArgs};
use crate::config;
use crate::doctor::{report, review, Settings};
use crate::progress::on_bar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    /// A summary for people
    Text,
    /// The whole report as JSON
    Json,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Collection to examine
    #[arg(long)]
    pub collection: String,
    /// Output on stdout
    #[arg(long, value_enum, default_value = "text")]
    pub format: DoctorFormat,
    /// Also write report.json and report.html (a page like eval's) into this folder
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Write a CSV to edit (action keep / relabel / delete per flagged example), for `triage examples apply`
    #[arg(long, value_name = "FILE")]
    pub write_review: Option<PathBuf>,
    /// List this many of the ranked examples as likely mislabeled [default: confident learning's estimate]
    #[arg(long)]
    pub top: Option<usize>,
    /// Labels with fewer examples are listed as small
    #[arg(long, default_value_t = 10)]
    pub min_label_examples: usize,
    /// Cosine similarity from which two differently labeled examples are compared as near-duplicates
    #[arg(long, default_value_t = 0.95)]
    pub duplicate_similarity: f32,
    /// Rank by the head's out-of-fold probability alone (the baseline of scripts/bench-doctor.sh)
    #[arg(long, hide = true)]
    pub head_only: bool,
}

fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub async fn run(common: &CommonArgs, args: DoctorArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.duplicate_similarity.is_finite() && (0.0..=1.0).contains(&args.duplicate_similarity),
        "--duplicate-similarity must be between 0 and 1"
    );
    let store = config::open_store(&store_settings(common))?;
    store.claim()?;
    let meta = store.require_meta(&args.collection).await?;
    // The collection's own model says which languages it covers; no session is built.
    let models = config::models_dir(common.models_dir.as_deref());
    let coverage = crate::embed::ModelSource::resolve(&meta.embedding_model, &models).ok().and_then(|m| m.coverage());
    if coverage.is_none() {
        eprintln!("note: the languages of embedding model {:?} are unknown here: no example is listed for its language", meta.embedding_model);
    }
    let settings = Settings {
        min_label_examples: args.min_label_examples,
        duplicate_similarity: args.duplicate_similarity,
        top: args.top,
        head_only: args.head_only,
        ..Settings::default()
    };
    let bar = progress_bar("examining");
    let exam = crate::calibrate::doctor::examine(store.as_ref(), &args.collection, coverage.as_ref(), &settings, &on_bar(&bar)).await?;
    bar.finish_and_clear();
    let d = &exam.diagnosis;
    match args.format {
        DoctorFormat::Json => println!("{}", serde_json::to_string_pretty(&exam)?),
        DoctorFormat::Text => {
            print!("{}", report::summary(d));
            println!("\n({:.1} s)", exam.seconds);
        }
    }
    if let Some(dir) = &args.report_dir {
        use anyhow::Context as _;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_file(&dir.join("report.json"), &serde_json::to_string_pretty(&exam)?)?;
        write_file(&dir.join("report.html"), &report::html(d))?;
        eprintln!("wrote {} and {}", dir.join("report.json").display(), dir.join("report.html").display());
    }
    if let Some(path) = &args.write_review {
        let rows = review::rows(d);
        write_file(path, &review::to_csv(&rows)?)?;
        eprintln!(
            "wrote {} rows to {}: set action to relabel (new_label) or delete where you agree, then run \
             triage examples apply {} --collection {}",
            rows.len(),
            path.display(),
            path.display(),
            args.collection
        );
    }
    Ok(0)
}
