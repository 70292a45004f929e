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

/// The global flags `taxonomy check` does not use (it reads a file, nothing else).
const UNUSED_GLOBALS: [&str; 6] = ["data_dir", "qdrant_url", "embedding_model", "models_dir", "embed_threads", "embed_workers"];

/// `cmd` (the whole `triage` command, not built yet) with those flags hidden from
/// `taxonomy check --help`: hidden copies are declared on the subcommand, so the build
/// does not copy the visible global ones into it. They are still accepted (and ignored).
pub fn hide_unused_globals(cmd: clap::Command) -> clap::Command {
    let hidden: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| UNUSED_GLOBALS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().global(false).hide(true))
        .collect();
    cmd.mut_subcommand("taxonomy", |t| t.mut_subcommand("check", |c| c.args(hidden)))
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
        let err = super::hide_unused_globals(super::super::Cli::command()).try_get_matches_from(args).unwrap_err();
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

    #[test]
    fn taxonomy_check_still_accepts_the_global_flags() {
        let m = super::hide_unused_globals(super::super::Cli::command())
            .try_get_matches_from(["triage", "taxonomy", "check", "t.toml", "--data-dir", "/x", "-v"])
            .unwrap();
        let cli = <super::super::Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(cli.common.verbose, 1);
        assert!(matches!(cli.command, super::super::Command::Taxonomy(super::TaxonomyCommand::Check { .. })));
    }
}
