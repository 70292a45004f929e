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

/// The global flags `taxonomy check` does not use (it reads a file, nothing else):
/// hidden from its `--help`. They are still accepted, as on every command.
const UNUSED_GLOBALS: [&str; 6] = ["data_dir", "qdrant_url", "embedding_model", "models_dir", "embed_threads", "embed_workers"];

/// `cmd` (the whole `triage` command, built, so that the global flags have been
/// copied into its subcommands) with those flags hidden from `taxonomy check --help`.
pub fn hide_unused_globals(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("taxonomy", |t| {
        t.mut_subcommand("check", |mut c| {
            for id in UNUSED_GLOBALS {
                if c.get_arguments().any(|a| a.get_id() == id) {
                    c = c.mut_arg(id, |a| a.hide(true));
                }
            }
            c
        })
    })
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::CommandFactory;

    fn help(args: &[&str]) -> String {
        let mut cmd = super::super::Cli::command();
        cmd.build();
        let err = super::hide_unused_globals(cmd).try_get_matches_from(args).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        err.to_string()
    }

    #[test]
    fn taxonomy_check_help_lists_only_what_it_uses() {
        let check = help(&["triage", "taxonomy", "check", "--help"]);
        for flag in ["--data-dir", "--qdrant-url", "--embedding-model", "--models-dir", "--embed-threads", "--embed-workers"] {
            assert!(!check.contains(flag), "{flag} in:\n{check}");
        }
        assert!(check.contains("<FILE>") && check.contains("--verbose"), "{check}");
        // Other commands keep them.
        let classify = help(&["triage", "classify", "--help"]);
        assert!(classify.contains("--data-dir") && classify.contains("--models-dir"), "{classify}");
    }
}
