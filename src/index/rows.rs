//! Rows of a corpus to examples: each row checked against the field map and the taxonomy,
//! a rejection with its line and kind for every row that cannot be used.

use std::collections::HashMap;

use crate::corpus::Row;
use crate::example::Example;
use crate::taxonomy::policy::{check_label, Accepted};
use crate::taxonomy::Taxonomy;

use super::{FieldMap, RejectKind, Rejection};

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

pub(super) fn row_to_example(row: &Row, f: &FieldMap, taxonomy: Option<&Taxonomy>, new_labels: bool) -> Result<Example, (RejectKind, String)> {
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

