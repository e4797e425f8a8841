//! Random sequences of appends, truncations, hard states, snapshots, fetches and crashes
//! (with the WAL cut anywhere after its last sync), compared with a model of
//! `raft::MemStorage`'s semantics.

mod common;

use std::fs::{self, OpenOptions};
use std::path::PathBuf;

use common::{Model, entries, scratch, segments, snapshot};
use proptest::prelude::*;
use raft::{HardState, Snapshot};
use storage::{Options, Storage};

#[derive(Clone, Debug)]
enum Op {
    /// Write `count` entries starting `back` entries before the end (a conflict if > 0).
    Append {
        back: u64,
        count: u64,
        new_term: bool,
        hard_state: bool,
    },
    /// Store a hard state only.
    HardState {
        vote: bool,
    },
    /// A leader's snapshot replaces the log (`ahead` past the end, or inside it if 0).
    Install {
        ahead: u64,
        after: u64,
    },
    /// The driver snapshots its state machine at a fraction of the log.
    Save {
        fraction: u8,
    },
    Fetch {
        first: u8,
        len: u8,
    },
    Sync,
    /// A crash: buffered writes are lost and, with `cut`, the last segment loses an arbitrary
    /// part of what was written after its last sync (a power loss).
    Crash {
        cut: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..4, 1u64..6, any::<bool>(), any::<bool>()).prop_map(|(back, count, new_term, hard_state)| Op::Append { back, count, new_term, hard_state }),
        1 => any::<bool>().prop_map(|vote| Op::HardState { vote }),
        1 => (0u64..6, 0u64..3).prop_map(|(ahead, after)| Op::Install { ahead, after }),
        2 => any::<u8>().prop_map(|fraction| Op::Save { fraction }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(first, len)| Op::Fetch { first, len }),
        3 => Just(Op::Sync),
        2 => proptest::option::of(any::<u64>()).prop_map(|cut| Op::Crash { cut }),
    ]
}

/// What recovery yields from the WAL state `h` and the newest snapshot file `snapshot`.
fn overlay(h: &Model, snapshot: &Snapshot) -> Model {
    let meta = snapshot.meta();
    if meta.index() <= h.snapshot.meta().index() && h.snapshot == *snapshot {
        return h.clone();
    }
    let mut result = h.clone();
    if h.term_at(meta.index()) == Some(meta.term()) {
        result.save_snapshot(snapshot.clone());
    } else {
        result.snapshot = snapshot.clone();
        result.entries.clear();
    }
    result
}

struct Harness {
    dir: tempfile::TempDir,
    storage: Option<Storage>,
    model: Model,
    /// States since the last sync (the first is the synced one).
    history: Vec<Model>,
    synced_tail: (PathBuf, u64),
    max_term: u64,
    preallocate: bool,
}

impl Harness {
    fn options(&self) -> Options {
        Self::options_for(self.preallocate)
    }

    fn options_for(preallocate: bool) -> Options {
        // Tiny segments to exercise rolls and compaction; no buffering, so that records of
        // unsynced persists reach the file and a crash can tear them.
        Options::new()
            .segment_size(4096)
            .write_buffer(0)
            .preallocate(preallocate)
    }

    /// With `preallocate`, file lengths do not tell where the data ends, so crashes do not cut.
    fn new(preallocate: bool) -> Self {
        let dir = scratch();
        let (mut storage, recovered) =
            Storage::open(dir.path(), Self::options_for(preallocate)).unwrap();
        assert!(recovered.is_fresh());
        let mut model = Model::default();
        let first = snapshot(0, 0);
        let hs = HardState::new(1, None, 0);
        storage.persist_parts(Some(&first), &[], Some(&hs)).unwrap();
        storage.sync().unwrap();
        model.persist(Some(&first), &[], Some(&hs));
        let mut harness = Self {
            dir,
            storage: Some(storage),
            history: vec![model.clone()],
            model,
            synced_tail: (PathBuf::new(), 0),
            max_term: 1,
            preallocate,
        };
        harness.note_sync();
        harness
    }

    fn storage(&mut self) -> &mut Storage {
        self.storage.as_mut().expect("open")
    }

