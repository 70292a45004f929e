//! Moving a collection between stores (embedded to server, server to server, or a
//! backup) without re-embedding: `triage export` writes JSON lines, `triage import`
//! reads them into either backend.
//!
//! Format: the first line is a header,
//! `{"format":"ticket-triage-export","version":1,"meta":<CollectionMeta>}`, then one
//! line per example, `{"id":<point id>,"vector":[...],"payload":{...}}`, where the
//! payload is what the store holds (the example's fields, metadata and provenance,
//! plus its content hash). The vectors only mean something with the header's embedding
//! model: import refuses a collection built with another model. Provenance is kept as
//! exported; an example without one is recorded as imported from the file.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::{example_from_payload, example_payload, now_secs, CollectionMeta, ExampleStore, StoreError};
use crate::example::ExamplePoint;

pub const FORMAT: &str = "ticket-triage-export";
pub const VERSION: u32 = 1;
const PAGE: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub version: u32,
    pub meta: CollectionMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportLine {
    pub id: u64,
    pub vector: Vec<f32>,
    pub payload: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub collection: String,
    pub embedding_model: String,
    pub dim: usize,
    /// Examples written (export) or read (import).
    pub examples: usize,
    /// Examples in the target collection after an import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples_in_collection: Option<usize>,
    pub created: bool,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// A failed write of the export: a [`StoreError::File`] that says how far it got
/// (`triage export` tells a closed pipe from other failures by its source).
fn write_failed(written: usize, e: impl Into<std::io::Error>) -> StoreError {
    StoreError::File { context: format!("writing the export failed after {written} example(s)"), source: e.into() }
}

/// Write `collection` to `out`: the header, then every example with its vector.
pub async fn export(
    store: &dyn ExampleStore,
    collection: &str,
    out: &mut dyn Write,
) -> Result<TransferReport, StoreError> {
    let meta = store.require_meta(collection).await?;
    let header = ExportHeader { format: FORMAT.into(), version: VERSION, meta: meta.clone() };
    serde_json::to_writer(&mut *out, &header).map_err(|e| write_failed(0, e))?;
    out.write_all(b"\n").map_err(|e| write_failed(0, e))?;
    let mut written = 0;
    let mut offset = None;
    loop {
        let (page, next) = store.scroll(collection, offset, PAGE, true).await?;
        for p in page {
            if p.vector.len() != meta.dim {
                return Err(StoreError::BadPayload(format!(
                    "example {:?} has a {}-dim vector, the collection {}",
                    p.example.id,
                    p.vector.len(),
                    meta.dim
                )));
            }
            let line = ExportLine { id: p.example.point_id(), vector: p.vector, payload: example_payload(&p.example) };
            serde_json::to_writer(&mut *out, &line).map_err(|e| write_failed(written, e))?;
            out.write_all(b"\n").map_err(|e| write_failed(written, e))?;
            written += 1;
        }
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    out.flush().map_err(|e| write_failed(written, e))?;
    Ok(TransferReport {
        collection: collection.into(),
        embedding_model: meta.embedding_model,
        dim: meta.dim,
        examples: written,
        examples_in_collection: None,
        created: false,
    })
}

/// [`export`] to `path`, written next to it and renamed, so a failed export leaves
/// no partial file.
pub async fn export_to_file(
    store: &dyn ExampleStore,
    collection: &str,
    path: &std::path::Path,
) -> Result<TransferReport, StoreError> {
    let tmp = path.with_extension("export-tmp");
    let file = std::fs::File::create(&tmp)
        .map_err(|source| StoreError::File { context: format!("cannot create {}", tmp.display()), source })?;
    let mut out = std::io::BufWriter::new(file);
    let report = export(store, collection, &mut out).await;
    drop(out);
    match report {
        Ok(r) => {
            std::fs::rename(&tmp, path)
                .map_err(|source| StoreError::File { context: format!("cannot write {}", path.display()), source })?;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn bad(line: usize, msg: impl std::fmt::Display) -> StoreError {
    StoreError::BadImport(format!("line {line}: {msg}"))
}

/// Read the header (first line) of an export.
pub fn read_header(input: &mut dyn BufRead) -> Result<ExportHeader, StoreError> {
    let mut first = String::new();
    input.read_line(&mut first).map_err(io)?;
    if first.trim().is_empty() {
        return Err(bad(1, "empty file: expected a ticket-triage export header"));
    }
    let header: ExportHeader = serde_json::from_str(first.trim())
        .map_err(|e| bad(1, format!("not a ticket-triage export header ({e})")))?;
    if header.format != FORMAT {
        return Err(bad(1, format!("format {:?} is not {FORMAT:?}", header.format)));
    }
    if header.version != VERSION {
        return Err(bad(1, format!("export version {} is not supported (this build reads {VERSION})", header.version)));
    }
    Ok(header)
}

/// The next page (up to `PAGE`) of examples after the header, each checked against
/// `dim`; `None` at the end. `line_no` counts the lines read so far.
fn next_page(input: &mut dyn BufRead, dim: usize, line_no: &mut usize) -> Result<Option<Vec<ExamplePoint>>, StoreError> {
    let mut page = Vec::with_capacity(PAGE);
    let mut buf = String::new();
    while page.len() < PAGE {
        buf.clear();
        if input.read_line(&mut buf).map_err(io)? == 0 {
            break;
        }
        *line_no += 1;
        if buf.trim().is_empty() {
            continue;
        }
        let line: ExportLine =
            serde_json::from_str(buf.trim()).map_err(|e| bad(*line_no, format!("malformed example ({e})")))?;
        if line.vector.len() != dim {
            return Err(bad(*line_no, format!("{}-dim vector, the header says {dim}", line.vector.len())));
        }
        if line.vector.iter().any(|x| !x.is_finite()) {
            return Err(bad(*line_no, "the vector holds a non-finite number"));
        }
        let example = example_from_payload(line.payload).map_err(|e| bad(*line_no, e))?;
        page.push(ExamplePoint { example, vector: line.vector });
    }
    Ok((!page.is_empty()).then_some(page))
}

/// Import an export file into `collection` (default: the name in its header).
/// The whole file is checked before anything is written. A new collection takes
/// the header's meta; an existing one must use the same embedding model (else
/// `ModelMismatch`) and a compatible taxonomy.
pub async fn import_file(
    store: &dyn ExampleStore,
    path: &std::path::Path,
    collection: Option<&str>,
) -> Result<TransferReport, StoreError> {
    let open = || -> Result<std::io::BufReader<std::fs::File>, StoreError> {
        let f = std::fs::File::open(path).map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
        Ok(std::io::BufReader::new(f))
    };
    // Pass 1: validate everything, write nothing.
    let mut reader = open()?;
    let header = read_header(&mut reader)?;
    let name = collection.unwrap_or(&header.meta.name).to_string();
    super::validate_name(&name)?;
    let dim = header.meta.dim;
    let mut line_no = 1;
    let mut total = 0;
    while let Some(page) = next_page(&mut reader, dim, &mut line_no)? {
        total += page.len();
    }

    let existing = store.get_meta(&name).await?;
    let created = existing.is_none();
    let meta = match existing {
        Some(mut meta) => {
            if meta.embedding_model != header.meta.embedding_model || meta.dim != dim {
                return Err(StoreError::BadImport(format!(
                    "collection {name:?} holds vectors of embedding model {:?} ({} dims) but the file's are of {:?} \
                     ({dim} dims); vectors of different models cannot be mixed. Import into a new collection \
                     (--collection NEW) and switch to it (see \"Changing the embedding model\" in docs/configuration.md)",
                    meta.embedding_model, meta.dim, header.meta.embedding_model
                )));
            }
            let mut changed = false;
            if meta.taxonomy != header.meta.taxonomy {
                if meta.taxonomy.derived {
                    let labels = header.meta.taxonomy.labels().into_iter().map(str::to_string).collect();
                    let urgencies =
                        header.meta.taxonomy.urgency.iter().map(|u| u.name.clone()).collect();
                    changed |= meta.taxonomy.absorb(&labels, &urgencies);
                } else {
                    return Err(StoreError::BadImport(format!(
                        "collection {name:?} has a written taxonomy that differs from the export's; import into a \
                         new collection (--collection NEW) or delete {name:?} first"
                    )));
                }
            }
            let fields = header.meta.meta_fields.iter().cloned().collect();
            changed |= meta.add_meta_fields(&fields);
            if changed {
                meta.updated_at = now_secs();
                store.put_meta(&meta).await?;
            }
            meta
        }
        None => {
            let mut meta = header.meta.clone();
            meta.name = name.clone();
            meta.updated_at = now_secs();
            store.put_meta(&meta).await?;
            meta
        }
    };

    // Pass 2: upsert page by page (point ids are derived from example ids, so a
    // repeated import overwrites instead of duplicating).
    let mut reader = open()?;
    read_header(&mut reader)?;
    let mut line_no = 1;
    let mut imported = 0;
    // Examples keep the provenance they were exported with; those without one (stored
    // before provenance existed) are recorded as imported from this file.
    let origin = crate::provenance::Origin::Import(path.display().to_string());
    let now = now_secs();
    while let Some(mut page) = next_page(&mut reader, dim, &mut line_no)? {
        imported += page.len();
        for p in page.iter_mut().filter(|p| p.example.provenance.is_none()) {
            p.example.provenance = Some(crate::provenance::Provenance::new(&origin, None, &meta.taxonomy, now));
        }
        store.upsert(&name, page).await?;
    }
    if imported != total {
        return Err(StoreError::BadImport(format!(
            "{} changed while importing ({total} examples checked, {imported} read)",
            path.display()
        )));
    }
    store.finish_indexing(&name).await?;
    Ok(TransferReport {
        collection: name.clone(),
        embedding_model: meta.embedding_model,
        dim: meta.dim,
        examples: imported,
        examples_in_collection: Some(store.count(&name).await?),
        created,
    })
}
