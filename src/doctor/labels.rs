//! Findings about the labels themselves: too few examples to learn, names that differ
//! only by case, spacing or one character, and the pairs the held-out predictions
//! confuse most.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fields::edit_distance;
use crate::taxonomy::label_key;

/// A label with fewer examples than the doctor's minimum.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SmallLabel {
    pub label: String,
    pub examples: usize,
    /// Out-of-scope labels are examples of what is not routed, never an answer.
    pub out_of_scope: bool,
    /// Fewer than a head needs ([`crate::calibrate::MIN_HEAD_EXAMPLES`]): `triage
    /// calibrate` fits no head for the whole collection while this label stays so small.
    pub blocks_head: bool,
    /// Its examples whose held-out prediction was this label.
    pub held_out_right: usize,
    /// `held_out_right / examples`.
    pub held_out_recall: f64,
    /// What the size costs, in words.
    pub cost: String,
}

/// Labels with fewer than `min` examples. `counts[l]` examples per label,
/// `right[l]` of them predicted right held out.
pub fn small_labels(names: &[String], out_of_scope: &[bool], counts: &[usize], right: &[usize], min: usize, head_min: usize) -> Vec<SmallLabel> {
    let mut out: Vec<SmallLabel> = (0..names.len())
        .filter(|&l| counts[l] < min)
        .map(|l| {
            let recall = if counts[l] == 0 { 0.0 } else { right[l] as f64 / counts[l] as f64 };
            let blocks_head = counts[l] < head_min;
            let mut cost = format!("{} of {} held-out examples predicted right", right[l], counts[l]);
            if counts[l] == 0 {
                cost = "no examples: it can never be retrieved or learned; remove it from the taxonomy or add examples".into();
            } else if blocks_head {
                cost.push_str(&format!(
                    "; with fewer than {head_min} examples no fitted head can be used for any label (calibrate fits the vote alone)"
                ));
            }
            SmallLabel {
                label: names[l].clone(),
                examples: counts[l],
                out_of_scope: out_of_scope[l],
                blocks_head,
                held_out_right: right[l],
                held_out_recall: (recall * 1e4).round() / 1e4,
                cost,
            }
        })
        .collect();
    out.sort_by(|a, b| a.examples.cmp(&b.examples).then(a.label.cmp(&b.label)));
    out
}

/// Two (or more) spellings that probably mean one label.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SimilarLabels {
    pub labels: Vec<String>,
    /// Examples carrying each spelling, in the order of `labels`.
    pub examples: Vec<usize>,
    pub reason: String,
}

/// `name` lowercase with everything but letters and digits dropped: "Log-in" -> "login".
fn compact(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Spellings (label name -> examples carrying it exactly) that differ only by case,
/// spacing or punctuation, or by one character (names of 5 or more characters:
/// shorter names such as `P1`/`P2` differ by one character on purpose).
pub fn similar_labels(spellings: &BTreeMap<String, usize>) -> Vec<SimilarLabels> {
    let names: Vec<&String> = spellings.keys().collect();
    let mut out = Vec::new();
    let mut grouped = vec![false; names.len()];
    for i in 0..names.len() {
        if grouped[i] {
            continue;
        }
        let same: Vec<usize> = (i..names.len()).filter(|&j| !grouped[j] && compact(names[j]) == compact(names[i])).collect();
        if same.len() > 1 && !compact(names[i]).is_empty() {
            let keys: std::collections::BTreeSet<String> = same.iter().map(|&j| label_key(names[j])).collect();
            let reason = if keys.len() == 1 {
                "the same label spelled differently (case, spaces, '_' or '-'): the product already treats them as one, the stored examples do not agree on the name"
            } else {
                "differ only by punctuation or spacing inside words: probably one label"
            };
            for &j in &same {
                grouped[j] = true;
            }
            out.push(SimilarLabels {
                labels: same.iter().map(|&j| names[j].clone()).collect(),
                examples: same.iter().map(|&j| spellings[names[j]]).collect(),
                reason: reason.into(),
            });
        }
    }
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            let (a, b) = (compact(names[i]), compact(names[j]));
            if a == b || a.chars().count().min(b.chars().count()) < 5 || edit_distance(&a, &b) != 1 {
                continue;
            }
            out.push(SimilarLabels {
                labels: vec![names[i].clone(), names[j].clone()],
                examples: vec![spellings[names[i]], spellings[names[j]]],
                reason: "differ by one character: a typo, or two labels worth telling apart in taxonomy.toml".into(),
            });
        }
    }
    out
}

