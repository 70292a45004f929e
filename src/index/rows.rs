//! Rows of an input file turned into examples: each row checked (text, label by the
//! label policy, subcategory, urgency, secondary labels, duplicates), the rows that cannot
//! be used kept as rejections with their kind, and the summary every command prints.

use std::collections::HashMap;

use serde::Serialize;

use super::FieldMap;
use crate::corpus::Row;
use crate::example::Example;
use crate::taxonomy::policy::{check_label, Accepted};
use crate::taxonomy::Taxonomy;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub line: usize,
    pub reason: String,
    pub kind: RejectKind,
}

/// Why a row was not used, by kind: what every command's summary counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// Malformed JSON, a broken CSV record.
    Unreadable,
    BlankText,
    BlankLabel,
    /// The same id, or (rows without an id) the same text, as an earlier row.
    Duplicate,
    /// Not in the taxonomy (the label policy names the nearest).
    UnknownLabel,
    /// Another field that does not fit (subcategory, urgency, secondary labels).
    Invalid,
}

impl RejectKind {
    pub fn describe(self) -> &'static str {
        match self {
            RejectKind::Unreadable => "unreadable",
            RejectKind::BlankText => "blank text",
            RejectKind::BlankLabel => "blank label",
            RejectKind::Duplicate => "duplicate",
            RejectKind::UnknownLabel => "unknown label",
            RejectKind::Invalid => "other invalid field",
        }
    }
}

/// Rejected rows shown one by one in a summary; the rest are counted.
pub const SHOWN_REJECTIONS: usize = 10;

/// A summary of rejected rows for people: the count by kind on one line, then the first
/// [`SHOWN_REJECTIONS`] rows and how many more there are. Empty when nothing was rejected.
pub fn rejection_summary(rejected: &[Rejection]) -> String {
    use std::fmt::Write as _;
    if rejected.is_empty() {
        return String::new();
    }
    let mut by_kind: std::collections::BTreeMap<RejectKind, usize> = std::collections::BTreeMap::new();
    for r in rejected {
        *by_kind.entry(r.kind).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {}", k.describe())).collect();
    let mut s = format!("  rejected rows: {}\n", kinds.join(", "));
    for r in rejected.iter().take(SHOWN_REJECTIONS) {
        if r.line > 0 {
            let _ = writeln!(s, "  rejected line {}: {}", r.line, r.reason);
        } else {
            let _ = writeln!(s, "  rejected: {}", r.reason);
        }
    }
    if rejected.len() > SHOWN_REJECTIONS {
        let _ = writeln!(s, "  ... and {} more rejected rows (--json lists them all)", rejected.len() - SHOWN_REJECTIONS);
    }
    s
}

/// Turn rows into examples; every row that cannot be used becomes a rejection with its reason.
pub fn validate_rows(rows: Vec<Row>, fields: &FieldMap, taxonomy: Option<&Taxonomy>) -> (Vec<Example>, Vec<Rejection>) {
    let (examples, _, rejected) = validate_rows_with_lines(rows, fields, taxonomy, false);
    (examples, rejected)
}

/// [`validate_rows`], with each example's line, checking labels by the label policy
/// ([`check_label`]): a label the taxonomy lacks is refused unless `new_labels` or the
/// row's own `new_label` field is true. A taxonomy derived from data checks labels only
/// (its urgency levels and subcategories grow with the data).
pub fn validate_rows_with_lines(
    rows: Vec<Row>,
    fields: &FieldMap,
    taxonomy: Option<&Taxonomy>,
    new_labels: bool,
) -> (Vec<Example>, Vec<usize>, Vec<Rejection>) {
    let mut examples = Vec::new();
    let mut lines = Vec::new();
    let mut rejected = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in rows {
        match row_to_example(&row, fields, taxonomy, new_labels) {
            Err((kind, reason)) => rejected.push(Rejection { line: row.line, reason, kind }),
            Ok(ex) => {
                if let Some(first) = seen.get(&ex.id) {
                    // Rows without an id get one from their text: the same id is the same text.
                    let reason = if ex.id == Example::auto_id(&ex.text) {
                        format!("duplicate text (same as line {first})")
                    } else {
                        format!("duplicate id {:?} (first on line {first})", ex.id)
                    };
                    rejected.push(Rejection { line: row.line, reason, kind: RejectKind::Duplicate });
                } else {
                    seen.insert(ex.id.clone(), row.line);
                    examples.push(ex);
                    lines.push(row.line);
                }
            }
        }
    }
    (examples, lines, rejected)
}

/// A row's own `new_label` field: true, "true", "yes" or 1.
fn row_new_label(row: &Row) -> bool {
    row.get("new_label").is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "true" | "yes" | "1"))
}

