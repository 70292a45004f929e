//! Tests of the logistic head: agreement with scikit-learn (reference cases), gradients
//! against finite differences, serialisation, bad input, warm starts, determinism.

use super::*;

fn tight() -> HeadOptions {
    HeadOptions { tol: 1e-8, max_iter: 10_000, ..HeadOptions::default() }
}

/// Deterministic pseudo-random data: `n` rows, `k` overlapping classes.
fn synthetic(n: usize, dim: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32 - 0.5
    };
    let centroids: Vec<f32> = (0..k * dim).map(|_| next()).collect();
    let y: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    let x = y.iter().flat_map(|&l| (0..dim).map(|j| centroids[l as usize * dim + j]).collect::<Vec<_>>());
    let x = x.map(|v| v + next()).collect();
    (x, y)
}

/// Against scikit-learn 1.9.1 fits of the same data. The literals in
/// `logistic_reference.rs` come from `gen_reference.py` (crate root); regenerate with
/// `/tmp/skl/bin/python gen_reference.py > src/logistic_reference.rs`.
#[test]
fn matches_scikit_learn() {
    use reference::{CASES, DIM, N, X};
    for case in &CASES {
        let opts = HeadOptions { c: case.c, ..tight() };
        let (head, report) = LogisticHead::fit(&X, DIM, case.y, case.labels, &opts, None).unwrap();
        assert!(report.converged, "{}: {report:?}", case.name);
        let proba = head.predict_proba_batch(&X).unwrap();
        assert_eq!(proba.len(), N * case.labels);
        for (i, (p, q)) in proba.iter().zip(case.proba).enumerate() {
            assert!((f64::from(*p) - q).abs() < 1e-4, "{} proba[{i}]: {p} vs {q}", case.name);
        }
        let present: Vec<usize> = (0..case.labels).filter(|l| case.y.contains(&(*l as u32))).collect();
        let w = head.weights();
        let bias_mean =
            present.iter().map(|&l| f64::from(w[l * (DIM + 1) + DIM])).sum::<f64>() / present.len() as f64;
        for l in 0..case.labels {
            for j in 0..DIM {
                let (ours, theirs) = (f64::from(w[l * (DIM + 1) + j]), case.coef[l * DIM + j]);
                assert!((ours - theirs).abs() < 1e-3, "{} coef[{l}][{j}]: {ours} vs {theirs}", case.name);
            }
            if present.contains(&l) {
                let ours = f64::from(w[l * (DIM + 1) + DIM]) - bias_mean;
                assert!(
                    (ours - case.intercept[l]).abs() < 1e-3,
                    "{} intercept[{l}]: {ours} vs {}",
                    case.name,
                    case.intercept[l]
                );
            } else {
                assert!(
                    proba.iter().skip(l).step_by(case.labels).all(|&p| p < 1e-4),
                    "{}: unused label",
                    case.name
                );
            }
        }
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let (x, y) = synthetic(7, 3, 4, 11);
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let p = Problem { x: x64, y: &y, dim: 3, k: 4, lambda: 1.0 / (2.0 * 7.0) };
    let mut chunks = p.chunks();
    let w: Vec<f64> = (0..16).map(|i| ((i * 7919) % 13) as f64 / 10.0 - 0.6).collect();
    let mut g = vec![0.0; 16];
    let f = p.evaluate(&mut chunks, &w, &mut g);
    // Direct formula for one value of the objective, independent of the gemm path.
    let mut direct = 0.0;
    for (row, &label) in x.chunks(3).zip(&y) {
        let z: Vec<f64> =
            (0..4).map(|l| (0..3).map(|j| w[l * 4 + j] * f64::from(row[j])).sum::<f64>() + w[l * 4 + 3]).collect();
        direct += z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[label as usize];
    }
    let pen: f64 = (0..4).flat_map(|l| (0..3).map(move |j| l * 4 + j)).map(|i| w[i] * w[i]).sum();
    assert!((f - (direct / 7.0 + 0.5 * pen / 14.0)).abs() < 1e-12, "objective {f}");
    let mut scratch = vec![0.0; 16];
    for i in 0..16 {
        let h = 1e-6;
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[i] += h;
        wm[i] -= h;
        let fd =
            (p.evaluate(&mut chunks, &wp, &mut scratch) - p.evaluate(&mut chunks, &wm, &mut scratch)) / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-7, "grad[{i}]: analytic {} vs finite difference {fd}", g[i]);
    }
}

#[test]
fn serde_round_trip_and_bad_payloads() {
    let (x, y) = synthetic(60, 5, 3, 3);
    let (head, _) = LogisticHead::fit(&x, 5, &y, 3, &HeadOptions::default(), None).unwrap();
    let json = serde_json::to_string(&head).unwrap();
    assert!(json.contains("\"weights\":\"") && json.len() < 200, "{json}");
    let back: LogisticHead = serde_json::from_str(&json).unwrap();
    assert_eq!(back, head);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let with = |key: &str, val: serde_json::Value| {
        let mut v = v.clone();
        v[key] = val;
        serde_json::from_value::<LogisticHead>(v)
    };
    assert!(with("labels", 4.into()).is_err(), "length must match labels * (dim + 1)");
    assert!(with("dim", 4.into()).is_err());
    assert!(with("labels", 1.into()).is_err());
    assert!(with("weights", "not base64!".into()).is_err());
    let nan = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, f32::NAN.to_le_bytes().repeat(18));
    assert!(with("weights", nan.into()).is_err());
}

