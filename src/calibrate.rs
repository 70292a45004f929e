//! Per-collection calibration (`triage calibrate`): turn the neighbours' vote into an
//! honest probability that the label is right, and fit the two routing thresholds
//! built on it.
//!
//! The held-out data is the collection itself, by leave-one-out: every stored example
//! is classified by its k nearest *other* examples (the example is dropped from its own
//! search results), which gives one `(vote share, nearest similarity, correct)` point
//! per example. From those points:
//!
//! - **confidence map**: isotonic regression (pool-adjacent-violators) of "vote label
//!   correct" on the vote share, fitted separately in up to `bands` bands of nearest
//!   similarity (quantile edges; one band when there are too few points), so that a
//!   unanimous vote among far neighbours can get a lower probability than one among
//!   near neighbours. Block means are smoothed `(correct + 0.5) / (n + 1)` so that no
//!   confidence is exactly 0 or 1.
//! - **out-of-scope threshold**: the `oos_quantile` quantile of the nearest-neighbour
//!   similarity of in-collection examples. A ticket whose nearest example is less
//!   similar than that is "unlike every example" and goes to review. By construction
//!   about `oos_quantile` of in-scope tickets (from the collection's distribution) are
//!   flagged too.
//! - **knn-shortcut threshold**: the smallest calibrated confidence `t` such that the
//!   held-out examples with confidence `>= t` have vote accuracy `>= shortcut_target`
//!   (and there are at least `MIN_SHORTCUT_POINTS` of them). With an LLM configured, a
//!   ticket at or above it is answered by the vote without calling the LLM.
//!
//! The map is fitted for one k: it is applied only when tickets are classified with
//! that k.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::eval::metrics;
use crate::knn::vote;
use crate::store::{now_secs, ExampleStore, StoreError};
use crate::taxonomy::label_key;

/// Fewest held-out points above the shortcut threshold for it to be trusted.
pub const MIN_SHORTCUT_POINTS: usize = 20;
/// Fewest held-out examples for a calibration at all.
pub const MIN_EXAMPLES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("collection {collection:?} has {examples} examples; calibration needs at least {MIN_EXAMPLES}")]
    TooFew { collection: String, examples: usize },
    #[error("invalid calibration setting: {0}")]
    Settings(String),
}

/// A non-decreasing step function fitted by isotonic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicMap {
    /// Smallest x of each block, increasing.
    pub x: Vec<f32>,
    /// Value of each block, non-decreasing.
    pub y: Vec<f32>,
    /// Held-out points in each block.
    pub n: Vec<usize>,
}

impl IsotonicMap {
    /// Pool-adjacent-violators over `(x, correct)` points; block values smoothed as
    /// `(correct + 0.5) / (n + 1)`. `None` for no points.
    pub fn fit(points: &[(f32, bool)]) -> Option<Self> {
        let mut sorted: Vec<(f32, bool)> = points.iter().copied().filter(|(x, _)| x.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks: (smallest x, correct, n). Equal x values start in one block.
        let mut blocks: Vec<(f32, f64, usize)> = Vec::new();
        for (x, ok) in sorted {
            match blocks.last_mut() {
                Some(b) if b.0 == x => {
                    b.1 += f64::from(u8::from(ok));
                    b.2 += 1;
                }
                _ => blocks.push((x, f64::from(u8::from(ok)), 1)),
            }
        }
        let mut pooled: Vec<(f32, f64, usize)> = Vec::with_capacity(blocks.len());
        for b in blocks {
            pooled.push(b);
            // Merge while the previous block's mean is not below the last one's (equal
            // means are pooled too, which keeps the map short).
            while pooled.len() >= 2 {
                let (last, prev) = (pooled[pooled.len() - 1], pooled[pooled.len() - 2]);
                if prev.1 / prev.2 as f64 >= last.1 / last.2 as f64 {
                    pooled.pop();
                    if let Some(p) = pooled.last_mut() {
                        p.1 += last.1;
                        p.2 += last.2;
                    }
                } else {
                    break;
                }
            }
        }
        let mut y: Vec<f32> = pooled.iter().map(|b| ((b.1 + 0.5) / (b.2 as f64 + 1.0)) as f32).collect();
        // Smoothing can undo monotonicity between a small and a large block: restore it.
        for i in 1..y.len() {
            if y[i] < y[i - 1] {
                y[i] = y[i - 1];
            }
        }
        Some(IsotonicMap { x: pooled.iter().map(|b| b.0).collect(), y, n: pooled.iter().map(|b| b.2).collect() })
    }

    /// The value of the block `x` falls in (the first block below its smallest x).
    pub fn apply(&self, x: f32) -> f32 {
        let i = self.x.partition_point(|b| *b <= x);
        self.y.get(i.saturating_sub(1)).copied().unwrap_or(0.5)
    }
}

/// The confidence map of one band of nearest-neighbour similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Tickets whose nearest similarity is at least this (and below the next band's) use this map.
    pub min_similarity: f32,
    pub map: IsotonicMap,
}

