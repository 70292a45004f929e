//! Fitting from the store (`triage calibrate`): held-out evidence is read from the
//! collection itself, the models are fitted by [`crate::fit`], and the result is kept
//! with the collection as opaque fitted state.
//!
//! - **Leave-one-out votes**: every stored example (or every n-th) is voted on by its
//!   k nearest *other* examples.
//! - **Cross-fitted head**: the examples are split into [`FOLDS`] folds by a hash of
//!   their id; each fold's head probabilities come from a head fitted on the other
//!   folds, so no example is scored by a head that saw it. The stored head is then
//!   fitted on every example. A head needs [`MIN_HEAD_LABELS`] labels with two or more
//!   examples (smaller labels are fitted too; its weight is chosen on held-out
//!   examples); otherwise none is fitted and the reason is kept.
//! - [`llm`]: the arbiter, fitted on the LLM's answers for a held-out sample.

pub mod doctor;
pub mod llm;
pub mod report;

use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::embed::Embedder;
use crate::example::ExamplePoint;
use crate::fit::closeness::{noise_texts, Anchors, NOISE_TEXTS};
use crate::fit::logistic::{HeadOptions, LogisticHead};
use crate::fit::neighbours::{self, FitInput, HeadInfo, HeldOutPoint, LabelSet};
use crate::fit::{Fitted, NeighbourModel};
use crate::store::{now_secs, CollectionMeta, ExampleStore, StoreError};
use crate::taxonomy::{label_key, Taxonomy};

pub use crate::fit::neighbours::Settings;

/// Fewest examples for a calibration at all.
pub const MIN_EXAMPLES: usize = 20;
/// Fewest labels with at least two examples for a fitted head. Smaller labels are
/// fitted too: the head's weight in the mixture is chosen on held-out examples, so a
/// head that does not help small labels (or any) is weighed down by the evidence.
pub const MIN_HEAD_LABELS: usize = 2;
/// Folds of the head's cross-fitting.
pub const FOLDS: usize = 5;
/// Default inverse regularisation of the head (scikit-learn's `C`).
pub const HEAD_C: f32 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("collection {collection:?} has {examples} examples; calibration needs at least {MIN_EXAMPLES}")]
    TooFew { collection: String, examples: usize },
    #[error("invalid calibration setting: {0}")]
    Settings(String),
    #[error("{0}")]
    Fit(String),
    #[error(
        "the LLM failed during the fit ({message}); stopped after {sent} requests ({answered} tickets answered). \
         The collection's previous fit is kept."
    )]
    LlmOutage { message: String, sent: u64, answered: usize },
}

/// How `triage calibrate` fits the head.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeadSettings {
    /// Fit a head at all.
    pub enabled: bool,
    pub c: f32,
}

impl Default for HeadSettings {
    fn default() -> Self {
        HeadSettings { enabled: true, c: HEAD_C }
    }
}

pub use crate::progress::Progress;

/// Every stored example with its vector, in point-id order.
pub async fn load_points(store: &dyn ExampleStore, collection: &str) -> Result<Vec<ExamplePoint>, StoreError> {
    let mut points = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = store.scroll(collection, offset, 1024, true).await?;
        points.extend(page);
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(points),
        }
    }
}

/// The labels a fit knows: the taxonomy's categories, then its out-of-scope labels,
/// then any other label the examples carry (a derived taxonomy that grew), in order.
pub fn label_set(taxonomy: &Taxonomy, points: &[ExamplePoint]) -> LabelSet {
    let mut names: Vec<String> = taxonomy.categories.iter().map(|c| c.name.clone()).collect();
    let mut oos = vec![false; names.len()];
    for l in &taxonomy.out_of_scope_labels {
        names.push(l.clone());
        oos.push(true);
    }
    for p in points {
        if !names.iter().any(|n| label_key(n) == label_key(&p.example.label)) {
            names.push(p.example.label.clone());
            oos.push(false);
        }
    }
    LabelSet { names, out_of_scope: oos }
}

/// When a background refit starts: `Some(n)` after `n` new examples; `None` after the
/// larger of 50 and a tenth of the examples the last fit saw.
pub fn refit_due(fitted_on: usize, now: usize, after: Option<usize>) -> bool {
    match after {
        Some(0) => false,
        Some(n) => now >= fitted_on + n,
        None => now >= fitted_on + (fitted_on / 10).max(50),
    }
}

/// Which fold (0..FOLDS) an example falls in: a hash of its id.
pub fn fold_of(id: &str) -> usize {
    let d = Sha256::digest(format!("fold\u{0}{id}").as_bytes());
    (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % FOLDS as u64) as usize
}

