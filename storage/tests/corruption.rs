//! Damage anywhere but the tail is an error naming the file and the offset — never a silent
//! cut. Bit flips (the length field included), missing segments, damaged snapshots.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::{Model, copy_store, entries, scratch, segments, snapshot, snapshots};
use raft::HardState;
use storage::{Options, Storage, StorageError};

fn options() -> Options {
    Options::new().segment_size(4096).preallocate(false)
}

/// A store over several segments. Returns the model and, per segment file, the offsets where
/// persists (groups of records) start.
fn build(dir: &Path, with_snapshot: bool) -> (Model, Vec<(PathBuf, Vec<u64>)>) {
    let mut model = Model::default();
    let (mut storage, _) = Storage::open(dir, options()).unwrap();
    let mut starts: Vec<(PathBuf, Vec<u64>)> = Vec::new();
    let mut record_start = |dir: &Path| {
        let last = segments(dir).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        match starts.last_mut() {
            Some((path, offsets)) if *path == last => offsets.push(len),
            // A new segment: its first persist starts at 0 as far as the test knows (the
            // header is in front of it).
            _ => starts.push((last, vec![0, len])),
        }
    };
    let first = (Some(snapshot(0, 0)), HardState::new(1, Some(1), 0));
    storage
        .persist_parts(first.0.as_ref(), &[], Some(&first.1))
        .unwrap();
    model.persist(first.0.as_ref(), &[], Some(&first.1));
    storage.sync().unwrap();
    for batch in 0..80u64 {
        let hs = HardState::new(1, Some(1), batch * 5);
        let new = entries(1, batch * 5 + 1, 5);
        storage.persist_parts(None, &new, Some(&hs)).unwrap();
        storage.sync().unwrap();
        model.persist(None, &new, Some(&hs));
        record_start(dir);
        if with_snapshot && batch == 60 {
            storage.save_snapshot(&snapshot(240, 1)).unwrap();
            storage.sync().unwrap();
            model.save_snapshot(snapshot(240, 1));
        }
    }
    // A restart begins a new segment; a few persists after it give the last segment several.
    drop(storage);
    let (mut storage, _) = Storage::open(dir, options()).unwrap();
    let next = model.last_index() + 1;
    for i in 0..5 {
        let new = entries(2, next + i, 1);
        let hs = HardState::new(2, None, next + i - 1);
        storage.persist_parts(None, &new, Some(&hs)).unwrap();
        storage.sync().unwrap();
        model.persist(None, &new, Some(&hs));
        record_start(dir);
    }
    // `starts` holds end offsets; turn them into start offsets of each group per segment.
    let starts = starts
        .into_iter()
        .map(|(path, mut ends)| {
            ends.pop();
            (path, ends)
        })
        .collect();
    (model, starts)
}

