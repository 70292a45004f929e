//! Reading rows from JSONL, CSV, TSV and plain-text files, one result per row:
//! a bad row (malformed JSON, bad encoding) is reported with its line number and
//! never stops the rows after it. A gzip file is read through (`export.csv.gz`); a
//! file that is not text at all (an executable, a ZIP or PDF, UTF-16) is refused
//! with what it looks like, never shown as a header.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

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
    /// CSV/TSV only: the record's number, 1 for the first row after the header. A
    /// quoted field can span lines, so it differs from `line - 1` after such a row.
    pub record: Option<usize>,
    pub fields: Result<BTreeMap<String, Value>, String>,
}

impl Row {
    /// The id of a row that has none of its own: `row-N` for a CSV/TSV record (its
    /// record number, see [`Row::record`]), `line-N` for a JSON or plain line.
    pub fn fallback_id(&self) -> String {
        match self.record {
            Some(r) => format!("row-{r}"),
            None => format!("line-{}", self.line),
        }
    }

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
/// of no known format reads it as delimited. See [`parse_file`] for gzip and binary files.
pub fn read_path_with(path: &Path, format: Option<Format>, delimiter: Option<u8>) -> std::io::Result<(Format, Vec<Row>)> {
    let bytes = read_bytes(path)?;
    let p = (path.as_os_str() != "-").then_some(path);
    parse_file(p, &bytes, format, delimiter).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// [`read_path_with`] for a reader that names its columns (`--text-field body`): a
/// file of no known format (not `.jsonl`, `.csv`, `.tsv`, not starting with `{`) whose
/// first line, split at its sniffed delimiter, names every one of `columns` is read
/// as delimited with that header (a one-column header too: a first line that is
/// exactly `body` is a header). `index` and `classify --input` read alike.
pub fn read_path_for(path: &Path, delimiter: Option<u8>, columns: &[String]) -> std::io::Result<(Format, Vec<Row>)> {
    let bytes = read_bytes(path)?;
    let p = (path.as_os_str() != "-").then_some(path);
    let invalid = |e| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let (format, rows) = parse_file(p, &bytes, None, delimiter).map_err(invalid)?;
    if format != Format::Lines || columns.is_empty() {
        return Ok((format, rows));
    }
    let first = rows.first().and_then(|r| r.get("text")).unwrap_or_default();
    let d = sniff_delimiter(first.as_bytes());
    let names: Vec<&str> = first.split(char::from(d)).map(str::trim).collect();
    if columns.iter().all(|c| names.contains(&c.as_str())) {
        return parse_file(p, &bytes, Some(Format::Csv), Some(d)).map_err(invalid);
    }
    Ok((format, rows))
}

/// Why a file of no known format cannot be read for named columns (`index`, and
/// `classify --input` with `--text-field` or `--id-field`).
pub fn unknown_format(path: &Path, columns: &[String]) -> String {
    let named = columns.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "{}: cannot tell the format: not named .jsonl, .csv or .tsv, and its first line is not a header naming {named}; \
         use a .jsonl, .csv or .tsv file with a header row, or give --delimiter to read it as CSV",
        path.display()
    )
}

fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

/// Parse a file's bytes: a gzip file is decompressed (and its name without `.gz`
/// tells the format), a file that is not text is an error saying what it looks like
/// (for the caller to put after the file's name), the format is `format`, else told
/// by the name, else by the content.
pub fn parse_file(path: Option<&Path>, bytes: &[u8], format: Option<Format>, delimiter: Option<u8>) -> Result<(Format, Vec<Row>), String> {
    let (bytes, name): (std::borrow::Cow<[u8]>, Option<PathBuf>) = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip-compressed, but it cannot be decompressed: {e}"))?;
        let inner = path.map(|p| if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) { p.with_extension("") } else { p.to_path_buf() });
        (out.into(), inner)
    } else {
        (bytes.into(), path.map(Path::to_path_buf))
    };
    if let Some(kind) = binary_kind(&bytes[..bytes.len().min(4096)]) {
        return Err(format!("{kind}, not a text file of tickets"));
    }
    let mut format = format.unwrap_or_else(|| Format::detect(name.as_deref(), &bytes[..bytes.len().min(4096)]));
    if delimiter.is_some() && format == Format::Lines {
        format = Format::Csv;
    }
    Ok((format, parse_with(&bytes, format, delimiter)))
}