/// Why no head can be fitted on these labels, if so.
pub fn head_obstacle(labels: &LabelSet, y: &[u32]) -> Option<String> {
    let mut counts = vec![0usize; labels.len()];
    for &l in y {
        counts[l as usize] += 1;
    }
    let usable = counts.iter().filter(|n| **n >= 2).count();
    (usable < MIN_HEAD_LABELS).then(|| {
        format!("no head fitted: a head needs at least {MIN_HEAD_LABELS} labels with two or more examples; {usable} have")
    })
}

/// Noise made from the collection's own texts, embedded: the anchors of the "no close
/// example" check ([`crate::fit::closeness`]). `None` when embedding fails (the check
/// then judges distance only; the failure is logged).
async fn noise_anchors(embedder: &dyn Embedder, collection: &str, points: &[ExamplePoint]) -> Option<Anchors> {
    let stride = points.len().div_ceil(500).max(1);
    let texts: Vec<&str> = points.iter().step_by(stride).map(|p| p.example.text.as_str()).collect();
    let seed = u64::from_be_bytes(Sha256::digest(collection.as_bytes())[..8].try_into().unwrap_or([0; 8]));
    match embedder.embed(noise_texts(&texts, NOISE_TEXTS, seed)).await {
        Ok(v) => Anchors::new(&v),
        Err(e) => {
            tracing::warn!("noise anchors for {collection}: embedding failed ({e}); the closeness check judges distance only");
            None
        }
    }
}

/// Fit a head on the rows of `x` (row-major, `dim` wide) that `keep` selects.
pub fn fit_head(
    x: &[f32],
    dim: usize,
    y: &[u32],
    labels: usize,
    keep: impl Fn(usize) -> bool,
    c: f32,
    init: Option<&LogisticHead>,
) -> Result<LogisticHead, String> {
    let rows: Vec<usize> = (0..y.len()).filter(|&i| keep(i)).collect();
    let mut xs = Vec::with_capacity(rows.len() * dim);
    let mut ys = Vec::with_capacity(rows.len());
    for &i in &rows {
        xs.extend_from_slice(&x[i * dim..(i + 1) * dim]);
        ys.push(y[i]);
    }
    let opts = HeadOptions { c, ..HeadOptions::default() };
    LogisticHead::fit(&xs, dim, &ys, labels, &opts, init).map(|(h, _)| h).map_err(|e| e.to_string())
}

/// Out-of-fold head probabilities of every row: each fold's from a head fitted on the
/// other folds (`folds[i]` in `0..FOLDS`), so no row is scored by a head that saw it.
/// Also returns the last fold's head (a warm start for a fit on every row).
pub fn out_of_fold(
    x: &[f32],
    dim: usize,
    y: &[u32],
    folds: &[usize],
    labels: usize,
    c: f32,
    progress: Progress<'_>,
) -> Result<(Vec<Vec<f32>>, Option<LogisticHead>), String> {
    let mut oof: Vec<Vec<f32>> = vec![Vec::new(); y.len()];
    let mut prev: Option<LogisticHead> = None;
    for f in 0..FOLDS {
        progress("head (cross-fitting)", f, FOLDS + 1);
        let head = fit_head(x, dim, y, labels, |i| folds[i] != f, c, prev.as_ref())?;
        for i in (0..y.len()).filter(|&i| folds[i] == f) {
            oof[i] = head.predict_proba(&x[i * dim..(i + 1) * dim]).map_err(|e| e.to_string())?;
        }
        prev = Some(head);
    }
    progress("head (cross-fitting)", FOLDS, FOLDS + 1);
    Ok((oof, prev))
}

/// Out-of-fold head probabilities and the head fitted on every row.
fn cross_fit(
    x: &[f32],
    dim: usize,
    y: &[u32],
    folds: &[usize],
    labels: usize,
    c: f32,
    progress: Progress<'_>,
) -> Result<(Vec<Vec<f32>>, LogisticHead), String> {
    let (oof, prev) = out_of_fold(x, dim, y, folds, labels, c, progress)?;
    let all = fit_head(x, dim, y, labels, |_| true, c, prev.as_ref())?;
    progress("head (cross-fitting)", FOLDS + 1, FOLDS + 1);
    Ok((oof, all))
}

/// Leave-one-out neighbours of `chosen` points: `(label, similarity)` of their `k`
/// nearest other examples, most similar first.
async fn leave_one_out(
    store: &dyn ExampleStore,
    collection: &str,
    points: &[&ExamplePoint],
    k: usize,
    progress: Progress<'_>,
) -> Result<Vec<Vec<(String, f32)>>, StoreError> {
    let n = points.len();
    let mut out = Vec::with_capacity(n);
    let mut stream = futures::stream::iter(points.iter().map(|p| async move {
        let mut hits = store.search(collection, &p.vector, k + 1, None).await?;
        match hits.iter().position(|h| h.example.id == p.example.id) {
            Some(i) => {
                hits.remove(i);
            }
            None => hits.truncate(k),
        }
        Ok::<_, StoreError>(hits.into_iter().map(|h| (h.example.label, h.score)).collect::<Vec<_>>())
    }))
    .buffered(4);
    while let Some(r) = stream.next().await {
        out.push(r?);
        if out.len().is_multiple_of(256) || out.len() == n {
            progress("leave-one-out", out.len(), n);
        }
    }
    Ok(out)
}

