//! `triage taxonomy check FILE`: load a taxonomy as `index` would and print what was
//! understood, so a typo or an empty urgency scale shows before any indexing.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use crate::taxonomy::{Taxonomy, DEFAULT_MIN_CONFIDENCE};

#[derive(Debug, Subcommand)]
pub enum TaxonomyCommand {
    /// Check a taxonomy.toml (unknown keys are errors, with "did you mean") and print what was understood
    Check {
        /// The taxonomy file
        file: PathBuf,
    },
}

pub fn run(cmd: TaxonomyCommand) -> anyhow::Result<u8> {
    match cmd {
        TaxonomyCommand::Check { file } => {
            let t = Taxonomy::load(&file)?;
            let mut out = std::io::stdout().lock();
            out.write_all(describe(&t).as_bytes())?;
            Ok(0)
        }
    }
}

/// What a taxonomy says, for people: name, threshold, categories with their
/// subcategories, the urgency scale, out-of-scope labels and rules.
pub fn describe(t: &Taxonomy) -> String {
    let mut s = format!("taxonomy {:?}", t.name);
    if !t.version.is_empty() {
        s.push_str(&format!(" version {}", t.version));
    }
    s.push_str(&format!(" (fingerprint {})\n", t.fingerprint()));
    match t.min_confidence {
        Some(m) => s.push_str(&format!("review threshold (min_confidence): {m}\n")),
        None => s.push_str(&format!("review threshold (min_confidence): not set, {DEFAULT_MIN_CONFIDENCE} by default\n")),
    }
    s.push_str(&format!("{} categories:\n", t.categories.len()));
    for c in &t.categories {
        let desc = if c.description.is_empty() { "  (no description)".to_string() } else { format!("  {}", c.description) };
        s.push_str(&format!("  {}{}\n", c.name, desc));
        for sub in &c.subcategories {
            s.push_str(&format!("    / {}\n", sub.name));
        }
    }
    if t.urgency.is_empty() {
        s.push_str("urgency scale: none (results carry no urgency; add [[urgency]] tables, lowest first)\n");
    } else {
        let names: Vec<&str> = t.urgency.iter().map(|u| u.name.as_str()).collect();
        s.push_str(&format!("urgency scale, lowest first: {}\n", names.join(" < ")));
    }
    if !t.out_of_scope_labels.is_empty() {
        s.push_str(&format!("out-of-scope labels: {}\n", t.out_of_scope_labels.join(", ")));
    }
    s.push_str(&format!("{} rules\n", t.rules.len()));
    s
}
