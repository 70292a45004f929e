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
//! So each collection keeps a journal next to its shard (`journal.log`). A write is
//! appended to the journal first, then applied to the shard, and acknowledged once
//! the journal is synced (`fdatasync`; concurrent writers share syncs, see
//! [`super::commit`]). A checkpoint flushes the shard and empties the journal: when the
//! journal passes [`CHECKPOINT_BYTES`], after an index build, and when the store is
//! dropped. Opening a shard replays what the journal holds (upserts and deletes by
//! point id are idempotent in order, so replaying writes the shard already has changes
//! nothing), checkpoints, and goes on.
//!
//! Framing: each record is `LF crc32-hex SP json LF` (the CRC-32 of the JSON bytes).
//! The leading LF means a partial record left by a crash can never merge with the
//! record appended after it: every record starts on a line of its own, and replay
//! skips empty lines. Lines of plain JSON (the framing of the previous version) are
//! still read, so an upgrade replays an old journal.
//!
//! Failures: an append that fails (a full disk after part of the record) is cut back
//! (`set_len` to the length before it, synced) before the error is returned; so is one
//! the shard refuses, and a sync that fails cuts the journal back to what the last
//! good sync covered (see `OpenShard` in [`super::edge`]). When cutting back fails
//! too, the journal is poisoned: every later write is refused with the reason until
//! the process reopens it, so no write is ever acknowledged while a partial record
//! sits before it.
//!
//! Replay: a bad line (checksum or JSON) with good records after it is a damaged
//! record in the middle, an acknowledged write that cannot be read. Its bytes are
//! copied to [`QUARANTINE`] beside the journal (durably, before anything else
//! changes), the error is logged, and every other record is replayed; while that
//! file exists `/readyz` answers not ready and says what to do. A bad last line with
//! nothing after it is a torn tail (a crash mid-append, never acknowledged: its sync
//! never returned) and is cut off.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::commit::sync_dir;
use super::transfer::ExportLine;
use super::StoreError;

/// Journal size that triggers a checkpoint (about 10,000 points of 384 dimensions).
pub const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Beside the journal: the bytes of damaged records replay could not read, one per line.
pub const QUARANTINE: &str = "journal.quarantine";
/// Largest quarantine file read to count its records (for `/readyz`); beyond it, bytes are reported.
const QUARANTINE_COUNT_LIMIT: u64 = 16 << 20;

/// One journaled write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Record {
    Upsert { points: Vec<ExportLine> },
    Delete { ids: Vec<u64> },
    /// Upserts then deletes, applied and made durable together.
    Batch { points: Vec<ExportLine>, ids: Vec<u64> },
}

/// The journal's file as the journal writes it. `std::fs::File` (opened for
/// appending) in the product; tests put a file in between that fails the way a full
/// disk does ([`EdgeStore::with_journal_files`](super::EdgeStore::with_journal_files)).
pub trait JournalFile: Send + Sync {
    /// Write all of `buf` at the end of the file, or fail (possibly after part of it).
    fn append(&self, buf: &[u8]) -> std::io::Result<()>;
    /// Make every byte written so far durable (`fdatasync`).
    fn sync_data(&self) -> std::io::Result<()>;
    /// Cut the file to `len` bytes, durably (`ftruncate`, then `fsync`).
    fn truncate(&self, len: u64) -> std::io::Result<()>;
}

impl JournalFile for File {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        (&*self).write_all(buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.set_len(len)?;
        self.sync_all()
    }
}

/// Wraps each journal file as it is opened (the hook fault-injection tests use).
pub type JournalFiles = Arc<dyn Fn(File) -> Box<dyn JournalFile> + Send + Sync>;

pub struct Journal {
    path: PathBuf,
    file: Box<dyn JournalFile>,
    /// The file's length, as far as this process wrote and cut it.
    bytes: AtomicU64,
    /// What the syncs covered, and how often the journal was cut.
    syncs: Mutex<Syncs>,
    /// Set when a failed write could not be cut back: why writes are refused.
    poisoned: Mutex<Option<String>>,
}

