//! The train side of an evaluation: indexing a train corpus when its collection is
//! missing, and fitting the collection's neighbours' side (per k) and arbiters (per
//! model and k) before the runs that use them, as `triage calibrate` does.

use std::collections::HashMap;
use std::sync::Arc;

use indicatif::ProgressBar;

use crate::calibrate::{self, llm::LlmFitSettings, stored_fit, store_fit};
use crate::classifier::ClassifyOptions;
use crate::embed::Embedder;
use crate::fit::Fitted;
use crate::index::{self, Corpus};
use crate::llm::LlmClient;
use crate::progress::on_bar;
use crate::store::ExampleStore;
use crate::Error;

use super::EvalConfig;

pub(crate) type Bar<'a> = &'a (dyn Fn(&str) -> ProgressBar + Sync);

/// Index `corpus` into `name` unless a collection of that name holds as many examples.
pub(crate) async fn index_if_needed(
    corpus: &Corpus,
    name: &str,
    embedder: &Arc<dyn Embedder>,
    store: &Arc<dyn ExampleStore>,
    bar: Bar<'_>,
) -> Result<String, Error> {
    let exists = store.get_meta(name).await?.is_some() && store.count(name).await? == corpus.examples.len();
    if !exists {
        let c = Corpus {
            source: corpus.source.clone(),
            taxonomy: corpus.taxonomy.clone(),
            examples: corpus.examples.clone(),
            lines: corpus.lines.clone(),
            rejected: corpus.rejected.clone(),
        };
        let b = bar("indexing");
        let report = index::index_corpus(c, name, embedder.clone(), store.clone(), 256, &on_bar(&b)).await?;
        b.finish_and_clear();
        tracing::info!(collection = name, indexed = report.indexed, unchanged = report.unchanged, "train side indexed");
    }
    Ok(name.to_string())
}

/// Make the collection's stored fit the one for `k`, fitting it the first time.
pub(crate) async fn use_fit(
    store: &Arc<dyn ExampleStore>,
    collection: &str,
    config: &EvalConfig,
    k: usize,
    fits: &mut HashMap<usize, Fitted>,
    bar: Bar<'_>,
) -> Result<(), Error> {
    let Some(settings) = &config.calibrate else { return Ok(()) };
    let mut meta =
        store.require_meta(collection).await?;
    if let Some(f) = fits.get(&k) {
        if stored_fit(&meta).as_ref() != Some(f) {
            store_fit(store.as_ref(), &mut meta, f.clone()).await?;
        }
        return Ok(());
    }
    let b = bar(&format!("calibrating k={k}"));
    let s = calibrate::Settings { k, ..settings.clone() };
    let m = calibrate::calibrate_collection(store.as_ref(), collection, &s, &config.head, None, &on_bar(&b)).await?;
    b.finish_and_clear();
    tracing::info!(collection, k, ece = m.stats.calibrated_ece, accuracy = m.stats.mixed_accuracy, "neighbours fitted");
    // Arbiters fitted at another k are kept with that k's fit, not this one.
    let fitted = Fitted { neighbours: m, arbiters: Vec::new() };
    let mut meta =
        store.require_meta(collection).await?;
    store_fit(store.as_ref(), &mut meta, fitted.clone()).await?;
    fits.insert(k, fitted);
    Ok(())
}

/// Fit the arbiter for `llm`'s model at `k` (`--calibrate-llm N`) unless there is one.
pub(crate) async fn use_arbiter(
    embedder: &Arc<dyn Embedder>,
    store: &Arc<dyn ExampleStore>,
    collection: &str,
    config: &EvalConfig,
    llm: Arc<dyn LlmClient>,
    k: usize,
    fits: &mut HashMap<usize, Fitted>,
    bar: Bar<'_>,
) -> Result<(), Error> {
    let Some(sample) = config.calibrate_llm else { return Ok(()) };
    if fits.get(&k).is_some_and(|f| f.arbiter(llm.model(), k).is_some()) {
        return Ok(());
    }
    let b = bar(&format!("arbiter {} k={k}", llm.model()));
    let settings = LlmFitSettings {
        sample,
        seed: config.seed,
        concurrency: config.concurrency.max(1),
        options: ClassifyOptions {
            two_stage: config.two_stage,
            max_prompt_labels: config.max_prompt_labels,
            ..ClassifyOptions::new(k, config.min_confidence)
        },
    };
    let report =
        calibrate::llm::fit_arbiter(embedder.clone(), store.clone(), collection, llm, &settings, &on_bar(&b)).await?;
    b.finish_and_clear();
    let st = &report.arbiter.stats;
    tracing::info!(
        collection,
        k,
        llm = st.llm_accuracy,
        vote = st.vote_accuracy,
        arbiter = st.arbiter_accuracy,
        "arbiter fitted on {} answers",
        st.answers
    );
    let meta = store.require_meta(collection).await?;
    if let Some(f) = stored_fit(&meta) {
        fits.insert(k, f);
    }
    Ok(())
}
