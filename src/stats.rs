//! Small statistics shared by evaluation and fitting: shares, the nearest-rank
//! percentile and quantile, reliability bins and expected calibration error.
//!
//! - ECE: 10 equal-width confidence bins `[0, 0.1), ..., [0.9, 1.0]`; the sum over bins
//!   of `n_bin / n × |accuracy_bin − mean_confidence_bin|`.
//! - Percentiles: nearest rank (`⌈p/100 × n⌉`-th smallest value).
//! - Quantile: nearest rank below (`⌊q × (n − 1)⌋`-th smallest value, from 0).

use serde::Serialize;

/// Share of `true` values; `None` for an empty input.
pub fn share<I: IntoIterator<Item = bool>>(values: I) -> Option<f64> {
    let (mut yes, mut n) = (0usize, 0usize);
    for v in values {
        n += 1;
        yes += usize::from(v);
    }
    (n > 0).then(|| yes as f64 / n as f64)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// `None` for an empty bin.
    pub mean_confidence: Option<f64>,
    pub accuracy: Option<f64>,
}

/// `(confidence, label correct)` per ticket.
pub type Point = (f64, bool);

/// Bin index of a confidence among `bins` equal-width bins over [0, 1]; 1.0 falls in the last.
fn bin_of(confidence: f64, bins: usize) -> usize {
    let c = confidence.clamp(0.0, 1.0);
    ((c * bins as f64).floor() as usize).min(bins - 1)
}

pub fn reliability(points: &[Point], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(c, ok) in points {
        let b = &mut sums[bin_of(c, bins)];
        b.0 += 1;
        b.1 += c;
        b.2 += usize::from(ok);
    }
    sums.into_iter()
        .enumerate()
        .map(|(i, (n, conf, ok))| ReliabilityBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count: n,
            mean_confidence: (n > 0).then(|| conf / n as f64),
            accuracy: (n > 0).then(|| ok as f64 / n as f64),
        })
        .collect()
}

/// Expected calibration error over `bins` equal-width bins.
pub fn ece(points: &[Point], bins: usize) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f64;
    Some(
        reliability(points, bins)
            .iter()
            .filter_map(|b| Some(b.count as f64 / n * (b.accuracy? - b.mean_confidence?).abs()))
            .sum(),
    )
}

/// Nearest-rank percentile (`p` in 0..=100).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The `q` quantile (nearest rank below, `q` in [0, 1]) of the finite `values`.
pub fn quantile(values: &[f32], q: f64) -> Option<f32> {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let i = ((q.clamp(0.0, 1.0) * (v.len() - 1) as f64).floor() as usize).min(v.len() - 1);
    Some(v[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn ece_and_reliability_by_hand() {
        // Bin [0.9, 1.0]: 0.95 right, 0.95 wrong, 1.0 right -> mean conf 0.9667, acc 0.6667.
        // Bin [0.2, 0.3): 0.25 wrong -> conf 0.25, acc 0.
        let p = [(0.95, true), (0.95, false), (1.0, true), (0.25, false)];
        let bins = reliability(&p, 10);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[9].count, 3);
        assert_eq!(bins[2].count, 1);
        assert_eq!(bins[0].mean_confidence, None);
        close(bins[9].accuracy, 2.0 / 3.0);
        // ECE = 3/4 × |2/3 − 2.9/3| + 1/4 × |0 − 0.25| = 3/4 × 0.3 + 0.0625 = 0.2875.
        close(ece(&p, 10), 0.2875);
        // A perfectly calibrated set: half right at 0.5.
        close(ece(&[(0.5, true), (0.5, false)], 10), 0.0);
        assert_eq!(ece(&[], 10), None);
        // Bin edges: 0.1 belongs to the second bin, 0.0999 to the first.
        assert_eq!(reliability(&[(0.1, true), (0.0999, true)], 10)[1].count, 1);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0];
        close(percentile(&v, 50.0), 5.0);
        close(percentile(&v, 95.0), 10.0);
        close(percentile(&v, 90.0), 9.0);
        close(percentile(&v, 0.0), 1.0);
        close(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn quantile_by_hand() {
        assert_eq!(quantile(&[0.5, 0.1, 0.9, 0.3, 0.7], 0.0), Some(0.1));
        assert_eq!(quantile(&[0.5, 0.1, 0.9, 0.3, 0.7], 0.5), Some(0.5));
        assert_eq!(quantile(&[0.5, 0.1, 0.9, 0.3, 0.7], 0.3), Some(0.3)); // floor(0.3 * 4) = 1
        assert_eq!(quantile(&[f32::NAN, 0.2], 1.0), Some(0.2));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