/// The length the last successful sync covered. A sync covers the length read when
/// it started only if no cut came in between (`cuts` unchanged): a record cut back
/// while it ran, and one appended in its place, are not covered by it.
#[derive(Debug, Default)]
struct Syncs {
    synced: u64,
    cuts: u64,
}

/// What opening a journal found in it.
#[derive(Debug, Default)]
pub struct Replay {
    /// The readable records, in order.
    pub records: Vec<Record>,
    /// Damaged records that had good ones after them: copied to the quarantine file.
    pub quarantined: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("journal {}: {e}", path.display()))
}

/// `LF crc32-hex SP json LF`.
fn frame(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(record)?;
    let mut line = Vec::with_capacity(json.len() + 11);
    line.extend_from_slice(format!("\n{:08x} ", crc32fast::hash(&json)).as_bytes());
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// The record a (non-empty) line holds: a framed record whose checksum matches, or a
/// line of plain JSON (the previous version's framing); `None` when it is damaged or torn.
fn parse_line(line: &[u8]) -> Option<Record> {
    if line.first() == Some(&b'{') {
        return serde_json::from_slice(line).ok();
    }
    let (crc, body) = (line.get(..8)?, line.get(9..)?);
    if line[8] != b' ' || !crc.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// A journal's bytes, sorted: the good records, the damaged lines (byte ranges) and
/// where a torn tail starts.
#[derive(Debug, Default)]
struct Scan {
    records: Vec<Record>,
    damaged: Vec<Range<usize>>,
    torn_at: Option<usize>,
}

fn scan(data: &[u8]) -> Scan {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            if i > start {
                lines.push(start..i);
            }
            start = i + 1;
        }
    }
    if start < data.len() {
        lines.push(start..data.len());
    }
    let last = lines.len().checked_sub(1);
    let mut out = Scan::default();
    for (i, range) in lines.into_iter().enumerate() {
        match parse_line(&data[range.clone()]) {
            Some(r) => out.records.push(r),
            None if Some(i) == last => out.torn_at = Some(range.start),
            None => out.damaged.push(range),
        }
    }
    out
}

/// Append the damaged lines to the quarantine file beside `journal`, durably.
fn quarantine(journal: &Path, data: &[u8], damaged: &[Range<usize>]) -> std::io::Result<PathBuf> {
    let path = journal.with_file_name(QUARANTINE);
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    for r in damaged {
        f.write_all(&data[r.clone()])?;
        f.write_all(b"\n")?;
    }
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(path)
}

/// The quarantine file in a collection folder and how many records it holds (or its
/// size in bytes when it is too large to count), when there is one that is not empty.
pub fn quarantined(collection_dir: &Path) -> Option<(PathBuf, String)> {
    let path = collection_dir.join(QUARANTINE);
    let len = std::fs::metadata(&path).ok()?.len();
    if len == 0 {
        return None;
    }
    let what = match (len <= QUARANTINE_COUNT_LIMIT).then(|| std::fs::read(&path).ok()).flatten() {
        Some(bytes) => {
            let n = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
            format!("{n} damaged journal record(s)")
        }
        None => format!("{len} bytes of damaged journal records"),
    };
    Some((path, what))
}

