//! Indexing: load a corpus (folder with `taxonomy.toml` + examples, or one
//! JSONL/CSV/TSV file), validate each row against the taxonomy, embed the new and
//! changed examples in batches, and upsert them under deterministic ids. Each batch
//! is on disk once its upsert returns, so a killed run keeps what it wrote and a
//! re-run embeds only the rest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::corpus::{self, Format};
use crate::fields::Needed;
use crate::embed::Embedder;
use crate::example::Example;
use crate::store::{now_secs, CollectionMeta, ExampleStore};
use crate::taxonomy::policy::check_label;
use crate::taxonomy::Taxonomy;
use crate::provenance::{Origin, Provenance};
use crate::progress::Progress;
use crate::Error;

pub mod fitting;
mod rows;
mod upsert;

pub use rows::{secondary_labels, validate_rows, validate_rows_with_lines};
pub use upsert::upsert_examples;
use upsert::upsert_examples_timed;

pub use fitting::FitSummary;

/// Which input columns hold what (`index`, `eval` and `classify --input` alike, from
/// the same flags: `cli::fields`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FieldMap {
    pub text: String,
    /// `None`: `label`, else `category`.
    pub label: Option<String>,
    pub urgency: String,
    pub subcategory: String,
    pub id: String,
    /// (Index only, as are `meta`: not among an evaluation's reported columns.)
    #[serde(skip)]
    pub rationale: String,
    pub lang: String,
    /// Extra columns kept as metadata for filtered retrieval (payload fields of the same name).
    #[serde(skip)]
    pub meta: Vec<String>,
    /// CSV/TSV delimiter (`--delimiter`); `None`: sniffed from a CSV header.
    pub delimiter: Option<u8>,
}

impl FieldMap {
    /// The columns that must exist in the file: each text field, the label, and the
    /// id, urgency and subcategory columns when named by a flag (not the defaults).
    pub fn needed(&self) -> Vec<Needed> {
        let mut needed = Needed::each_text_field("--text-field", &self.text);
        needed.push(match &self.label {
            Some(l) => Needed::new("--label-field", &[l.as_str()]),
            None => Needed::new("--label-field", &["label", "category"]),
        });
        let default = FieldMap::default();
        for (flag, name, default) in [
            ("--id-field", &self.id, &default.id),
            ("--urgency-field", &self.urgency, &default.urgency),
            ("--subcategory-field", &self.subcategory, &default.subcategory),
        ] {
            if name != default {
                needed.push(Needed::new(flag, &[name.as_str()]));
            }
        }
        needed
    }
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            text: "text".into(),
            label: None,
            urgency: "urgency".into(),
            subcategory: "subcategory".into(),
            id: "id".into(),
            rationale: "rationale".into(),
            lang: "lang".into(),
            meta: Vec::new(),
            delimiter: None,
        }
    }
}

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

/// A loaded corpus: the examples that passed validation, and the rows that did not.
#[derive(Debug)]
pub struct Corpus {
    pub source: PathBuf,
    /// Written by a person (`taxonomy.toml`), or `None` to derive labels from data.
    pub taxonomy: Option<Taxonomy>,
    pub examples: Vec<Example>,
    /// The line of each example in `source`, in the order of `examples` (its provenance
    /// record; empty for a corpus not read from a file).
    pub lines: Vec<usize>,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub collection: String,
    pub rows: usize,
    pub indexed: usize,
    pub unchanged: usize,
    pub rejected: Vec<Rejection>,
    pub labels: usize,
    pub points_in_collection: usize,
    pub seconds: f64,
    /// Where the time went (seconds per step; embedding counters of this run).
    pub timings: IndexTimings,
    /// The fit made after indexing (`None` when nothing changed and a fit exists).
    pub fit: Option<FitSummary>,
    /// Share of the examples in languages the embedding model does not cover, and
    /// which (most frequent first), when above [`fitting::UNCOVERED_WARNING_SHARE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncovered_languages: Option<(f64, Vec<(String, usize)>)>,
}

/// Seconds spent per indexing step. `embed` is the wall time waiting for vectors;
/// `embedding` breaks the embedder's own work down (model time, tokens).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexTimings {
    /// Reading stored content hashes (which examples are new or changed).
    pub check_seconds: f64,
    pub embed_seconds: f64,
    /// Writing points (vectors + payloads) into the store.
    pub upsert_seconds: f64,
    /// `finish_indexing`: building the HNSW graph, flushing.
    pub optimize_seconds: f64,
    pub embedding: crate::embed::EmbedStats,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn find_examples_file(dir: &Path) -> Option<PathBuf> {
    ["examples.jsonl", "examples.csv", "examples.tsv"].iter().map(|f| dir.join(f)).find(|p| p.is_file())
}

/// Load a corpus folder or file. `taxonomy_override` replaces the folder's taxonomy.
pub fn load_corpus(path: &Path, fields: &FieldMap, taxonomy_override: Option<&Path>) -> Result<Corpus, Error> {
    load_corpus_with(path, fields, taxonomy_override, &[])
}

