//! Which examples are likely mislabeled, ranked, and how many to list.
//!
//! Two witnesses, neither of which has seen the example it judges:
//! - the **head**: the example's out-of-fold probability of its own label (from a head
//!   fitted on the other folds, [`crate::calibrate::out_of_fold`]);
//! - the **neighbours**: how much closer the example's nearest examples of its best other
//!   label are than its nearest examples of its own label (the mean similarity of the
//!   [`super::similarity`] scan's `k` nearest per label, leave-one-out).
//!
//! **Rank**: each witness orders the examples from most to least suspect; an example's
//! score is the mean of its two percentile ranks (0 to 1; 1 = most suspect by both). No
//! scale is mixed and no weight is tuned. Measured on the product's vectors of BANKING77
//! and CLINC150 with 5 % of labels flipped (docs/accuracy.md), precision at N was
//! 0.954-0.958 and 0.979-0.985 against 0.93-0.944 and 0.973-0.983 for the head's
//! `1 - p(given)` alone; cleanlab's normalized margin, per-class thresholds, a head+vote
//! mixture and an ensemble over fold seeds did not beat the head alone.
//!
//! **How many**: confident learning's count (cleanlab's confident joint): with
//! per-label thresholds `t_j` = the mean head probability of label j among the examples
//! labeled j, an example counts as off-diagonal when some other label reaches its
//! threshold and the most probable such label is not its own. That many of the top-ranked
//! examples are listed (at 5 % flipped: 470 for 500 on BANKING77 at 0.98 precision).
//!
//! **Suggested label**: the other label with the largest mean of the head's probability
//! and the neighbours' share (a softmax of the label similarities at temperature
//! [`SUGGEST_TEMPERATURE`]).

/// Temperature of the neighbours' share in the suggestion (one of the vote temperatures
/// the fit tries, [`crate::fit::neighbours::TEMPERATURES`]).
pub const SUGGEST_TEMPERATURE: f32 = 0.05;

/// One ranked example.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub row: usize,
    /// Mean percentile rank of the witnesses, in (0, 1].
    pub score: f64,
    pub suggested: usize,
}

/// The evidence of every example, as the ranking reads it.
pub struct Witnesses<'a> {
    pub y: &'a [u32],
    pub labels: usize,
    /// Out-of-fold head probabilities per example (`labels` each), when a head was fitted.
    pub head: Option<&'a [Vec<f32>]>,
    /// Row-major `n x labels` label similarities.
    pub label_sim: &'a [f32],
}

impl Witnesses<'_> {
    fn sims(&self, i: usize) -> &[f32] {
        &self.label_sim[i * self.labels..(i + 1) * self.labels]
    }

    /// How much closer the best other label's nearest examples are than the own label's.
    pub fn gap(&self, i: usize) -> f32 {
        let own = self.y[i] as usize;
        let s = self.sims(i);
        let other = s.iter().enumerate().filter(|(l, _)| *l != own).map(|(_, v)| *v).fold(f32::NEG_INFINITY, f32::max);
        other - s[own]
    }

    /// The neighbours' share per label: a softmax of the label similarities.
    pub fn neighbour_shares(&self, i: usize) -> Vec<f32> {
        let s = self.sims(i);
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f32> = s.iter().map(|v| ((v - max) / SUGGEST_TEMPERATURE).exp()).collect();
        let total: f32 = w.iter().sum();
        w.into_iter().map(|v| v / total.max(f32::MIN_POSITIVE)).collect()
    }

    /// The combined evidence per label: the mean of the head's probability and the
    /// neighbours' share (the neighbours' alone without a head).
    pub fn combined(&self, i: usize) -> Vec<f32> {
        let q = self.neighbour_shares(i);
        match self.head {
            Some(h) => h[i].iter().zip(&q).map(|(p, q)| (p + q) / 2.0).collect(),
            None => q,
        }
    }

    /// The most likely label other than the example's own.
    pub fn suggestion(&self, i: usize) -> usize {
        let own = self.y[i] as usize;
        let m = self.combined(i);
        m.iter().enumerate().filter(|(l, _)| *l != own).max_by(|a, b| a.1.total_cmp(b.1)).map_or(own, |(l, _)| l)
    }
}

/// Ascending ranks of `v` (1-based, ties share their mean rank).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            out[o] = mean;
        }
        i = j + 1;
    }
    out
}

