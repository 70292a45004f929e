//! The embedded store's helpdesk state: one journal per collection and helpdesk
//! account, `<data-dir>/helpdesk/<collection>/<source>.jsonl`. Each change is a line
//! (`{"cursor": ...}` or `{"entry": {...}}`) appended and fsynced before the call
//! returns; reading replays the lines, the last one for a ticket wins. A line cut
//! short by a crash mid-write is the last one and was never acknowledged: it is
//! dropped. When the journal holds far more lines than live records it is rewritten
//! to a temporary file, fsynced and renamed over the old one.
//!
//! Only one process uses a data dir at a time (the data-dir lock the embedded store
//! takes), so the journal needs no locking of its own beyond this process.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{HelpdeskState, LedgerEntry, StateError, StateKey};
use crate::helpdesk::Cursor;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Cursor(Cursor),
    Entry(LedgerEntry),
}

struct Journal {
    path: PathBuf,
    file: File,
    cursor: Option<Cursor>,
    entries: HashMap<String, LedgerEntry>,
    lines: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Io(format!("{}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))
}

impl Journal {
    fn open(path: PathBuf) -> Result<Self, StateError> {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let existed = path.exists();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path, e)),
        };
        let mut cursor = None;
        let mut entries = HashMap::new();
        let mut lines = 0;
        let mut good_len = 0usize;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            let advance = line.len() + usize::from(complete);
            match serde_json::from_slice::<Record>(line) {
                Ok(_) | Err(_) if line.iter().all(u8::is_ascii_whitespace) => {}
                Ok(Record::Cursor(c)) => cursor = Some(c),
                Ok(Record::Entry(e)) => {
                    entries.insert(e.ticket.clone(), e);
                }
                Err(e) if complete && rest.len() > advance => {
                    return Err(StateError::Corrupt {
                        path: path.display().to_string(),
                        line: lines + 1,
                        detail: e.to_string(),
                    })
                }
                Err(e) => {
                    // The last line, cut short by a crash before its fsync returned.
                    tracing::warn!("{}: dropping an incomplete last line ({e})", path.display());
                    break;
                }
            }
            lines += 1;
            good_len += advance;
            rest = &rest[advance..];
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        if good_len < bytes.len() {
            file.set_len(good_len as u64).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
        }
        if !existed {
            sync_dir(&dir)?;
        }
        Ok(Journal { path, file, cursor, entries, lines })
    }

    fn append(&mut self, records: &[Record]) -> Result<(), StateError> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| io(&self.path, e))?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf).map_err(|e| io(&self.path, e))?;
        self.file.sync_data().map_err(|e| io(&self.path, e))?;
        self.lines += records.len();
        if self.lines > 2 * (self.entries.len() + 1) + 1000 {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the journal with one line per live record.
    fn compact(&mut self) -> Result<(), StateError> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut buf = Vec::new();
        let mut records: Vec<&LedgerEntry> = self.entries.values().collect();
        records.sort_by(|a, b| a.ticket.cmp(&b.ticket));
        if let Some(c) = &self.cursor {
            serde_json::to_writer(&mut buf, &Record::Cursor(c.clone())).map_err(|e| io(&tmp, e))?;
            buf.push(b'\n');
        }
        for e in records {
            serde_json::to_writer(&mut buf, &Record::Entry(e.clone())).map_err(|e| io(&tmp, e))?;
            buf.push(b'\n');
        }
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&buf).and_then(|_| f.sync_all()).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(|e| io(&self.path, e))?;
        self.lines = self.entries.len() + usize::from(self.cursor.is_some());
        Ok(())
    }
}

/// The journal files under `<data-dir>/helpdesk/`, opened on first use.
pub struct FileState {
    root: PathBuf,
    journals: Arc<Mutex<HashMap<StateKey, Journal>>>,
}

impl FileState {
    pub fn new(data_dir: &Path) -> Self {
        FileState { root: data_dir.join("helpdesk"), journals: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Run `f` on the journal of `key` on the blocking pool (it reads and fsyncs files).
    async fn with<T: Send + 'static>(
        &self,
        key: &StateKey,
        f: impl FnOnce(&mut Journal) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        crate::store::validate_name(&key.collection).map_err(|e| StateError::Io(e.to_string()))?;
        let journals = self.journals.clone();
        let key = key.clone();
        let path = self.root.join(&key.collection).join(key.file_name());
        tokio::task::spawn_blocking(move || {
            let mut map = journals.lock().map_err(|_| StateError::Io("state lock poisoned".into()))?;
            if !map.contains_key(&key) {
                let j = Journal::open(path)?;
                map.insert(key.clone(), j);
            }
            match map.get_mut(&key) {
                Some(j) => f(j),
                None => Err(StateError::Io("journal vanished".into())),
            }
        })
        .await
        .map_err(|e| StateError::Io(format!("state task failed: {e}")))?
    }
}

#[async_trait]
impl HelpdeskState for FileState {
    async fn cursor(&self, key: &StateKey) -> Result<Option<Cursor>, StateError> {
        self.with(key, |j| Ok(j.cursor.clone())).await
    }

