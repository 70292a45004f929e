//! `triage classify`: tickets from arguments or a file, results as JSONL, CSV, JSON or a table.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::progress::progress_bar;
use super::{fields, flag, store_settings, CommonArgs, LlmArgs, EXIT_SOME_FAILED};
use crate::classifier::{Classifier, ClassifyOptions, Ticket};
use crate::embed::MAX_EMBED_CHARS;
use crate::prompt::MAX_TICKET_CHARS;
use crate::{config, options};
use crate::output::{self, OutputFormat};
use crate::progress::on_bar;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Ticket texts (each argument is one ticket)
    pub texts: Vec<OsString>,
    /// Collection holding the examples
    #[arg(long)]
    pub collection: String,
    /// Read tickets from a file, or - for stdin: JSONL (text, optional id), CSV/TSV with a header, or one ticket per line
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub fields: fields::FieldArgs,
    /// Write results here (JSON lines unless --format says otherwise) instead of stdout
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Output format [default: table on a terminal, else jsonl]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Examples retrieved per ticket
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Review threshold: lower confidence goes to review [default: the taxonomy's, else 0.85]
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Route by a precision target instead of a threshold: e.g. 0.98 sends on without review only as many tickets as the collection's held-out answers show are at least 98 % right [default: the taxonomy's auto_route_precision, if any]
    #[arg(long, conflicts_with = "min_confidence")]
    pub auto_route_precision: Option<f64>,
    /// Tickets classified at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// With more categories than this, the prompt lists only those of the retrieved examples (at most this many); 0: all
    #[arg(long, default_value_t = crate::classifier::DEFAULT_MAX_PROMPT_LABELS)]
    pub max_prompt_labels: usize,
    /// Retrieve only examples with this field value, e.g. lang=en or tier=gold (repeat: all must match)
    #[arg(long = "filter", value_name = "FIELD=VALUE", value_parser = parse_filter_entry)]
    pub filters: Vec<(String, String)>,
    /// Two-stage prompts for taxonomies with subcategories: the category first (categories only), then that category's subcategories in a second, short request. Shorter prompts, up to twice the requests
    #[arg(long)]
    pub two_stage: bool,
    /// Ask the LLM for every ticket, also where the collection's fit says the neighbours are decisive (no knn-shortcut): an LLM summary and reasoning for every ticket, at one request per ticket
    #[arg(long, env = "TRIAGE_NO_SHORTCUT", action = clap::ArgAction::SetTrue, value_parser = clap::builder::FalseyValueParser::new())]
    pub no_shortcut: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
}

fn parse_filter_entry(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected FIELD=VALUE, got {s:?}")),
    }
}

/// Tickets from the command line and/or the input file, in order; notes for people
/// about how the file's tickets were numbered go to stderr.
fn read_tickets(args: &ClassifyArgs) -> anyhow::Result<Vec<Ticket>> {
    let mut tickets: Vec<Ticket> = args
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| Ticket {
            id: (i + 1).to_string(),
            text: t.to_str().map(str::to_string).ok_or_else(|| "bad encoding: the argument is not valid UTF-8".to_string()),
        })
        .collect();
    if let Some(path) = &args.input {
        let input = fields::read_input_tickets(path, &args.fields)?;
        if input.numbered_by_record > 0 {
            let id = args.fields.id_field.as_deref().unwrap_or("id");
            eprintln!(
                "note: {} ticket(s) of {} have no {id:?} column value: their ids are row-N, N counting the file's \
                 records after the header (not its lines: a quoted field can span lines); --id-field names the id column",
                input.numbered_by_record,
                path.display()
            );
        }
        tickets.extend(input.tickets);
    }
    anyhow::ensure!(!tickets.is_empty(), "no tickets: give texts as arguments or --input FILE (- for stdin)");
    if let Some(note) = truncation_note(&tickets) {
        eprintln!("{note}");
    }
    Ok(tickets)
}

/// A note naming the tickets too long to be read whole: the embedding model gets the
/// first [`MAX_EMBED_CHARS`] bytes, an LLM prompt the first [`MAX_TICKET_CHARS`] characters.
fn truncation_note(tickets: &[Ticket]) -> Option<String> {
    let long: Vec<(&str, usize)> =
        tickets.iter().filter_map(|t| t.text.as_ref().ok().filter(|s| s.len() > MAX_EMBED_CHARS).map(|s| (t.id.as_str(), s.len()))).collect();
    let (id, bytes) = long.iter().max_by_key(|(_, n)| *n)?;
    Some(format!(
        "note: {} ticket(s) longer than {MAX_EMBED_CHARS} bytes were truncated (the longest: id {id}, {bytes} bytes): \
         the embedding model reads the first {MAX_EMBED_CHARS} bytes, an LLM prompt the first {MAX_TICKET_CHARS} characters",
        long.len()
    ))
}

pub async fn run(common: &CommonArgs, args: ClassifyArgs) -> anyhow::Result<u8> {
    let options = ClassifyOptions {
        max_prompt_labels: args.max_prompt_labels,
        filter: options::check_filter(args.filters.iter().cloned()).map_err(flag)?,
        two_stage: args.two_stage,
        shortcut: !args.no_shortcut,
        ..ClassifyOptions::checked(args.k, args.min_confidence, None)
            .and_then(|o| o.with_precision(args.auto_route_precision))
            .map_err(flag)?
    };
    let tickets = read_tickets(&args)?;
    let llm = args.llm.client()?;
    let with_llm = llm.is_some();
    let store = config::open_store(&store_settings(common))?;
    // Searching opens the shard: fail now, not once per ticket, if another process owns the store.
    store.claim()?;
    let embedder = common.embedder()?;
    let classifier = Arc::new(Classifier::open(embedder, store.clone(), llm, &args.collection, options).await?);
    classifier.meta().check_filter(&classifier.options().filter)?;
    if let Some(why) =
        crate::store::filter_values::explain_empty_filter(store.as_ref(), classifier.meta(), &classifier.options().filter).await?
    {
        anyhow::bail!(why);
    }

    let format = args.format.unwrap_or(if args.output.is_none() && std::io::stdout().is_terminal() {
        OutputFormat::Table
    } else {
        OutputFormat::Jsonl
    });
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress_bar("classifying");
    let failed = output::classify_into(&classifier, tickets, args.concurrency, with_llm, format, &mut out, &on_bar(&bar)).await?;
    bar.finish_and_clear();
    out.flush()?;
    if failed > 0 {
        eprintln!("{failed} ticket(s) failed; their results carry \"error\" and needs_review");
        return Ok(EXIT_SOME_FAILED);
    }
    Ok(0)
}

