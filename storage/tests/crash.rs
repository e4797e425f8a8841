//! Crash consistency: the WAL cut at every byte offset recovers exactly the persists that
//! were wholly written — a prefix of what was written, including everything reported durable.

mod common;

use std::fs::{self, OpenOptions};

use common::{Model, copy_store, entries, entry, scratch, segments, snapshot};
use raft::HardState;
use storage::{Options, Storage};

/// One persist of the workload: (entries, hard state).
type Step = (Vec<raft::Entry>, Option<HardState>);

fn workload() -> Vec<Step> {
    vec![
        (entries(4, 10, 3), None),                          // 10..=12
        (Vec::new(), Some(HardState::new(4, Some(1), 11))), // hard state only
        (entries(4, 13, 1), Some(HardState::new(4, Some(1), 12))),
        (entries(5, 12, 3), Some(HardState::new(5, Some(2), 11))), // truncates 12..=13
        (vec![entry(5, 15)], None),
        (entries(6, 13, 2), Some(HardState::new(6, None, 12))), // truncates 13..=15
        (entries(6, 15, 20), None),
        (vec![entry(7, 35)], Some(HardState::new(7, Some(3), 34))),
    ]
}

#[test]
fn cut_at_every_byte_of_the_last_segment_recovers_a_prefix_of_persists() {
    let dir = scratch();
    let mut model = Model::default();
    {
        // History before the segment under test: a snapshot, a compaction, a conflict.
        let (mut storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
        let setup: [(Option<raft::Snapshot>, Vec<raft::Entry>, Option<HardState>); 3] = [
            (
                Some(snapshot(0, 0)),
                Vec::new(),
                Some(HardState::new(1, Some(1), 0)),
            ),
            (None, entries(1, 1, 9), Some(HardState::new(3, Some(1), 5))),
            (None, entries(3, 8, 2), None),
        ];
        for (snap, batch, hard_state) in &setup {
            storage
                .persist_parts(snap.as_ref(), batch, hard_state.as_ref())
                .unwrap();
            model.persist(snap.as_ref(), batch, hard_state.as_ref());
        }
        storage.save_snapshot(&snapshot(5, 1)).unwrap();
        model.save_snapshot(snapshot(5, 1));
        storage.sync().unwrap();
    }
    // Reopening starts the segment that the workload fills and the test cuts.
    let (mut storage, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
    assert!(model.matches(&recovered));
    let last_segment = segments(dir.path()).pop().unwrap();
    let mut states = vec![(fs::metadata(&last_segment).unwrap().len(), model.clone())];
    for (batch, hard_state) in workload() {
        storage
            .persist_parts(None, &batch, hard_state.as_ref())
            .unwrap();
        storage.sync().unwrap();
        model.persist(None, &batch, hard_state.as_ref());
        // Synced: this is what a token report would promise from here on.
        states.push((fs::metadata(&last_segment).unwrap().len(), model.clone()));
    }
    drop(storage);
    assert_eq!(segments(dir.path()).last(), Some(&last_segment));
    let full_len = fs::metadata(&last_segment).unwrap().len();

    let mut torn_cuts = 0;
    for cut in 0..=full_len {
        let copy = scratch();
        copy_store(dir.path(), copy.path());
        let name = last_segment.file_name().unwrap();
        let file = OpenOptions::new()
            .write(true)
            .open(copy.path().join("wal").join(name))
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);

        let (_, recovered) = Storage::open(copy.path(), Options::new())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        // Every persist that ended at or before the cut, and nothing else.
        let (end, expected) = states
            .iter()
            .rev()
            .find(|(end, _)| *end <= cut)
            .map_or((0, &states[0].1), |(end, state)| (*end, state));
        assert!(
            expected.matches(&recovered),
            "cut at {cut} (last complete persist ends at {end}): recovered {:?}, expected {expected:?}",
            recovered.restore_state()
        );
        if cut > end {
            torn_cuts += 1;
            let report = recovered.report();
            assert!(
                report.cut().is_some() || report.removed_empty_segment().is_some(),
                "cut at {cut}: the partial write must be reported"
            );
        }
    }
    assert!(
        torn_cuts > 100,
        "the workload should leave many torn offsets"
    );
}

#[test]
fn unsynced_writes_are_lost_but_synced_ones_survive() {
    let dir = scratch();
    let mut model = Model::default();
    let (mut storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
    let hs = HardState::new(1, Some(1), 0);
    storage
        .persist_parts(Some(&snapshot(0, 0)), &entries(1, 1, 5), Some(&hs))
        .unwrap();
    model.persist(Some(&snapshot(0, 0)), &entries(1, 1, 5), Some(&hs));
    storage.sync().unwrap();
    storage
        .persist_parts(None, &entries(1, 6, 5), None)
        .unwrap();
    drop(storage); // a crash before the sync: the buffered persist never reached the disk

    let (_, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
    assert!(model.matches(&recovered), "{:?}", recovered.restore_state());
}

#[test]
fn crash_between_an_installed_snapshot_file_and_its_log_records() {
    let dir = scratch();
    let (mut storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
    let hs = HardState::new(2, Some(1), 3);
    storage
        .persist_parts(Some(&snapshot(0, 0)), &entries(1, 1, 5), Some(&hs))
        .unwrap();
    storage.sync().unwrap();
    // A leader of term 3 installs a snapshot at 20; the persist also moves the term.
    let installed = snapshot(20, 3);
    let new_hs = HardState::new(3, None, 20);
    storage
        .persist_parts(Some(&installed), &entries(3, 21, 2), Some(&new_hs))
        .unwrap();
    drop(storage); // the snapshot file is durable; the WAL group after it never synced

    let (_, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
    assert!(recovered.report().snapshot_ahead_of_log());
    assert_eq!(recovered.snapshot(), &installed);
    let restore = recovered.restore_state();
    assert!(
        restore.entries.is_empty(),
        "the old log does not continue the snapshot"
    );
    // The new term was made durable before the snapshot file, the commit index was not.
    assert_eq!(restore.hard_state, HardState::new(3, None, 3));

    // The decision is itself durable: the next start sees the same state.
    let (_, again) = Storage::open(dir.path(), Options::new()).unwrap();
    assert!(!again.report().snapshot_ahead_of_log());
    assert_eq!(again.restore_state().entries, restore.entries);
    assert_eq!(again.snapshot(), &installed);
}

#[test]
fn a_store_that_crashed_before_its_first_persist_is_still_fresh() {
    let dir = scratch();
    drop(Storage::open(dir.path(), Options::new()).unwrap());
    let (_, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
    assert!(
        recovered.is_fresh(),
        "no node stored its initial snapshot yet"
    );
    let (mut storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
    storage
        .persist_parts(Some(&snapshot(0, 0)), &[], None)
        .unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
    assert!(!recovered.is_fresh());
}
