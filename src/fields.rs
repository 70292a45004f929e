//! Which input columns hold what, shared by every reader (index, classify, eval and
//! the webhook): a text made of several fields joined in order (`subject,body`),
//! a check that the named columns exist at all (so a whole-file rejection names its
//! cause and the header it saw), and "did you mean" by edit distance.

use std::collections::BTreeSet;

use crate::corpus::Row;

/// Between the parts of a text made of several fields (`subject,body`), in the CLI
/// readers and the webhook mapping alike.
pub const TEXT_SEPARATOR: &str = "\n\n";

/// The field names of a text spec: `subject,body` names two, joined in that order.
pub fn text_fields(spec: &str) -> Vec<String> {
    spec.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect()
}

/// The parts that hold text, joined with [`TEXT_SEPARATOR`]; `None` when none does.
pub fn join_parts(parts: impl IntoIterator<Item = String>) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.trim().is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join(TEXT_SEPARATOR))
}

/// A row's text from the fields of `spec` (one name, or several comma-separated,
/// joined in order): `Ok(None)` when none holds text, an error when the row is
/// unreadable or a field is not a string.
pub fn row_text(row: &Row, spec: &str) -> Result<Option<String>, String> {
    let mut parts = Vec::new();
    for name in text_fields(spec) {
        if let Some(t) = row.text(&name)? {
            parts.push(t);
        }
    }
    Ok(join_parts(parts))
}

/// The column names the readable rows have (a CSV's header; the keys of JSON lines).
pub fn seen_columns(rows: &[Row]) -> BTreeSet<String> {
    rows.iter().filter_map(|r| r.fields.as_ref().ok()).flat_map(|f| f.keys().cloned()).collect()
}

/// A column a command needs: the flag that names it and the names accepted
/// (any one of them is enough: the label is `label`, else `category`).
#[derive(Debug, Clone)]
pub struct Needed {
    pub flag: &'static str,
    pub names: Vec<String>,
}

impl Needed {
    pub fn new(flag: &'static str, names: &[&str]) -> Self {
        Needed { flag, names: names.iter().map(|s| s.to_string()).collect() }
    }

    /// Each field of a text spec on its own (`subject,body`: both must exist).
    pub fn each_text_field(flag: &'static str, spec: &str) -> Vec<Needed> {
        text_fields(spec).into_iter().map(|n| Needed { flag, names: vec![n] }).collect()
    }
}

/// An error naming the first needed column that no readable row has, the header the
/// reader saw, the nearest column name and, when the header looks like one column
/// holding separators (`ticket_id;subject;body`), the delimiter to give. `Ok` when
/// there are no readable rows (their own errors say why).
pub fn check_columns(rows: &[Row], needed: &[Needed]) -> Result<(), String> {
    let seen = seen_columns(rows);
    if seen.is_empty() {
        return Ok(());
    }
    for need in needed {
        if need.names.iter().any(|n| seen.contains(n)) {
            continue;
        }
        let names = need.names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" or ");
        let header = seen.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
        let mut msg = format!("column {names} ({}) not found; the header has: {header}", need.flag);
        if let Some(near) = need.names.iter().find_map(|n| nearest(n, seen.iter().map(String::as_str))) {
            msg.push_str(&format!("; did you mean {near:?}?"));
        }
        if seen.len() == 1 {
            if let Some(d) = seen.iter().next().and_then(|h| [';', '\t', '|', ','].into_iter().find(|d| h.contains(*d))) {
                let shown = if d == '\t' { "\\t".to_string() } else { d.to_string() };
                msg.push_str(&format!("; the header looks {shown:?}-delimited: give --delimiter '{shown}'"));
            }
        }
        return Err(msg);
    }
    Ok(())
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `name` (case-insensitive), if close enough to be a typo:
/// at most a third of the longer name's characters differ (at least 1, at most 3 edits).
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (lower.chars().count().max(c.chars().count()) / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::corpus::{parse, parse_with, Format};

    #[test]
    fn several_fields_join_in_order_and_skip_blank_parts() {
        let rows = parse(b"ticket_id,subject,body\n7,Refund,I was charged twice\n8,,only a body\n9,,\n", Format::Csv);
        assert_eq!(row_text(&rows[0], "subject,body").unwrap().as_deref(), Some("Refund\n\nI was charged twice"));
        assert_eq!(row_text(&rows[0], "body, subject").unwrap().as_deref(), Some("I was charged twice\n\nRefund"));
        assert_eq!(row_text(&rows[1], "subject,body").unwrap().as_deref(), Some("only a body"));
        assert_eq!(row_text(&rows[2], "subject,body").unwrap(), None);
    }

    #[test]
    fn a_missing_column_is_named_with_the_header_and_the_delimiter() {
        // Read with the wrong delimiter (sniffing would have found the `;`).
        let rows = parse_with(b"ticket_id;subject;body;queue\n1;a;b;c\n", Format::Csv, Some(b','));
        let err = check_columns(&rows, &Needed::each_text_field("--text-field", "subject,body")).unwrap_err();
        assert!(err.contains("column \"subject\" (--text-field) not found"), "{err}");
        assert!(err.contains("the header has: ticket_id;subject;body;queue"), "{err}");
        assert!(err.contains("--delimiter ';'"), "{err}");

        let rows = parse(b"ticket_id,Subject,body\n1,a,b\n", Format::Csv);
        let err = check_columns(&rows, &[Needed::new("--text-field", &["subject"])]).unwrap_err();
        assert!(err.contains("did you mean \"Subject\"?"), "{err}");
        assert!(check_columns(&rows, &[Needed::new("--label-field", &["label", "body"])]).is_ok());
    }

    #[test]
    fn nearest_names_only_typos() {
        assert_eq!(nearest("min_confidense", ["min_confidence", "name"]), Some("min_confidence"));
        assert_eq!(nearest("urgencies", ["urgency", "categories"]), Some("urgency"));
        assert_eq!(nearest("colour", ["version", "rules"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
