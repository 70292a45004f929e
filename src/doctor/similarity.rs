//! All-pairs cosine similarity over a collection's vectors, computed in blocks of rows
//! (never the whole n x n matrix at once) and reduced on the fly to what the doctor
//! reads: per example, the mean similarity of its `k` nearest *other* examples of every
//! label (leave-one-out), its nearest other examples, and the pairs of examples at or
//! above a near-duplicate similarity. Exact (no index): n² · dim multiply-adds, about
//! 4 · 10¹⁰ for 10,000 examples of 384 dimensions, a few seconds on two cores.

use rayon::prelude::*;

/// Rows per block: a block's similarities are `BLOCK x n` floats.
const BLOCK: usize = 128;

/// Label similarity of a label that has no other example to compare with.
pub const NO_SIMILARITY: f32 = -2.0;

/// What the scan keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub labels: usize,
    /// Row-major `n x labels`: the mean similarity of the `k` nearest other examples of
    /// each label (of all of them when the label has fewer); [`NO_SIMILARITY`] when none.
    pub label_sim: Vec<f32>,
    /// Per example: its nearest other examples `(row, similarity)`, most similar first.
    pub nearest: Vec<Vec<(usize, f32)>>,
    /// `(i, j, similarity)` with `i < j` and similarity at or above the pair threshold.
    pub close_pairs: Vec<(usize, usize, f32)>,
}

impl Scan {
    pub fn label_row(&self, i: usize) -> &[f32] {
        &self.label_sim[i * self.labels..(i + 1) * self.labels]
    }
}

/// What to keep from the scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanSettings {
    /// Nearest examples per label averaged into the label similarity.
    pub per_label: usize,
    /// Nearest examples kept per example.
    pub nearest: usize,
    /// Pairs at or above this similarity are kept.
    pub pair_threshold: f32,
}

/// Unit-length copies of the rows (a zero row stays zero).
fn normalised(vectors: &[f32], dim: usize) -> Vec<f32> {
    let mut out = vectors.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

/// `out (rows x n) = a (rows x dim) · xᵀ`, `x` being `n x dim` row-major.
fn block_products(a: &[f32], x: &[f32], dim: usize, out: &mut [f32]) {
    let rows = a.len() / dim;
    let n = x.len() / dim;
    assert!(rows > 0 && n > 0 && a.len() == rows * dim && x.len() == n * dim && out.len() == rows * n);
    // SAFETY: `a` is rows x dim (row stride dim), xᵀ is read from `x` as dim x n with
    // row stride 1 and column stride dim, `out` is rows x n (row stride n): every index
    // touched is inside its slice (the lengths are asserted above), and `out` is
    // borrowed mutably, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            rows, dim, n, 1.0,
            a.as_ptr(), dim as isize, 1,
            x.as_ptr(), 1, dim as isize,
            0.0, out.as_mut_ptr(), n as isize, 1,
        );
    }
}

/// Insert `v` into `top` (sorted, largest first, fixed length) if it belongs there.
fn keep_top(top: &mut [f32], v: f32) {
    let Some(last) = top.last() else { return };
    if v <= *last {
        return;
    }
    let mut i = top.len() - 1;
    while i > 0 && top[i - 1] < v {
        top[i] = top[i - 1];
        i -= 1;
    }
    top[i] = v;
}

/// Reduce one row of similarities (`sims[j]` = similarity of example `i` to `j`).
fn reduce_row(i: usize, sims: &[f32], y: &[u32], labels: usize, s: &ScanSettings) -> (Vec<f32>, Vec<(usize, f32)>, Vec<(usize, usize, f32)>) {
    let k = s.per_label.max(1);
    let mut tops = vec![f32::NEG_INFINITY; labels * k];
    let mut near: Vec<(usize, f32)> = Vec::with_capacity(s.nearest + 1);
    let mut pairs = Vec::new();
    for (j, &v) in sims.iter().enumerate() {
        if j == i || !v.is_finite() {
            continue;
        }
        let l = y[j] as usize;
        keep_top(&mut tops[l * k..(l + 1) * k], v);
        if s.nearest > 0 && (near.len() < s.nearest || near.last().is_some_and(|n| v > n.1)) {
            let at = near.iter().position(|n| v > n.1).unwrap_or(near.len());
            near.insert(at, (j, v));
            near.truncate(s.nearest);
        }
        if j > i && v >= s.pair_threshold {
            pairs.push((i, j, v));
        }
    }
    let label_sim = tops
        .chunks_exact(k)
        .map(|t| {
            let seen: Vec<f32> = t.iter().copied().filter(|v| v.is_finite()).collect();
            if seen.is_empty() {
                NO_SIMILARITY
            } else {
                seen.iter().sum::<f32>() / seen.len() as f32
            }
        })
        .collect();
    (label_sim, near, pairs)
}

