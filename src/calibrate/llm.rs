//! The arbiter's evidence (`triage calibrate --llm`): a seeded sample of the
//! collection's own examples is classified by the LLM exactly as new tickets are
//! (same retrieval, prompts and guardrails), each example left out of its own
//! retrieval and scored by a head fitted without the sample. Their answers, the
//! neighbours' answers and the gold labels fit [`crate::fit::Arbiter`].

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{fit_head, load_points, stored_fit, store_fit, CalibrateError, Progress};
use crate::classifier::{Classifier, ClassifyOptions, Ticket};
use crate::embed::Embedder;
use crate::example::ExamplePoint;
use crate::fit::arbiter::{Arbiter, ArbiterPoint, LlmPoint};
use crate::fit::Fitted;
use crate::llm::LlmClient;
use crate::result::{ReviewKind, TicketResult};
use crate::store::{now_secs, ExampleStore};
use crate::taxonomy::label_key;

/// How many held-out examples the LLM answers, and how.
#[derive(Debug, Clone)]
pub struct LlmFitSettings {
    pub sample: usize,
    pub seed: u64,
    pub concurrency: usize,
    /// k, prompts and two-stage settings as classification will use them.
    pub options: ClassifyOptions,
}

/// What a finished fit reports besides the arbiter.
#[derive(Debug, Clone)]
pub struct LlmFitReport {
    pub arbiter: Arbiter,
    /// LLM requests the sample made (cache hits included).
    pub requests: u64,
}

/// The `n` examples whose seeded hash of the id ranks first.
pub fn sample_points(points: &[ExamplePoint], n: usize, seed: u64) -> Vec<usize> {
    let mut ranked: Vec<(u64, usize)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = Sha256::digest(format!("arbiter\u{0}{seed}\u{0}{}", p.example.id).as_bytes());
            (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]), i)
        })
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().take(n).map(|(_, i)| i).collect()
}

/// One held-out answer as arbiter evidence; `None` when the neighbours had no label.
fn point(r: &TicketResult, gold: &str) -> Option<ArbiterPoint> {
    let n = r.neighbours.as_ref()?;
    let v = n.category.as_deref()?;
    let gold = label_key(gold);
    let llm = r.llm_answer.as_ref().and_then(|a| {
        let label = a.category.as_deref()?;
        let self_report = a.confidence.unwrap_or(0.5);
        Some(LlmPoint {
            agrees: label_key(label) == label_key(v),
            correct: label_key(label) == gold,
            support: a.support.unwrap_or(0.0),
            signal: r.llm_label_probability.map_or(self_report, |p| p.min(self_report)),
        })
    });
    Some(ArbiterPoint { vote_confidence: n.confidence, vote_correct: label_key(v) == gold, llm })
}

/// Classify a held-out sample with `llm` and fit the arbiter for its model; store it
/// with the collection unless the fit is refused or the LLM fails (the old fit stays).
pub async fn fit_arbiter(
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    collection: &str,
    llm: Arc<dyn LlmClient>,
    settings: &LlmFitSettings,
    progress: Progress<'_>,
) -> Result<LlmFitReport, CalibrateError> {
    let meta = store.require_meta(collection).await?;
    let fitted = stored_fit(&meta).ok_or_else(|| {
        CalibrateError::Fit(format!("collection {collection:?} has no fitted neighbours' side: run triage calibrate first"))
    })?;
    let k = fitted.neighbours.k;
    if settings.options.k != k {
        return Err(CalibrateError::Settings(format!(
            "the collection is calibrated at k={k}; fit the arbiter at the same k (or run triage calibrate --k {})",
            settings.options.k
        )));
    }
    let points = load_points(store.as_ref(), collection).await?;
    let chosen = sample_points(&points, settings.sample, settings.seed);
    let in_sample: std::collections::HashSet<usize> = chosen.iter().copied().collect();

    // The neighbours' side as new tickets would see it: a head that has not seen the sample.
    let mut held_out = fitted.clone();
    if let (Some(head), Some(info)) = (&fitted.neighbours.head, &fitted.neighbours.head_info) {
        progress("head without the sample", 0, 1);
        let dim = meta.dim;
        let x: Vec<f32> = points.iter().flat_map(|p| p.vector.iter().copied()).collect();
        let y: Vec<u32> =
            points.iter().map(|p| fitted.neighbours.labels.index(&p.example.label).unwrap_or(0) as u32).collect();
        let h = fit_head(&x, dim, &y, head.labels(), |i| !in_sample.contains(&i), info.c, Some(head))
            .map_err(CalibrateError::Fit)?;
        held_out.neighbours.head = Some(h);
        progress("head without the sample", 1, 1);
    }
    let options = ClassifyOptions { holdout: true, arbiter: false, shortcut: false, ..settings.options.clone() };
    let classifier = Classifier::open(embedder, store.clone(), Some(llm.clone()), collection, options)
        .await?
        .with_fitted(Some(held_out));

    let mut answers: Vec<ArbiterPoint> = Vec::with_capacity(chosen.len());
    let mut requests = 0u64;
    for (n, batch) in chosen.chunks(32).enumerate() {
        let tickets: Vec<Ticket> = batch
            .iter()
            .map(|&i| Ticket { id: points[i].example.id.clone(), text: Ok(points[i].example.text.clone()) })
            .collect();
        let results = classifier.classify_batch(tickets, settings.concurrency).await;
        requests += results.iter().map(|r| u64::from(r.llm_calls)).sum::<u64>();
        if let Some(failed) = results.iter().find(|r| matches!(r.review_kind(), Some(ReviewKind::Llm(_)))) {
            return Err(CalibrateError::LlmOutage {
                message: failed.review_reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                sent: requests,
                answered: answers.len(),
            });
        }
        answers.extend(batch.iter().zip(&results).filter_map(|(&i, r)| point(r, &points[i].example.label)));
        progress("LLM answers", (n * 32 + batch.len()).min(chosen.len()), chosen.len());
    }
    let arbiter = Arbiter::fit(llm.model(), k, &answers, now_secs()).map_err(|e| CalibrateError::Fit(e.to_string()))?;
    // Store into the newest meta (examples may have been added meanwhile).
    let mut meta = store.require_meta(collection).await?;
    let mut current: Fitted = stored_fit(&meta).unwrap_or(fitted);
    current.put_arbiter(arbiter.clone());
    store_fit(store.as_ref(), &mut meta, current).await?;
    Ok(LlmFitReport { arbiter, requests })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::example::Example;

    #[test]
    fn the_sample_is_seeded_and_spread() {
        let points: Vec<ExamplePoint> = (0..1000)
            .map(|i| ExamplePoint { example: Example::new(format!("e{i}"), "t", "L"), vector: vec![] })
            .collect();
        let a = sample_points(&points, 100, 1);
        assert_eq!(a, sample_points(&points, 100, 1));
        assert_ne!(a, sample_points(&points, 100, 2));
        assert_eq!(a.len(), 100);
        assert!(a.iter().any(|&i| i > 500), "not just the first examples");
        assert_eq!(sample_points(&points, 5000, 1).len(), 1000);
    }
}