/// Fit the neighbours' side of `collection` (leave-one-out votes, cross-fitted head)
/// without storing it. `max_examples` caps the held-out examples (every n-th).
pub async fn fit_neighbours(
    store: &dyn ExampleStore,
    embedder: Option<&dyn Embedder>,
    meta: &CollectionMeta,
    settings: &Settings,
    head: &HeadSettings,
    max_examples: Option<usize>,
    progress: Progress<'_>,
) -> Result<NeighbourModel, CalibrateError> {
    settings.check().map_err(CalibrateError::Settings)?;
    let collection = meta.name.as_str();
    let points = load_points(store, collection).await?;
    if points.len() < MIN_EXAMPLES {
        return Err(CalibrateError::TooFew { collection: collection.to_string(), examples: points.len() });
    }
    let labels = label_set(&meta.taxonomy, &points);
    let y: Vec<u32> = points.iter().map(|p| labels.index(&p.example.label).unwrap_or(0) as u32).collect();
    let stride = max_examples.filter(|m| *m > 0).map(|m| points.len().div_ceil(m)).unwrap_or(1);
    let chosen: Vec<usize> = (0..points.len()).step_by(stride.max(1)).collect();

    let mut head_note = (!head.enabled).then(|| "no head fitted: turned off (--no-head)".to_string());
    if head_note.is_none() {
        head_note = head_obstacle(&labels, &y);
    }
    let dim = meta.dim;
    let fitted_head = if head_note.is_none() && points.iter().all(|p| p.vector.len() == dim) {
        let started = Instant::now();
        let x: Vec<f32> = points.iter().flat_map(|p| p.vector.iter().copied()).collect();
        let folds: Vec<usize> = points.iter().map(|p| fold_of(&p.example.id)).collect();
        let (oof, all) = cross_fit(&x, dim, &y, &folds, labels.len(), head.c, progress).map_err(CalibrateError::Fit)?;
        let info = HeadInfo {
            examples: points.len(),
            fitted_at: now_secs(),
            c: head.c,
            embedding_model: meta.embedding_model.clone(),
            dim,
            seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        };
        Some((oof, all, info))
    } else {
        if head_note.is_none() {
            head_note = Some("no head fitted: some stored vectors do not have the collection's dimensions".into());
        }
        None
    };

    let chosen_points: Vec<&ExamplePoint> = chosen.iter().map(|&i| &points[i]).collect();
    let votes = leave_one_out(store, collection, &chosen_points, settings.k, progress).await?;
    // Without the embedding model here (a refit after `examples apply`), the last fit's
    // noise anchors still describe the collection's texts.
    let noise = match embedder.filter(|e| e.dim() == dim) {
        Some(e) => noise_anchors(e, collection, &points).await,
        None => stored_fit(meta).and_then(|f| f.neighbours.closeness).and_then(|c| c.noise).map(|n| n.anchors),
    };
    let coverage = embedder.and_then(|e| e.coverage());
    let (held, secondary): (Vec<HeldOutPoint>, Vec<Vec<usize>>) = chosen
        .iter()
        .zip(votes)
        .filter(|(_, hits)| !hits.is_empty())
        .map(|(&i, hits)| {
            let example = &points[i].example;
            let point = HeldOutPoint {
                lang: example.lang.clone().or_else(|| crate::lang::assess(&example.text, coverage.as_deref()).lang),
                noise: noise.as_ref().and_then(|a| a.nearest(&points[i].vector)),
                ..HeldOutPoint::new(
                    y[i] as usize,
                    hits.iter().filter_map(|(l, s)| labels.index(l).map(|j| (j, *s))).collect(),
                    fitted_head.as_ref().map(|(oof, _, _)| oof[i].clone()),
                )
            };
            (point, example.secondary.iter().filter_map(|l| labels.index(l)).collect())
        })
        .unzip();
    let head_c = head.enabled.then_some(head.c);
    let head = fitted_head.map(|(_, h, info)| (h, info));
    let input = FitInput {
        points: &held,
        labels,
        head,
        head_note,
        head_c,
        noise,
        collection_examples: points.len(),
        fitted_at: now_secs(),
    };
    let mut model = neighbours::fit(input, settings);
    model.secondary = crate::fit::secondary::fit(&model, &held, &secondary, crate::fit::secondary::DEFAULT_BUDGET);
    Ok(model)
}

