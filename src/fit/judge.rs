//! The fitted neighbours' side at classification time: one ticket's vote, nearest
//! examples and head probabilities turned into a [`Judgement`].

use std::collections::HashMap;

use super::isotonic::apply_bands;
use super::judgement::{Judgement, OutOfScope};
use super::mixture::{argmax, correct_prior, mix};
use super::neighbours::{NeighbourModel, OosRule};
use super::out_of_scope::signals;
use crate::taxonomy::label_key;

impl NeighbourModel {
    /// The neighbours' answer for a ticket: its vote (`(label, share)` of the k nearest
    /// examples, at the fitted temperature and cap), `(label, similarity)` of those k
    /// nearest (most similar first), the head's probabilities (`None` when there is no
    /// head or it could not run) and the ticket's vector (for the noise check).
    pub fn judge(
        &self,
        shares: &[(String, f32)],
        nearest: &[(&str, f32)],
        head: Option<&[f32]>,
        vector: Option<&[f32]>,
    ) -> Judgement {
        let top_similarity = nearest.first().map_or(-1.0, |n| n.1);
        // Labels the vote has but the model does not know (examples added since the
        // fit) are appended: the vote speaks for them, the head cannot.
        let mut names: Vec<String> = self.labels.names.clone();
        let mut oos: Vec<bool> = self.labels.out_of_scope.clone();
        let mut index: HashMap<String, usize> = names.iter().enumerate().map(|(i, n)| (label_key(n), i)).collect();
        let mut vote = Vec::with_capacity(shares.len());
        for (label, s) in shares {
            let key = label_key(label);
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    names.push(label.clone());
                    oos.push(false);
                    index.insert(key, names.len() - 1);
                    names.len() - 1
                }
            };
            vote.push((i, *s));
        }
        let head = head.filter(|h| h.len() == self.labels.len());
        let mut m = mix(&vote, head, self.head_weight, names.len());
        correct_prior(&mut m, &self.prior, self.prior_alpha);
        let label = argmax(&m, |i| !oos[i]);
        let top = argmax(&m, |_| true);
        let probability = label.map_or(0.0, |i| m[i]);
        let confidence = if label.is_some() { apply_bands(&self.bands, probability, top_similarity) } else { 0.0 };
        let oos_probability: f32 = m.iter().zip(&oos).filter(|(_, o)| **o).map(|(p, _)| *p).sum();
        let out_of_scope = match (top, &self.oos) {
            (Some(t), _) if oos[t] => Some(OutOfScope::Favoured { label: names[t].clone(), probability: m[t] }),
            (_, OosRule::Similarity { min_similarity, .. }) if top_similarity < *min_similarity => {
                Some(OutOfScope::Dissimilar { similarity: top_similarity, threshold: *min_similarity })
            }
            (_, OosRule::Examples { min_probability }) if probability < *min_probability => {
                Some(OutOfScope::Improbable { probability, threshold: *min_probability })
            }
            (_, OosRule::Fitted { score }) => {
                let near: Vec<(usize, f32)> =
                    nearest.iter().filter_map(|(l, s)| index.get(&label_key(l)).map(|i| (*i, *s))).collect();
                let sig = signals(&m, &oos, head, &near);
                score.flags(&sig).map(|z| OutOfScope::Scored {
                    score: z,
                    threshold: score.threshold.unwrap_or(z),
                    probability,
                    oos_mass: sig.oos,
                })
            }
            _ => None,
        };
        // A similarity rule asked for explicitly (`--oos-quantile`) speaks for a distant
        // ticket itself; otherwise the closeness checks say it has no close example.
        let far = match out_of_scope {
            Some(OutOfScope::Dissimilar { .. }) => None,
            _ => self.closeness.as_ref().and_then(|c| c.judge(top_similarity, vector)),
        };
        let label = label.map(|i| names[i].clone());
        let mut distribution: Vec<(String, f32)> = names.into_iter().zip(m).filter(|(_, p)| *p > 0.0).collect();
        distribution.sort_by(|a, b| b.1.total_cmp(&a.1));
        Judgement { label, probability, confidence, oos_probability, out_of_scope, far, distribution }
    }
}
