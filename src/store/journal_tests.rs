//! The journal's framing, replay and failure handling, with a file that fails the way
//! a full disk does ([`super::faults`]).

#![allow(clippy::unwrap_used)]

use super::faults::Faults;
use super::*;
use std::sync::Arc;

fn upsert(id: u64) -> Record {
    let mut payload = serde_json::Map::new();
    payload.insert("id".into(), serde_json::json!(format!("e{id}")));
    Record::Upsert { points: vec![ExportLine { id, vector: vec![0.25, -1.5e-7, 3.0], payload }] }
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn records_come_back_in_order_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    {
        let (j, old) = Journal::open(&path, None).unwrap();
        assert!(old.records.is_empty());
        j.append(&upsert(1)).unwrap();
        j.append(&Record::Delete { ids: vec![7, 8] }).unwrap();
        j.append(&upsert(2)).unwrap();
        j.sync().unwrap();
    }
    // A crash in the middle of a fourth append.
    let full = len(&path);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"\n1234abcd {\"op\":\"upsert\",\"points\":[{\"id\":3,\"vec").unwrap();
    drop(f);
    let (j, replay) = Journal::open(&path, None).unwrap();
    assert_eq!(replay.records, vec![upsert(1), Record::Delete { ids: vec![7, 8] }, upsert(2)], "exact vectors, in order");
    assert_eq!(replay.quarantined, 0, "a torn tail is not damage");
    assert!(quarantined(dir.path()).is_none());
    assert!(len(&path) <= full + 1, "torn tail cut");
    assert_eq!(j.bytes(), len(&path));
    j.append(&upsert(4)).unwrap();
    j.reset().unwrap();
    assert_eq!(len(&path), 0);
    let (_, replay) = Journal::open(&path, None).unwrap();
    assert!(replay.records.is_empty());
}

#[test]
fn a_journal_of_the_previous_version_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    // Plain JSON lines, as the previous version wrote them, then a record of this one.
    let mut old = Vec::new();
    for r in [upsert(1), Record::Delete { ids: vec![1] }] {
        old.extend(serde_json::to_vec(&r).unwrap());
        old.push(b'\n');
    }
    std::fs::write(&path, &old).unwrap();
    {
        let (j, replay) = Journal::open(&path, None).unwrap();
        assert_eq!(replay.records.len(), 2);
        j.append(&upsert(2)).unwrap();
        j.sync().unwrap();
    }
    let (_, replay) = Journal::open(&path, None).unwrap();
    assert_eq!(replay.records, vec![upsert(1), Record::Delete { ids: vec![1] }, upsert(2)]);
}

/// A journal in `dir` behind the fault-injection file, holding one synced record.
fn faulty_journal(dir: &Path) -> (PathBuf, Arc<Faults>, Journal) {
    let path = dir.join("journal.log");
    let faults = Faults::new();
    let (j, _) = Journal::open(&path, Some(&faults.files())).unwrap();
    j.append(&upsert(1)).unwrap();
    j.sync().unwrap();
    (path, faults, j)
}

#[test]
fn an_append_that_fails_part_way_is_cut_back_and_later_records_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (path, faults, j) = faulty_journal(dir.path());
    let good = len(&path);
    // The disk takes 40 more bytes: the second record stops part-way.
    faults.set_space(Some(40));
    let e = j.append(&upsert(2)).unwrap_err().to_string();
    assert!(e.contains("cut back"), "{e}");
    assert_eq!(faults.injected()[0], 1);
    assert_eq!(len(&path), good, "the partial record is cut off before the error is returned");
    assert_eq!(j.bytes(), good);
    // Space again: the next writes are appended after the first, whole.
    faults.set_space(None);
    j.append(&upsert(3)).unwrap();
    j.append(&upsert(4)).unwrap();
    j.sync().unwrap();
    drop(j);
    let (_, replay) = Journal::open(&path, None).unwrap();
    assert_eq!(replay.records, vec![upsert(1), upsert(3), upsert(4)], "every write after the failed one is kept");
    assert_eq!(replay.quarantined, 0);
}

