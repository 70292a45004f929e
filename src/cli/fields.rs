//! The input-column flags shared by `index`, `classify` and `eval`, so one mapping of
//! a helpdesk export (`--text-field subject,body --id-field ticket_id --label-field
//! queue`) works for all three; and reading `classify --input` rows with it.

use std::path::Path;

use anyhow::Context;
use clap::Args;

use crate::classifier::Ticket;
use crate::corpus::{self, Format};
use crate::fields::{check_columns, row_text, text_fields, Needed};
use crate::index::FieldMap;

#[derive(Debug, Clone, Args)]
pub struct FieldArgs {
    /// Field holding the ticket text; several comma-separated fields are joined in that order with a blank line (e.g. subject,body)
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Field holding the ticket's id (kept on examples; classify output carries it) [default: id; else row-N for the N-th CSV/TSV record or line-N for a line (classify), a hash of the text (index)]
    #[arg(long)]
    pub id_field: Option<String>,
    /// Field holding the label [default: label, else category] (index, eval)
    #[arg(long)]
    pub label_field: Option<String>,
    /// Field holding the urgency (index, eval)
    #[arg(long, default_value = "urgency")]
    pub urgency_field: String,
    /// Field holding the subcategory (index, eval)
    #[arg(long, default_value = "subcategory")]
    pub subcategory_field: String,
    /// CSV/TSV delimiter (one character, or \t) [default: sniffed from a .csv header: comma, else ; tab |]
    #[arg(long, value_parser = corpus::parse_delimiter)]
    pub delimiter: Option<u8>,
}

impl FieldArgs {
    pub fn field_map(&self) -> FieldMap {
        let d = FieldMap::default();
        FieldMap {
            text: self.text_field.clone(),
            label: self.label_field.clone(),
            urgency: self.urgency_field.clone(),
            subcategory: self.subcategory_field.clone(),
            id: self.id_field.clone().unwrap_or(d.id.clone()),
            delimiter: self.delimiter,
            ..d
        }
    }
}

/// The tickets of a `classify --input` file, and how they were read.
#[derive(Debug)]
pub struct InputTickets {
    pub tickets: Vec<Ticket>,
    pub format: Format,
    /// Tickets without an id of their own in a CSV/TSV file: numbered `row-N` by record.
    pub numbered_by_record: usize,
}

/// Tickets of a `classify --input` file: the text from `--text-field` (several fields
/// joined), the id from `--id-field` (else `id`, else `row-N` for a CSV/TSV record,
/// `line-N` for a JSON or plain line). A text or id column that no row has is an error
/// naming the header, not one failed ticket per row; so is a file with no tickets, and
/// a plain-text file (one ticket per line) read with a column named: as `index` does,
/// a first line naming the columns makes it a CSV file, else the format is unknown.
pub fn read_input_tickets(path: &Path, f: &FieldArgs) -> anyhow::Result<InputTickets> {
    let mut named: Vec<String> = text_fields(&f.text_field);
    let explicit = f.text_field != FieldMap::default().text || f.id_field.is_some();
    named.extend(f.id_field.clone());
    let (format, rows) =
        corpus::read_path_for(path, f.delimiter, &named).with_context(|| format!("cannot read {}", path.display()))?;
    if format == Format::Lines && explicit {
        anyhow::bail!(corpus::unknown_format(path, &named));
    }
    if rows.is_empty() {
        let empty = matches!(format, Format::Lines | Format::Jsonl)
            || (path.as_os_str() != "-" && std::fs::metadata(path).is_ok_and(|m| m.len() == 0));
        let what = if empty { "is empty" } else { "has a header but no rows" };
        anyhow::bail!("{} {what}: no tickets to classify", path.display());
    }
    if format != Format::Lines {
        let mut needed = Needed::each_text_field("--text-field", &f.text_field);
        if let Some(id) = &f.id_field {
            needed.push(Needed::new("--id-field", &[id.as_str()]));
        }
        check_columns(&rows, &needed).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let id_field = f.id_field.as_deref().unwrap_or("id");
    let mut numbered_by_record = 0;
    let tickets = rows
        .into_iter()
        .map(|row| {
            let id = match row.get(id_field).filter(|s| !s.trim().is_empty()) {
                Some(id) => id,
                None => {
                    numbered_by_record += usize::from(row.record.is_some());
                    row.fallback_id()
                }
            };
            let text = match (&row.fields, format) {
                (Err(e), _) => Err(format!("line {}: {e}", row.line)),
                (Ok(_), Format::Lines) => Ok(row.get("text").unwrap_or_default()),
                (Ok(_), _) => match row_text(&row, &f.text_field) {
                    Ok(Some(t)) => Ok(t),
                    // Present but blank: the classifier says "empty ticket", as for any blank text.
                    Ok(None) if text_fields(&f.text_field).iter().any(|n| row.get(n).is_some()) => Ok(String::new()),
                    Ok(None) => Err(format!("line {}: no text in {:?}", row.line, f.text_field)),
                    Err(e) => Err(format!("line {}: {e}", row.line)),
                },
            };
            Ticket { id, text }
        })
        .collect();
    Ok(InputTickets { tickets, format, numbered_by_record })
}
