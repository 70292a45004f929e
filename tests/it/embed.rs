//! The embedding worker pool with the real model: concurrent callers each get their own
//! vectors back, in order, whichever worker ran them.

use std::sync::Arc;

use ticket_triage::embed::{Embedder, FastEmbedder, ModelSource, DEFAULT_MODEL};

use crate::common::models_dir;

fn load(workers: usize, threads: usize) -> Arc<FastEmbedder> {
    let models = models_dir();
    let source = ModelSource::resolve(DEFAULT_MODEL, &models).unwrap();
    Arc::new(FastEmbedder::load(&source, &models, Some(threads), workers).unwrap())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_jobs_on_two_workers_get_their_own_vectors_in_order() {
    let texts: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("I was charged twice for invoice {i} and need a refund"),
            1 => format!("The export button does nothing on dashboard {i}"),
            2 => format!("How do I add user number {i} to our team plan?"),
            _ => format!("Login fails with error {i} after the password reset, {}", "please help ".repeat(i % 7)),
        })
        .collect();
    // Reference: one worker, each text alone (one text per model call for small jobs).
    let single = load(1, 1);
    let mut alone = Vec::new();
    for t in &texts {
        alone.push(single.embed(vec![t.clone()]).await.unwrap().remove(0));
    }

    let pool = load(2, 1);
    // Bulk jobs (80 texts: sorted, 16 per call) interleaved with one-text jobs, all at
    // once: a worker that takes a bulk job also takes the small jobs queued behind it, so
    // one model run serves several callers.
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
                // A one-text job embedded with others in a bulk run differs slightly
                // (README "Speed": activations are quantised per model call).
                assert!(c > 0.97, "text {i}: cosine {c} with its own vector: it got another caller's vector");
                for (j, other) in alone.iter().enumerate().filter(|(j, _)| *j != i) {
                    assert!(c > cosine(&v[0], other), "text {i}: closer to text {j} than to itself");
                }
            }
            None => {
                assert_eq!(v.len(), 80);
                for (i, v) in v.iter().enumerate() {
                    let own = cosine(v, &alone[i % 40]);
                    // Bulk jobs run 16 texts per call, and the default model quantises
                    // activations per call, so the vectors differ slightly from one-text
                    // calls (README "Speed"), but each must be closest to its own text.
                    assert!(own > 0.97, "bulk text {i}: cosine {own} with its own vector");
                    for (j, other) in alone.iter().enumerate().filter(|(j, _)| *j != i % 40) {
                        assert!(own > cosine(v, other), "bulk text {i}: closer to text {j} than to itself");
                    }
                }
            }
        }
    }
}