#[test]
fn bad_input_is_an_error() {
    let (x, y) = synthetic(20, 4, 3, 5);
    let o = HeadOptions::default();
    let fit = |x: &[f32], dim, y: &[u32], labels, o: &HeadOptions| LogisticHead::fit(x, dim, y, labels, o, None);
    assert!(matches!(fit(&[], 4, &[], 3, &o), Err(HeadError::Empty)));
    assert!(matches!(fit(&x[..79], 4, &y, 3, &o), Err(HeadError::DimMismatch(_))));
    assert!(matches!(fit(&x, 4, &y[..19], 3, &o), Err(HeadError::DimMismatch(_))));
    assert!(matches!(fit(&x, 0, &y, 3, &o), Err(HeadError::DimMismatch(_))));
    assert!(matches!(fit(&x, 4, &y, 2, &o), Err(HeadError::LabelOutOfRange { row: 2, label: 2, labels: 2 })));
    assert!(matches!(fit(&x, 4, &[0; 20], 1, &o), Err(HeadError::TooFewLabels(1))));
    let mut bad = x.clone();
    bad[7] = f32::NAN;
    assert!(matches!(fit(&bad, 4, &y, 3, &o), Err(HeadError::NonFinite(_))));
    bad[7] = f32::INFINITY;
    assert!(matches!(fit(&bad, 4, &y, 3, &o), Err(HeadError::NonFinite(_))));
    for c in [0.0, -1.0, f32::NAN] {
        assert!(matches!(fit(&x, 4, &y, 3, &HeadOptions { c, ..o.clone() }), Err(HeadError::InvalidOption(_))));
    }
    let (head, _) = fit(&x, 4, &y, 3, &o).unwrap();
    let other = LogisticHead::fit(&x, 4, &y, 4, &o, None).unwrap().0;
    assert!(matches!(LogisticHead::fit(&x, 4, &y, 3, &o, Some(&other)), Err(HeadError::DimMismatch(_))));
    assert!(matches!(head.predict_proba(&x[..3]), Err(HeadError::DimMismatch(_))));
    assert!(matches!(head.predict_proba(&[0.0, f32::NAN, 0.0, 0.0]), Err(HeadError::NonFinite(_))));
    assert!(matches!(head.predict_proba_batch(&x[..7]), Err(HeadError::DimMismatch(_))));
    assert_eq!(head.predict_proba_batch(&[]).unwrap(), Vec::<f32>::new());
    assert!(matches!(head.predict_proba(&[f32::MAX, -f32::MAX, 3.0, 0.0]), Err(HeadError::NonFinite(_))));
    let p = head.predict_proba(&[1e30, -1e30, 3.0, 0.0]).unwrap();
    assert!(p.iter().all(|v| v.is_finite()) && (p.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{p:?}");
}

#[test]
fn warm_start_reaches_the_same_optimum() {
    let (x, y) = synthetic(300, 8, 5, 9);
    let opts = HeadOptions { tol: 1e-7, ..HeadOptions::default() };
    let (cold, _) = LogisticHead::fit(&x, 8, &y, 5, &opts, None).unwrap();
    // Warm starts from a fit on another fold and from a fit with another C.
    let (fold, _) = LogisticHead::fit(&x[..8 * 150], 8, &y[..150], 5, &opts, None).unwrap();
    let (other_c, _) = LogisticHead::fit(&x, 8, &y, 5, &HeadOptions { c: 0.1, ..opts.clone() }, None).unwrap();
    let p_cold = cold.predict_proba_batch(&x).unwrap();
    for init in [&fold, &other_c] {
        let (warm, report) = LogisticHead::fit(&x, 8, &y, 5, &opts, Some(init)).unwrap();
        assert!(report.converged);
        let p_warm = warm.predict_proba_batch(&x).unwrap();
        let worst = p_cold.iter().zip(&p_warm).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "warm start differs by {worst}");
        assert_ne!(p_cold, fold.predict_proba_batch(&x).unwrap());
    }
}

#[test]
fn deterministic_across_runs_and_threads() {
    let (x, y) = synthetic(1000, 16, 6, 21);
    let fit = |threads| {
        LogisticHead::fit(&x, 16, &y, 6, &HeadOptions { threads, ..HeadOptions::default() }, None).unwrap()
    };
    let (a, ra) = fit(2);
    let (b, rb) = fit(2);
    let (c, rc) = fit(1);
    assert!(ra.converged && ra.iterations > 5);
    // The f64 loss and gradient show differences that f32 weights would round away.
    for r in [&rb, &rc] {
        assert_eq!(
            (ra.iterations, ra.loss.to_bits(), ra.gradient.to_bits()),
            (r.iterations, r.loss.to_bits(), r.gradient.to_bits())
        );
    }
    let bits = |h: &LogisticHead| h.weights().iter().map(|w| w.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(bits(&a), bits(&c));
}

#[test]
fn single_row_and_batch_agree_and_sum_to_one() {
    let (x, y) = synthetic(200, 6, 4, 8);
    let (head, _) = LogisticHead::fit(&x, 6, &y, 4, &HeadOptions::default(), None).unwrap();
    let batch = head.predict_proba_batch(&x).unwrap();
    for (row, expect) in x.chunks(6).zip(batch.chunks(4)) {
        let p = head.predict_proba(row).unwrap();
        assert_eq!(p, expect);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    let correct = batch.chunks(4).zip(&y).filter(|(p, &l)| p.iter().all(|&q| q <= p[l as usize])).count();
    assert!(correct > 120, "train accuracy {correct}/200");
}
