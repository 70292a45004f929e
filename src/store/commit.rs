//! Group commit: a write is acknowledged only once it is durable, and concurrent
//! writers share the sync that makes them so. Each applied write gets a sequence
//! number; one writer at a time syncs, and its sync covers every write applied
//! before it started. Writers that arrive while a sync runs wait for the next one,
//! which covers all of them at once. The embedded store syncs its journal this way
//! (see [`super::journal`]).
//!
//! Updates, journal appends, optimisation and checkpoints of one shard run under one
//! gate ([`Gate`]): `EdgeShard::flush` panics when it finds the WAL or the segment
//! holder locked (`try_lock().expect(..)`), and a checkpoint must not empty the
//! journal between a write's update and its append. Searches do not take it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::StoreError;

/// Serialises the writes (updates, optimisation, flushes) of one shard and numbers
/// the updates. Held on the blocking pool only, never across an `.await`.
#[derive(Default)]
pub struct Gate {
    lock: Mutex<()>,
    applied: AtomicU64,
}

impl Gate {
    /// Run a write under the gate; returns its result and its sequence number.
    pub fn apply<T>(&self, write: impl FnOnce() -> Result<T, StoreError>) -> Result<(T, u64), StoreError> {
        let _held = self.lock.lock().map_err(|_| StoreError::Io("shard write gate poisoned".into()))?;
        let out = write()?;
        let seq = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((out, seq))
    }

    /// The sequence number of the last write applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Run a flush under the gate; returns the sequence number of the last update it
    /// covers (every update applied before it started).
    pub fn flush(&self, flush: impl FnOnce() -> Result<(), StoreError>) -> Result<u64, StoreError> {
        let _held = self.lock.lock().map_err(|_| StoreError::Io("shard write gate poisoned".into()))?;
        let covered = self.applied.load(Ordering::SeqCst);
        flush()?;
        Ok(covered)
    }
}

/// Which updates are durable, and whose turn it is to flush.
#[derive(Default)]
pub struct GroupCommit {
    /// Held by the one writer flushing; the others queue here (FIFO).
    turn: tokio::sync::Mutex<()>,
    /// Sequence number up to which every update is durable.
    durable: AtomicU64,
    /// Sequence number up to which updates that are not durable failed (a failed
    /// sync undid them): they are never acknowledged.
    failed: AtomicU64,
    flushes: AtomicU64,
}

impl GroupCommit {
    /// Return once update `seq` is durable, flushing with `flush` (which returns the
    /// last sequence number it covers) when no flush already in the queue covers it.
    pub async fn wait_durable<F, Fut>(&self, seq: u64, flush: F) -> Result<(), StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        if self.durable.load(Ordering::SeqCst) >= seq {
            return Ok(());
        }
        let _turn = self.turn.lock().await;
        // The writer before us may have flushed our update too, or failed to.
        if self.durable.load(Ordering::SeqCst) >= seq {
            return Ok(());
        }
        if self.failed.load(Ordering::SeqCst) >= seq {
            return Err(StoreError::Io(
                "the journal sync that was to make this write durable failed, and the write was undone; retry it".into(),
            ));
        }
        let covered = flush().await?;
        self.durable.fetch_max(covered, Ordering::SeqCst);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        if covered < seq {
            return Err(StoreError::Io(format!("a flush covered updates up to {covered}, not {seq}")));
        }
        Ok(())
    }

    /// Every update up to `seq` that is not durable yet failed: its writer gets an error.
    pub fn fail_through(&self, seq: u64) {
        self.failed.fetch_max(seq, Ordering::SeqCst);
    }

    /// Flushes made so far (for logs and tests).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

/// Replace `path` with `bytes` so that a crash leaves either the old or the new
/// content, and the new content is on disk when this returns: write a temporary
/// file next to it, sync it, rename it over `path`, sync the directory.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| std::io::Error::other(format!("{} has no parent", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    // One temporary name per write: two writers of one file (in one process or two) never
    // rename each other's temporary away.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Make a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Concurrent writers share flushes: every writer returns only after a flush that
    /// started after its update, and there are fewer flushes than writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_share_flushes_and_each_is_covered() {
        let gate = Arc::new(Gate::default());
        let commit = Arc::new(GroupCommit::default());
        // What the "disk" holds: the sequence number of the last flush.
        let on_disk = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (gate, commit, on_disk) = (gate.clone(), commit.clone(), on_disk.clone());
            tasks.push(tokio::spawn(async move {
                let ((), seq) = gate.apply(|| Ok(())).unwrap();
                commit
                    .wait_durable(seq, || {
                        let (gate, on_disk) = (gate.clone(), on_disk.clone());
                        async move {
                            tokio::task::spawn_blocking(move || {
                                gate.flush(|| {
                                    std::thread::sleep(Duration::from_millis(20));
                                    on_disk.store(gate.applied.load(Ordering::SeqCst), Ordering::SeqCst);
                                    Ok(())
                                })
                            })
                            .await
                            .unwrap()
                        }
                    })
                    .await
                    .unwrap();
                // Acknowledged: the disk must hold this update.
                assert!(on_disk.load(Ordering::SeqCst) >= seq, "acknowledged {seq} before it was flushed");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(commit.flushes() >= 1);
        assert!(commit.flushes() < 64, "{} flushes for 64 writers: no grouping", commit.flushes());
    }

    #[tokio::test]
    async fn a_failed_flush_is_not_an_acknowledgement() {
        let gate = Gate::default();
        let commit = GroupCommit::default();
        let ((), seq) = gate.apply(|| Ok(())).unwrap();
        let r = commit.wait_durable(seq, || async { gate.flush(|| Err(StoreError::Io("disk full".into()))) }).await;
        assert!(r.is_err());
        // The next attempt flushes again.
        commit.wait_durable(seq, || async { gate.flush(|| Ok(())) }).await.unwrap();
        assert_eq!(commit.flushes(), 1);
    }

    #[tokio::test]
    async fn writes_a_failed_sync_undid_are_never_acknowledged() {
        let gate = Gate::default();
        let commit = GroupCommit::default();
        let ((), first) = gate.apply(|| Ok(())).unwrap();
        commit.wait_durable(first, || async { gate.flush(|| Ok(())) }).await.unwrap();
        let ((), second) = gate.apply(|| Ok(())).unwrap();
        let ((), third) = gate.apply(|| Ok(())).unwrap();
        // The sync for the second failed and undid everything after the first.
        commit.fail_through(third);
        let r = commit.wait_durable(second, || async { gate.flush(|| Ok(())) }).await;
        assert!(r.unwrap_err().to_string().contains("undone"));
        assert!(commit.wait_durable(third, || async { gate.flush(|| Ok(())) }).await.is_err());
        // Acknowledged before: still acknowledged; written after: flushed as usual.
        commit.wait_durable(first, || async { Err(StoreError::Io("must not flush again".into())) }).await.unwrap();
        let ((), fourth) = gate.apply(|| Ok(())).unwrap();
        commit.wait_durable(fourth, || async { gate.flush(|| Ok(())) }).await.unwrap();
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
