//! The review file: a CSV a person edits, one row per example the doctor flagged, with
//! `action` = `keep`, `relabel` (to `new_label`) or `delete`. Written with every action
//! `keep`, so applying an unedited file changes nothing: nothing is relabelled unless a
//! person said so. Read back by `triage examples apply` ([`crate::curate::apply_review`]).
//!
//! Columns: `action,id,label,new_label,finding,score,text`. `label` is the example's
//! label when the file was written: a row whose example has changed label since is
//! refused, not applied over the newer label.

use std::collections::{BTreeMap, HashMap};

use super::Diagnosis;
use crate::corpus::{self, Format};

pub const COLUMNS: [&str; 7] = ["action", "id", "label", "new_label", "finding", "score", "text"];

/// One row of the file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRow {
    pub id: String,
    pub label: String,
    /// Pre-filled for mislabeled examples: the suggested label.
    pub new_label: String,
    pub findings: Vec<String>,
    pub score: Option<f64>,
    pub text: String,
}

/// The rows of a diagnosis: mislabeled examples (most suspect first), then both members
/// of conflicting duplicates, junk and examples in uncovered languages; an example
/// flagged several times is one row listing every finding.
pub fn rows(d: &Diagnosis) -> Vec<ReviewRow> {
    let mut out: Vec<ReviewRow> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut add = |id: &str, label: &str, new_label: &str, finding: String, score: Option<f64>, text: &str| match at.get(id) {
        Some(&i) => out[i].findings.push(finding),
        None => {
            at.insert(id.to_string(), out.len());
            out.push(ReviewRow {
                id: id.into(),
                label: label.into(),
                new_label: new_label.into(),
                findings: vec![finding],
                score,
                text: text.into(),
            });
        }
    };
    for m in &d.mislabeled {
        add(&m.id, &m.label, &m.suggested, format!("likely mislabeled (rank {}): suggested {}", m.rank, m.suggested), Some(m.score), &m.text);
    }
    for c in &d.conflicting_duplicates {
        let [a, b] = &c.examples;
        for (x, other) in [(a, b), (b, a)] {
            let f = format!("duplicate of {} labeled {} (similarity {:.3})", other.id, other.label, c.similarity);
            add(&x.id, &x.label, "", f, None, &x.text);
        }
    }
    for j in &d.junk {
        add(&j.id, &j.label, "", format!("junk: {}", j.reason.as_deref().unwrap_or("")), None, &j.text);
    }
    for u in &d.uncovered_language {
        add(&u.id, &u.label, "", format!("language {} not covered by the model", u.lang.as_deref().unwrap_or("?")), None, &u.text);
    }
    out
}

/// The CSV text of `rows`, every action `keep`.
pub fn to_csv(rows: &[ReviewRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for r in rows {
        let score = r.score.map(|s| format!("{s:.4}")).unwrap_or_default();
        w.write_record(["keep", &r.id, &r.label, &r.new_label, &r.findings.join("; "), &score, &r.text])?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What a person decided for one example.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Keep,
    Relabel(String),
    Delete,
}

/// One usable row of an edited file.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The row's line in the file (the header is line 1).
    pub line: usize,
    pub id: String,
    /// The label the row was written for.
    pub label: String,
    pub action: Action,
}

/// A row that cannot be applied, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewFileError {
    #[error("{0}")]
    Unreadable(String),
    #[error("the review file has no {0:?} column (columns: action,id,label,new_label, as `triage doctor --write-review` writes them)")]
    MissingColumn(&'static str),
}

/// Read an edited review file: the usable decisions and the rows that are not.
pub fn parse(bytes: &[u8]) -> Result<(Vec<Decision>, Vec<RowError>), ReviewFileError> {
    let rows = corpus::parse(bytes, Format::Csv);
    if let Some(e) = rows.first().and_then(|r| r.fields.as_ref().err()).filter(|_| rows.iter().all(|r| r.fields.is_err())) {
        return Err(ReviewFileError::Unreadable(e.clone()));
    }
    for col in ["action", "id", "label"] {
        if !rows.is_empty() && !rows.iter().any(|r| r.fields.as_ref().is_ok_and(|f| f.contains_key(col))) {
            return Err(ReviewFileError::MissingColumn(col));
        }
    }
    let mut decisions = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        let field = |name: &str| row.get(name).map(|v| v.trim().to_string()).unwrap_or_default();
        if let Err(e) = &row.fields {
            errors.push(RowError { line: row.line, reason: e.clone() });
            continue;
        }
        let (id, label, new_label) = (field("id"), field("label"), field("new_label"));
        let action = match field("action").to_lowercase().as_str() {
            "keep" | "" => Action::Keep,
            "delete" => Action::Delete,
            "relabel" if new_label.is_empty() => {
                errors.push(RowError { line: row.line, reason: "relabel without a new_label".into() });
                continue;
            }
            "relabel" => Action::Relabel(new_label),
            other => {
                errors.push(RowError { line: row.line, reason: format!("action {other:?} is not keep, relabel or delete") });
                continue;
            }
        };
        if id.is_empty() {
            errors.push(RowError { line: row.line, reason: "no id".into() });
            continue;
        }
        if let Some(first) = seen.get(&id) {
            errors.push(RowError { line: row.line, reason: format!("example {id:?} is already decided on line {first}") });
            continue;
        }
        seen.insert(id.clone(), row.line);
        decisions.push(Decision { line: row.line, id, label, action });
    }
    Ok((decisions, errors))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_as_keep_everywhere() {
        let rows = vec![
            ReviewRow { id: "a".into(), label: "Billing".into(), new_label: "Technical".into(), findings: vec!["x".into(), "y".into()], score: Some(0.99), text: "line one,\n\"quoted\"".into() },
            ReviewRow { id: "b".into(), label: "Technical".into(), new_label: String::new(), findings: vec!["junk".into()], score: None, text: "t".into() },
        ];
        let csv = to_csv(&rows).unwrap();
        assert!(csv.starts_with("action,id,label,new_label,finding,score,text\n"));
        let (d, e) = parse(csv.as_bytes()).unwrap();
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(d.iter().map(|x| (x.id.as_str(), x.label.as_str(), &x.action)).collect::<Vec<_>>(), vec![("a", "Billing", &Action::Keep), ("b", "Technical", &Action::Keep)]);
    }

    #[test]
    fn edited_rows_become_decisions_and_bad_rows_are_named() {
        let file = "action,id,label,new_label\nrelabel,a,Billing,Technical\nDELETE,b,Technical,\nrelabel,c,Billing,\nmove,d,Billing,X\nkeep,,Billing,\ndelete,a,Billing,\n";
        let (d, e) = parse(file.as_bytes()).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].action, Action::Relabel("Technical".into()));
        assert_eq!((d[1].line, &d[1].action), (3, &Action::Delete));
        let reasons: Vec<(usize, &str)> = e.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert_eq!(reasons[0], (4, "relabel without a new_label"));
        assert!(reasons[1].1.contains("\"move\""));
        assert_eq!(reasons[2], (6, "no id"));
        assert!(reasons[3].1.contains("already decided on line 2"));
        assert!(matches!(parse(b"id,label\na,B\n"), Err(ReviewFileError::MissingColumn("action"))));
    }
}
