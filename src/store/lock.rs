//! The embedded store is single-process. Qdrant Edge keeps a write-ahead log and
//! mutable segments per shard with no coordination between processes, so two
//! processes with the same shard open (even one that only reads: loading a shard
//! replays the WAL and may create a segment) can corrupt it. Rather than share, one
//! process at a time owns a data dir: it takes an exclusive advisory lock on
//! `<data-dir>/.lock` (`flock`, released by the OS when the process exits, even on a
//! crash) before it opens a shard or writes, and keeps it until it exits. A second
//! process gets [`StoreError::Locked`] naming the holder, before it touches anything.
//! Reading `meta.json` (collection names, model, taxonomy) needs no lock: it is
//! replaced atomically. Several processes on one store: use a Qdrant server.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

pub const LOCK_FILE: &str = ".lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Take the lock on `data_dir` without waiting; `Locked` if another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Io(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let path = data_dir.join(LOCK_FILE);
        // No truncation before the lock is ours: the file names the current holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Io(format!("cannot open lock file {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Locked(locked_message(data_dir, holder.trim())));
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::Io(format!("cannot lock {}: {e}", path.display())));
            }
        }
        let holder = format!("pid {}: {}\n", std::process::id(), command_line());
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .and_then(|_| file.flush());
        if let Err(e) = written {
            tracing::warn!("cannot record the lock holder in {}: {e}", path.display());
        }
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let line = args.join(" ");
    if line.len() > 200 {
        let mut end = 200;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &line[..end])
    } else {
        line
    }
}

fn locked_message(data_dir: &Path, holder: &str) -> String {
    let holder = if holder.is_empty() { "another process".to_string() } else { format!("another process ({holder})") };
    format!(
        "the embedded store in {} is in use by {holder}. The embedded store allows one process per data dir \
         (a second one could corrupt it). Stop that process and retry; or, if it is `triage serve`, add examples \
         through its API (POST /v1/examples) and read collections with GET /v1/collections; or run a Qdrant \
         server and point every process at it with --qdrant-url (QDRANT_URL)",
        data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        // A second open file description conflicts even within one process (flock semantics).
        let err = DataDirLock::acquire(dir.path()).expect_err("second lock must fail");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Locked(_)), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(msg.contains("--qdrant-url"), "{msg}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again");
    }
}