/// What a calibration run measured on the held-out points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationStats {
    /// Share of held-out examples whose vote label was right.
    pub loo_accuracy: f64,
    /// ECE (10 bins) of the raw vote share as confidence.
    pub raw_ece: f64,
    /// ECE of the calibrated confidence, cross-fitted (two halves, each scored by a
    /// map fitted on the other), so not flattered by fitting and scoring the same points.
    pub calibrated_ece: f64,
    /// Share of held-out examples at or above the shortcut threshold, and their vote accuracy.
    pub shortcut_coverage: Option<f64>,
    pub shortcut_accuracy: Option<f64>,
    /// Share of held-out (in-scope) examples the out-of-scope threshold would flag.
    pub oos_flag_rate: Option<f64>,
}

/// The fitted map and thresholds, stored with the collection (`CollectionMeta::calibration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Neighbours per vote the map was fitted for.
    pub k: usize,
    /// "leave-one-out".
    pub method: String,
    /// Held-out examples the map was fitted on.
    pub examples: usize,
    /// Examples in the collection at fitting time.
    pub collection_examples: usize,
    /// Unix seconds.
    pub fitted_at: u64,
    /// Ascending `min_similarity`; the first band's is -1.
    pub bands: Vec<Band>,
    /// Nearest similarity below which a ticket is out of scope; `None`: not fitted.
    pub oos_similarity: Option<f32>,
    pub oos_quantile: f64,
    /// Calibrated confidence at or above which the LLM is skipped; `None`: never.
    pub shortcut_confidence: Option<f32>,
    pub shortcut_target: f64,
    pub stats: CalibrationStats,
}

impl Calibration {
    /// Calibrated probability that the vote label is right.
    pub fn confidence(&self, share: f32, top_similarity: f32) -> f32 {
        band_for(&self.bands, top_similarity).map(|b| b.map.apply(share)).unwrap_or(share)
    }

    /// True when the nearest example is less similar than the fitted threshold.
    pub fn out_of_scope(&self, top_similarity: f32) -> bool {
        self.oos_similarity.is_some_and(|t| top_similarity < t)
    }

    /// True when the calibrated confidence is decisive enough to skip the LLM.
    pub fn decisive(&self, confidence: f32) -> bool {
        self.shortcut_confidence.is_some_and(|t| confidence >= t)
    }
}

fn band_for(bands: &[Band], top: f32) -> Option<&Band> {
    let i = bands.partition_point(|b| b.min_similarity <= top);
    bands.get(i.saturating_sub(1))
}

/// One held-out example: its vote (without itself) and whether the vote was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    pub share: f32,
    pub top_similarity: f32,
    pub correct: bool,
}

