//! The corpus doctor's evidence, gathered from the store: every example with its
//! vector, and the head's out-of-fold probabilities from the same cross-fitting as
//! calibration ([`super::out_of_fold`], the same folds, the collection's head `C`).
//! The analysis itself is the pure [`crate::doctor`].

use std::time::Instant;

use super::{fold_of, label_set, load_points, out_of_fold, stored_fit, CalibrateError, Progress, HEAD_C};
use crate::doctor::{self, Diagnosis, Settings};
use crate::example::ExamplePoint;
use crate::lang::Coverage;
use crate::store::{CollectionMeta, ExampleStore};

/// A diagnosis and the seconds it took.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Examination {
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
    pub seconds: f64,
}

/// Examine `collection`: read its examples, fit the out-of-fold head, diagnose.
pub async fn examine(
    store: &dyn ExampleStore,
    collection: &str,
    coverage: Option<&Coverage>,
    settings: &Settings,
    progress: Progress<'_>,
) -> Result<Examination, CalibrateError> {
    let started = Instant::now();
    let meta = store.require_meta(collection).await?;
    let points = load_points(store, collection).await?;
    let diagnosis = diagnose_points(&meta, &points, coverage, settings, progress)?;
    Ok(Examination { diagnosis, seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0 })
}

/// Diagnose `points` (the collection's examples with their vectors).
pub fn diagnose_points(
    meta: &CollectionMeta,
    points: &[ExamplePoint],
    coverage: Option<&Coverage>,
    settings: &Settings,
    progress: Progress<'_>,
) -> Result<Diagnosis, CalibrateError> {
    if points.is_empty() {
        return Err(CalibrateError::Fit(format!("collection {:?} holds no examples", meta.name)));
    }
    if let Some(p) = points.iter().find(|p| p.vector.len() != meta.dim) {
        return Err(CalibrateError::Fit(format!(
            "example {:?} has a {}-dim vector, the collection {}: re-index it",
            p.example.id,
            p.vector.len(),
            meta.dim
        )));
    }
    let labels = label_set(&meta.taxonomy, points);
    let y: Vec<u32> = points.iter().map(|p| labels.index(&p.example.label).unwrap_or(0) as u32).collect();
    let x: Vec<f32> = points.iter().flat_map(|p| p.vector.iter().copied()).collect();
    let folds: Vec<usize> = points.iter().map(|p| fold_of(&p.example.id)).collect();
    let c = stored_fit(meta).and_then(|f| f.neighbours.head_c).unwrap_or(HEAD_C);
    let (head, head_note) = if labels.len() < 2 {
        (None, Some("no head: the collection has one label".to_string()))
    } else {
        match out_of_fold(&x, meta.dim, &y, &folds, labels.len(), c, progress) {
            Ok((oof, _)) => (Some(oof), None),
            Err(e) => (None, Some(format!("no out-of-fold head ({e}): the neighbours alone judge"))),
        }
    };
    progress("neighbours", 0, 1);
    let examples: Vec<crate::example::Example> = points.iter().map(|p| p.example.clone()).collect();
    let mut taxonomy_labels: Vec<String> = meta.taxonomy.categories.iter().map(|c| c.name.clone()).collect();
    taxonomy_labels.extend(meta.taxonomy.out_of_scope_labels.iter().cloned());
    let input = doctor::Collection {
        name: &meta.name,
        examples: &examples,
        vectors: &x,
        dim: meta.dim,
        labels: &labels,
        y: &y,
        head: head.as_deref(),
        head_note,
        taxonomy_labels,
    };
    let d = doctor::diagnose(&input, coverage, settings);
    progress("neighbours", 1, 1);
    Ok(d)
}
