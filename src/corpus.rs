//! Reading rows from JSONL, CSV, TSV and plain-text files, one result per row:
//! a bad row (malformed JSON, bad encoding) is reported with its line number and
//! never stops the rows after it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Tsv,
    /// One ticket per line (classify input only).
    Lines,
}

impl Format {
    /// Guess from the file extension, else from the first non-blank byte.
    pub fn detect(path: Option<&Path>, head: &[u8]) -> Format {
        let ext = path
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("csv") => Format::Csv,
            Some("tsv" | "tab") => Format::Tsv,
            Some("txt") => Format::Lines,
            _ => match head.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => Format::Jsonl,
                _ => Format::Lines,
            },
        }
    }
}

/// One row of input: its 1-based line number and its fields, or why it is unreadable.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: usize,
    pub fields: Result<BTreeMap<String, Value>, String>,
}

impl Row {
    /// A field as text: strings as they are, numbers and booleans printed, null/missing as None.
    pub fn get(&self, name: &str) -> Option<String> {
        match self.fields.as_ref().ok()?.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => Some(other.to_string()),
        }
    }

    /// A field that must hold text: `Ok(None)` when absent or null, an error when the
    /// row is unreadable or the field is not a string (`{"text": true}`).
    pub fn text(&self, name: &str) -> Result<Option<String>, String> {
        crate::input::text_field(self.fields.as_ref().map_err(Clone::clone)?, name)
    }

    /// Set a field to a text value (no effect on an unreadable row).
    pub fn set(&mut self, name: &str, value: &str) {
        if let Ok(f) = self.fields.as_mut() {
            f.insert(name.to_string(), Value::String(value.to_string()));
        }
    }
}

pub fn read_path(path: &Path, format: Option<Format>) -> std::io::Result<(Format, Vec<Row>)> {
    read_path_with(path, format, None)
}

/// [`read_path`] with a CSV/TSV delimiter (`--delimiter`); `None` sniffs a `.csv`
/// file's header (`;`, tab or `|` when it has no comma). A delimiter given for a file
/// of no known format reads it as delimited.
pub fn read_path_with(path: &Path, format: Option<Format>, delimiter: Option<u8>) -> std::io::Result<(Format, Vec<Row>)> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        std::fs::read(path)?
    };
    let p = (path.as_os_str() != "-").then_some(path);
    let mut format = format.unwrap_or_else(|| Format::detect(p, &bytes[..bytes.len().min(4096)]));
    if delimiter.is_some() && format == Format::Lines {
        format = Format::Csv;
    }
    Ok((format, parse_with(&bytes, format, delimiter)))
}

pub fn parse(bytes: &[u8], format: Format) -> Vec<Row> {
    parse_with(bytes, format, None)
}

/// [`parse`] with an explicit CSV/TSV delimiter (`None`: sniffed for CSV, tab for TSV).
pub fn parse_with(bytes: &[u8], format: Format, delimiter: Option<u8>) -> Vec<Row> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // UTF-8 BOM
    match format {
        Format::Jsonl => parse_jsonl(bytes),
        Format::Lines => parse_lines(bytes),
        Format::Csv => parse_delimited(bytes, delimiter.unwrap_or_else(|| sniff_delimiter(bytes))),
        Format::Tsv => parse_delimited(bytes, delimiter.unwrap_or(b'\t')),
    }
}

/// The delimiter of a CSV file from its header line: a comma when it has one, else
/// the most frequent of `;`, tab and `|` (exports from spreadsheets in locales with a
/// decimal comma use `;`), else a comma.
pub fn sniff_delimiter(bytes: &[u8]) -> u8 {
    let header = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let count = |d: u8| header.iter().filter(|b| **b == d).count();
    if count(b',') > 0 {
        return b',';
    }
    [b';', b'\t', b'|'].into_iter().map(|d| (count(d), d)).filter(|(n, _)| *n > 0).max().map_or(b',', |(_, d)| d)
}

/// A `--delimiter` value: one ASCII character, or `\t` / `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!("expected one ASCII character (or \\t for tab), got {s:?}")),
    }
}

fn split_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes.split(|b| *b == b'\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

fn parse_jsonl(bytes: &[u8]) -> Vec<Row> {
    split_lines(bytes)
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(line, l)| {
            let fields = match std::str::from_utf8(l) {
                Err(e) => Err(format!("bad encoding: not valid UTF-8 (byte {})", e.valid_up_to())),
                Ok(s) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(m)) => Ok(m.into_iter().collect()),
                    Ok(_) => Err("malformed JSON: the line is not a JSON object".to_string()),
                    Err(e) => Err(format!("malformed JSON: {e}")),
                },
            };
            Row { line, fields }
        })
        .collect()
}

fn parse_lines(bytes: &[u8]) -> Vec<Row> {
    split_lines(bytes)
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(line, l)| {
            let fields = match std::str::from_utf8(l) {
                Err(e) => Err(format!("bad encoding: not valid UTF-8 (byte {})", e.valid_up_to())),
                Ok(s) => Ok(BTreeMap::from([("text".to_string(), Value::String(s.to_string()))])),
            };
            Row { line, fields }
        })
        .collect()
}

