//! One open shard of the embedded store and its journal: opening (with the replay of
//! what the journal holds), durable writes, closing.

use std::path::Path;
use std::sync::Arc;

use qdrant_edge::{EdgeShard, PointId, PointInsertOperations, PointOperations, PointStruct, UpdateOperation};

use super::{backend, blocking, open_shard, JOURNAL};
use crate::store::commit::{Gate, GroupCommit};
use crate::example::ExamplePoint;
use crate::store::journal::{Journal, JournalFiles, Record, CHECKPOINT_BYTES};
use crate::store::transfer::ExportLine;
use crate::store::{example_payload, StoreError};

/// An open shard, the journal that makes its writes durable (see [`super::journal`]),
/// the gate its writes go through and the group commit of journal syncs.
pub(super) struct OpenShard {
    pub(super) shard: EdgeShard,
    pub(super) journal: Journal,
    pub(super) gate: Gate,
    pub(super) commit: GroupCommit,
    /// Set once the journal was replayed: only then may closing empty it.
    pub(super) replayed: bool,
}

impl OpenShard {
    /// Open the shard and replay what its journal holds (writes acknowledged after
    /// the last checkpoint), then checkpoint.
    pub(super) fn open(dir: &Path, dim: usize, files: Option<&JournalFiles>) -> Result<OpenShard, StoreError> {
        let journal_path = dir.join(JOURNAL);
        let shard = open_shard(&dir.join("shard"), &journal_path, dim)?;
        let (journal, replay) = Journal::open(&journal_path, files)?;
        let mut open =
            OpenShard { shard, journal, gate: Gate::default(), commit: GroupCommit::default(), replayed: false };
        if !replay.records.is_empty() || replay.quarantined > 0 {
            let n = replay.records.len();
            for record in replay.records {
                for op in operations(record) {
                    open.shard.update(op).map_err(backend)?;
                }
            }
            // Also when only damaged records were found: they are in the quarantine
            // file now, and must not be found (and quarantined) again next time.
            open.checkpoint()?;
            tracing::info!("{}: replayed {n} journaled write(s)", dir.display());
        }
        open.replayed = true;
        Ok(open)
    }

    /// Append a write to the journal, then apply it to the shard, under the gate;
    /// returns its sequence number. Durable once the journal is synced past it. When
    /// either step fails, the journal is cut back to where it was (or refuses every
    /// later write when it cannot be: see [`Journal::cut_back`]).
    pub(super) fn write(&self, record: Record) -> Result<u64, StoreError> {
        self.gate
            .apply(|| {
                let before = self.journal.append(&record)?;
                for op in operations(record) {
                    if let Err(e) = self.shard.update(op) {
                        self.journal.cut_back(before, &format!("the shard refused a journaled write ({e})"))?;
                        return Err(backend(e));
                    }
                }
                Ok(())
            })
            .map(|((), seq)| seq)
    }

    /// Sync the journal; returns the last write it covers. Appends go on meanwhile.
    /// A sync that fails may have lost any record it was to cover (the kernel can
    /// drop pages it failed to write, and a later sync then succeeds without them):
    /// the journal is cut back to what the last good sync covered, and every write
    /// applied so far that no good sync covered fails (it stays applied to the shard
    /// in memory: not acknowledged, its outcome is unknown to the client, as after a
    /// timeout).
    pub(super) fn sync(&self) -> Result<u64, StoreError> {
        let covered = self.gate.applied();
        match self.journal.sync() {
            Ok(()) => Ok(covered),
            Err(e) => {
                let mut applied = covered;
                let cut = self.gate.flush(|| {
                    applied = self.gate.applied();
                    self.journal.cut_back(self.journal.synced(), &format!("a sync failed ({e})"))
                });
                self.commit.fail_through(applied);
                if let Err(poisoned) = cut {
                    tracing::warn!("{poisoned}");
                }
                Err(e)
            }
        }
    }

    /// Flush the shard and empty the journal, with no write in between.
    pub(super) fn checkpoint(&self) -> Result<u64, StoreError> {
        self.gate.flush(|| {
            // `EdgeShard::flush` panics (`expect`) on I/O errors; a panic must not
            // take the process down, and the journal is then kept.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shard.flush()))
                .map_err(|_| StoreError::Io("flushing the shard failed (see the log)".into()))?;
            self.journal.reset()
        })
    }
}

impl Drop for OpenShard {
    fn drop(&mut self) {
        if self.replayed && self.journal.bytes() > 0 {
            if let Err(e) = self.checkpoint() {
                tracing::warn!("checkpoint at close failed (the journal is replayed on the next open): {e}");
            }
        }
    }
}

/// The shard updates a journal record stands for, in order.
fn operations(record: Record) -> Vec<UpdateOperation> {
    let upsert = |points: Vec<ExportLine>| {
        let points = points
            .into_iter()
            .map(|p| PointStruct::new(p.id, p.vector, serde_json::Value::Object(p.payload)).into())
            .collect();
        UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)))
    };
    let delete = |ids: Vec<u64>| {
        UpdateOperation::PointOperation(PointOperations::DeletePoints { ids: ids.into_iter().map(PointId::from).collect() })
    };
    match record {
        Record::Upsert { points } => vec![upsert(points)],
        Record::Delete { ids } => vec![delete(ids)],
        Record::Batch { points, ids } => {
            let mut ops = Vec::new();
            if !points.is_empty() {
                ops.push(upsert(points));
            }
            if !ids.is_empty() {
                ops.push(delete(ids));
            }
            ops
        }
    }
}

/// Points as the journal records them.
pub(super) fn journal_lines(points: Vec<ExamplePoint>) -> Vec<ExportLine> {
    points
        .into_iter()
        .map(|p| ExportLine { id: p.example.point_id(), payload: example_payload(&p.example), vector: p.vector })
        .collect()
}

/// Apply and journal a write; return once it is durable. Checkpoint when the journal
/// has grown past [`CHECKPOINT_BYTES`].
pub(super) async fn write_durably(open: Arc<OpenShard>, record: Record) -> Result<(), StoreError> {
    let writing = open.clone();
    let seq = blocking(move || writing.write(record)).await?;
    let syncing = open.clone();
    open.commit.wait_durable(seq, || blocking(move || syncing.sync())).await?;
    if open.journal.bytes() > CHECKPOINT_BYTES {
        let flushing = open.clone();
        blocking(move || flushing.checkpoint().map(|_| ())).await?;
    }
    Ok(())
}

