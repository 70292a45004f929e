//! The neighbours' fit refuses what its held-out data cannot support: too few
//! examples for a confidence map or a shortcut threshold, or a map that makes the
//! cross-fitted ECE worse than the raw probability's.

use super::neighbours::{fit, HeldOutPoint, LabelSet, Settings, MIN_CALIBRATION_POINTS};

/// `n` held-out points over 3 labels: the nearest neighbour carries the gold label for
/// `right` of every 10 points (deterministic), else another label.
fn points(n: usize, right: usize) -> Vec<HeldOutPoint> {
    (0..n)
        .map(|i| {
            let gold = i % 3;
            let first = if i % 10 < right { gold } else { (gold + 1) % 3 };
            let sim = 0.5 + 0.4 * ((i * 7) % 11) as f32 / 11.0;
            HeldOutPoint { gold, neighbours: vec![(first, sim), ((first + 1) % 3, sim - 0.05), (first, sim - 0.1)], head: None }
        })
        .collect()
}

fn labels() -> LabelSet {
    LabelSet { names: vec!["a".into(), "b".into(), "c".into()], out_of_scope: vec![false; 3] }
}

#[test]
fn sixty_examples_keep_raw_confidences_and_no_shortcut() {
    let settings = Settings { shortcut_target: 0.5, ..Settings::default() };
    let m = fit(&points(60, 8), labels(), None, None, None, &settings, 60, 1);
    assert!(m.bands.is_empty(), "no confidence map on 60 held-out examples");
    assert_eq!(m.shortcut_confidence, None, "no knn-shortcut on 60 held-out examples");
    assert_eq!(m.stats.refused.len(), 2, "{:?}", m.stats.refused);
    assert!(m.stats.refused[0].contains(&format!("60 held-out examples, at least {MIN_CALIBRATION_POINTS} needed")));
    assert!(m.stats.refused[1].starts_with("knn-shortcut"));
    // The raw probability is the confidence.
    let j = m.judge(&[("a".into(), 0.7), ("b".into(), 0.3)], &[("a", 0.8), ("b", 0.7)], None);
    assert!((j.confidence - j.probability).abs() < 1e-6, "{j:?}");
}

#[test]
fn enough_examples_get_a_map_unless_it_is_worse() {
    let settings = Settings { shortcut_target: 0.5, ..Settings::default() };
    let m = fit(&points(600, 8), labels(), None, None, None, &settings, 600, 1);
    if m.stats.calibrated_ece > m.stats.raw_ece {
        assert!(m.bands.is_empty() && m.stats.refused.iter().any(|r| r.contains("is worse than")), "{:?}", m.stats);
    } else {
        assert!(!m.bands.is_empty(), "{:?}", m.stats);
        assert!(m.stats.refused.is_empty(), "{:?}", m.stats.refused);
    }
}