/// [`load_corpus`], with `out_of_scope` labels added to the taxonomy (written or
/// derived, see [`mark_out_of_scope`]) before the rows are checked against it.
pub fn load_corpus_with(
    path: &Path,
    fields: &FieldMap,
    taxonomy_override: Option<&Path>,
    out_of_scope: &[String],
) -> Result<Corpus, Error> {
    let (data_path, mut taxonomy) = if path.is_dir() {
        let file = find_examples_file(path).ok_or_else(|| {
            Error::Input(format!("{} holds no examples.jsonl, examples.csv or examples.tsv", path.display()))
        })?;
        let tax_path = path.join("taxonomy.toml");
        let taxonomy = if tax_path.is_file() { Some(Taxonomy::load(&tax_path)?) } else { None };
        (file, taxonomy)
    } else if path.is_file() {
        (path.to_path_buf(), None)
    } else {
        return Err(Error::Input(format!("{} does not exist", path.display())));
    };
    if let Some(t) = taxonomy_override {
        taxonomy = Some(Taxonomy::load(t)?);
    }
    if let Some(t) = taxonomy.as_mut() {
        for l in out_of_scope {
            if t.category(l).is_some() {
                return Err(Error::Input(format!("out-of-scope label {l:?} is a category of the taxonomy")));
            }
            if !t.is_out_of_scope(l) {
                t.out_of_scope_labels.push(l.clone());
            }
        }
    }
    let text_fields = crate::fields::text_fields(&fields.text);
    let (format, rows) = corpus::read_path_for(&data_path, fields.delimiter, &text_fields)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", data_path.display())))?;
    if format == Format::Lines {
        return Err(Error::Input(corpus::unknown_format(&data_path, &text_fields)));
    }
    // A column no row has would reject every row for the same reason: say it once, with the header.
    crate::fields::check_columns(&rows, &fields.needed())
        .map_err(|e| Error::Input(format!("{}: {e}", data_path.display())))?;
    let (examples, lines, rejected) = validate_rows_with_lines(rows, fields, taxonomy.as_ref(), false);
    Ok(Corpus { source: data_path, taxonomy, examples, lines, rejected })
}

/// Treat `labels` as out-of-scope labels (examples of what is not routed): added to
/// the corpus's taxonomy, or to one derived from its labels for `collection`.
pub fn mark_out_of_scope(corpus: &mut Corpus, labels: &[String], collection: &str) {
    if labels.is_empty() {
        return;
    }
    let mut taxonomy = corpus.taxonomy.clone().unwrap_or_else(|| {
        let cats: BTreeSet<String> = corpus
            .examples
            .iter()
            .map(|e| e.label.clone())
            .filter(|l| !labels.iter().any(|o| crate::taxonomy::label_key(o) == crate::taxonomy::label_key(l)))
            .collect();
        let urg: BTreeSet<String> = corpus.examples.iter().filter_map(|e| e.urgency.clone()).collect();
        Taxonomy::derived(collection, &cats, &urg)
    });
    for l in labels {
        if !taxonomy.is_out_of_scope(l) {
            taxonomy.out_of_scope_labels.push(l.clone());
        }
    }
    for e in corpus.examples.iter_mut() {
        if let Some(o) = taxonomy.out_of_scope_label(&e.label) {
            e.label = o.to_string();
            e.subcategory = None;
        }
    }
    corpus.taxonomy = Some(taxonomy);
}

