//! The labeled data of an evaluation: test tickets read from a file, the seeded split
//! and sample, the train corpus made from rows, the fixed demonstrations, and the name
//! of the collection a train side is indexed into.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Fields;
use crate::corpus::Row;
use crate::example::{hex, Example, ScoredExample};
use crate::index::{self, Corpus};
use crate::index::{RejectKind, Rejection};
use crate::taxonomy::{label_key, Taxonomy};
use crate::Error;

/// A labeled test ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledTicket {
    pub id: String,
    pub text: String,
    /// Canonical taxonomy name when in scope, else the label as written.
    pub label: String,
    pub is_oos: bool,
    pub urgency: Option<String>,
    pub subcategory: Option<String>,
    /// The ticket's language as the test file says (`lang` field), when it does.
    pub lang: Option<String>,
    /// Values of the `--segment-field` fields (missing ones left out).
    pub segments: std::collections::BTreeMap<String, String>,
    /// Marked as an edge case by the `--edge-field` field.
    pub edge: bool,
    /// Secondary issues by the test file's `secondary` field; `None` when the row has
    /// no such field.
    pub secondary: Option<Vec<String>>,
    pub(crate) group: Option<String>,
    pub(crate) line: usize,
}

pub(crate) fn truthy(v: Option<String>) -> bool {
    matches!(v.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref(), Some("true" | "1" | "yes"))
}

/// Labeled rows of a test file; rows without text or label are not used, but each is
/// returned as a rejection (blank text, blank label, unreadable), so that the summary
/// says how many and which.
pub fn read_labeled(rows: &[Row], fields: &Fields, group_field: Option<&str>) -> (Vec<LabeledTicket>, Vec<Rejection>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for row in rows {
        if let Err(e) = &row.fields {
            skipped.push(Rejection { line: row.line, reason: e.clone(), kind: RejectKind::Unreadable });
            continue;
        }
        let text = crate::fields::row_text(row, &fields.columns.text).ok().flatten().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let label = match &fields.columns.label {
            Some(f) => row.get(f),
            None => row.get("label").or_else(|| row.get("category")),
        }
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
        let (text, label) = match (text, label) {
            (Some(t), Some(l)) => (t, l),
            (None, _) => {
                skipped.push(Rejection { line: row.line, reason: format!("empty text (field {:?})", fields.columns.text), kind: RejectKind::BlankText });
                continue;
            }
            (Some(_), None) => {
                let field = fields.columns.label.as_deref().unwrap_or("label");
                skipped.push(Rejection { line: row.line, reason: format!("missing label (field {field:?})"), kind: RejectKind::BlankLabel });
                continue;
            }
        };
        let opt = |f: &str| row.get(f).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        out.push(LabeledTicket {
            id: opt(&fields.columns.id).unwrap_or_else(|| row.fallback_id()),
            text,
            label,
            is_oos: truthy(row.get(&fields.is_oos)),
            urgency: opt(&fields.columns.urgency),
            subcategory: opt(&fields.columns.subcategory),
            lang: opt(&fields.columns.lang),
            segments: fields.segment.iter().filter_map(|f| Some((f.clone(), opt(f)?))).collect(),
            edge: fields.edge.as_deref().is_some_and(|f| truthy(row.get(f))),
            secondary: row
                .fields
                .as_ref()
                .ok()
                .and_then(|m| m.get(&fields.secondary))
                .map(crate::example::labels_from_value),
            group: group_field.and_then(opt),
            line: row.line,
        });
    }
    (out, skipped)
}