fn row_to_example(row: &Row, f: &FieldMap, taxonomy: Option<&Taxonomy>, new_labels: bool) -> Result<Example, (RejectKind, String)> {
    if let Err(e) = &row.fields {
        return Err((RejectKind::Unreadable, e.clone()));
    }
    let text = crate::fields::row_text(row, &f.text).map_err(|e| (RejectKind::Invalid, e))?.map(|t| t.trim().to_string()).unwrap_or_default();
    if crate::input::blank_reason(&text).is_some() {
        let invisible = if text.is_empty() { "" } else { ": only control or invisible characters" };
        return Err((RejectKind::BlankText, format!("empty text (field {:?}){invisible}", f.text)));
    }
    let label = match &f.label {
        Some(name) => row.get(name),
        None => row.get("label").or_else(|| row.get("category")),
    }
    .map(|l| l.trim().to_string())
    .filter(|l| !l.is_empty())
    .ok_or_else(|| (RejectKind::BlankLabel, format!("missing label (field {:?})", f.label.as_deref().unwrap_or("label"))))?;
    let opt = |name: &str| row.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let mut subcategory = opt(&f.subcategory);
    let mut urgency = opt(&f.urgency);
    let label = match taxonomy {
        None => label,
        Some(t) => match check_label(t, &label, new_labels || row_new_label(row)).map_err(|e| (RejectKind::UnknownLabel, e.to_string()))? {
            Accepted::OutOfScope(name) => {
                // An out-of-scope example: no subcategory, since it has no category.
                subcategory = None;
                name
            }
            Accepted::New(name) => name,
            Accepted::Category(name) => {
                if !t.derived {
                    if let Some(s) = &subcategory {
                        subcategory = Some(
                            t.subcategory(&name, s)
                                .ok_or_else(|| (RejectKind::Invalid, format!("unknown subcategory {s:?} for {name}")))?
                                .to_string(),
                        );
                    }
                    if let Some(u) = &urgency {
                        if !t.urgency.is_empty() {
                            urgency = Some(
                                t.urgency_level(u).ok_or_else(|| (RejectKind::Invalid, format!("unknown urgency {u:?}")))?.to_string(),
                            );
                        }
                    }
                }
                name
            }
        },
    };
    let id = opt(&f.id).unwrap_or_else(|| Example::auto_id(&text));
    let meta = f.meta.iter().filter_map(|name| Some((name.clone(), opt(name)?))).collect();
    let secondary = secondary_labels(row, "secondary", taxonomy, &label).map_err(|e| (RejectKind::Invalid, e))?;
    Ok(Example { id, text, label, subcategory, urgency, rationale: opt(&f.rationale), lang: opt(&f.lang), secondary, meta, provenance: None })
}