impl Journal {
    /// Open (or create) the journal at `path`, each file wrapped by `files` when given;
    /// returns it and what it holds. Damaged records in the middle are quarantined
    /// first, a torn tail is cut off.
    pub fn open(path: &Path, files: Option<&JournalFiles>) -> Result<(Journal, Replay), StoreError> {
        let (data, existed) = match std::fs::read(path) {
            Ok(d) => (d, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(io(path, e)),
        };
        let scan = scan(&data);
        if !scan.damaged.is_empty() {
            let q = quarantine(path, &data, &scan.damaged)
                .map_err(|e| io(path, format!("cannot quarantine {} damaged record(s): {e}", scan.damaged.len())))?;
            tracing::error!(
                "journal {}: {} damaged record(s) (acknowledged writes) cannot be replayed; their bytes are in {}; \
                 the {} other record(s) are replayed",
                path.display(),
                scan.damaged.len(),
                q.display(),
                scan.records.len()
            );
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| io(path, e))?;
        if !existed {
            // The journal's own directory entry must survive a crash, or its records do not.
            if let Some(dir) = path.parent() {
                sync_dir(dir).map_err(|e| io(path, e))?;
            }
        }
        let mut len = data.len() as u64;
        if let Some(at) = scan.torn_at {
            tracing::warn!(
                "journal {}: dropping a torn last record of {} bytes (a write that was never acknowledged)",
                path.display(),
                data.len() - at
            );
            file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(|e| io(path, e))?;
            len = at as u64;
        }
        let file: Box<dyn JournalFile> = match files {
            Some(wrap) => wrap(file),
            None => Box::new(file),
        };
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            bytes: AtomicU64::new(len),
            syncs: Mutex::new(Syncs { synced: len, cuts: 0 }),
            poisoned: Mutex::new(None),
        };
        Ok((journal, Replay { records: scan.records, quarantined: scan.damaged.len() }))
    }

    /// Error when writes are refused (see [`Journal::cut_back`]).
    pub fn check(&self) -> Result<(), StoreError> {
        match self.poisoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            Some(why) => Err(StoreError::Io(why.clone())),
            None => Ok(()),
        }
    }

    /// Append one record (not yet durable: see [`Journal::sync`]); returns the length
    /// of the journal before it, for [`Journal::cut_back`]. On failure the journal is
    /// cut back already. Callers serialise appends and cuts.
    pub fn append(&self, record: &Record) -> Result<u64, StoreError> {
        self.check()?;
        let line = frame(record).map_err(|e| io(&self.path, e))?;
        let before = self.bytes.load(Ordering::SeqCst);
        if let Err(e) = self.file.append(&line) {
            let why = format!("appending a record failed ({e})");
            self.cut_back(before, &why)?;
            return Err(io(&self.path, format!("{why}; cut back, nothing of it kept")));
        }
        self.bytes.store(before + line.len() as u64, Ordering::SeqCst);
        Ok(before)
    }

    /// Cut the journal back to `len` bytes (undoing what was appended after it: a
    /// failed append, a write the shard refused, writes a failed sync may have lost).
    /// When that fails, the file's length is unknown: every later write is refused
    /// until the journal is reopened, and the error says so.
    pub fn cut_back(&self, len: u64, why: &str) -> Result<(), StoreError> {
        match self.file.truncate(len) {
            Ok(()) => {
                self.cut_to(len);
                Ok(())
            }
            Err(e) => {
                let reason = format!(
                    "journal {}: {why}, and cutting it back to {len} bytes failed ({e}); refusing writes until the \
                     process restarts (opening the journal repairs it): free disk space, then restart",
                    self.path.display()
                );
                tracing::error!("{reason}");
                *self.poisoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.clone());
                Err(StoreError::Io(reason))
            }
        }
    }

    fn syncs(&self) -> std::sync::MutexGuard<'_, Syncs> {
        self.syncs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The file was cut to `len` bytes.
    fn cut_to(&self, len: u64) {
        let mut s = self.syncs();
        self.bytes.store(len, Ordering::SeqCst);
        s.synced = s.synced.min(len);
        s.cuts += 1;
    }

    /// Make every record appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (len, cuts) = {
            let s = self.syncs();
            (self.bytes.load(Ordering::SeqCst), s.cuts)
        };
        self.file.sync_data().map_err(|e| io(&self.path, e))?;
        let mut s = self.syncs();
        if s.cuts == cuts {
            s.synced = s.synced.max(len);
        }
        Ok(())
    }

    /// The length the last successful sync covered: what a failed sync cuts back to.
    pub fn synced(&self) -> u64 {
        self.syncs().synced
    }

    /// Empty the journal (after the shard was flushed), durably.
    pub fn reset(&self) -> Result<(), StoreError> {
        self.cut_back(0, "emptying it after a checkpoint failed")
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

#[cfg(any(test, feature = "test-doubles"))]
#[path = "journal_faults.rs"]
pub mod faults;

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
