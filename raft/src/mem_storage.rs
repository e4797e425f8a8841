//! [`MemStorage`]: an in-memory log store that carries out the core's storage outputs.
//!
//! The simulator, the examples and the tests use it; a durable store (kvd's WAL) serves the
//! same outputs the same way. It is also the reference for what a store must do.

use crate::entry::{Entry, HardState, Snapshot};
use crate::node::RestoreState;
use crate::output::Persist;
use crate::types::Index;

/// Holds the hard state, the latest snapshot and the log after it, all in memory.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding exactly `state` and the snapshot bytes `snapshot_data`, for tests that
    /// build a node's storage by hand (`test-util` feature).
    #[cfg(feature = "test-util")]
    pub fn from_state(state: RestoreState, snapshot_data: bytes::Bytes) -> Self {
        Self {
            hard_state: state.hard_state,
            snapshot: Snapshot::new(state.snapshot, snapshot_data),
            entries: state.entries,
        }
    }

    /// Carries out an [`crate::Output::Persist`] (snapshot, then entries, then hard state).
    ///
    /// # Panics
    /// If the entries leave a gap after the stored log: the core never asks for that, so it
    /// means the driver skipped or reordered a persist.
    pub fn persist(&mut self, persist: &Persist) {
        if let Some(snapshot) = persist.snapshot() {
            self.snapshot = snapshot.clone();
            self.entries.clear();
        }
        let snapshot_index = self.snapshot.meta().index();
        let new: Vec<&Entry> = persist
            .entries()
            .iter()
            .filter(|e| e.index() > snapshot_index)
            .collect();
        if let Some(first) = new.first() {
            let pos = (first.index() - snapshot_index - 1) as usize;
            assert!(
                pos <= self.entries.len(),
                "persist leaves a gap at index {}",
                first.index()
            );
            self.entries.truncate(pos);
            self.entries.extend(new.into_iter().cloned());
        }
        if let Some(hard_state) = persist.hard_state() {
            self.hard_state = *hard_state;
        }
    }

    /// Stores a snapshot the driver made of its state machine and drops the entries it
    /// covers. Call [`crate::Node::compact`] afterwards.
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

    /// Entries `first..=last` (fewer if the log is shorter), for [`crate::Output::FetchEntries`].
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

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The latest snapshot (index 0 and empty before any).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Index of the last stored entry (or of the snapshot if the log after it is empty).
    pub fn last_index(&self) -> Index {
        self.entries
            .last()
            .map_or(self.snapshot.meta().index(), Entry::index)
    }

    /// The latest configuration stored with its index, and the one in force before it (the
    /// last two membership entries of the log, falling back on the snapshot's).
    pub(crate) fn latest_memberships(&self) -> ((Index, &crate::Membership), &crate::Membership) {
        let snapshot = (
            self.snapshot.meta().index(),
            self.snapshot.meta().membership(),
        );
        let mut found = self.entries.iter().rev().filter_map(|e| match e.payload() {
            crate::EntryPayload::Membership(m) => Some((e.index(), &**m)),
            _ => None,
        });
        let latest = found.next().unwrap_or(snapshot);
        let previous = found.next().unwrap_or(snapshot);
        (latest, previous.1)
    }

    /// Everything [`crate::Node::restart`] needs.
    pub fn restore_state(&self) -> RestoreState {
        RestoreState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.meta().clone(),
            entries: self.entries.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryPayload, SnapshotMeta};
    use crate::membership::Membership;
    use crate::output::PersistToken;

    fn entries(range: std::ops::RangeInclusive<Index>) -> Vec<Entry> {
        range
            .map(|i| Entry::new(1, i, EntryPayload::Noop))
            .collect()
    }

    fn indexes(entries: Vec<Entry>) -> Vec<Index> {
        entries.iter().map(Entry::index).collect()
    }

    #[test]
    fn entries_are_served_within_the_stored_range_only() {
        let mut store = MemStorage::new();
        store.persist(&Persist {
            token: PersistToken(1),
            hard_state: None,
            snapshot: None,
            entries: entries(1..=10),
        });
        assert_eq!(store.last_index(), 10);
        let meta = SnapshotMeta::new(4, 1, Membership::new([1]));
        store.save_snapshot(Snapshot::new(meta, bytes::Bytes::new()));
        assert_eq!(store.last_index(), 10);
        assert_eq!(indexes(store.entries(5, 7)), vec![5, 6, 7]);
        assert_eq!(indexes(store.entries(5, 5)), vec![5]);
        assert_eq!(indexes(store.entries(9, 20)), vec![9, 10]);
        assert!(store.entries(4, 6).is_empty(), "index 4 is in the snapshot");
        assert!(store.entries(7, 6).is_empty());
        assert!(store.entries(11, 12).is_empty());
        // A snapshot past every entry leaves the log empty after it.
        let meta = SnapshotMeta::new(12, 1, Membership::new([1]));
        store.save_snapshot(Snapshot::new(meta, bytes::Bytes::new()));
        assert_eq!(store.last_index(), 12);
        assert!(store.entries(12, 13).is_empty());
    }
}
