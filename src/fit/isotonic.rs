//! Isotonic calibration: a non-decreasing step function fitted by pool-adjacent-
//! violators, one per band of nearest-neighbour similarity (so that a unanimous vote
//! among far neighbours can get a lower probability than one among near neighbours),
//! and the threshold above which held-out points reach a target accuracy.

use serde::{Deserialize, Serialize};

use crate::stats::quantile;

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

/// A held-out point for a banded map: the score to calibrate, the nearest
/// similarity that picks the band, and whether the label was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    pub score: f32,
    pub top_similarity: f32,
    pub correct: bool,
}

/// The band whose range holds `top` (the first band below the smallest edge).
pub fn band_for(bands: &[Band], top: f32) -> Option<&Band> {
    let i = bands.partition_point(|b| b.min_similarity <= top);
    bands.get(i.saturating_sub(1))
}

/// The calibrated value of `score` in the band of `top`; `score` itself without bands.
pub fn apply_bands(bands: &[Band], score: f32, top: f32) -> f32 {
    band_for(bands, top).map(|b| b.map.apply(score)).unwrap_or(score)
}

/// Confidence maps per similarity band fitted on `points`: up to `bands` bands with
/// quantile edges, fewer when a band would hold under `min_band_points` points.
pub fn fit_bands(points: &[BandPoint], bands: usize, min_band_points: usize) -> Vec<Band> {
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
            .map(|p| (p.score, p.correct))
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

/// Calibrated values of `points`, each scored by maps fitted on the other half
/// (even/odd positions), so that an error measured on them is not flattered by
/// fitting and scoring the same points.
pub fn cross_fitted(points: &[BandPoint], bands: usize, min_band_points: usize) -> Vec<(f32, bool)> {
    let halves: [Vec<BandPoint>; 2] =
        [points.iter().step_by(2).copied().collect(), points.iter().skip(1).step_by(2).copied().collect()];
    let maps = [fit_bands(&halves[0], bands, min_band_points), fit_bands(&halves[1], bands, min_band_points)];
    points
        .iter()
        .enumerate()
        .map(|(i, p)| (apply_bands(&maps[1 - i % 2], p.score, p.top_similarity), p.correct))
        .collect()
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
    fn shortcut_threshold_by_hand() {
        // Confidences 0.9 ×3 (all right), 0.8 ×2 (one wrong), 0.5 ×1 (wrong).
        let p = [(0.9, true), (0.9, true), (0.9, true), (0.8, true), (0.8, false), (0.5, false)];
        // >= 0.9: 3/3; >= 0.8: 4/5 = 0.8; >= 0.5: 4/6.
        assert_eq!(shortcut_threshold(&p, 0.99, 1), Some(0.9));
        assert_eq!(shortcut_threshold(&p, 0.8, 1), Some(0.8));
        assert_eq!(shortcut_threshold(&p, 0.6, 1), Some(0.5));
        assert_eq!(shortcut_threshold(&p, 0.99, 4), None, "too few points above 0.9");
        assert_eq!(shortcut_threshold(&[], 0.5, 1), None);
    }

    fn bp(score: f32, top: f32, correct: bool) -> BandPoint {
        BandPoint { score, top_similarity: top, correct }
    }

    #[test]
    fn bands_split_at_quantiles_and_cross_fitting_scores_each_half_with_the_other() {
        // 100 points: shares 1.0 are right, 0.4 right one time in four.
        let pts: Vec<BandPoint> = (0..100)
            .map(|i| bp(if i >= 40 { 1.0 } else { 0.4 }, 0.3 + i as f32 / 200.0, i >= 40 || i % 4 == 0))
            .collect();
        let b = fit_bands(&pts, 2, 50);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].min_similarity, -1.0);
        // Edge at the median nearest similarity: point 49 (floor(0.5 * 99)).
        close(b[1].min_similarity, 0.3 + 49.0 / 200.0);
        // Lower band (49 points): 40 at 0.4 with 10 right, 9 at 1.0 all right.
        close(apply_bands(&b, 0.4, 0.35), 10.5 / 41.0);
        close(apply_bands(&b, 1.0, 0.35), 9.5 / 10.0);
        close(apply_bands(&b, 1.0, 0.9), 51.5 / 52.0);
        assert_eq!(fit_bands(&pts, 3, 60).len(), 1, "too few points per band: one band");
        assert_eq!(apply_bands(&[], 0.7, 0.1), 0.7, "no bands: the score itself");
        let cross = cross_fitted(&pts, 1, 1);
        assert_eq!(cross.len(), 100);
        // Point 0 (even) is scored by the odd half's map: 20 odd points at 0.4, none
        // right (i % 4 == 0 never holds for odd i); point 1 by the even half's: 10 of 20.
        close(cross[0].0, 0.5 / 21.0);
        close(cross[1].0, 10.5 / 21.0);
        assert!(cross.iter().zip(&pts).all(|(c, p)| c.1 == p.correct));
    }
}