/// Fit the neighbours' side and store it with the collection, keeping the arbiters
/// already fitted (they read the neighbours' confidence, which stays a probability).
pub async fn calibrate_collection(
    store: &dyn ExampleStore,
    embedder: Option<&dyn Embedder>,
    collection: &str,
    settings: &Settings,
    head: &HeadSettings,
    max_examples: Option<usize>,
    progress: Progress<'_>,
) -> Result<NeighbourModel, CalibrateError> {
    let meta = store.require_meta(collection).await?;
    let model = fit_neighbours(store, embedder, &meta, settings, head, max_examples, progress).await?;
    let mut meta = store.require_meta(collection).await?;
    let arbiters = stored_fit(&meta).map(|f| f.arbiters).unwrap_or_default();
    store_fit(store, &mut meta, Fitted { neighbours: model.clone(), arbiters }).await?;
    Ok(model)
}

/// Refit with the settings of the collection's last fit (else the defaults at the
/// server's k); arbiters are kept. Runs on the caller's task.
pub async fn refit(
    store: &dyn ExampleStore,
    embedder: Option<&dyn Embedder>,
    collection: &str,
    default_k: usize,
) -> Result<NeighbourModel, CalibrateError> {
    let meta = store.require_meta(collection).await?;
    let last: Option<Fitted> = stored_fit(&meta);
    let settings = last
        .as_ref()
        .map(|f| f.neighbours.settings.clone())
        .unwrap_or_else(|| Settings { k: default_k, ..Settings::default() });
    let head = last.as_ref().map_or_else(HeadSettings::default, |f| HeadSettings {
        enabled: f.neighbours.head_c.is_some(),
        c: f.neighbours.head_c.unwrap_or(HEAD_C),
    });
    calibrate_collection(store, embedder, collection, &settings, &head, None, &crate::progress::silent).await
}

/// The collection's fitted state, when it has a readable one.
pub fn stored_fit(meta: &CollectionMeta) -> Option<Fitted> {
    meta.fitted.as_ref().and_then(|s| Fitted::from_state(s).ok())
}

/// Write `fitted` into the collection's meta.
/// The meta is read again under [`crate::store::meta_lock`]: a taxonomy change made while
/// the fit ran is kept, and `meta` becomes what was written.
pub async fn store_fit(store: &dyn ExampleStore, meta: &mut CollectionMeta, fitted: Fitted) -> Result<(), CalibrateError> {
    let state = fitted.to_state().map_err(|e| CalibrateError::Fit(e.to_string()))?;
    let _meta = crate::store::meta_lock(&meta.name).await;
    let mut fresh = store.require_meta(&meta.name).await?;
    fresh.fitted = Some(state);
    fresh.legacy_calibration = None;
    fresh.updated_at = now_secs();
    store.put_meta(&fresh).await?;
    *meta = fresh;
    Ok(())
}

/// Remove the collection's fit (`triage calibrate --clear`); false when it had none.
pub async fn clear_fit(store: &dyn ExampleStore, collection: &str) -> Result<bool, StoreError> {
    let _meta = crate::store::meta_lock(collection).await;
    let mut meta = store.require_meta(collection).await?;
    let had = meta.fitted.take().is_some() || meta.legacy_calibration.take().is_some();
    meta.updated_at = now_secs();
    store.put_meta(&meta).await?;
    Ok(had)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stable_and_balanced() {
        let f: Vec<usize> = (0..5000).map(|i| fold_of(&format!("ex-{i}"))).collect();
        assert_eq!(f, (0..5000).map(|i| fold_of(&format!("ex-{i}"))).collect::<Vec<_>>());
        for k in 0..FOLDS {
            let n = f.iter().filter(|x| **x == k).count();
            assert!((900..1100).contains(&n), "fold {k}: {n}");
        }
    }

    #[test]
    fn a_head_needs_two_labels_with_two_examples_and_small_labels_do_not_block_it() {
        let labels = LabelSet { names: vec!["A".into(), "B".into(), "C".into()], out_of_scope: vec![false; 3] };
        // C has one example: the head is fitted anyway (its weight is chosen on held-out data).
        assert!(head_obstacle(&labels, &[vec![0; 10], vec![1; 5], vec![2; 1]].concat()).is_none());
        let why = head_obstacle(&labels, &[vec![0; 10], vec![1; 1], vec![2; 1]].concat()).unwrap();
        assert!(why.contains("1 have"), "{why}");
        let one = LabelSet { names: vec!["A".into()], out_of_scope: vec![false] };
        assert!(head_obstacle(&one, &[0; 10]).is_some());
    }
}
