//! `triage bench-latency` and `triage bench-search` (hidden): single-ticket
//! classification latency and vector search latency measured in-process, so process
//! start and model load are paid once and not per ticket. Used by `scripts/bench.sh`
//! and `scripts/bench-store.sh`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::classifier::{Classifier, Ticket};
use crate::embed::Embedder;
use crate::store::ExampleStore;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (milliseconds).
    pub fn of(samples: &[f64]) -> Self {
        let rank = |p: f64| crate::stats::percentile(samples, p).unwrap_or(0.0);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        Percentiles {
            p50_ms: round(rank(50.0)),
            p90_ms: round(rank(90.0)),
            p99_ms: round(rank(99.0)),
            mean_ms: round(if samples.is_empty() { 0.0 } else { samples.iter().sum::<f64>() / samples.len() as f64 }),
            max_ms: round(rank(100.0)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub tickets: usize,
    pub warmup: usize,
    /// Seconds from the start of the command to a loaded model and open collection.
    pub load_seconds: f64,
    /// The first ticket after loading (cold caches), in ms.
    pub first_ticket_ms: f64,
    /// `Classifier::classify` on one ticket at a time: embed, retrieve, vote (no LLM).
    pub classify: Percentiles,
    /// The embedding step alone, one ticket per call.
    pub embed: Percentiles,
    /// The retrieval step alone (k * 3 candidates with payloads), one query per call.
    pub search: Percentiles,
    /// Language detection alone ([`crate::lang::assess`] with the model's coverage).
    pub lang: Percentiles,
    /// With a fitted model at this k: the head's probabilities and `judge` (mixture,
    /// calibration, out-of-scope score) alone.
    pub fit: Option<Percentiles>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Classify `texts` one at a time after `warmup` untimed tickets; then time the
/// embedding and retrieval steps alone on the same tickets.
pub async fn latency(
    classifier: &Classifier,
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    texts: &[String],
    warmup: usize,
    load_seconds: f64,
) -> anyhow::Result<LatencyReport> {
    anyhow::ensure!(!texts.is_empty(), "no tickets to time");
    let ticket = |i: usize| Ticket { id: i.to_string(), text: Ok(texts[i % texts.len()].clone()) };

    let t = Instant::now();
    let first = classifier.classify(&ticket(0)).await;
    let first_ticket_ms = ms(t);
    anyhow::ensure!(first.error.is_none(), "classification failed: {:?}", first.error);
    for i in 0..warmup {
        classifier.classify(&ticket(i)).await;
    }

    let mut classify = Vec::with_capacity(texts.len());
    for i in 0..texts.len() {
        let tk = ticket(i);
        let t = Instant::now();
        let r = classifier.classify(&tk).await;
        classify.push(ms(t));
        anyhow::ensure!(r.error.is_none(), "ticket {i}: {:?}", r.error);
    }

    let mut embed = Vec::with_capacity(texts.len());
    let mut vectors = Vec::with_capacity(texts.len());
    for text in texts {
        let t = Instant::now();
        let mut v = embedder.embed(vec![text.clone()]).await?;
        embed.push(ms(t));
        vectors.push(v.pop().unwrap_or_default());
    }

    let collection = classifier.meta().name.clone();
    let limit = classifier.options().k.max(1) * 3;
    let mut search = Vec::with_capacity(texts.len());
    let mut hits = Vec::with_capacity(texts.len());
    for v in &vectors {
        let t = Instant::now();
        let h = store.search(&collection, v, limit, None).await?;
        search.push(ms(t));
        hits.push(h);
    }

    // The fitted model's own per-ticket work, as classification runs it: the head's
    // probabilities, the mixture, calibration and out-of-scope score (the vote it mixes
    // is computed outside the timer).
    let k = classifier.options().k.max(1);
    let fit = classifier.fitted().map(|f| &f.neighbours).filter(|m| m.k == k).map(|m| {
        let mut times = Vec::with_capacity(texts.len());
        for (v, h) in vectors.iter().zip(&hits) {
            let nearest = &h[..h.len().min(k)];
            let Some(vote) = crate::knn::vote_with(nearest, m.vote_temperature, m.vote_cap) else { continue };
            let t = Instant::now();
            std::hint::black_box(crate::classifier::judge_fitted(m, &vote, nearest, v));
            times.push(ms(t));
        }
        Percentiles::of(&times)
    });

    let coverage = embedder.coverage();
    let mut lang = Vec::with_capacity(texts.len());
    for text in texts {
        let t = Instant::now();
        std::hint::black_box(crate::lang::assess(text, coverage.as_deref()));
        lang.push(ms(t));
    }

    Ok(LatencyReport {
        tickets: texts.len(),
        warmup,
        load_seconds: (load_seconds * 1000.0).round() / 1000.0,
        first_ticket_ms: (first_ticket_ms * 1000.0).round() / 1000.0,
        classify: Percentiles::of(&classify),
        embed: Percentiles::of(&embed),
        search: Percentiles::of(&search),
        lang: Percentiles::of(&lang),
        fit,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub collection: String,
    pub backend: &'static str,
    pub examples: usize,
    pub queries: usize,
    pub limit: usize,
    pub search_ms_p50: f64,
    pub search_ms_p99: f64,
    pub search_ms_mean: f64,
    pub embed_ms_per_ticket_batched: f64,
}

/// Embed `texts` in one batch, run `warmup` untimed searches, then time one search per
/// ticket (`limit` results, no filter).
pub async fn search(
    embedder: &dyn Embedder,
    store: &dyn ExampleStore,
    collection: &str,
    texts: &[String],
    limit: usize,
    warmup: usize,
) -> anyhow::Result<SearchReport> {
    anyhow::ensure!(!texts.is_empty(), "no tickets to time");
    let started = Instant::now();
    let vectors = embedder.embed(texts.to_vec()).await?;
    let embed_ms_per_ticket = ms(started) / texts.len() as f64;
    for v in vectors.iter().cycle().take(warmup) {
        store.search(collection, v, limit, None).await?;
    }
    let mut times = Vec::with_capacity(vectors.len());
    for v in &vectors {
        let t = Instant::now();
        store.search(collection, v, limit, None).await?;
        times.push(ms(t));
    }
    let p = Percentiles::of(&times);
    Ok(SearchReport {
        collection: collection.to_string(),
        backend: store.backend(),
        examples: store.count(collection).await?,
        queries: times.len(),
        limit,
        search_ms_p50: p.p50_ms,
        search_ms_p99: p.p99_ms,
        search_ms_mean: p.mean_ms,
        embed_ms_per_ticket_batched: (embed_ms_per_ticket * 1000.0).round() / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&s);
        assert_eq!((p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(p.mean_ms, 50.5);
        assert_eq!(Percentiles::of(&[7.0]).p99_ms, 7.0);
    }
}