/// A row's secondary labels (field `field`: a list, or comma-separated text), checked
/// against the taxonomy when there is one: canonical names, never the primary, no
/// repeats, at most 2.
pub fn secondary_labels(row: &Row, field: &str, taxonomy: Option<&Taxonomy>, primary: &str) -> Result<Vec<String>, String> {
    let raw = row.fields.as_ref().ok().and_then(|f| f.get(field)).map(crate::example::labels_from_value).unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for l in raw {
        let name = match taxonomy {
            Some(t) => t.category(&l).map(|c| c.name.clone()).ok_or_else(|| format!("unknown secondary label {l:?} (not a category)"))?,
            None => l,
        };
        let k = crate::taxonomy::label_key(&name);
        if k != crate::taxonomy::label_key(primary) && !out.iter().any(|o| crate::taxonomy::label_key(o) == k) {
            out.push(name);
        }
    }
    if out.len() > 2 {
        return Err(format!("{} secondary labels; at most 2", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{parse, Format};

    #[test]
    fn rows_are_validated_against_the_taxonomy() {
        let t = Taxonomy::parse(
            "name = \"t\"\n[[categories]]\nname = \"Billing\"\n[[urgency]]\nname = \"High\"\n",
        )
        .unwrap();
        let data = b"{\"text\":\"refund\",\"label\":\"billing\",\"urgency\":\"HIGH\"}\n\
{\"text\":\"  \",\"label\":\"Billing\"}\n\
{\"text\":\"x\",\"label\":\"Sales\"}\n\
{\"text\":\"y\",\"category\":\"Billing\",\"urgency\":\"Soon\"}\n\
{broken\n\
{\"text\":\"refund\",\"label\":\"Billing\"}\n\
{\"text\":\"z\"}\n";
        let (ex, rej) = validate_rows(parse(data, Format::Jsonl), &FieldMap::default(), Some(&t));
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].label, "Billing");
        assert_eq!(ex[0].urgency.as_deref(), Some("High"));
        let reasons: Vec<(usize, &str)> = rej.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].1.contains("empty text") && reasons[0].0 == 2);
        assert!(reasons[1].1.contains("unknown label \"Sales\""));
        assert!(reasons[2].1.contains("unknown urgency"));
        assert!(reasons[3].1.contains("malformed JSON") && reasons[3].0 == 5);
        assert_eq!(reasons[4].1, "duplicate text (same as line 1)");
        assert!(reasons[5].1.contains("missing label"));
        let kinds: Vec<RejectKind> = rej.iter().map(|r| r.kind).collect();
        use RejectKind::*;
        assert_eq!(kinds, vec![BlankText, UnknownLabel, Invalid, Unreadable, Duplicate, BlankLabel]);
        let summary = rejection_summary(&rej);
        assert!(summary.starts_with("  rejected rows: 1 unreadable, 1 blank text, 1 blank label, 1 duplicate, 1 unknown label, 1 other invalid field\n"), "{summary}");
        assert!(summary.contains("rejected line 5:") && !summary.contains("more rejected"));
        let many: Vec<Rejection> = (1..=25).map(|line| Rejection { line, reason: "missing label".into(), kind: BlankLabel }).collect();
        let summary = rejection_summary(&many);
        assert!(summary.contains("25 blank label") && summary.contains("... and 15 more rejected rows"), "{summary}");
        assert_eq!(summary.lines().count(), 12, "the counts, 10 rows, the rest counted");
    }

    #[test]
    fn custom_fields_and_no_taxonomy() {
        let data = b"body,intent\nhello,greet\n";
        let fields = FieldMap { text: "body".into(), label: Some("intent".into()), ..FieldMap::default() };
        let (ex, rej) = validate_rows(parse(data, Format::Csv), &fields, None);
        assert!(rej.is_empty());
        assert_eq!(ex[0].label, "greet");
        assert!(ex[0].id.starts_with("auto-"));
        assert!(ex[0].meta.is_empty());
    }

    #[test]
    fn duplicate_ids_from_an_id_column_say_id() {
        let data = b"ticket_id,subject,body,queue\nT1,Refund,charged twice,billing\nT1,Login,cannot sign in,access\n";
        let fields = FieldMap {
            text: "subject,body".into(),
            label: Some("queue".into()),
            id: "ticket_id".into(),
            ..FieldMap::default()
        };
        let (ex, rej) = validate_rows(parse(data, Format::Csv), &fields, None);
        assert_eq!(ex[0].id, "T1");
        assert_eq!(ex[0].text, "Refund\n\ncharged twice");
        assert_eq!(rej[0].reason, "duplicate id \"T1\" (first on line 2)");
    }

    #[test]
    fn metadata_columns_are_kept_when_asked_for() {
        let data = b"text,label,tier,product\nhello,greet,gold,\nbye,leave,silver,app\n";
        let fields = FieldMap { meta: vec!["tier".into(), "product".into()], ..FieldMap::default() };
        let (ex, rej) = validate_rows(parse(data, Format::Csv), &fields, None);
        assert!(rej.is_empty());
        assert_eq!(ex[0].meta.iter().collect::<Vec<_>>(), [(&"tier".to_string(), &"gold".to_string())]);
        assert_eq!(ex[1].meta.len(), 2);
        assert_eq!(ex[1].meta["product"], "app");
    }
}
