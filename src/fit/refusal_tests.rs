//! The neighbours' fit refuses what its held-out data cannot support (too few examples
//! for a shortcut threshold, a map that makes the cross-fitted ECE worse than the raw
//! probability's on enough examples to tell) and shrinks what it can only estimate
//! roughly (a confidence map on a few dozen examples).

use super::neighbours::{fit, FitInput, HeldOutPoint, LabelSet, Settings, MIN_CALIBRATION_POINTS};

/// `n` held-out points over 3 labels: the nearest neighbour carries the gold label for
/// `right` of every 10 points (deterministic), else another label.
fn points(n: usize, right: usize) -> Vec<HeldOutPoint> {
    (0..n)
        .map(|i| {
            let gold = i % 3;
            let first = if i % 10 < right { gold } else { (gold + 1) % 3 };
            let sim = 0.5 + 0.4 * ((i * 7) % 11) as f32 / 11.0;
            HeldOutPoint::new(gold, vec![(first, sim), ((first + 1) % 3, sim - 0.05), (first, sim - 0.1)], None)
        })
        .collect()
}

fn labels() -> LabelSet {
    LabelSet { names: vec!["a".into(), "b".into(), "c".into()], out_of_scope: vec![false; 3] }
}

#[test]
fn sixty_examples_get_a_shrunk_map_and_no_shortcut() {
    let settings = Settings { shortcut_target: 0.5, ..Settings::default() };
    let points = points(60, 8);
    let m = fit(FitInput::new(&points, labels(), 60, 1), &settings);
    assert_eq!(m.bands.len(), 1, "one map on 60 held-out examples");
    assert!(m.calibration.contains("shrunk"), "{}", m.calibration);
    assert_eq!(m.shortcut_confidence, None, "no knn-shortcut on 60 held-out examples");
    assert_eq!(m.stats.refused.len(), 1, "{:?}", m.stats.refused);
    assert!(m.stats.refused[0].starts_with("knn-shortcut"));
    assert!(m.stats.refused[0].contains(&format!("at least {MIN_CALIBRATION_POINTS} needed")));
    // A unanimous vote on a collection whose neighbours are right 80 % of the time is not
    // reported as certain: the map says what the held-out examples support.
    let j = m.judge(&[("a".into(), 1.0)], &[("a", 0.8), ("a", 0.7)], None, None);
    assert!(j.probability > 0.99 && j.confidence < 0.95, "{j:?}");
    assert!(j.confidence > 0.6, "{j:?}");
}

#[test]
fn enough_examples_get_a_map_unless_it_is_worse() {
    let settings = Settings { shortcut_target: 0.5, ..Settings::default() };
    let points = points(600, 8);
    let m = fit(FitInput::new(&points, labels(), 600, 1), &settings);
    if m.stats.calibrated_ece > m.stats.raw_ece {
        assert!(m.bands.is_empty() && m.stats.refused.iter().any(|r| r.contains("is worse than")), "{:?}", m.stats);
    } else {
        assert!(!m.bands.is_empty(), "{:?}", m.stats);
        assert!(m.stats.refused.is_empty(), "{:?}", m.stats.refused);
    }
}