/// Deterministic split: a row (or its whole group) goes to the test side when the
/// seeded hash of its group value (else its line number) falls below `fraction`.
pub fn in_test_split(key: &str, seed: u64, fraction: f64) -> bool {
    let d = Sha256::digest(format!("{seed}\u{0}{key}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) as f64 / 18_446_744_073_709_551_616.0) < fraction
}

pub(crate) fn split_key(t: &LabeledTicket) -> String {
    match &t.group {
        Some(g) => format!("group:{g}"),
        None => format!("line:{}", t.line),
    }
}

/// Test rows with the same text as an earlier one (kept and evaluated: they weigh twice).
pub fn duplicate_texts(tickets: &[LabeledTicket]) -> usize {
    let mut seen = std::collections::HashSet::new();
    tickets.iter().filter(|t| !seen.insert(t.text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())).count()
}

/// The test file's rows for people: read, evaluated, and those not used (counted by
/// kind, the first few shown), and repeated texts.
pub fn rows_summary(d: &super::DatasetInfo) -> String {
    let mut s = format!(
        "test file {}: {} rows read, {} tickets evaluated",
        d.path.display(),
        d.rows_read,
        d.rows
    );
    if d.duplicate_text_rows > 0 {
        s.push_str(&format!("; {} repeat an earlier row's text (kept)", d.duplicate_text_rows));
    }
    s.push('\n');
    s.push_str(&index::rejection_summary(&d.rejected_rows));
    s
}

/// `n` tickets chosen by seeded hash (labeled files are often sorted by label, so the
/// first rows would cover few labels), kept in file order.
pub fn sample(tickets: Vec<LabeledTicket>, n: usize, seed: u64) -> Vec<LabeledTicket> {
    if tickets.len() <= n {
        return tickets;
    }
    let rank = |t: &LabeledTicket| {
        let d = Sha256::digest(format!("sample\u{0}{seed}\u{0}{}", t.line).as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_be_bytes(b)
    };
    let mut ranked: Vec<(u64, LabeledTicket)> = tickets.into_iter().map(|t| (rank(&t), t)).collect();
    ranked.sort_by_key(|(r, _)| *r);
    ranked.truncate(n);
    ranked.sort_by_key(|(_, t)| t.line);
    ranked.into_iter().map(|(_, t)| t).collect()
}

/// The fixed demonstrations for k: the first example (in corpus order) of each of
/// the k most frequent labels (ties: the label seen first). Scores are NaN: they
/// were not retrieved for the ticket.
pub fn fixed_demonstrations(examples: &[Example], k: usize) -> Vec<ScoredExample> {
    let mut order: Vec<String> = Vec::new();
    let mut first: HashMap<String, (usize, &Example)> = HashMap::new();
    for e in examples {
        let key = label_key(&e.label);
        match first.get_mut(&key) {
            Some(entry) => entry.0 += 1,
            None => {
                order.push(key.clone());
                first.insert(key, (1, e));
            }
        }
    }
    let mut labels: Vec<(usize, usize, &Example)> =
        order.iter().enumerate().filter_map(|(i, l)| first.get(l).map(|(n, e)| (*n, i, *e))).collect();
    labels.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    labels.into_iter().take(k).map(|(_, _, e)| ScoredExample { score: f32::NAN, example: e.clone() }).collect()
}

pub(crate) fn sha256_file(path: &Path) -> Result<(String, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok((hex(&Sha256::digest(&bytes)), bytes))
}

/// A train corpus from rows, checked against `taxonomy` when there is one. Rows marked
/// out of scope (`is_oos`) are left out, unless `out_of_scope` names labels for them:
/// then they are kept as examples of the first of those labels (negatives), and the
/// taxonomy (written or derived for `collection`) lists them as out-of-scope labels.
pub(crate) fn corpus_from_rows(
    source: &Path,
    rows: Vec<Row>,
    fields: &Fields,
    taxonomy: Option<Taxonomy>,
    out_of_scope: &[String],
    collection: &str,
) -> (Corpus, usize) {
    let before = rows.len();
    let rows: Vec<Row> = match out_of_scope.first() {
        None => rows.into_iter().filter(|r| !truthy(r.get(&fields.is_oos))).collect(),
        Some(label) => {
            let key = fields.columns.label.clone().unwrap_or_else(|| "label".into());
            rows.into_iter()
                .map(|mut r| {
                    if truthy(r.get(&fields.is_oos)) {
                        r.set(&key, label);
                    }
                    r
                })
                .collect()
        }
    };
    let excluded = before - rows.len();
    let map = fields.columns.clone();
    let mut taxonomy = taxonomy;
    if let Some(t) = taxonomy.as_mut() {
        for l in out_of_scope {
            if !t.is_out_of_scope(l) && t.category(l).is_none() {
                t.out_of_scope_labels.push(l.clone());
            }
        }
    }
    let (examples, lines, rejected) = index::validate_rows_with_lines(rows, &map, taxonomy.as_ref(), false);
    let mut corpus = Corpus { source: source.to_path_buf(), taxonomy, examples, lines, rejected };
    index::mark_out_of_scope(&mut corpus, out_of_scope, collection);
    (corpus, excluded)
}

/// `eval-` + a hash of the embedding model, the examples (ids and content) and the
/// taxonomy when the corpus has one (so another taxonomy is another collection).
pub(crate) fn collection_name(model: &str, corpus: &Corpus, kind: &str) -> String {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(kind.as_bytes());
    if let Some(t) = &corpus.taxonomy {
        h.update([0u8]);
        h.update(t.fingerprint().as_bytes());
    }
    for e in &corpus.examples {
        h.update([0u8]);
        h.update(e.id.as_bytes());
        h.update(e.content_hash().as_bytes());
    }
    format!("eval-{}", hex(&h.finalize()[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;

    fn ex(id: &str, label: &str) -> Example {
        Example::new(id, format!("text {id}"), label)
    }

    #[test]
    fn fixed_demonstrations_take_the_first_example_of_the_most_frequent_labels() {
        let e = vec![ex("1", "A"), ex("2", "B"), ex("3", "B"), ex("4", "C"), ex("5", "C"), ex("6", "A"), ex("7", "D")];
        let d = fixed_demonstrations(&e, 3);
        let ids: Vec<&str> = d.iter().map(|d| d.example.id.as_str()).collect();
        // A, B and C have two each (ties in order of first appearance); D has one.
        assert_eq!(ids, ["1", "2", "4"]);
        assert!(d.iter().all(|d| d.score.is_nan()));
        assert_eq!(fixed_demonstrations(&e, 10).len(), 4, "one per label at most");
        assert!(fixed_demonstrations(&e, 0).is_empty());
    }

    #[test]
    fn split_is_deterministic_and_near_the_fraction() {
        let keys: Vec<String> = (0..2000).map(|i| format!("line:{i}")).collect();
        let a: Vec<bool> = keys.iter().map(|k| in_test_split(k, 42, 0.2)).collect();
        let b: Vec<bool> = keys.iter().map(|k| in_test_split(k, 42, 0.2)).collect();
        let c: Vec<bool> = keys.iter().map(|k| in_test_split(k, 7, 0.2)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c, "another seed gives another split");
        let share = a.iter().filter(|x| **x).count() as f64 / a.len() as f64;
        assert!((0.17..0.23).contains(&share), "{share}");
    }

    #[test]
    fn labeled_rows_with_groups_and_oos() {
        let rows = corpus::parse(
            b"{\"text\":\"a\",\"label\":\"X\",\"g\":\"1\",\"is_oos\":false}\n{\"text\":\"b\",\"label\":\"oos\",\"is_oos\":true,\"urgency\":\"High\"}\n{\"text\":\"\",\"label\":\"X\"}\n{\"text\":\"c\"}\n",
            corpus::Format::Jsonl,
        );
        let (t, skipped) = read_labeled(&rows, &Fields::default(), Some("g"));
        let kinds: Vec<(usize, RejectKind)> = skipped.iter().map(|r| (r.line, r.kind)).collect();
        assert_eq!(kinds, vec![(3, RejectKind::BlankText), (4, RejectKind::BlankLabel)]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].group.as_deref(), Some("1"));
        assert!(!t[0].is_oos && t[1].is_oos);
        assert_eq!(t[1].urgency.as_deref(), Some("High"));
        assert_eq!(t[1].id, "line-2");
        assert_eq!(split_key(&t[0]), "group:1");
        assert_eq!(split_key(&t[1]), "line:2");
    }

    #[test]
    fn limit_samples_across_the_file_deterministically() {
        let rows: Vec<LabeledTicket> = (1..=100)
            .map(|i| LabeledTicket {
                id: i.to_string(),
                text: "t".into(),
                label: format!("L{}", i / 10),
                is_oos: false,
                urgency: None,
                subcategory: None,
                lang: None,
                segments: Default::default(),
                edge: false,
                secondary: None,
                group: None,
                line: i,
            })
            .collect();
        let a = sample(rows.clone(), 20, 42);
        assert_eq!(a.len(), 20);
        assert_eq!(a, sample(rows.clone(), 20, 42));
        assert_ne!(a, sample(rows.clone(), 20, 1));
        assert!(a.windows(2).all(|w| w[0].line < w[1].line), "file order kept");
        assert!(a.iter().any(|t| t.line > 50), "not just the first rows");
        assert_eq!(sample(rows, 200, 42).len(), 100);
    }
}