/// A pair of labels the held-out predictions mix up.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConfusedPair {
    /// The examples' label.
    pub gold: String,
    /// What the held-out prediction said instead.
    pub predicted: String,
    pub count: usize,
    /// `count` over the examples labeled `gold`.
    pub share_of_gold: f64,
    /// The other way round: `predicted` examples predicted as `gold`.
    pub reverse: usize,
}

/// Off-diagonal `(gold, predicted)` pairs of held-out predictions, most frequent first
/// (ties by name), as eval orders its confusions; at most `top`.
pub fn confused_pairs(names: &[String], y: &[u32], predicted: &[usize], top: usize) -> Vec<ConfusedPair> {
    let mut m: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut support = vec![0usize; names.len()];
    for (&g, &p) in y.iter().zip(predicted) {
        support[g as usize] += 1;
        if g as usize != p {
            *m.entry((g as usize, p)).or_default() += 1;
        }
    }
    let mut pairs: Vec<ConfusedPair> = m
        .iter()
        .map(|(&(g, p), &c)| ConfusedPair {
            gold: names[g].clone(),
            predicted: names[p].clone(),
            count: c,
            share_of_gold: ((c as f64 / support[g].max(1) as f64) * 1e4).round() / 1e4,
            reverse: m.get(&(p, g)).copied().unwrap_or(0),
        })
        .collect();
    pairs.sort_by(|a, b| b.count.cmp(&a.count).then(a.gold.cmp(&b.gold)).then(a.predicted.cmp(&b.predicted)));
    pairs.truncate(top);
    pairs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn small_labels_say_what_they_cost() {
        let names = vec!["Billing".to_string(), "Hardware".into(), "9".into(), "Spam".into()];
        let s = small_labels(&names, &[false, false, false, true], &[40, 3, 0, 8], &[38, 1, 0, 8], 10, 5);
        let got: Vec<(&str, usize, bool)> = s.iter().map(|l| (l.label.as_str(), l.examples, l.blocks_head)).collect();
        assert_eq!(got, vec![("9", 0, true), ("Hardware", 3, true), ("Spam", 8, false)]);
        assert!(s[0].cost.contains("no examples"));
        assert!(s[1].cost.contains("1 of 3") && s[1].cost.contains("no fitted head"), "{}", s[1].cost);
        assert!((s[1].held_out_recall - 0.3333).abs() < 1e-9);
        assert!(s[2].out_of_scope && !s[2].cost.contains("head"));
    }

    #[test]
    fn similar_label_names_are_grouped_and_short_codes_left_alone() {
        let spell: BTreeMap<String, usize> = [
            ("Billing", 40), ("billing", 2), ("Log-in", 5), ("Login", 7), ("Hardware", 9), ("Hardwares", 1),
            ("P1", 3), ("P2", 4), ("Network", 8), ("Networks team", 2),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let s = similar_labels(&spell);
        let groups: Vec<Vec<&str>> = s.iter().map(|g| g.labels.iter().map(String::as_str).collect()).collect();
        assert!(groups.contains(&vec!["Billing", "billing"]), "{groups:?}");
        assert!(groups.contains(&vec!["Log-in", "Login"]));
        assert!(groups.contains(&vec!["Hardware", "Hardwares"]));
        assert_eq!(groups.len(), 3, "P1/P2 are codes, Network/Networks team differ by more: {groups:?}");
        let billing = s.iter().find(|g| g.labels[0] == "Billing").unwrap();
        assert_eq!(billing.examples, vec![40, 2]);
        assert!(billing.reason.contains("spelled differently"));
    }

    #[test]
    fn confused_pairs_are_counted_like_eval_orders_them() {
        let names: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let y = [0, 0, 0, 0, 1, 1, 2, 2];
        let p = [0, 1, 1, 2, 0, 1, 2, 0];
        let c = confused_pairs(&names, &y, &p, 10);
        let got: Vec<(&str, &str, usize, usize)> = c.iter().map(|x| (x.gold.as_str(), x.predicted.as_str(), x.count, x.reverse)).collect();
        assert_eq!(got, vec![("A", "B", 2, 1), ("A", "C", 1, 1), ("B", "A", 1, 2), ("C", "A", 1, 1)]);
        assert_eq!(c[0].share_of_gold, 0.5);
        assert_eq!(confused_pairs(&names, &y, &p, 1).len(), 1);
    }
}
