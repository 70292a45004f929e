//! The neighbours' own judgement: a similarity-weighted vote over retrieved
//! examples, and label-diverse selection of demonstrations for the prompt.

use std::collections::HashMap;

use serde::Serialize;

use crate::example::ScoredExample;
use crate::taxonomy::label_key;

/// Default softmax temperature for turning cosine similarities into vote weights: a
/// neighbour 0.1 closer counts e (2.7) times as much. A calibrated collection uses the
/// temperature fitted on its own examples ([`crate::fit::neighbours`]).
pub const TEMPERATURE: f32 = 0.1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vote {
    pub label: String,
    /// Weight share of the winning label, in [0, 1].
    pub share: f32,
    pub subcategory: Option<String>,
    pub urgency: Option<String>,
    /// Similarity of the nearest neighbour.
    pub top_score: f32,
    /// Every label's share, largest first.
    pub shares: Vec<(String, f32)>,
}

impl Vote {
    /// Share of the vote held by `label` (0 when no neighbour has it).
    pub fn share_of(&self, label: &str) -> f32 {
        let k = label_key(label);
        self.shares.iter().find(|(l, _)| label_key(l) == k).map(|(_, s)| *s).unwrap_or(0.0)
    }
}

/// Vote shares of neighbours with similarities `sims` (most similar first): a softmax
/// of the similarities at `temperature`, then no neighbour carries more than `cap` of
/// the vote (its excess goes to the others in proportion; `cap >= 1`: no limit). The
/// temperature and the cap are fitted on the collection's held-out examples
/// ([`crate::fit::neighbours`]): how much one near-duplicate may outvote the rest is
/// what held-out accuracy supports, not what its raw similarity says.
pub fn weights(sims: &[f32], temperature: f32, cap: f32) -> Vec<f32> {
    let max = sims.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let t = if temperature > 0.0 { temperature } else { TEMPERATURE };
    let mut w: Vec<f32> = sims.iter().map(|s| ((s - max) / t).exp()).collect();
    let total: f32 = w.iter().sum();
    if total > 0.0 {
        w.iter_mut().for_each(|x| *x /= total);
    }
    // A cap below 1/n cannot hold: every weight would have to be below the mean.
    let cap = cap.max(1.0 / sims.len().max(1) as f32);
    if cap < 1.0 {
        for _ in 0..sims.len() {
            let excess: f32 = w.iter().filter(|x| **x > cap).map(|x| *x - cap).sum();
            if excess <= 1e-9 {
                break;
            }
            let free: f32 = w.iter().filter(|x| **x < cap).sum();
            let open = w.iter().filter(|x| **x < cap).count();
            for x in w.iter_mut() {
                if *x > cap {
                    *x = cap;
                } else if *x < cap {
                    // In proportion to the weight; equal shares when the others are all ~0.
                    *x += if free > 1e-12 { excess * *x / free } else { excess / open.max(1) as f32 };
                }
            }
        }
    }
    w
}

/// Weighted plurality over `items`, ties broken by first appearance (nearest first).
fn plurality<'a>(items: impl Iterator<Item = (&'a str, f32)>) -> Vec<(String, f32)> {
    let mut order: Vec<String> = Vec::new();
    let mut sums: HashMap<String, (String, f32)> = HashMap::new();
    for (value, w) in items {
        let key = label_key(value);
        let e = sums.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            (value.to_string(), 0.0)
        });
        e.1 += w;
    }
    let mut out: Vec<(String, f32)> = order.into_iter().filter_map(|k| sums.remove(&k)).collect();
    out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// The similarity-weighted vote of `neighbors` (None when there are none).
pub fn vote(neighbors: &[ScoredExample]) -> Option<Vote> {
    vote_with(neighbors, TEMPERATURE, 1.0)
}

/// [`vote`] with another softmax temperature and a cap on one neighbour's share (see [`weights`]).
pub fn vote_with(neighbors: &[ScoredExample], temperature: f32, cap: f32) -> Option<Vote> {
    if neighbors.is_empty() {
        return None;
    }
    let sims: Vec<f32> = neighbors.iter().map(|n| n.score).collect();
    let w = weights(&sims, temperature, cap);
    let labels = plurality(neighbors.iter().zip(&w).map(|(n, w)| (n.example.label.as_str(), *w)));
    let shares: Vec<(String, f32)> = labels;
    let (label, share) = shares[0].clone();
    let key = label_key(&label);
    let subcategory = plurality(
        neighbors
            .iter()
            .zip(&w)
            .filter(|(n, _)| label_key(&n.example.label) == key)
            .filter_map(|(n, w)| n.example.subcategory.as_deref().map(|s| (s, *w))),
    )
    .into_iter()
    .next()
    .map(|(s, _)| s);
    let urgency = plurality(neighbors.iter().zip(&w).filter_map(|(n, w)| n.example.urgency.as_deref().map(|u| (u, *w))))
        .into_iter()
        .next()
        .map(|(u, _)| u);
    Some(Vote { label, share, subcategory, urgency, top_score: neighbors[0].score, shares })
}