    fn note_sync(&mut self) {
        let tail = segments(self.dir.path()).pop().unwrap();
        let len = fs::metadata(&tail).unwrap().len();
        self.synced_tail = (tail, len);
        self.history = vec![self.model.clone()];
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let last = self.model.last_index();
        let base = self.model.snapshot.meta().index();
        match *op {
            Op::Append {
                back,
                count,
                new_term,
                hard_state,
            } => {
                if new_term {
                    self.max_term += 1;
                }
                let first = (last + 1).saturating_sub(back).max(base + 1);
                let new = entries(self.max_term, first, count);
                let hs = hard_state
                    .then(|| HardState::new(self.max_term, Some(1), (first + count - 1) / 2));
                self.storage()
                    .persist_parts(None, &new, hs.as_ref())
                    .unwrap();
                self.model.persist(None, &new, hs.as_ref());
            }
            Op::HardState { vote } => {
                let hs = HardState::new(self.max_term, vote.then_some(2), last / 2);
                self.storage().persist_parts(None, &[], Some(&hs)).unwrap();
                self.model.persist(None, &[], Some(&hs));
            }
            Op::Install { ahead, after } => {
                self.max_term += 1;
                let index = if ahead == 0 {
                    (base + last) / 2
                } else {
                    last + ahead
                };
                let snap = snapshot(index, self.max_term);
                let new = entries(self.max_term, index + 1, after);
                let hs = HardState::new(self.max_term, None, index);
                // Before the snapshot file, the storage makes the new term durable.
                let mut pre = self.model.clone();
                pre.hard_state = HardState::new(hs.term(), hs.vote(), pre.hard_state.commit());
                self.history.push(pre);
                self.storage()
                    .persist_parts(Some(&snap), &new, Some(&hs))
                    .unwrap();
                self.model.persist(Some(&snap), &new, Some(&hs));
            }
            Op::Save { fraction } => {
                if last > base {
                    let index = base + 1 + (last - base - 1) * u64::from(fraction) / 255;
                    let term = self.model.term_at(index).unwrap();
                    let snap = snapshot(index, term);
                    self.storage().save_snapshot(&snap).unwrap();
                    self.model.save_snapshot(snap);
                }
            }
            Op::Fetch { first, len } => {
                let first = base.saturating_sub(2) + u64::from(first) % (last - base + 4);
                let last = first + u64::from(len % 12);
                let got = self.storage().entries(first, last).unwrap();
                prop_assert_eq!(got, self.model.entries(first, last));
            }
            Op::Sync => {
                self.storage().sync().unwrap();
                self.note_sync();
                return Ok(());
            }
            Op::Crash { cut } => {
                drop(self.storage.take());
                if let Some(cut) = cut.filter(|_| !self.preallocate) {
                    self.cut_tail(cut);
                }
                let (storage, recovered) = Storage::open(self.dir.path(), self.options()).unwrap();
                let newest = self.model.snapshot.clone();
                let matched = self
                    .history
                    .iter()
                    .rev()
                    .map(|h| overlay(h, &newest))
                    .find(|candidate| candidate.matches(&recovered));
                prop_assert!(
                    matched.is_some(),
                    "recovered {:?} / {:?} is none of the states since the last sync {:?}",
                    recovered.restore_state(),
                    recovered.snapshot().meta(),
                    self.history
                );
                self.model = matched.unwrap();
                self.storage = Some(storage);
                self.note_sync();
                return Ok(());
            }
        }
        self.history.push(self.model.clone());
        Ok(())
    }

    /// Cuts the last segment somewhere after the point its last sync made durable.
    fn cut_tail(&self, cut: u64) {
        let tail = segments(self.dir.path()).pop().unwrap();
        let len = fs::metadata(&tail).unwrap().len();
        let durable = if tail == self.synced_tail.0 {
            self.synced_tail.1
        } else {
            0 // rolled since: the older segment was synced by the roll itself
        };
        let at = durable + cut % (len - durable + 1);
        let file = OpenOptions::new().write(true).open(&tail).unwrap();
        file.set_len(at).unwrap();
    }

    /// A clean restart must give back exactly the model.
    fn check_reopen(&mut self) -> Result<(), TestCaseError> {
        self.storage().sync().unwrap();
        drop(self.storage.take());
        let (storage, recovered) = Storage::open(self.dir.path(), self.options()).unwrap();
        prop_assert!(
            self.model.matches(&recovered),
            "{:?} != {:?}",
            recovered.restore_state(),
            self.model
        );
        // 16 bytes per record and per term run, vectors at least half full (plus slack).
        prop_assert!(storage.index_bytes() as u64 <= 64 * self.model.entries.len() as u64 + 1024);
        self.storage = Some(storage);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn recovered_state_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut harness = Harness::new(false);
        for op in &ops {
            harness.apply(op)?;
        }
        harness.check_reopen()?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same with zero-filled preallocated segments (process crashes only).
    #[test]
    fn preallocated_segments_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut harness = Harness::new(true);
        for op in &ops {
            harness.apply(op)?;
        }
        harness.check_reopen()?;
    }
}
