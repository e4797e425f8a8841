//! What the core asks the driver to store: log entries, the hard state and snapshots.
//!
//! These types are serde-serialisable so a storage layer or a transport can encode them with
//! the format of its choice (kvd uses postcard).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::types::{Index, NodeId, Term};

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    term: Term,
    index: Index,
    payload: EntryPayload,
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader so that it can commit entries of earlier terms.
    Noop,
    /// An opaque command for the state machine, as proposed.
    Command(Bytes),
    /// A new cluster configuration; it takes effect as soon as it is in the log.
    Membership(Box<Membership>),
}

impl Entry {
    /// Builds an entry. Drivers only need this to rebuild entries they stored themselves.
    pub fn new(term: Term, index: Index, payload: EntryPayload) -> Self {
        Self {
            term,
            index,
            payload,
        }
    }

    /// The term in which a leader created the entry.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The entry's position in the log.
    pub fn index(&self) -> Index {
        self.index
    }

    /// What the entry carries.
    pub fn payload(&self) -> &EntryPayload {
        &self.payload
    }

    /// The command bytes, if this is a command entry.
    pub fn command(&self) -> Option<&Bytes> {
        match &self.payload {
            EntryPayload::Command(data) => Some(data),
            _ => None,
        }
    }

    /// Approximate size in bytes, used for batching limits and flow control.
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 24;
        OVERHEAD
            + match &self.payload {
                EntryPayload::Noop => 0,
                EntryPayload::Command(data) => data.len(),
                EntryPayload::Membership(m) => 8 * m.members().count(),
            }
    }
}

/// The state that must survive a crash besides the log: the current term, the vote cast in it,
/// and (as a hint that speeds up restart) the highest index known to be committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    term: Term,
    vote: Option<NodeId>,
    commit: Index,
}

impl HardState {
    /// Builds a hard state.
    pub fn new(term: Term, vote: Option<NodeId>, commit: Index) -> Self {
        Self { term, vote, commit }
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The candidate voted for in the current term, if any.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// A lower bound on the commit index.
    pub fn commit(&self) -> Index {
        self.commit
    }
}

/// Describes a snapshot: the last log entry it covers and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    index: Index,
    term: Term,
    membership: Membership,
}

impl SnapshotMeta {
    /// Builds snapshot metadata.
    pub fn new(index: Index, term: Term, membership: Membership) -> Self {
        Self {
            index,
            term,
            membership,
        }
    }

    /// Index of the last entry the snapshot covers.
    pub fn index(&self) -> Index {
        self.index
    }

    /// Term of the last entry the snapshot covers.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The membership in force at `index`.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
}

/// A state-machine snapshot: its metadata and the state machine's serialised bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    meta: Box<SnapshotMeta>,
    data: Bytes,
}

impl Snapshot {
    /// Builds a snapshot from its metadata and the state machine's bytes.
    pub fn new(meta: SnapshotMeta, data: Bytes) -> Self {
        Self {
            meta: Box::new(meta),
            data,
        }
    }

    /// The metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The state machine's bytes (opaque to the core).
    pub fn data(&self) -> &Bytes {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_the_payload_and_a_fixed_overhead() {
        let command = Entry::new(1, 1, EntryPayload::Command(Bytes::from_static(b"12345")));
        let noop = Entry::new(1, 2, EntryPayload::Noop);
        let members = Membership::new([1, 2, 3]).with_learners([4]);
        let membership = Entry::new(1, 3, EntryPayload::Membership(Box::new(members)));
        assert_eq!(noop.size(), 24);
        assert_eq!(command.size(), 24 + 5);
        assert_eq!(membership.size(), 24 + 8 * 4);
        assert_eq!(command.command().map(|c| c.len()), Some(5));
        assert_eq!(noop.command(), None);
    }
}
