//! Embedding and storing the examples that are new or changed, the store write of one
//! batch overlapping the embedding of the next.

use crate::embed::Embedder;
use crate::example::{Example, ExamplePoint};
use crate::progress::Progress;
use crate::store::ExampleStore;
use crate::Error;

use super::IndexTimings;

/// Embed and upsert the examples that are new or changed (same id, other content);
/// returns (indexed, unchanged). Does not rebuild the vector index: new points are
/// searchable at once, `finish_indexing` makes search over them fast.
pub async fn upsert_examples(
    examples: &[Example],
    collection: &str,
    embedder: &dyn Embedder,
    store: &dyn ExampleStore,
    batch_size: usize,
    progress: Progress<'_>,
) -> Result<(usize, usize), Error> {
    upsert_examples_timed(examples, collection, embedder, store, batch_size, progress, &mut IndexTimings::default()).await
}

/// A store write in flight; resolves to its own duration in seconds.
type PendingWrite<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<f64, Error>> + Send + 'a>>;

/// `upsert_examples`, adding the time of each step to `timings`. The store write of
/// one batch runs while the next batch is being embedded (the embedder has its own
/// thread, the store runs on the blocking pool).
pub(super) async fn upsert_examples_timed(
    examples: &[Example],
    collection: &str,
    embedder: &dyn Embedder,
    store: &dyn ExampleStore,
    batch_size: usize,
    progress: Progress<'_>,
    timings: &mut IndexTimings,
) -> Result<(usize, usize), Error> {
    let mut indexed = 0;
    let mut unchanged = 0;
    // The previous batch's write, still running.
    let mut pending: Option<PendingWrite<'_>> = None;
    let mut done = 0;
    progress("", done, examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let t = std::time::Instant::now();
        let ids: Vec<u64> = chunk.iter().map(Example::point_id).collect();
        let stored = store.content_hashes(collection, &ids).await?;
        timings.check_seconds += t.elapsed().as_secs_f64();
        let todo: Vec<&Example> =
            chunk.iter().filter(|e| stored.get(&e.point_id()) != Some(&e.content_hash())).collect();
        unchanged += chunk.len() - todo.len();
        if !todo.is_empty() {
            let t = std::time::Instant::now();
            let embedding = embedder.embed(todo.iter().map(|e| e.text.clone()).collect());
            let vectors = match pending.take() {
                Some(write) => {
                    let (vectors, written) = futures::join!(embedding, write);
                    timings.upsert_seconds += written?;
                    vectors?
                }
                None => embedding.await?,
            };
            timings.embed_seconds += t.elapsed().as_secs_f64();
            let points: Vec<ExamplePoint> =
                todo.iter().zip(vectors).map(|(e, vector)| ExamplePoint { example: (*e).clone(), vector }).collect();
            indexed += todo.len();
            let committed = indexed;
            pending = Some(Box::pin(async move {
                let t = std::time::Instant::now();
                // Durable when it returns: a run killed later keeps this batch, and
                // the next run skips it (same ids, same content hashes).
                store.upsert(collection, points).await?;
                tracing::info!(collection, committed, "batch committed");
                Ok(t.elapsed().as_secs_f64())
            }));
        }
        done += chunk.len();
        progress("", done, examples.len());
    }
    if let Some(write) = pending {
        timings.upsert_seconds += write.await?;
    }
    Ok((indexed, unchanged))
}