/// Every example that `judged` selects, most suspect first. `head_only`: rank by the
/// head's doubt alone (the plain out-of-fold baseline the benchmark compares with).
pub fn rank(w: &Witnesses<'_>, judged: &[bool], head_only: bool) -> Vec<Suspect> {
    let rows: Vec<usize> = (0..w.y.len()).filter(|&i| judged[i]).collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let n = rows.len() as f64;
    let gap: Vec<f64> = rows.iter().map(|&i| f64::from(w.gap(i))).collect();
    let mut signals = if head_only && w.head.is_some() { Vec::new() } else { vec![ranks(&gap)] };
    if let Some(h) = w.head {
        let doubt: Vec<f64> = rows.iter().map(|&i| 1.0 - f64::from(h[i][w.y[i] as usize])).collect();
        signals.push(ranks(&doubt));
    }
    let mut out: Vec<Suspect> = rows
        .iter()
        .enumerate()
        .map(|(r, &i)| Suspect {
            row: i,
            score: signals.iter().map(|s| s[r]).sum::<f64>() / (signals.len() as f64 * n),
            suggested: w.suggestion(i),
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    out
}

/// Confident learning's estimate of how many examples are mislabeled: those whose most
/// probable label among the labels that reach their own threshold is another label.
/// `probabilities`: per example, over `labels`.
pub fn estimated_count(y: &[u32], labels: usize, probabilities: &[Vec<f32>]) -> usize {
    let mut sum = vec![0f64; labels];
    let mut count = vec![0usize; labels];
    for (p, &l) in probabilities.iter().zip(y) {
        sum[l as usize] += f64::from(p[l as usize]);
        count[l as usize] += 1;
    }
    // A label nobody carries has no threshold: nothing is counted towards it.
    let threshold: Vec<f64> = sum.iter().zip(&count).map(|(s, &c)| if c == 0 { f64::INFINITY } else { s / c as f64 }).collect();
    probabilities
        .iter()
        .zip(y)
        .filter(|(p, &l)| {
            let confident = p
                .iter()
                .enumerate()
                .filter(|(j, v)| f64::from(**v) >= threshold[*j])
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(j, _)| j);
            confident.is_some_and(|j| j != l as usize)
        })
        .count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties() {
        assert_eq!(ranks(&[0.5, 0.1, 0.5, 0.9]), vec![2.5, 1.0, 2.5, 4.0]);
    }

    /// Three labels; example 3 sits among label 0 but carries label 2.
    fn witnesses_fixture() -> (Vec<u32>, Vec<Vec<f32>>, Vec<f32>) {
        let y = vec![0, 0, 1, 2, 2, 1];
        let head = vec![
            vec![0.8, 0.1, 0.1],
            vec![0.7, 0.2, 0.1],
            vec![0.1, 0.8, 0.1],
            vec![0.85, 0.1, 0.05],
            vec![0.1, 0.1, 0.8],
            vec![0.2, 0.6, 0.2],
        ];
        let sims = vec![
            0.9, 0.2, 0.3, //
            0.9, 0.3, 0.2, //
            0.2, 0.8, 0.1, //
            0.92, 0.1, 0.2, //
            0.1, 0.2, 0.7, //
            0.3, 0.7, 0.2,
        ];
        (y, head, sims)
    }

    #[test]
    fn the_example_both_witnesses_doubt_comes_first_with_the_label_it_sits_among() {
        let (y, head, sims) = witnesses_fixture();
        let w = Witnesses { y: &y, labels: 3, head: Some(&head), label_sim: &sims };
        let ranked = rank(&w, &[true; 6], false);
        assert_eq!((ranked[0].row, ranked[0].suggested), (3, 0));
        assert!((ranked[0].score - 1.0).abs() < 1e-9, "most suspect by both: {}", ranked[0].score);
        assert!(ranked.windows(2).all(|p| p[0].score >= p[1].score));
        // The head alone (the baseline): its doubt orders everything.
        let doubt: Vec<usize> = rank(&w, &[true; 6], true).iter().map(|s| s.row).collect();
        assert_eq!(doubt, vec![3, 5, 1, 0, 2, 4]);
        // Without a head the neighbours alone rank, and the same example leads.
        let w = Witnesses { head: None, ..w };
        assert_eq!(rank(&w, &[true; 6], false)[0].row, 3);
        // Examples not judged (their label is too small to judge) are not ranked.
        let mut judged = [true; 6];
        judged[3] = false;
        assert!(rank(&w, &judged, false).iter().all(|s| s.row != 3));
    }

    #[test]
    fn confident_learning_counts_the_examples_another_label_claims() {
        let (y, head, _) = witnesses_fixture();
        // Thresholds: label 0: 0.75, label 1: 0.7, label 2: 0.425. Example 3 (label 2):
        // 0.85 >= 0.75 for label 0, the most probable confident label: counted. Example 5
        // (label 1): 0.6 < 0.7, nothing else reaches its threshold: not counted.
        assert_eq!(estimated_count(&y, 3, &head), 1);
        let clean: Vec<Vec<f32>> = y.iter().map(|&l| (0..3).map(|j| if j == l { 0.9 } else { 0.05 }).collect()).collect();
        assert_eq!(estimated_count(&y, 3, &clean), 0);
    }
}