fn flip(path: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

fn open_copy(
    original: &Path,
    damage: impl FnOnce(&Path),
) -> Result<storage::Recovered, StorageError> {
    let copy = scratch();
    copy_store(original, copy.path());
    damage(copy.path());
    Storage::open(copy.path(), options()).map(|(_, recovered)| recovered)
}

fn in_copy(copy: &Path, original: &Path) -> PathBuf {
    let parent = original.parent().unwrap().file_name().unwrap();
    copy.join(parent).join(original.file_name().unwrap())
}

#[test]
fn a_flipped_bit_anywhere_before_the_last_persist_names_file_and_offset() {
    let dir = scratch();
    let (_, groups) = build(dir.path(), false);
    assert!(groups.len() >= 3, "the test wants several segments");
    let last_segment = segments(dir.path()).pop().unwrap();
    let mut checked = 0;
    for (path, starts) in &groups {
        let len = fs::metadata(path).unwrap().len();
        // Bytes of the segment's last persist in the last segment may read as a torn tail.
        let end = if *path == last_segment {
            *starts.last().unwrap()
        } else {
            len
        };
        // Every byte of the first and the last segment; every 11th byte of the others (their
        // records are alike) to keep the test quick.
        let step = if path == &groups[0].0 || *path == last_segment {
            1
        } else {
            11
        };
        for offset in (0..end).step_by(step) {
            let bit = (offset % 8) as u8;
            let result = open_copy(dir.path(), |copy| flip(&in_copy(copy, path), offset, bit));
            // The group holding the byte: the error must point into it, at or before the byte.
            let group_start = starts
                .iter()
                .rev()
                .find(|s| **s <= offset)
                .copied()
                .unwrap_or(0);
            match result {
                Err(StorageError::Corrupt {
                    path: reported,
                    offset: at,
                    ..
                }) => {
                    assert_eq!(reported.file_name(), path.file_name(), "flip at {offset}");
                    assert!(
                        group_start <= at && at <= offset,
                        "flip at {offset} reported at {at} (group starts at {group_start})"
                    );
                }
                other => panic!("flip of bit {bit} at {offset} in {path:?}: {other:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 5000, "{checked}");
}

#[test]
fn damage_in_the_final_persist_is_a_torn_tail_or_an_error_never_a_wrong_state() {
    let dir = scratch();
    let (model, groups) = build(dir.path(), false);
    let (path, starts) = groups.last().unwrap();
    let last_start = *starts.last().unwrap();
    let len = fs::metadata(path).unwrap().len();
    for offset in last_start..len {
        let result = open_copy(dir.path(), |copy| flip(&in_copy(copy, path), offset, 3));
        match result {
            Ok(recovered) => {
                // Cut as torn: exactly the state before the final persist.
                assert!(recovered.report().cut().is_some());
                let restore = recovered.restore_state();
                assert_eq!(restore.entries, model.entries[..model.entries.len() - 1]);
            }
            Err(StorageError::Corrupt { .. }) => {}
            Err(other) => panic!("flip at {offset}: {other}"),
        }
    }
}

#[test]
fn a_length_that_runs_past_the_end_of_the_file_is_corruption_not_a_torn_tail() {
    let dir = scratch();
    let (_, groups) = build(dir.path(), false);
    let (path, starts) = groups.last().unwrap();
    assert!(starts.len() >= 2);
    let victim = starts[starts.len() - 2]; // a record with another persist after it
    // Bit 4 of the length's third byte adds 1 MiB: the record now "runs past" the file end.
    let err = open_copy(dir.path(), |copy| flip(&in_copy(copy, path), victim + 2, 4)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(path.file_name().unwrap().to_str().unwrap())
            && message.contains(&format!("byte offset {victim}")),
        "{message}"
    );
}

#[test]
fn a_damaged_snapshot_stops_the_node_naming_the_file() {
    let dir = scratch();
    let (_, _) = build(dir.path(), true);
    let snaps = snapshots(dir.path());
    assert_eq!(snaps.len(), 1, "older snapshots are removed");
    let snap = snaps[0].clone();
    let len = fs::metadata(&snap).unwrap().len();
    for offset in [0, 9, 17, len / 2, len - 1] {
        let err = open_copy(dir.path(), |copy| flip(&in_copy(copy, &snap), offset, 0)).unwrap_err();
        match err {
            StorageError::Corrupt { path, .. } => assert_eq!(path.file_name(), snap.file_name()),
            other => panic!("{other}"),
        }
    }
    let err = open_copy(dir.path(), |copy| {
        let file = OpenOptions::new()
            .write(true)
            .open(in_copy(copy, &snap))
            .unwrap();
        file.set_len(len - 3).unwrap();
    })
    .unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn missing_segments_are_errors() {
    let dir = scratch();
    let (_, _) = build(dir.path(), true);
    let files = segments(dir.path());
    assert_eq!(files.len(), 4, "{files:?}");
    // The first kept segment, a middle one, and the tail from the segment that was active
    // when the snapshot was saved (the snapshot remembers it).
    let first_index = |path: &PathBuf| -> u64 {
        let name = path.file_stem().unwrap().to_str().unwrap();
        name.split('-').nth(1).unwrap().parse().unwrap()
    };
    // The snapshot was saved right after index 305 was written.
    let active_at_snapshot = files.iter().rposition(|f| first_index(f) <= 306).unwrap();
    assert!(active_at_snapshot >= 1 && active_at_snapshot + 1 < files.len());
    for victims in [&files[0..1], &files[2..3], &files[active_at_snapshot..]] {
        let err = open_copy(dir.path(), |copy| {
            for victim in victims {
                fs::remove_file(in_copy(copy, victim)).unwrap();
            }
        })
        .expect_err(&format!("removing {victims:?}"));
        assert!(
            matches!(err, StorageError::MissingSegment { .. }),
            "removing {victims:?}: {err}"
        );
    }
}

#[test]
fn a_truncated_middle_segment_is_an_error() {
    let dir = scratch();
    let (_, groups) = build(dir.path(), false);
    let (path, starts) = &groups[1];
    let boundary = starts[starts.len() - 1];
    // Cut at a persist boundary: the next segment no longer continues the log.
    let err = open_copy(dir.path(), |copy| {
        let file = OpenOptions::new()
            .write(true)
            .open(in_copy(copy, path))
            .unwrap();
        file.set_len(boundary).unwrap();
    })
    .unwrap_err();
    assert!(matches!(err, StorageError::MissingSegment { .. }), "{err}");
    // Cut inside a record: corruption at that record.
    let err = open_copy(dir.path(), |copy| {
        let file = OpenOptions::new()
            .write(true)
            .open(in_copy(copy, path))
            .unwrap();
        file.set_len(boundary + 7).unwrap();
    })
    .unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupt { offset, .. } if offset == boundary),
        "{err}"
    );
}

#[test]
fn zeros_after_the_last_record_are_the_end_of_the_log() {
    let dir = scratch();
    let (model, _) = build(dir.path(), false);
    let files = segments(dir.path());
    let recovered = open_copy(dir.path(), |copy| {
        for file in [&files[0], files.last().unwrap()] {
            let mut f = OpenOptions::new()
                .append(true)
                .open(in_copy(copy, file))
                .unwrap();
            f.write_all(&[0; 10_000]).unwrap();
        }
    })
    .unwrap();
    assert!(model.matches(&recovered));
    assert_eq!(recovered.report().cut(), None);
}

#[test]
fn repair_cuts_at_the_damage_and_says_what_it_dropped() {
    let dir = scratch();
    let (_, groups) = build(dir.path(), false);
    let files = segments(dir.path());
    let (path, starts) = &groups[1];
    let victim = starts[3];
    flip(path, victim + 20, 2);
    let err = Storage::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");

    let report = storage::repair(dir.path(), options()).unwrap();
    let actions = report.actions();
    match &actions[0] {
        storage::RepairAction::Cut {
            path: cut, offset, ..
        } => {
            assert_eq!(cut, path);
            assert_eq!(*offset, victim);
        }
        other => panic!("{other:?}"),
    }
    let position = files.iter().position(|f| f == path).unwrap();
    let removed: Vec<&PathBuf> = actions
        .iter()
        .filter_map(|a| match a {
            storage::RepairAction::Removed { path, .. } => Some(path),
            _ => None,
        })
        .collect();
    assert_eq!(removed, files[position + 1..].iter().collect::<Vec<_>>());
    assert!(
        report
            .to_string()
            .contains(&format!("at byte offset {victim}"))
    );

    // The store opens again, with the log ending before the damaged persist.
    let (_, recovered) = Storage::open(dir.path(), options()).unwrap();
    let entries = &recovered.restore_state().entries;
    assert!(!entries.is_empty());
    assert!(entries.windows(2).all(|w| w[1].index() == w[0].index() + 1));
    assert_eq!(
        storage::repair(dir.path(), options()).unwrap().actions(),
        &[]
    );
}