/// Scan every pair of the `n` rows of `vectors` (`dim` wide); `y[i]` is row i's label
/// in `0..labels`.
pub fn scan(vectors: &[f32], dim: usize, y: &[u32], labels: usize, settings: &ScanSettings) -> Scan {
    let n = y.len();
    let empty = Scan { labels, label_sim: Vec::new(), nearest: Vec::new(), close_pairs: Vec::new() };
    if n == 0 || dim == 0 || vectors.len() != n * dim {
        return empty;
    }
    let x = normalised(vectors, dim);
    let blocks: Vec<_> = (0..n)
        .step_by(BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let rows = BLOCK.min(n - start);
            let mut sims = vec![0f32; rows * n];
            block_products(&x[start * dim..(start + rows) * dim], &x, dim, &mut sims);
            (0..rows).map(|r| reduce_row(start + r, &sims[r * n..(r + 1) * n], y, labels, settings)).collect::<Vec<_>>()
        })
        .collect();
    let mut out = Scan { labels, label_sim: Vec::with_capacity(n * labels), nearest: Vec::with_capacity(n), close_pairs: Vec::new() };
    for (label_sim, near, pairs) in blocks.into_iter().flatten() {
        out.label_sim.extend(label_sim);
        out.nearest.push(near);
        out.close_pairs.extend(pairs);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn label_similarity_is_leave_one_out_and_exact() {
        // Four points on the unit circle (as 2-d vectors, one scaled: norms do not matter).
        let v = [1.0, 0.0, 0.0, 3.0, 0.8, 0.6, 0.6, 0.8];
        let y = [0, 1, 0, 1];
        let s = scan(&v, 2, &y, 2, &ScanSettings { per_label: 1, nearest: 2, pair_threshold: 0.95 });
        // Row 0's own label is 0: its nearest *other* example of label 0 is row 2 (0.8).
        assert!((s.label_row(0)[0] - 0.8).abs() < 1e-6);
        assert!((s.label_row(0)[1] - 0.6).abs() < 1e-6, "row 3 at 0.6, above row 1 at 0");
        assert_eq!(s.nearest[0].iter().map(|n| n.0).collect::<Vec<_>>(), vec![2, 3]);
        // Rows 2 and 3: 0.48 + 0.48 = 0.96.
        assert_eq!(s.close_pairs.len(), 1);
        assert_eq!((s.close_pairs[0].0, s.close_pairs[0].1), (2, 3));
        // Averaging over two when the label has two others; none: NO_SIMILARITY.
        let s = scan(&v, 2, &y, 3, &ScanSettings { per_label: 2, nearest: 0, pair_threshold: 1.1 });
        assert!((s.label_row(1)[1] - 0.8).abs() < 1e-6, "row 3 only (row 1 itself excluded)");
        assert!((s.label_row(1)[0] - 0.3).abs() < 1e-6, "(0 + 0.6) / 2");
        assert_eq!(s.label_row(0)[2], NO_SIMILARITY);
        assert!(s.nearest[0].is_empty() && s.close_pairs.is_empty());
    }

    #[test]
    fn blocks_do_not_change_the_answer() {
        // More rows than one block, checked against a direct computation.
        let n = BLOCK * 2 + 17;
        let dim = 5;
        let v: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let s = scan(&v, dim, &y, 3, &ScanSettings { per_label: 3, nearest: 4, pair_threshold: 0.99 });
        let x = normalised(&v, dim);
        let dot = |a: usize, b: usize| (0..dim).map(|d| x[a * dim + d] * x[b * dim + d]).sum::<f32>();
        for i in [0, BLOCK - 1, BLOCK, n - 1] {
            let mut all: Vec<(usize, f32)> = (0..n).filter(|&j| j != i).map(|j| (j, dot(i, j))).collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1));
            assert!((s.nearest[i][0].1 - all[0].1).abs() < 1e-5);
            for l in 0..3u32 {
                let best: Vec<f32> = all.iter().filter(|(j, _)| y[*j] == l).take(3).map(|p| p.1).collect();
                let mean = best.iter().sum::<f32>() / 3.0;
                assert!((s.label_row(i)[l as usize] - mean).abs() < 1e-5, "row {i} label {l}");
            }
        }
        let direct = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).filter(|&(i, j)| dot(i, j) >= 0.99).count();
        assert_eq!(s.close_pairs.len(), direct);
    }
}