/// What the start of a file looks like when it is not text: known signatures, else
/// NUL bytes, which text never holds beyond a stray one (UTF-16 is half NULs).
fn binary_kind(head: &[u8]) -> Option<&'static str> {
    const SIGNATURES: [(&[u8], &str); 8] = [
        (b"\x7fELF", "an executable (ELF)"),
        (b"PK\x03\x04", "a ZIP archive (an .xlsx or .docx file? export it as CSV)"),
        (b"%PDF", "a PDF document"),
        (b"\xff\xfe", "UTF-16 text (save it as UTF-8)"),
        (b"\xfe\xff", "UTF-16 text (save it as UTF-8)"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed (decompress it first: zstd -d)"),
        (b"BZh", "bzip2-compressed (decompress it first: bunzip2 -k)"),
        (b"\xfd7zXZ\x00", "xz-compressed (decompress it first: unxz -k)"),
    ];
    if let Some((_, kind)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return Some(kind);
    }
    let nul = head.iter().filter(|b| **b == 0).count();
    (nul >= 4 && nul * 100 > head.len()).then_some("binary data (it holds NUL bytes; UTF-16 text? save it as UTF-8)")
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
            Row { line, record: None, fields }
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
            Row { line, record: None, fields }
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
        Err(e) => return vec![Row { line: 1, record: None, fields: Err(format!("unreadable header row: {e}")) }],
    };
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    let mut records = 0;
    loop {
        let before = rdr.position().byte() as usize;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                records += 1;
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
                rows.push(Row { line, record: Some(records), fields });
            }
            Err(e) => {
                records += 1;
                let start = e.position().map_or(before, |p| p.byte() as usize);
                let line = lines.line_at(start);
                rows.push(Row { line, record: Some(records), fields: Err(format!("malformed row: {e}")) });
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
#[allow(clippy::unwrap_used)]
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
    fn csv_records_are_numbered_apart_from_lines() {
        let rows = parse(b"text,label\n\"two\nlines\",a\nthird,b\n", Format::Csv);
        let got: Vec<(usize, String)> = rows.iter().map(|r| (r.line, r.fallback_id())).collect();
        assert_eq!(got, [(2, "row-1".to_string()), (4, "row-2".to_string())]);
        let rows = parse(b"{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n", Format::Jsonl);
        assert_eq!(rows[1].fallback_id(), "line-3");
    }

    #[test]
    fn gzip_is_read_through_and_binary_files_are_named() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"text,label\nhello,a\n").unwrap();
        let bytes = gz.finish().unwrap();
        let (format, rows) = parse_file(Some(Path::new("export.csv.gz")), &bytes, None, None).unwrap();
        assert_eq!(format, Format::Csv);
        assert_eq!(rows[0].get("label").as_deref(), Some("a"));
        // No inner extension: the content tells (JSON lines here).
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"text\":\"hi\"}\n").unwrap();
        let (format, _) = parse_file(Some(Path::new("dump.gz")), &gz.finish().unwrap(), None, None).unwrap();
        assert_eq!(format, Format::Jsonl);
        let err = parse_file(Some(Path::new("x.csv.gz")), b"\x1f\x8bnot really", None, None).unwrap_err();
        assert!(err.contains("gzip-compressed, but it cannot be decompressed"), "{err}");

        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.extend_from_slice(&[0; 64]);
        let err = parse_file(Some(Path::new("tickets.csv")), &elf, None, None).unwrap_err();
        assert_eq!(err, "an executable (ELF), not a text file of tickets");
        let utf16: Vec<u8> = "text,label\n".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert!(parse_file(None, &utf16, None, None).unwrap_err().contains("UTF-16"));
        // A stray NUL in a text file is a bad row's business, not the file's.
        assert!(parse_file(Some(Path::new("t.csv")), b"text,label\nnul \x00 here,a\nfine,b\n", None, None).is_ok());
    }

    #[test]
    fn a_plain_file_whose_first_line_names_the_columns_is_delimited() {
        let dir = std::env::temp_dir().join(format!("corpus-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tickets.txt");
        std::fs::write(&file, "id;body\n7;refund please\n").unwrap();
        let (format, rows) = read_path_for(&file, None, &["body".to_string()]).unwrap();
        assert_eq!(format, Format::Csv);
        assert_eq!((rows.len(), rows[0].get("body").as_deref()), (1, Some("refund please")));
        // The first line does not name the column: still one ticket per line.
        let (format, rows) = read_path_for(&file, None, &["subject".to_string()]).unwrap();
        assert_eq!((format, rows.len()), (Format::Lines, 2));
        assert!(unknown_format(&file, &["subject".to_string()]).contains("cannot tell the format"));
        std::fs::remove_dir_all(&dir).unwrap();
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