fn parse_delimited(bytes: &[u8], delimiter: u8) -> Vec<Row> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let headers: Vec<String> = match rdr.byte_headers() {
        Ok(h) => h.iter().map(|f| String::from_utf8_lossy(f).trim().to_string()).collect(),
        Err(e) => return vec![Row { line: 1, fields: Err(format!("unreadable header row: {e}")) }],
    };
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        let before = rdr.position().byte() as usize;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let start = record.position().map_or(before, |p| p.byte() as usize);
                let line = lines.line_at(start);
                if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                    continue;
                }
                let fields = if record.len() != headers.len() {
                    Err(format!(
                        "malformed row: {} fields where the header has {}",
                        record.len(),
                        headers.len()
                    ))
                } else {
                    record
                        .iter()
                        .zip(&headers)
                        .map(|(f, h)| match std::str::from_utf8(f) {
                            Ok(s) => Ok((h.clone(), Value::String(s.to_string()))),
                            Err(_) => Err(format!("bad encoding: field {h:?} is not valid UTF-8")),
                        })
                        .collect()
                };
                rows.push(Row { line, fields });
            }
            Err(e) => {
                let start = e.position().map_or(before, |p| p.byte() as usize);
                rows.push(Row { line: lines.line_at(start), fields: Err(format!("malformed row: {e}")) });
                // csv cannot always resynchronise after an error; stop only if it makes no progress.
                if rdr.position().byte() as usize == before && rdr.is_done() {
                    break;
                }
            }
        }
    }
    rows
}

/// Line numbers (from 1) of byte offsets, asked for in increasing order. The csv
/// crate's own line counter disagrees between `\n` and `\r\n` files (a record's
/// position can sit on the previous line's terminator), so lines are counted here:
/// a record starts at its first byte that is not a line terminator.
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter { bytes, pos: 0, line: 1 }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let mut start = offset.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start < self.pos {
            // Not in increasing order (cannot happen with one reader): count afresh.
            self.pos = 0;
            self.line = 1;
        }
        self.line += self.bytes[self.pos..start].iter().filter(|b| **b == b'\n').count();
        self.pos = start;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_reports_bad_rows_with_line_numbers() {
        let data = b"{\"text\":\"a\",\"label\":\"x\"}\r\nnot json\n\n{\"text\":\"\xff\"}\n[1]\n{\"text\":\"b\",\"n\":3}\n";
        let rows = parse(data, Format::Jsonl);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].get("label").as_deref(), Some("x"));
        assert_eq!(rows[1].line, 2);
        assert!(rows[1].fields.as_ref().unwrap_err().contains("malformed JSON"));
        assert_eq!(rows[2].line, 4);
        assert!(rows[2].fields.as_ref().unwrap_err().contains("UTF-8"));
        assert!(rows[3].fields.as_ref().unwrap_err().contains("not a JSON object"));
        assert_eq!(rows[4].get("n").as_deref(), Some("3"));
        assert_eq!(rows[4].line, 6);
    }

    #[test]
    fn csv_handles_quotes_crlf_and_multiline_fields() {
        let data = b"text,label\r\n\"Hello, world\",a\r\n\"two\nlines\",b\r\nshort\r\nlast,c\r\n";
        let rows = parse(data, Format::Csv);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].get("text").as_deref(), Some("Hello, world"));
        assert_eq!(rows[1].get("text").as_deref(), Some("two\nlines"));
        assert_eq!(rows[1].line, 3);
        assert!(rows[2].fields.as_ref().unwrap_err().contains("1 fields"));
        assert_eq!(rows[3].line, 6);
        assert_eq!(rows[3].get("label").as_deref(), Some("c"));
    }

    #[test]
    fn csv_rows_keep_their_own_line_numbers_with_either_line_ending() {
        for nl in ["\n", "\r\n"] {
            let data = ["text,label", "hello there,a", "short", "\"multi", "line\",b", "", "last one,c", ""].join(nl);
            let rows = parse(data.as_bytes(), Format::Csv);
            let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, [2, 3, 4, 7], "line ending {nl:?}");
            assert!(rows[1].fields.as_ref().unwrap_err().contains("1 fields"));
            let multi = if nl == "\n" { "multi\nline" } else { "multi\r\nline" };
            assert_eq!(rows[2].get("text").as_deref(), Some(multi));
        }
    }

    #[test]
    fn csv_delimiter_is_sniffed_from_the_header_or_given() {
        let rows = parse(b"ticket_id;subject;body\n1;Refund;twice, really\n", Format::Csv);
        assert_eq!(rows[0].get("body").as_deref(), Some("twice, really"));
        let rows = parse_with(b"a|b\n1|2\n", Format::Csv, Some(b'|'));
        assert_eq!(rows[0].get("b").as_deref(), Some("2"));
        assert_eq!(sniff_delimiter(b"text,label\n"), b',');
        assert_eq!(sniff_delimiter(b"text\n"), b',');
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
    }

    #[test]
    fn tsv_uses_csv_quoting() {
        let rows = parse(b"text\tlabel\n\"tab\tinside\"\tx\n", Format::Tsv);
        assert_eq!(rows[0].get("text").as_deref(), Some("tab\tinside"));
        assert_eq!(rows[0].get("label").as_deref(), Some("x"));
    }

    #[test]
    fn detects_formats() {
        assert_eq!(Format::detect(Some(Path::new("a.CSV")), b""), Format::Csv);
        assert_eq!(Format::detect(None, b"  {\"text\":1}"), Format::Jsonl);
        assert_eq!(Format::detect(None, b"hello"), Format::Lines);
        let rows = parse(b"one\n\n\xef\xbb\xbftwo\n", Format::Lines);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 3);
    }
}