/// Fitting settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub k: usize,
    /// Quantile of in-collection nearest similarity used as the out-of-scope threshold; 0 disables.
    pub oos_quantile: f64,
    /// Held-out vote accuracy required above the shortcut threshold; above 1 disables.
    pub shortcut_target: f64,
    /// Similarity bands of the confidence map (at most).
    pub bands: usize,
    /// Fewest points per band.
    pub min_band_points: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { k: 8, oos_quantile: 0.01, shortcut_target: 0.99, bands: 3, min_band_points: 500 }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), CalibrateError> {
        if self.k == 0 {
            return Err(CalibrateError::Settings("k must be at least 1".into()));
        }
        if !(0.0..0.5).contains(&self.oos_quantile) {
            return Err(CalibrateError::Settings("the out-of-scope quantile must be in [0, 0.5)".into()));
        }
        if self.shortcut_target.is_nan() || self.shortcut_target <= 0.0 {
            return Err(CalibrateError::Settings("the shortcut accuracy target must be positive".into()));
        }
        Ok(())
    }
}

/// The `q` quantile (nearest rank below, `q` in [0, 1]) of `values`.
pub fn quantile(values: &[f32], q: f64) -> Option<f32> {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let i = ((q.clamp(0.0, 1.0) * (v.len() - 1) as f64).floor() as usize).min(v.len() - 1);
    Some(v[i])
}

/// Confidence maps per similarity band fitted on `points`.
pub fn fit_bands(points: &[HeldOut], bands: usize, min_band_points: usize) -> Vec<Band> {
    let n_bands = bands.max(1).min((points.len() / min_band_points.max(1)).max(1));
    let tops: Vec<f32> = points.iter().map(|p| p.top_similarity).collect();
    let mut edges: Vec<f32> = vec![-1.0];
    for i in 1..n_bands {
        if let Some(e) = quantile(&tops, i as f64 / n_bands as f64) {
            if edges.last().is_some_and(|l| e > *l) {
                edges.push(e);
            }
        }
    }
    let mut out = Vec::new();
    for (i, lo) in edges.iter().enumerate() {
        let hi = edges.get(i + 1).copied().unwrap_or(f32::INFINITY);
        let band: Vec<(f32, bool)> = points
            .iter()
            .filter(|p| p.top_similarity >= *lo && p.top_similarity < hi)
            .map(|p| (p.share, p.correct))
            .collect();
        if let Some(map) = IsotonicMap::fit(&band) {
            out.push(Band { min_similarity: *lo, map });
        }
    }
    if let Some(first) = out.first_mut() {
        first.min_similarity = -1.0;
    }
    out
}

fn apply_bands(bands: &[Band], p: &HeldOut) -> f32 {
    band_for(bands, p.top_similarity).map(|b| b.map.apply(p.share)).unwrap_or(p.share)
}

/// The smallest confidence `t` such that the points with confidence `>= t` (at least
/// `min_points` of them) have accuracy `>= target`.
pub fn shortcut_threshold(points: &[(f32, bool)], target: f64, min_points: usize) -> Option<f32> {
    let mut sorted: Vec<(f32, bool)> = points.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut n, mut ok) = (0usize, 0usize);
    let mut best = None;
    let mut i = 0;
    while i < sorted.len() {
        let t = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == t {
            n += 1;
            ok += usize::from(sorted[i].1);
            i += 1;
        }
        if n >= min_points && ok as f64 >= target * n as f64 {
            best = Some(t);
        }
    }
    best
}

