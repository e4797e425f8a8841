//! What the core asks its driver to do.
//!
//! The driver drains [`Output`]s with [`crate::Node::poll_output`] until it returns `None`, and
//! must act on them in order. Work that takes time is completed by reporting back:
//! [`crate::Node::persisted`] for [`Output::Persist`], [`crate::Node::applied`] for
//! [`Output::Apply`] / [`Output::ApplySnapshot`], [`crate::Node::entries_fetched`] for
//! [`Output::FetchEntries`] and [`crate::Node::send_snapshot`] for [`Output::SnapshotNeeded`].

use crate::entry::{Entry, HardState, Snapshot};
use crate::error::Error;
use crate::message::Message;
use crate::types::{Index, NodeId, Role, Term};

/// Identifies one [`Persist`]; tokens increase, and reporting one durable reports all before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub(crate) u64);

impl PersistToken {
    /// The token's number (for logs and metrics).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// One unit of work for the driver.
#[derive(Debug)]
pub enum Output {
    /// Make this state durable, in this order, then report [`crate::Node::persisted`].
    Persist(Persist),
    /// Send `message` to peer `to`. Delivery may fail; the core retries what matters.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Apply these committed entries to the state machine, in order, then report
    /// [`crate::Node::applied`]. Noop and membership entries only advance the applied index.
    Apply(Vec<Entry>),
    /// Replace the state machine with this snapshot (already handed to storage by an earlier
    /// [`Output::Persist`]), then report [`crate::Node::applied`] with its index.
    ApplySnapshot(Snapshot),
    /// The read with this id may now be served from the local state machine: it has applied
    /// at least `index`, and leadership was confirmed after the read arrived.
    ReadReady {
        /// The id given to [`crate::Node::read_index`].
        id: u64,
        /// The read index.
        index: Index,
    },
    /// The read with this id cannot be served here; retry (elsewhere).
    ReadFailed {
        /// The id given to [`crate::Node::read_index`].
        id: u64,
        /// Why.
        error: Error,
    },
    /// Read entries `first..=last` from storage and hand them to
    /// [`crate::Node::entries_fetched`] (the core dropped them from memory; a lagging follower
    /// needs them).
    FetchEntries {
        /// First index wanted.
        first: Index,
        /// Last index wanted.
        last: Index,
    },
    /// Follower `to` needs the latest snapshot: pass it to [`crate::Node::send_snapshot`].
    SnapshotNeeded {
        /// The follower.
        to: NodeId,
    },
    /// The node's role, term or known leader changed. Drivers fail pending client requests
    /// here when leadership is lost.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
}

/// State to make durable, in this order:
/// 1. `snapshot`, if any: store it; the log is now empty after the snapshot's index;
/// 2. `entries`, if any: drop every stored entry with index ≥ `entries[0].index()`, then append;
/// 3. `hard_state`, if any: overwrite the stored hard state.
///
/// Then fsync, and report [`crate::Node::persisted`] with the token. Persists must be carried
/// out in the order they were emitted (they may be batched into one fsync).
///
/// A persist that carries a `hard_state` (or a `snapshot`) must become durable all or
/// nothing: after a crash, either all of its parts are there or none is. The usual way is a
/// log whose recovery drops a trailing group of records that lacks its final hard-state
/// record (the `storage` crate does this). Without it, a crash could keep entries of a new
/// term while losing the record of that term, and the node could later write different
/// entries at the same index and term. A persist without a hard state may be torn: any
/// prefix of its entries may survive.
#[derive(Debug)]
pub struct Persist {
    pub(crate) token: PersistToken,
    pub(crate) hard_state: Option<HardState>,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) entries: Vec<Entry>,
}

impl Persist {
    /// The token to report once this is durable.
    pub fn token(&self) -> PersistToken {
        self.token
    }

    /// The new hard state, if it changed.
    pub fn hard_state(&self) -> Option<&HardState> {
        self.hard_state.as_ref()
    }

    /// A snapshot that replaces the log, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Entries to write (replacing any stored suffix from the first one's index).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Takes the parts by value: `(token, hard_state, snapshot, entries)`.
    pub fn into_parts(
        self,
    ) -> (
        PersistToken,
        Option<HardState>,
        Option<Snapshot>,
        Vec<Entry>,
    ) {
        (self.token, self.hard_state, self.snapshot, self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryPayload, SnapshotMeta};

    #[test]
    fn a_persist_hands_over_its_parts() {
        let hard_state = HardState::new(3, Some(2), 1);
        let snapshot = Snapshot::new(SnapshotMeta::default(), bytes::Bytes::new());
        let entries = vec![Entry::new(3, 1, EntryPayload::Noop)];
        let persist = Persist {
            token: PersistToken(7),
            hard_state: Some(hard_state),
            snapshot: Some(snapshot.clone()),
            entries: entries.clone(),
        };
        assert_eq!(persist.token().get(), 7);
        let (token, hs, snap, ents) = persist.into_parts();
        assert_eq!(token, PersistToken(7));
        assert_eq!(hs, Some(hard_state));
        assert_eq!(snap, Some(snapshot));
        assert_eq!(ents, entries);
    }
}
