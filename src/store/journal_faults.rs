//! A journal file that fails the way a full or failing disk does: for unit tests and
//! fault-injection soaks (`scripts/soak.sh`), in builds with the `test-doubles`
//! feature only; the product's journal writes to its file directly.
//!
//! Either deterministic (`space`: the disk takes that many more bytes, then every
//! write stops part-way with `ENOSPC`; cutting the file back frees what it cut) or
//! random (`TRIAGE_TEST_JOURNAL_FAULTS`, see [`Faults::parse`]).

use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};

use super::{JournalFile, JournalFiles};

/// The environment variable `triage` reads in `test-doubles` builds.
pub const ENV: &str = "TRIAGE_TEST_JOURNAL_FAULTS";

/// What goes wrong, shared by every journal file opened through [`Faults::files`].
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes the disk still takes; `None`: no limit.
    space: Option<u64>,
    /// Cutting a file back fails (`EIO`).
    fail_truncate: bool,
    /// `fdatasync` fails (`EIO`).
    fail_sync: bool,
    /// Chance an append stops part-way (a random part of it written) with `ENOSPC`.
    p_full: f64,
    /// Chance that cutting back after such a failure fails too.
    p_stuck: f64,
    /// Chance a sync fails.
    p_sync: f64,
    rng: rand::rngs::StdRng,
    /// Faults injected so far: appends stopped, cut-backs failed, syncs failed.
    injected: [u64; 3],
}

impl State {
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p)
    }
}

fn full() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::StorageFull)
}

fn eio(what: &str) -> std::io::Error {
    std::io::Error::other(format!("injected I/O error ({what})"))
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults {
            state: Mutex::new(State {
                space: None,
                fail_truncate: false,
                fail_sync: false,
                p_full: 0.0,
                p_stuck: 0.0,
                p_sync: 0.0,
                rng: rand::rngs::StdRng::seed_from_u64(0),
                injected: [0; 3],
            }),
        })
    }

    /// Random faults from `full=P,stuck=P,sync=P,seed=N` (each optional): an append
    /// stops part-way with `ENOSPC` with chance `full`; the cut-back after it fails with
    /// chance `stuck`; a sync fails with chance `sync`.
    pub fn parse(spec: &str) -> Result<Arc<Faults>, String> {
        let faults = Faults::new();
        {
            let mut s = faults.state();
            for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').ok_or_else(|| format!("{ENV}: {part:?} is not key=value"))?;
                let p = || v.parse::<f64>().ok().filter(|p| (0.0..=1.0).contains(p));
                let bad = || format!("{ENV}: {k}={v:?} is not a probability");
                match k {
                    "full" => s.p_full = p().ok_or_else(bad)?,
                    "stuck" => s.p_stuck = p().ok_or_else(bad)?,
                    "sync" => s.p_sync = p().ok_or_else(bad)?,
                    "seed" => {
                        let seed = v.parse().map_err(|_| format!("{ENV}: seed={v:?} is not a number"))?;
                        s.rng = rand::rngs::StdRng::seed_from_u64(seed);
                    }
                    other => return Err(format!("{ENV}: unknown key {other:?} (full, stuck, sync, seed)")),
                }
            }
        }
        Ok(faults)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The disk takes `bytes` more, then is full (`None`: space again).
    pub fn set_space(&self, bytes: Option<u64>) {
        self.state().space = bytes;
    }

    pub fn set_fail_truncate(&self, fail: bool) {
        self.state().fail_truncate = fail;
    }

    pub fn set_fail_sync(&self, fail: bool) {
        self.state().fail_sync = fail;
    }

    /// Faults injected so far: appends stopped part-way, cut-backs failed, syncs failed.
    pub fn injected(&self) -> [u64; 3] {
        self.state().injected
    }

    /// The hook for [`EdgeStore::with_journal_files`](crate::store::EdgeStore::with_journal_files).
    pub fn files(self: &Arc<Self>) -> JournalFiles {
        let faults = self.clone();
        Arc::new(move |file| Box::new(FaultyFile { file, faults: faults.clone() }) as Box<dyn JournalFile>)
    }
}

/// A journal file behind [`Faults`].
struct FaultyFile {
    file: File,
    faults: Arc<Faults>,
}

impl JournalFile for FaultyFile {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut guard = self.faults.state();
        let s = &mut *guard;
        let random = s.chance(s.p_full);
        let room = match s.space {
            _ if random => s.rng.gen_range(0..buf.len().max(1)),
            Some(left) => usize::try_from(left).unwrap_or(usize::MAX).min(buf.len()),
            None => buf.len(),
        };
        self.file.append(&buf[..room])?;
        if let Some(left) = s.space.as_mut() {
            *left -= room as u64;
        }
        if room < buf.len() {
            s.injected[0] += 1;
            return Err(full());
        }
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut guard = self.faults.state();
        let s = &mut *guard;
        let random = s.chance(s.p_sync);
        if s.fail_sync || random {
            s.injected[2] += 1;
            return Err(eio("sync"));
        }
        drop(guard);
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> std::io::Result<()> {
        let mut guard = self.faults.state();
        let s = &mut *guard;
        let random = s.chance(s.p_stuck);
        if s.fail_truncate || random {
            s.injected[1] += 1;
            return Err(eio("truncate"));
        }
        let before = self.file.metadata()?.len();
        JournalFile::truncate(&self.file, len)?;
        if let Some(left) = s.space.as_mut() {
            *left += before.saturating_sub(len);
        }
        Ok(())
    }
}
