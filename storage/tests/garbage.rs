//! Garbage in WAL and snapshot files never panics recovery, and never yields a state that was
//! not written: recovery either fails or returns the state after some prefix of the persists.

mod common;

use std::fs;

use common::{Model, copy_store, entries, scratch, segments, snapshot, snapshots};
use proptest::prelude::*;
use raft::HardState;
use storage::{Options, Storage};

fn options() -> Options {
    Options::new().segment_size(4096)
}

/// A store over a few segments and the model state after each of its persists.
fn build() -> (tempfile::TempDir, Vec<Model>) {
    let dir = scratch();
    let (mut storage, _) = Storage::open(dir.path(), options()).unwrap();
    let mut model = Model::default();
    let mut states = Vec::new();
    let hs = HardState::new(1, Some(1), 0);
    storage
        .persist_parts(Some(&snapshot(0, 0)), &[], Some(&hs))
        .unwrap();
    model.persist(Some(&snapshot(0, 0)), &[], Some(&hs));
    states.push(model.clone());
    for batch in 0..60 {
        let new = entries(1 + batch / 20, batch * 3 + 1, 3);
        let hs = HardState::new(1 + batch / 20, Some(1), batch * 3);
        storage.persist_parts(None, &new, Some(&hs)).unwrap();
        model.persist(None, &new, Some(&hs));
        storage.sync().unwrap();
        states.push(model.clone());
    }
    (dir, states)
}

#[derive(Clone, Debug)]
enum Damage {
    Overwrite { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
    Append { bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Damage::Append { bytes }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn damaged_files_fail_or_recover_a_written_state(file in any::<usize>(), damage in damage()) {
        let (original, states) = build();
        let copy = scratch();
        copy_store(original.path(), copy.path());
        let mut files = segments(copy.path());
        files.extend(snapshots(copy.path()));
        let victim = &files[file % files.len()];
        let mut bytes = fs::read(victim).unwrap();
        match &damage {
            Damage::Overwrite { at, bytes: garbage } => {
                let at = at % bytes.len();
                let end = (at + garbage.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&garbage[..end - at]);
            }
            Damage::Truncate { at } => bytes.truncate(at % bytes.len()),
            Damage::Append { bytes: garbage } => bytes.extend_from_slice(garbage),
        }
        fs::write(victim, bytes).unwrap();
        if let Ok((_, recovered)) = Storage::open(copy.path(), options()) {
            prop_assert!(
                states.iter().any(|state| state.matches(&recovered)),
                "{damage:?} on {victim:?} recovered an unwritten state"
            );
        }
    }
}