/// Pick `k` demonstrations from `candidates` (most similar first) so that no label
/// takes more than `k - max(1, k/4)` slots while other labels are available; the
/// result stays in similarity order.
pub fn select_diverse(candidates: &[ScoredExample], k: usize) -> Vec<ScoredExample> {
    if k == 0 {
        return Vec::new();
    }
    let cap = (k - (k / 4).max(1)).max(1);
    let mut taken = vec![false; candidates.len()];
    let mut per_label: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    for (i, c) in candidates.iter().enumerate() {
        if n == k {
            break;
        }
        let count = per_label.entry(label_key(&c.example.label)).or_default();
        if *count < cap {
            *count += 1;
            taken[i] = true;
            n += 1;
        }
    }
    for t in taken.iter_mut() {
        if n == k {
            break;
        }
        if !*t {
            *t = true;
            n += 1;
        }
    }
    candidates.iter().zip(taken).filter(|(_, t)| *t).map(|(c, _)| c.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Example;

    fn n(label: &str, score: f32, urgency: Option<&str>) -> ScoredExample {
        ScoredExample {
            score,
            example: Example { urgency: urgency.map(String::from), ..Example::new(format!("{label}-{score}"), "", label) },
        }
    }

    #[test]
    fn vote_weights_by_similarity() {
        // Two far neighbours do not outvote one much closer one.
        let v = vote(&[n("A", 0.9, Some("High")), n("B", 0.6, Some("Low")), n("B", 0.6, Some("Low"))]).unwrap();
        assert_eq!(v.label, "A");
        let expected = 1.0 / (1.0 + 2.0 * (-3.0f32).exp());
        assert!((v.share - expected).abs() < 1e-4, "{} vs {expected}", v.share);
        assert!((v.share + v.share_of("b") - 1.0).abs() < 1e-5);
        assert_eq!(v.urgency.as_deref(), Some("High"));
        assert_eq!(v.share_of("C"), 0.0);
        // Equal similarities: the majority wins.
        let v = vote(&[n("A", 0.8, None), n("B", 0.8, None), n("B", 0.8, None)]).unwrap();
        assert_eq!(v.label, "B");
        assert!((v.share - 2.0 / 3.0).abs() < 1e-5);
        assert!(vote(&[]).is_none());
    }

    #[test]
    fn a_cap_keeps_one_near_duplicate_from_outvoting_the_rest() {
        let mut ns = vec![n("A", 0.99, None)];
        ns.extend((0..7).map(|i| n("B", 0.80 - i as f32 * 0.001, None)));
        let free = vote_with(&ns, 0.02, 1.0).unwrap();
        assert_eq!(free.label, "A", "at a low temperature the near-duplicate takes the vote");
        let capped = vote_with(&ns, 0.02, 0.35).unwrap();
        assert_eq!(capped.label, "B");
        assert!((capped.share_of("A") - 0.35).abs() < 1e-4, "{:?}", capped.shares);
        let w = weights(&[0.9, 0.9], 0.1, 0.2);
        assert!((w[0] - 0.5).abs() < 1e-6, "a cap below 1/n cannot hold: {w:?}");
        assert!((weights(&[0.9, 0.5, 0.4], 0.05, 0.5).iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn diverse_selection_caps_one_label() {
        let mut c: Vec<ScoredExample> = (0..10).map(|i| n("A", 0.9 - i as f32 * 0.01, None)).collect();
        c.push(n("B", 0.5, None));
        c.push(n("C", 0.4, None));
        let s = select_diverse(&c, 8);
        assert_eq!(s.len(), 8);
        assert_eq!(s.iter().filter(|e| e.example.label == "A").count(), 6);
        assert!(s.windows(2).all(|w| w[0].score >= w[1].score));
        // Not enough other labels: fill with the best of the rest.
        let only_a: Vec<ScoredExample> = (0..10).map(|i| n("A", 0.9 - i as f32 * 0.01, None)).collect();
        assert_eq!(select_diverse(&only_a, 8).len(), 8);
        assert_eq!(select_diverse(&c, 1).len(), 1);
        assert_eq!(select_diverse(&c, 1)[0].score, 0.9);
    }
}