/// Fit a calibration on held-out points.
pub fn fit(points: &[HeldOut], settings: &Settings, collection_examples: usize) -> Calibration {
    let bands = fit_bands(points, settings.bands, settings.min_band_points);
    let raw: Vec<metrics::Point> = points.iter().map(|p| (f64::from(p.share), p.correct)).collect();
    // Cross-fitted calibrated confidences: each half scored by the other half's map.
    let halves: [Vec<HeldOut>; 2] = [
        points.iter().step_by(2).copied().collect(),
        points.iter().skip(1).step_by(2).copied().collect(),
    ];
    let mut cross: Vec<metrics::Point> = Vec::with_capacity(points.len());
    for (fit_on, score) in [(0, 1), (1, 0)] {
        let b = fit_bands(&halves[fit_on], settings.bands, settings.min_band_points);
        cross.extend(halves[score].iter().map(|p| (f64::from(apply_bands(&b, p)), p.correct)));
    }
    let calibrated: Vec<(f32, bool)> = points.iter().map(|p| (apply_bands(&bands, p), p.correct)).collect();
    let shortcut = if settings.shortcut_target <= 1.0 {
        shortcut_threshold(&calibrated, settings.shortcut_target, MIN_SHORTCUT_POINTS)
    } else {
        None
    };
    let above: Vec<bool> = calibrated.iter().filter(|(c, _)| shortcut.is_some_and(|t| *c >= t)).map(|(_, ok)| *ok).collect();
    let tops: Vec<f32> = points.iter().map(|p| p.top_similarity).collect();
    let oos = if settings.oos_quantile > 0.0 { quantile(&tops, settings.oos_quantile) } else { None };
    let share_of = |n: usize| if points.is_empty() { 0.0 } else { round4(n as f64 / points.len() as f64) };
    Calibration {
        k: settings.k,
        method: "leave-one-out".into(),
        examples: points.len(),
        collection_examples,
        fitted_at: now_secs(),
        bands,
        oos_similarity: oos,
        oos_quantile: settings.oos_quantile,
        shortcut_confidence: shortcut,
        shortcut_target: settings.shortcut_target,
        stats: CalibrationStats {
            loo_accuracy: share_of(points.iter().filter(|p| p.correct).count()),
            raw_ece: round4(metrics::ece(&raw, 10).unwrap_or(0.0)),
            calibrated_ece: round4(metrics::ece(&cross, 10).unwrap_or(0.0)),
            shortcut_coverage: shortcut.map(|_| share_of(above.len())),
            shortcut_accuracy: metrics::share(above.iter().copied()).map(round4),
            oos_flag_rate: oos.map(|t| share_of(tops.iter().filter(|s| **s < t).count())),
        },
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Leave-one-out over a collection: each stored example (or every `stride`-th one)
/// is voted on by its `k` nearest other examples. `progress` is called with the
/// number of examples done so far.
pub async fn leave_one_out(
    store: &dyn ExampleStore,
    collection: &str,
    k: usize,
    stride: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<HeldOut>, usize), StoreError> {
    let mut points = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = store.scroll(collection, offset, 1024, true).await?;
        points.extend(page);
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    let total = points.len();
    let chosen: Vec<_> = points.into_iter().step_by(stride.max(1)).collect();
    let n = chosen.len();
    let mut done = 0usize;
    let mut out = Vec::with_capacity(n);
    let mut stream = futures::stream::iter(chosen.into_iter().map(|p| async move {
        let mut hits = store.search(collection, &p.vector, k + 1, None).await?;
        match hits.iter().position(|h| h.example.id == p.example.id) {
            Some(i) => {
                hits.remove(i);
            }
            None => hits.truncate(k),
        }
        Ok::<_, StoreError>(vote(&hits).map(|v| HeldOut {
            share: v.share,
            top_similarity: v.top_score,
            correct: label_key(&v.label) == label_key(&p.example.label),
        }))
    }))
    .buffered(4);
    while let Some(r) = stream.next().await {
        if let Some(h) = r? {
            out.push(h);
        }
        done += 1;
        if done.is_multiple_of(256) || done == n {
            progress(done, n);
        }
    }
    Ok((out, total))
}

/// Fit a calibration for `collection` by leave-one-out and store it with the
/// collection's metadata. `max_examples` caps the held-out examples (every n-th).
pub async fn calibrate_collection(
    store: &dyn ExampleStore,
    collection: &str,
    settings: &Settings,
    max_examples: Option<usize>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Calibration, CalibrateError> {
    settings.check()?;
    let mut meta =
        store.get_meta(collection).await?.ok_or_else(|| StoreError::NoSuchCollection(collection.to_string()))?;
    let count = store.count(collection).await?;
    if count < MIN_EXAMPLES {
        return Err(CalibrateError::TooFew { collection: collection.to_string(), examples: count });
    }
    let stride = max_examples.filter(|m| *m > 0).map(|m| count.div_ceil(m)).unwrap_or(1);
    let (points, total) = leave_one_out(store, collection, settings.k, stride, progress).await?;
    let calibration = fit(&points, settings, total);
    meta.calibration = Some(calibration.clone());
    meta.updated_at = now_secs();
    store.put_meta(&meta).await?;
    Ok(calibration)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) {
        assert!((a - b).abs() < 1e-5, "{a} != {b}");
    }

    #[test]
    fn isotonic_pools_violators_by_hand() {
        // x: 0.1 (wrong), 0.2 (right), 0.3 (wrong), 0.4 (right), 0.4 (right).
        // 0.2 right then 0.3 wrong violate order: pooled into one block of mean 1/2.
        let m = IsotonicMap::fit(&[(0.3, false), (0.1, false), (0.2, true), (0.4, true), (0.4, true)]).unwrap();
        assert_eq!(m.x, vec![0.1, 0.2, 0.4]);
        assert_eq!(m.n, vec![1, 2, 2]);
        // Smoothed: (0 + 0.5) / 2, (1 + 0.5) / 3, (2 + 0.5) / 3.
        close(m.y[0], 0.25);
        close(m.y[1], 0.5);
        close(m.y[2], 2.5 / 3.0);
        close(m.apply(0.0), 0.25);
        close(m.apply(0.15), 0.25);
        close(m.apply(0.2), 0.5);
        close(m.apply(0.35), 0.5);
        close(m.apply(1.0), 2.5 / 3.0);
        assert!(IsotonicMap::fit(&[]).is_none());
        // A fully decreasing sequence pools into one block.
        let m = IsotonicMap::fit(&[(0.1, true), (0.2, true), (0.3, false), (0.4, false)]).unwrap();
        assert_eq!((m.x.clone(), m.n.clone()), (vec![0.1], vec![4]));
        close(m.y[0], 2.5 / 5.0);
        // Equal means pool into one block.
        let m = IsotonicMap::fit(&[(0.1, true), (0.2, true), (0.3, true)]).unwrap();
        assert_eq!((m.x.clone(), m.n.clone()), (vec![0.1], vec![3]));
    }

    #[test]
    fn isotonic_output_is_monotone() {
        let pts: Vec<(f32, bool)> = (0..500).map(|i| ((i % 97) as f32 / 97.0, (i * 7919) % 13 < (i % 97) / 8)).collect();
        let m = IsotonicMap::fit(&pts).unwrap();
        assert!(m.y.windows(2).all(|w| w[0] <= w[1]));
        assert!(m.x.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(m.n.iter().sum::<usize>(), 500);
    }

    #[test]
    fn quantile_and_shortcut_by_hand() {
        assert_eq!(quantile(&[0.5, 0.1, 0.9, 0.3, 0.7], 0.0), Some(0.1));
        assert_eq!(quantile(&[0.5, 0.1, 0.9, 0.3, 0.7], 0.5), Some(0.5));
        assert_eq!(quantile(&[0.5, 0.1, 0.9, 0.3, 0.7], 0.3), Some(0.3)); // floor(0.3 * 4) = 1
        assert_eq!(quantile(&[], 0.5), None);
        // Confidences 0.9 ×3 (all right), 0.8 ×2 (one wrong), 0.5 ×1 (wrong).
        let p = [(0.9, true), (0.9, true), (0.9, true), (0.8, true), (0.8, false), (0.5, false)];
        // >= 0.9: 3/3; >= 0.8: 4/5 = 0.8; >= 0.5: 4/6.
        assert_eq!(shortcut_threshold(&p, 0.99, 1), Some(0.9));
        assert_eq!(shortcut_threshold(&p, 0.8, 1), Some(0.8));
        assert_eq!(shortcut_threshold(&p, 0.6, 1), Some(0.5));
        assert_eq!(shortcut_threshold(&p, 0.99, 4), None, "too few points above 0.9");
        assert_eq!(shortcut_threshold(&[], 0.5, 1), None);
    }

    fn held(share: f32, top: f32, correct: bool) -> HeldOut {
        HeldOut { share, top_similarity: top, correct }
    }

    #[test]
    fn fit_gives_thresholds_and_bands() {
        // 100 points: shares 1.0 with near neighbours are right, low shares mostly wrong.
        let mut pts = Vec::new();
        for i in 0..100 {
            let top = 0.3 + i as f32 / 200.0; // 0.30 .. 0.795
            let share = if i >= 40 { 1.0 } else { 0.4 };
            pts.push(held(share, top, i >= 40 || i % 4 == 0));
        }
        let s = Settings { k: 8, oos_quantile: 0.1, shortcut_target: 0.99, bands: 2, min_band_points: 50 };
        let c = fit(&pts, &s, 120);
        assert_eq!((c.examples, c.collection_examples, c.k), (100, 120, 8));
        assert_eq!(c.bands.len(), 2);
        assert_eq!(c.bands[0].min_similarity, -1.0);
        // Band edge at the median nearest similarity: point 49 (floor(0.5 * 99)).
        close(c.bands[1].min_similarity, 0.3 + 49.0 / 200.0);
        // Lower band (49 points): 40 at 0.4 with 10 right, 9 at 1.0 all right.
        close(c.confidence(0.4, 0.35), 10.5 / 41.0);
        close(c.confidence(1.0, 0.35), 9.5 / 10.0);
        // Upper band: 51 points at share 1.0, all right.
        close(c.confidence(1.0, 0.9), 51.5 / 52.0);
        // OOS: quantile 0.1 of the nearest similarities = point 9 (floor(0.1 * 99)).
        close(c.oos_similarity.unwrap(), 0.3 + 9.0 / 200.0);
        assert!(c.out_of_scope(0.31) && !c.out_of_scope(0.6));
        close(c.stats.oos_flag_rate.unwrap() as f32, 0.09);
        // Shortcut: every point at share 1.0 is right: the lowest of their confidences.
        close(c.shortcut_confidence.unwrap(), 9.5 / 10.0);
        assert!(c.decisive(0.96) && !c.decisive(0.5));
        close(c.stats.shortcut_coverage.unwrap() as f32, 0.6);
        assert_eq!(c.stats.shortcut_accuracy, Some(1.0));
        close(c.stats.loo_accuracy as f32, 0.7);
        // Disabled thresholds.
        let off = fit(&pts, &Settings { oos_quantile: 0.0, shortcut_target: 2.0, ..s }, 100);
        assert!(off.oos_similarity.is_none() && off.shortcut_confidence.is_none());
        assert!(!off.out_of_scope(-1.0) && !off.decisive(1.0));
        // Too few points per band: one band.
        assert_eq!(fit_bands(&pts, 3, 60).len(), 1);
    }

    #[test]
    fn calibration_round_trips_through_json() {
        let pts: Vec<HeldOut> = (0..50).map(|i| held(i as f32 / 50.0, 0.5, i > 20)).collect();
        let c = fit(&pts, &Settings::default(), 50);
        let back: Calibration = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(Settings { k: 0, ..Settings::default() }.check().is_err());
        assert!(Settings { oos_quantile: 0.7, ..Settings::default() }.check().is_err());
    }
}
