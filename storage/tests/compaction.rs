//! Snapshots and compaction: covered segments and older snapshots go, the log stays whole.

mod common;

use common::{Model, entries, scratch, segments, snapshot, snapshots};
use raft::HardState;
use storage::{Options, Storage};

fn options() -> Options {
    Options::new().segment_size(4096)
}

#[test]
fn a_snapshot_removes_older_snapshots_and_the_segments_it_covers() {
    let dir = scratch();
    let mut model = Model::default();
    let (mut storage, _) = Storage::open(dir.path(), options()).unwrap();
    storage
        .persist_parts(
            Some(&snapshot(0, 0)),
            &[],
            Some(&HardState::new(1, None, 0)),
        )
        .unwrap();
    model.persist(
        Some(&snapshot(0, 0)),
        &[],
        Some(&HardState::new(1, None, 0)),
    );
    for batch in 0..100 {
        let new = entries(1, batch * 4 + 1, 4);
        storage.persist_parts(None, &new, None).unwrap();
        model.persist(None, &new, None);
        storage.sync().unwrap();
    }
    let before = segments(dir.path()).len();
    assert!(before >= 4, "{before}");
    storage.save_snapshot(&snapshot(300, 1)).unwrap();
    model.save_snapshot(snapshot(300, 1));
    storage.sync().unwrap();
    let after = segments(dir.path()).len();
    assert!(after < before && after >= 1, "{before} -> {after}");
    assert_eq!(snapshots(dir.path()).len(), 1);
    assert_eq!(storage.entries(301, 400).unwrap(), model.entries(301, 400));
    assert!(storage.entries(300, 301).unwrap().is_empty(), "compacted");
    drop(storage);

    let (_, recovered) = Storage::open(dir.path(), options()).unwrap();
    assert!(model.matches(&recovered));
}

#[test]
fn a_truncation_reaching_into_a_compacted_segment_replays() {
    // A conflict truncates entries written before the last roll; a snapshot then removes the
    // segment holding the entry the truncation follows.
    let dir = scratch();
    let mut model = Model::default();
    let (mut storage, _) = Storage::open(dir.path(), options()).unwrap();
    let write = |storage: &mut Storage, model: &mut Model, new: Vec<raft::Entry>| {
        storage.persist_parts(None, &new, None).unwrap();
        model.persist(None, &new, None);
        storage.sync().unwrap();
    };
    let mut index = 0;
    while segments(dir.path()).len() < 2 {
        index += 1;
        write(&mut storage, &mut model, entries(1, index, 1));
    }
    // Entry `index` opened the second segment, whose header continues after `index - 1`.
    write(&mut storage, &mut model, entries(1, index + 1, 2));
    let from = index - 2;
    write(&mut storage, &mut model, entries(2, from, 20)); // truncates from the first segment
    let snap = snapshot(index + 5, 2);
    storage.save_snapshot(&snap).unwrap();
    model.save_snapshot(snap);
    storage.sync().unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "the first segment is covered and removed"
    );
    drop(storage);

    let (_, recovered) = Storage::open(dir.path(), options()).unwrap();
    assert!(model.matches(&recovered), "{:?}", recovered.restore_state());
}

#[test]
fn the_index_costs_at_most_32_bytes_per_entry() {
    let dir = scratch();
    let (mut storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
    let count = 20_000;
    for index in 1..=count {
        storage
            .persist_parts(None, &entries(1, index, 1), None)
            .unwrap();
        if index % 1000 == 0 {
            storage.sync().unwrap();
            assert!(
                storage.index_bytes() as u64 <= 32 * index,
                "{}",
                storage.index_bytes()
            );
        }
    }
    storage.sync().unwrap();
    drop(storage);
    let (storage, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
    assert_eq!(recovered.restore_state().entries.len() as u64, count);
    assert!(storage.index_bytes() as u64 <= 32 * count);
}

#[test]
fn the_latest_snapshot_is_read_back_from_its_file() {
    let dir = scratch();
    let (mut storage, _) = Storage::open(dir.path(), options()).unwrap();
    assert_eq!(storage.latest_snapshot().unwrap().meta().index(), 0);
    storage
        .persist_parts(None, &entries(1, 1, 10), Some(&HardState::new(1, None, 10)))
        .unwrap();
    storage.sync().unwrap();
    let snap = snapshot(8, 1);
    storage.save_snapshot(&snap).unwrap();
    storage.sync().unwrap();
    assert_eq!(storage.latest_snapshot_meta(), snap.meta());
    let read = storage.latest_snapshot().unwrap();
    assert_eq!(read.meta(), snap.meta());
    assert_eq!(read.data(), snap.data());

    // The data lives only in the file: damage there is reported, not papered over.
    let files = snapshots(dir.path());
    assert_eq!(files.len(), 1);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    let err = storage.latest_snapshot().unwrap_err();
    assert!(
        matches!(err, storage::StorageError::Corrupt { .. }),
        "{err}"
    );
}
