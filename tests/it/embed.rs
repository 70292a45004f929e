//! The embedding worker pool with the real model: concurrent callers each get their own
//! vectors back, in order, whichever worker ran them.

use std::sync::Arc;

use ticket_triage::embed::{Embedder, FastEmbedder, ModelSource, DEFAULT_MODEL};

use crate::common::models_dir;

fn load(model: &str, workers: usize, threads: usize) -> Arc<FastEmbedder> {
    let models = models_dir();
    let source = ModelSource::resolve(model, &models).unwrap();
    Arc::new(FastEmbedder::load(&source, &models, Some(threads), workers).unwrap())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_jobs_on_two_workers_get_their_own_vectors_in_order() {
    check_pool(DEFAULT_MODEL).await;
}

/// The int8-activation model embeds one text per call (its triage-model.json), so a
/// text's vector is the same in a bulk job as alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_qint8_model_gives_a_text_the_same_vector_in_bulk_and_alone() {
    let dir = models_dir().join("all-minilm-l6-v2-qint8");
    assert!(dir.join("triage-model.json").is_file(), "run ./scripts/setup.sh: {} is incomplete", dir.display());
    check_pool("all-minilm-l6-v2-qint8").await;
}

async fn check_pool(model: &str) {
    let texts: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("I was charged twice for invoice {i} and need a refund"),
            1 => format!("The export button does nothing on dashboard {i}"),
            2 => format!("How do I add user number {i} to our team plan?"),
            _ => format!("Login fails with error {i} after the password reset, {}", "please help ".repeat(i % 7)),
        })
        .collect();
    // Reference: one worker, each text alone (one text per model call for small jobs).
    let single = load(model, 1, 1);
    let mut alone = Vec::new();
    for t in &texts {
        alone.push(single.embed(vec![t.clone()]).await.unwrap().remove(0));
    }

    let pool = load(model, 2, 1);
    // Bulk calls (80 texts: cut into jobs of 32, ordered by length) interleaved with
    // one-text calls, all at once: both workers take jobs of several callers in turn, and
    // each caller must get its own vectors back, in its order.
    let bulk_texts: Vec<String> = texts.iter().chain(texts.iter()).cloned().collect();
    let mut calls = Vec::new();
    for round in 0..3 {
        let (pool_b, bt) = (pool.clone(), bulk_texts.clone());
        calls.push((None, tokio::spawn(async move { pool_b.embed(bt).await.unwrap() })));
        for i in (round..40).step_by(3) {
            let (pool_s, t) = (pool.clone(), texts[i].clone());
            calls.push((Some(i), tokio::spawn(async move { pool_s.embed(vec![t]).await.unwrap() })));
        }
    }
    for (which, call) in calls {
        let v = call.await.unwrap();
        match which {
            Some(i) => {
                assert_eq!(v.len(), 1);
                let c = cosine(&v[0], &alone[i]);
                assert!(c > 0.9999, "text {i}: cosine {c} with its own vector: it got another caller's vector");
                for (j, other) in alone.iter().enumerate().filter(|(j, _)| *j != i) {
                    assert!(c > cosine(&v[0], other), "text {i}: closer to text {j} than to itself");
                }
            }
            None => {
                assert_eq!(v.len(), 80);
                for (i, v) in v.iter().enumerate() {
                    let own = cosine(v, &alone[i % 40]);
                    // fp32 arithmetic: a text's vector does not depend on its batch-mates
                    // beyond rounding; the qint8 model runs one text per call.
                    assert!(own > 0.9999, "bulk text {i}: cosine {own} with its own vector");
                    for (j, other) in alone.iter().enumerate().filter(|(j, _)| *j != i % 40) {
                        assert!(own > cosine(v, other), "bulk text {i}: closer to text {j} than to itself");
                    }
                }
            }
        }
    }
}