#[test]
fn a_failed_append_that_cannot_be_cut_back_refuses_every_later_write_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (path, faults, j) = faulty_journal(dir.path());
    faults.set_space(Some(10));
    faults.set_fail_truncate(true);
    let e = j.append(&upsert(2)).unwrap_err().to_string();
    assert!(e.contains("refusing writes until the process restarts"), "{e}");
    // The partial record is still there: nothing may be appended after it.
    faults.set_space(None);
    faults.set_fail_truncate(false);
    let refused = j.append(&upsert(3)).unwrap_err().to_string();
    assert!(refused.contains("free disk space, then restart"), "{refused}");
    assert!(j.check().is_err());
    drop(j);
    // Reopening repairs: the partial record is the torn tail.
    let (j, replay) = Journal::open(&path, None).unwrap();
    assert_eq!(replay.records, vec![upsert(1)]);
    assert_eq!(replay.quarantined, 0);
    j.append(&upsert(4)).unwrap();
    drop(j);
    assert_eq!(Journal::open(&path, None).unwrap().1.records, vec![upsert(1), upsert(4)]);
}

#[test]
fn a_damaged_middle_record_is_quarantined_and_every_other_one_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    {
        let (j, _) = Journal::open(&path, None).unwrap();
        for id in 1..=20 {
            j.append(&upsert(id)).unwrap();
        }
        j.sync().unwrap();
    }
    // One flipped byte inside the fourth record's JSON.
    let mut bytes = std::fs::read(&path).unwrap();
    let fourth = bytes.windows(4).position(|w| w == b"\"e4\"").unwrap();
    bytes[fourth + 2] = b'X';
    let damaged_line = {
        let start = bytes[..fourth].iter().rposition(|b| *b == b'\n').unwrap() + 1;
        let end = fourth + bytes[fourth..].iter().position(|b| *b == b'\n').unwrap();
        bytes[start..end].to_vec()
    };
    std::fs::write(&path, &bytes).unwrap();

    let (_, replay) = Journal::open(&path, None).unwrap();
    let ids: Vec<u64> = replay
        .records
        .iter()
        .map(|r| match r {
            Record::Upsert { points } => points[0].id,
            Record::Delete { .. } | Record::Batch { .. } => 0,
        })
        .collect();
    assert_eq!(ids, (1..=20).filter(|i| *i != 4).collect::<Vec<_>>(), "the 19 others, in order");
    assert_eq!(replay.quarantined, 1);
    let (q, what) = quarantined(dir.path()).expect("a quarantine file");
    assert_eq!(q, dir.path().join(QUARANTINE));
    assert_eq!(what, "1 damaged journal record(s)");
    let mut expected = damaged_line;
    expected.push(b'\n');
    assert_eq!(std::fs::read(&q).unwrap(), expected, "the damaged record's bytes, as they were");
}

#[test]
fn a_sync_after_a_cut_does_not_claim_what_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let (j, _) = Journal::open(&path, None).unwrap();
    let first = j.append(&upsert(1)).unwrap();
    assert_eq!(first, 0);
    j.sync().unwrap();
    let covered = j.synced();
    assert_eq!(covered, len(&path));
    let before = j.append(&upsert(2)).unwrap();
    j.cut_back(before, "test").unwrap();
    j.sync().unwrap();
    assert_eq!(j.synced(), covered);
    j.reset().unwrap();
    assert_eq!(j.synced(), 0);
}

#[test]
fn random_faults_parse_and_stay_within_bounds() {
    assert!(Faults::parse("full=0.1,stuck=0.5,sync=0,seed=3").is_ok());
    assert!(Faults::parse("full=2").is_err());
    assert!(Faults::parse("disk=0.1").is_err());
    assert!(Faults::parse("").is_ok());
}

#[test]
fn a_batch_of_upserts_and_deletes_is_one_record_and_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let Record::Upsert { points } = upsert(5) else { unreachable!() };
    let batch = Record::Batch { points, ids: vec![1, 2] };
    {
        let (j, _) = Journal::open(&path, None).unwrap();
        j.append(&batch).unwrap();
        j.sync().unwrap();
    }
    let (j, replay) = Journal::open(&path, None).unwrap();
    assert_eq!(replay.records, vec![batch]);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.is_empty()).count(), 1);
    j.reset().unwrap();
}
