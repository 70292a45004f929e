//! [`super::diagnose`] end to end on a small synthetic collection.

use super::*;
use crate::example::Example;

/// Three labels in three directions of a 3-d space (plus an out-of-scope one), 12
/// examples each; example `B-0` sits among label A, `A-1`'s text repeats `C-1`'s.
fn fixture() -> (Vec<Example>, Vec<f32>, LabelSet, Vec<u32>) {
    let labels = LabelSet { names: vec!["A".into(), "B".into(), "C".into(), "Spam".into()], out_of_scope: vec![false, false, false, true] };
    let mut examples = Vec::new();
    let mut vectors = Vec::new();
    let mut y = Vec::new();
    for (l, name) in ["A", "B", "C", "Spam"].iter().enumerate() {
        for i in 0..12 {
            let mut v = [0.05 * (i % 4) as f32, 0.05 * (i % 3) as f32, 0.05 * (i % 5) as f32, 0.0];
            v[l] += 1.0;
            let (text, vec) = match (l, i) {
                // Label B's first example is an A ticket.
                (1, 0) => ("the A thing again".to_string(), [1.0, 0.02, 0.01, 0.0]),
                (0, 1) => ("exactly the same words".to_string(), [0.0, 0.0, 1.0, 0.0]),
                (2, 1) => ("Exactly the same  words".to_string(), [0.0, 0.0, 1.0, 0.0]),
                (2, 2) => ("asdf".to_string(), v),
                _ => (format!("{name} ticket number {i}"), v),
            };
            examples.push(Example::new(format!("{name}-{i}"), text, *name));
            vectors.extend(vec);
            y.push(l as u32);
        }
    }
    (examples, vectors, labels, y)
}

/// A head that saw neither example: it sees the vector's direction.
fn head(vectors: &[f32]) -> Vec<Vec<f32>> {
    vectors
        .chunks_exact(4)
        .map(|v| {
            let e: Vec<f32> = v.iter().map(|x| (4.0 * x).exp()).collect();
            let t: f32 = e.iter().sum();
            e.into_iter().map(|x| x / t).collect()
        })
        .collect()
}

#[test]
fn the_diagnosis_names_each_planted_fault() {
    let (examples, vectors, labels, y) = fixture();
    let h = head(&vectors);
    let c = Collection {
        name: "t",
        examples: &examples,
        vectors: &vectors,
        dim: 4,
        labels: &labels,
        y: &y,
        head: Some(&h),
        head_note: None,
        taxonomy_labels: vec!["A".into(), "B".into(), "C".into(), "D".into(), "Spam".into()],
    };
    let d = diagnose(&c, None, &Settings { min_label_examples: 13, top: Some(2), ..Settings::default() });
    // The two planted examples lead, each with the label it sits among.
    let mut top: Vec<(&str, &str)> = d.mislabeled.iter().take(2).map(|m| (m.id.as_str(), m.suggested.as_str())).collect();
    top.sort();
    assert_eq!(top, vec![("A-1", "C"), ("B-0", "A")], "{:?}", d.mislabeled);
    assert_eq!(d.mislabeled[0].evidence.nearest.len(), 5);
    assert_eq!(d.method.ranked, 48);
    assert_eq!(d.conflicting_duplicates.len(), 1);
    let pair = &d.conflicting_duplicates[0];
    assert!(pair.same_text && pair.examples[0].id == "A-1" && pair.examples[1].id == "C-1", "{pair:?}");
    assert_eq!(d.junk.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["C-2"]);
    assert!(d.uncovered_language.is_empty(), "no coverage known: nothing said");
    // Every label has 12 < 13 examples.
    assert_eq!(d.small_labels.len(), 4);
    assert!(d.small_labels.iter().all(|s| s.examples == 12));
    // Confusions: the planted B-0 is predicted A, never the out-of-scope label.
    assert!(d.confused_pairs.iter().any(|p| p.gold == "B" && p.predicted == "A"));
    assert!(d.confused_pairs.iter().all(|p| p.predicted != "Spam"));
    assert!(d.method.held_out_accuracy > 0.9 && d.method.held_out_accuracy < 1.0);
    // Without `top`, confident learning's estimate says how many are listed.
    let d = diagnose(&c, None, &Settings::default());
    assert!(d.method.mislabeled_estimate >= 1 && d.mislabeled.len() == d.method.mislabeled_estimate, "{:?}", d.method);
    // `top` lists that many, whatever the estimate.
    let d = diagnose(&c, None, &Settings { top: Some(7), ..Settings::default() });
    assert_eq!(d.mislabeled.len(), 7);
    assert_eq!(d.mislabeled.iter().map(|m| m.rank).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    // Without a head the neighbours alone still find B-0.
    let d = diagnose(&Collection { head: None, ..c }, None, &Settings { top: Some(2), ..Settings::default() });
    assert!(d.mislabeled.iter().any(|m| m.id == "B-0"), "{:?}", d.mislabeled);
    assert!(!d.method.head);
}
