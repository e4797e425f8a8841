//! Helpers shared by the integration tests: a reference model and directory tools.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft::{Entry, EntryPayload, HardState, Index, Membership, Snapshot, SnapshotMeta, Term};
use storage::Recovered;

/// The semantics of `raft::MemStorage`, driven by parts (a `raft::Persist` cannot be built
/// outside the core): the model every recovered state is compared with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Model {
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) {
        if let Some(snapshot) = snapshot {
            self.snapshot = snapshot.clone();
            self.entries.clear();
        }
        let base = self.snapshot.meta().index();
        let new: Vec<&Entry> = entries.iter().filter(|e| e.index() > base).collect();
        if let Some(first) = new.first() {
            let pos = (first.index() - base - 1) as usize;
            assert!(pos <= self.entries.len());
            self.entries.truncate(pos);
            self.entries.extend(new.into_iter().cloned());
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = *hard_state;
        }
    }

    pub fn save_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta().index();
        let old = self.snapshot.meta().index();
        if index <= old {
            return;
        }
        let covered = ((index - old) as usize).min(self.entries.len());
        self.entries.drain(..covered);
        self.snapshot = snapshot;
    }

    pub fn entries(&self, first: Index, last: Index) -> Vec<Entry> {
        let base = self.snapshot.meta().index() + 1;
        if first < base || last < first {
            return Vec::new();
        }
        let start = (first - base) as usize;
        let end = ((last - base + 1) as usize).min(self.entries.len());
        self.entries
            .get(start..end)
            .map(<[Entry]>::to_vec)
            .unwrap_or_default()
    }

    pub fn last_index(&self) -> Index {
        self.entries
            .last()
            .map_or(self.snapshot.meta().index(), Entry::index)
    }

    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.meta().index() {
            return Some(self.snapshot.meta().term());
        }
        self.entries
            .iter()
            .find(|e| e.index() == index)
            .map(Entry::term)
    }

    /// Whether `recovered` holds exactly this state.
    pub fn matches(&self, recovered: &Recovered) -> bool {
        let restore = recovered.restore_state();
        restore.hard_state == self.hard_state
            && &restore.snapshot == self.snapshot.meta()
            && recovered.snapshot() == &self.snapshot
            && restore.entries == self.entries
    }
}

pub fn entry(term: Term, index: Index) -> Entry {
    Entry::new(
        term,
        index,
        EntryPayload::Command(Bytes::from(format!("command {index} of term {term}"))),
    )
}

pub fn entries(term: Term, first: Index, count: u64) -> Vec<Entry> {
    (first..first + count).map(|i| entry(term, i)).collect()
}

pub fn snapshot(index: Index, term: Term) -> Snapshot {
    Snapshot::new(
        SnapshotMeta::new(index, term, Membership::new([1, 2, 3])),
        Bytes::from(format!("state machine up to {index}")),
    )
}

/// A scratch directory on tmpfs when there is one (the tests open thousands of stores and
/// fsync is free there); the logic under test is the same.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("temp dir")
    } else {
        tempfile::tempdir().expect("temp dir")
    }
}

/// Segment files, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Snapshot files, oldest first.
pub fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("snap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        name.split(['-', '.']).nth(1).unwrap_or("").to_string()
    });
    files
}

/// Copies the `wal` and `snap` directories of `from` into a fresh `to`.
pub fn copy_store(from: &Path, to: &Path) {
    for sub in ["wal", "snap"] {
        let target = to.join(sub);
        fs::create_dir_all(&target).unwrap();
        for entry in fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
}