    async fn set_cursor(&self, key: &StateKey, cursor: &Cursor) -> Result<(), StateError> {
        let c = cursor.clone();
        self.with(key, move |j| {
            j.append(&[Record::Cursor(c.clone())])?;
            j.cursor = Some(c);
            Ok(())
        })
        .await
    }

    async fn entries(&self, key: &StateKey, tickets: &[String]) -> Result<HashMap<String, LedgerEntry>, StateError> {
        let tickets = tickets.to_vec();
        self.with(key, move |j| Ok(tickets.iter().filter_map(|t| j.entries.get(t).map(|e| (t.clone(), e.clone()))).collect()))
            .await
    }

    async fn put(&self, key: &StateKey, entries: &[LedgerEntry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.with(key, move |j| {
            j.append(&entries.iter().cloned().map(Record::Entry).collect::<Vec<_>>())?;
            for e in entries {
                j.entries.insert(e.ticket.clone(), e);
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::EntryStatus;
    use super::*;

    fn entry(ticket: &str, status: EntryStatus) -> LedgerEntry {
        LedgerEntry {
            ticket: ticket.into(),
            text_hash: "h".into(),
            status,
            category: Some("Billing".into()),
            tags: vec!["triage_billing".into()],
            write: None,
            error: None,
            agent_label: None,
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn entries_and_cursor_survive_a_reopen_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let key = StateKey::new("saas", "zendesk-x");
        {
            let s = FileState::new(dir.path());
            assert_eq!(s.cursor(&key).await.unwrap(), None);
            s.put(&key, &[entry("1", EntryStatus::Pending), entry("2", EntryStatus::Done)]).await.unwrap();
            s.put(&key, &[entry("1", EntryStatus::Done)]).await.unwrap();
            s.set_cursor(&key, &Cursor(serde_json::json!({"after_cursor": "abc"}))).await.unwrap();
        }
        let path = dir.path().join("helpdesk/saas/zendesk-x.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"entry\": {\"ticket\": \"3\", \"text_h").unwrap();
        drop(f);
        let s = FileState::new(dir.path());
        let got = s.entries(&key, &["1".into(), "2".into(), "3".into()]).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["1"].status, EntryStatus::Done, "the last line for a ticket wins");
        assert_eq!(s.cursor(&key).await.unwrap(), Some(Cursor(serde_json::json!({"after_cursor": "abc"}))));
        // The torn line was cut off, so new lines start on a line of their own.
        s.put(&key, &[entry("4", EntryStatus::Done)]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{text}");
        // Another source of the same collection has its own journal.
        assert_eq!(s.cursor(&StateKey::new("saas", "freshdesk-x")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_corrupt_line_in_the_middle_is_an_error_not_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helpdesk/saas/webhook.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"cursor\": 1}\nnot json\n{\"cursor\": 2}\n").unwrap();
        let s = FileState::new(dir.path());
        let err = s.cursor(&StateKey::new("saas", "webhook")).await.unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[tokio::test]
    async fn compaction_keeps_the_latest_records() {
        let dir = tempfile::tempdir().unwrap();
        let key = StateKey::new("saas", "webhook");
        let s = FileState::new(dir.path());
        for round in 0..700u64 {
            let mut e = entry("1", EntryStatus::Done);
            e.updated_at = round;
            s.put(&key, &[e, entry("2", EntryStatus::Done)]).await.unwrap();
        }
        s.set_cursor(&key, &Cursor(serde_json::json!(7))).await.unwrap();
        let lines = std::fs::read_to_string(dir.path().join("helpdesk/saas/webhook.jsonl")).unwrap().lines().count();
        assert!(lines < 1100, "compacted: {lines} lines");
        let s = FileState::new(dir.path());
        let got = s.entries(&key, &["1".into()]).await.unwrap();
        assert_eq!(got["1"].updated_at, 699);
        assert_eq!(s.cursor(&key).await.unwrap(), Some(Cursor(serde_json::json!(7))));
    }
}