/// Upsert a corpus into `collection`, creating it if needed. Unchanged examples
/// (same id, same content) are neither re-embedded nor rewritten.
pub async fn index_corpus(
    corpus: Corpus,
    collection: &str,
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    batch_size: usize,
    progress: Progress<'_>,
) -> Result<IndexReport, Error> {
    let started = std::time::Instant::now();
    let labels: BTreeSet<String> = corpus.examples.iter().map(|e| e.label.clone()).collect();
    let urgencies: BTreeSet<String> = corpus.examples.iter().filter_map(|e| e.urgency.clone()).collect();
    let rows = corpus.examples.len() + corpus.rejected.len();
    let meta_fields: BTreeSet<String> = corpus.examples.iter().flat_map(|e| e.meta.keys().cloned()).collect();

    let meta = match store.get_meta(collection).await? {
        Some(mut meta) => {
            meta.check_model(embedder.model_name(), embedder.dim())?;
            let new_fields = meta.add_meta_fields(&meta_fields);
            let changed = match &corpus.taxonomy {
                Some(t) if *t != meta.taxonomy => {
                    tracing::info!(collection, "taxonomy replaced by {}", corpus.source.display());
                    meta.taxonomy = t.clone();
                    true
                }
                Some(_) => false,
                None if meta.taxonomy.derived => meta.taxonomy.absorb(&labels, &urgencies),
                None => {
                    // A written taxonomy is kept; examples outside it are rejected below.
                    false
                }
            };
            if changed || new_fields {
                meta.updated_at = now_secs();
                store.put_meta(&meta).await?;
            }
            meta
        }
        None => {
            if corpus.examples.is_empty() {
                return Err(Error::Input(format!(
                    "{}: no usable examples ({} rows rejected); nothing to create collection {collection:?} from",
                    corpus.source.display(),
                    corpus.rejected.len()
                )));
            }
            let taxonomy = corpus.taxonomy.clone().unwrap_or_else(|| Taxonomy::derived(collection, &labels, &urgencies));
            let meta = CollectionMeta {
                name: collection.to_string(),
                taxonomy,
                embedding_model: embedder.model_name().to_string(),
                dim: embedder.dim(),
                created_at: now_secs(),
                updated_at: now_secs(),
                fitted: None,
                legacy_calibration: None,
                meta_fields: meta_fields.iter().cloned().collect(),
            };
            store.put_meta(&meta).await?;
            meta
        }
    };

    // Examples indexed into a collection whose written taxonomy lacks their label.
    let mut rejected = corpus.rejected;
    let mut examples = Vec::with_capacity(corpus.examples.len());
    let origin = Origin::File(corpus.source.display().to_string());
    let now = now_secs();
    let lines = corpus.lines.iter().map(|&l| Some(l)).chain(std::iter::repeat(None));
    for (mut ex, line) in corpus.examples.into_iter().zip(lines) {
        let checked = check_label(&meta.taxonomy, &ex.label, false);
        if corpus.taxonomy.is_none() && !meta.taxonomy.derived && checked.is_err() {
            let why = checked.err().map(|e| e.to_string()).unwrap_or_default();
            rejected.push(Rejection {
                line: line.unwrap_or(0),
                reason: format!("example {:?}: {why}", ex.id),
                kind: RejectKind::UnknownLabel,
            });
        } else {
            ex.provenance = Some(Provenance::new(&origin, line, &meta.taxonomy, now));
            examples.push(ex);
        }
    }

    // The language of every example, stored with it (filters such as `lang=en`, the
    // fit's per-language record), detected where the file does not say.
    let coverage = embedder.coverage();
    for ex in examples.iter_mut().filter(|e| e.lang.is_none()) {
        ex.lang = crate::lang::assess(&ex.text, coverage.as_deref()).lang;
    }
    let langs: Vec<Option<String>> = examples.iter().map(|e| e.lang.clone()).collect();
    let (share, which) = fitting::uncovered(&langs, coverage.as_deref());
    let uncovered_languages = (share > fitting::UNCOVERED_WARNING_SHARE).then_some((share, which));
    // Similar lengths in one batch: the embedder pads each batch to its longest text.
    examples.sort_by_key(|e| e.text.len());
    let stats_before = crate::embed::embed_stats();
    let mut timings = IndexTimings::default();
    let (indexed, unchanged) =
        upsert_examples_timed(&examples, collection, embedder.as_ref(), store.as_ref(), batch_size, progress, &mut timings)
            .await?;
    // A run killed after its last batch but before this step left payload indexes
    // missing; the next run finds nothing to embed and finishes the job here.
    let unfinished = indexed == 0 && {
        let have = store.payload_indexes(collection).await?;
        meta.filter_fields().iter().any(|f| !have.contains(f))
    };
    if indexed > 0 || unfinished {
        let t = std::time::Instant::now();
        store.finish_indexing(collection).await?;
        timings.optimize_seconds = t.elapsed().as_secs_f64();
    }
    let s = crate::embed::embed_stats();
    timings.embedding = crate::embed::EmbedStats {
        texts: s.texts - stats_before.texts,
        batches: s.batches - stats_before.batches,
        tokens: s.tokens - stats_before.tokens,
        padded_tokens: s.padded_tokens - stats_before.padded_tokens,
        sort_seconds: round2(s.sort_seconds - stats_before.sort_seconds),
        model_seconds: round2(s.model_seconds - stats_before.model_seconds),
    };
    for x in [&mut timings.check_seconds, &mut timings.embed_seconds, &mut timings.upsert_seconds, &mut timings.optimize_seconds] {
        *x = round2(*x);
    }
    tracing::info!(collection, ?timings, "indexing time by step");
    rejected.sort_by_key(|r| r.line);
    let fitted_already = store.get_meta(collection).await?.is_some_and(|m| m.fitted.is_some());
    let fit = if indexed > 0 || !fitted_already {
        Some(fitting::fit_collection(store.as_ref(), Some(embedder.as_ref()), collection, progress).await?)
    } else {
        None
    };
    Ok(IndexReport {
        collection: collection.to_string(),
        rows,
        indexed,
        unchanged,
        rejected,
        labels: meta.taxonomy.categories.len(),
        points_in_collection: store.count(collection).await?,
        seconds: round2(started.elapsed().as_secs_f64()),
        timings,
        fit,
        uncovered_languages,
    })
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::parse;

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
