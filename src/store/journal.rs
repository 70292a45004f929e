//! The embedded store's own write-ahead journal.
//!
//! Qdrant Edge 0.7.0 (`EdgeShard`) appends every update to its WAL and applies it to
//! the segments in memory, but it neither syncs that WAL per update nor replays it
//! when a shard is loaded (`EdgeShard::load` opens the WAL and loads the segments;
//! nothing reads the WAL back). An update survives the process only once
//! `EdgeShard::flush` has run: the WAL's mmap is synced, then every segment (id
//! mapping, vectors, payloads, point versions) is flushed with `sync = true`.
//! Dropping the shard flushes, which is why SIGTERM kept every write and `kill -9`
//! lost the unflushed ones. That flush syncs every memory-mapped file of every
//! segment (42 `msync` and 5 `fsync` calls for the bundled corpus), 15 ms on a quiet
//! disk and 300 ms on a busy one: too slow to run per write.
//!
//! So each collection keeps a journal next to its shard (`journal.log`): a write is
//! applied to the shard, appended to the journal (one JSON line: the points with their
//! vectors and payloads, or the deleted ids) and acknowledged once the journal is
//! synced (`fdatasync`; concurrent writers share syncs, see [`super::commit`]). A
//! checkpoint flushes the shard and empties the journal: when the journal passes
//! [`CHECKPOINT_BYTES`], after an index build, and when the store is dropped. Opening a
//! shard replays what the journal holds (upserts and deletes by point id are
//! idempotent in order, so replaying writes the shard already has changes nothing),
//! checkpoints, and goes on. A torn last line (a crash mid-append) was never
//! acknowledged and is dropped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::transfer::ExportLine;
use super::StoreError;

/// Journal size that triggers a checkpoint (about 10,000 points of 384 dimensions).
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

/// One journaled write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Record {
    Upsert { points: Vec<ExportLine> },
    Delete { ids: Vec<u64> },
    /// Upserts then deletes, applied and made durable together.
    Batch { points: Vec<ExportLine>, ids: Vec<u64> },
}

pub struct Journal {
    path: PathBuf,
    file: File,
    bytes: AtomicU64,
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("journal {}: {e}", path.display()))
}

impl Journal {
    /// Open (or create) the journal at `path`; returns it and the records it holds,
    /// in order. A torn or unreadable tail is cut off.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), StoreError> {
        let mut records = Vec::new();
        let mut good = 0u64;
        if let Ok(f) = File::open(path) {
            let mut reader = std::io::BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(|e| io(path, e))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                match serde_json::from_slice::<Record>(&line) {
                    Ok(r) => {
                        records.push(r);
                        good += n as u64;
                    }
                    Err(_) => break,
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| io(path, e))?;
        if file.metadata().map_err(|e| io(path, e))?.len() != good {
            tracing::warn!("journal {}: dropping a torn last record (a write that was never acknowledged)", path.display());
            file.set_len(good).map_err(|e| io(path, e))?;
            file.sync_all().map_err(|e| io(path, e))?;
        }
        Ok((Journal { path: path.to_path_buf(), file, bytes: AtomicU64::new(good) }, records))
    }

    /// Append one record (not yet durable: see [`Journal::sync`]). Callers serialise appends.
    pub fn append(&self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(record).map_err(|e| io(&self.path, e))?;
        line.push(b'\n');
        (&self.file).write_all(&line).map_err(|e| io(&self.path, e))?;
        self.bytes.fetch_add(line.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Make every record appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|e| io(&self.path, e))
    }

    /// Empty the journal (after the shard was flushed), durably.
    pub fn reset(&self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(|e| io(&self.path, e))?;
        self.file.sync_all().map_err(|e| io(&self.path, e))?;
        self.bytes.store(0, Ordering::SeqCst);
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn upsert(id: u64) -> Record {
        let mut payload = serde_json::Map::new();
        payload.insert("id".into(), serde_json::json!(format!("e{id}")));
        Record::Upsert { points: vec![ExportLine { id, vector: vec![0.25, -1.5e-7, 3.0], payload }] }
    }

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        {
            let (j, old) = Journal::open(&path).unwrap();
            assert!(old.is_empty());
            j.append(&upsert(1)).unwrap();
            j.append(&Record::Delete { ids: vec![7, 8] }).unwrap();
            j.append(&upsert(2)).unwrap();
            j.sync().unwrap();
        }
        // A crash in the middle of a fourth append.
        let full = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"op":"upsert","points":[{"id":3,"vec"#).unwrap();
        drop(f);
        let (j, records) = Journal::open(&path).unwrap();
        assert_eq!(records, vec![upsert(1), Record::Delete { ids: vec![7, 8] }, upsert(2)], "exact vectors, in order");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full, "torn tail cut");
        assert_eq!(j.bytes(), full);
        j.append(&upsert(4)).unwrap();
        j.reset().unwrap();
        // A batch (upserts and deletes together) is one line: it comes back whole.
        let Record::Upsert { points } = upsert(5) else { unreachable!() };
        let batch = Record::Batch { points, ids: vec![1, 2] };
        j.append(&batch).unwrap();
        j.sync().unwrap();
        let (j, records) = Journal::open(&path).unwrap();
        assert_eq!(records, vec![batch]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        j.reset().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let (_, records) = Journal::open(&path).unwrap();
        assert!(records.is_empty());
    }
}
