//! The replicated state machine: an ordered key-value map plus client sessions.
//!
//! Sessions make retries idempotent: each client's recent request ids and their results live
//! in the replicated state (and so in snapshots), so a retry after a failover is recognised by
//! the new leader and answered with the original result instead of being applied again.
//!
//! Everything here is driven by the log, never by local clocks, so every replica computes the
//! same state: a session expires when the log has moved `session_expiry_entries` past the
//! client's last write, and when more than `max_sessions` clients are known the least recently
//! active one is evicted. Each client remembers its last `request_window` request ids.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use raft::{Entry, EntryPayload, Index};
use serde::{Deserialize, Serialize};

use crate::command::{self, Write, WriteOp};

/// Limits of the client session table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Request ids remembered per client (a retry older than that is refused).
    pub request_window: usize,
    /// Clients remembered at once; the least recently active is evicted beyond this.
    pub max_sessions: usize,
    /// A client that has not written for this many log entries is forgotten: with its last
    /// applied write at index `i`, it is still known while entry `i + session_expiry_entries`
    /// applies and forgotten before entry `i + session_expiry_entries + 1` does. Every entry
    /// counts (no-op and membership entries too); a duplicate or refused request is not a
    /// write.
    pub session_expiry_entries: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            request_window: 128,
            max_sessions: 100_000,
            session_expiry_entries: 10_000_000,
        }
    }
}

/// Values up to this size are copied out of their log entry when applied (see `apply_op`).
const COPY_VALUES_UP_TO: usize = 1024;

/// The outcome of applying a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// Applied now.
    Applied,
    /// A retry of a request already applied: nothing changed, this is the original result.
    Duplicate,
    /// The request id is older than the client's remembered window: it may or may not have
    /// been applied, and it was not applied now.
    TooOld,
}

/// A committed entry this replica cannot apply. Every replica must apply every committed entry
/// in order: skipping one it does not understand (a command from a newer version, during a
/// rolling upgrade) would let this replica diverge silently from the others, so the node stops
/// instead and names the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("committed entry {index} cannot be decoded: {reason}")]
pub struct ApplyError {
    index: Index,
    reason: String,
}

impl ApplyError {
    /// The log index of the entry.
    pub fn index(&self) -> Index {
        self.index
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Session {
    last_index: Index,
    /// Request ids applied recently (the window).
    recent: BTreeSet<u64>,
    /// Requests older than every id in the window have been forgotten; any id at or below
    /// this is refused as [`WriteResult::TooOld`] unless still in `recent`.
    forgotten_up_to: Option<u64>,
}

/// The key-value map and the session table.
#[derive(Debug, Default)]
pub struct KvStore {
    data: imbl::OrdMap<String, Bytes>,
    sessions: imbl::HashMap<Arc<str>, Session>,
    /// Each session's last index → its client id, for expiry and eviction in log order (every
    /// index holds one entry, so one client at most).
    activity: BTreeMap<Index, Arc<str>>,
    limits: SessionLimits,
    applied: Index,
    /// Sum of key and value lengths in `data`.
    data_bytes: u64,
}

/// Borrowed twin of [`SnapshotImage`], encoded byte for byte the same.
#[derive(Serialize)]
struct SnapshotImageRef<'a> {
    applied: Index,
    data: DataRef<'a>,
    sessions: SessionsRef<'a>,
}

/// The data map serialised as a sequence of `(key, value)` pairs, like a `Vec<(K, V)>`.
struct DataRef<'a>(&'a imbl::OrdMap<String, Bytes>);

impl Serialize for DataRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

/// The session table serialised as a sequence of `(client id, session)` pairs.
struct SessionsRef<'a>(&'a imbl::HashMap<Arc<str>, Session>);

impl Serialize for SessionsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(k, v)| (&**k, v)))
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    applied: Index,
    data: Vec<(String, Bytes)>,
    sessions: Vec<(String, Session)>,
}

impl KvStore {
    /// An empty store with these session limits.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Bytes> {
        self.data.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of client sessions remembered.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The last log index applied.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Applies a committed entry: a command is decoded and applied (its result returned), a
    /// no-op or membership entry only advances the applied index. A command that cannot be
    /// decoded is an error and changes nothing: the caller must stop, not skip it.
    pub fn apply_entry(&mut self, entry: &Entry) -> Result<Option<WriteResult>, ApplyError> {
        let index = entry.index();
        match entry.payload() {
            EntryPayload::Command(bytes) => {
                let write = command::decode(bytes).map_err(|e| ApplyError {
                    index,
                    reason: e.to_string(),
                })?;
                Ok(Some(self.apply(index, &write)))
            }
            EntryPayload::Noop | EntryPayload::Membership(_) => {
                self.skip(index);
                Ok(None)
            }
        }
    }

    /// Records that the entry at `index` applied without touching the map (no-op and
    /// membership entries).
    pub fn skip(&mut self, index: Index) {
        self.applied = self.applied.max(index);
        self.expire(index);
    }

    /// Applies the write at log `index`.
    pub fn apply(&mut self, index: Index, write: &Write<'_>) -> WriteResult {
        self.applied = self.applied.max(index);
        self.expire(index);
        if write.client_id.is_empty() {
            self.apply_op(&write.op);
            return WriteResult::Applied;
        }
        let window = self.limits.request_window.max(1);
        let session = match self.sessions.get_mut(write.client_id) {
            Some(session) => session,
            None => self.sessions.entry(Arc::from(write.client_id)).or_default(),
        };
        if session.recent.contains(&write.request_id) {
            return WriteResult::Duplicate;
        }
        if session
            .forgotten_up_to
            .is_some_and(|old| write.request_id <= old)
        {
            return WriteResult::TooOld;
        }
        let client = match self.activity.remove(&session.last_index) {
            Some(client) if *client == *write.client_id => client,
            other => {
                // A new session (or, defensively, an index owned by another client: put it back).
                if let Some(owner) = other {
                    self.activity.insert(session.last_index, owner);
                }
                Arc::from(write.client_id)
            }
        };
        session.last_index = index;
        session.recent.insert(write.request_id);
        while session.recent.len() > window {
            let oldest = session.recent.pop_first().expect("non-empty");
            session.forgotten_up_to =
                Some(session.forgotten_up_to.map_or(oldest, |f| f.max(oldest)));
        }
        self.activity.insert(index, client);
        self.evict();
        self.apply_op(&write.op);
        WriteResult::Applied
    }

    fn apply_op(&mut self, op: &WriteOp<'_>) {
        match op {
            WriteOp::Put { key, value } => {
                // A small value gets an allocation of its own: sharing the log entry's buffer
                // would keep the client id, key and framing alive beside it (~20 % more
                // memory per 256-byte value). Large values stay shared, uncopied.
                let value = if value.len() <= COPY_VALUES_UP_TO {
                    Bytes::copy_from_slice(value)
                } else {
                    value.clone()
                };
                self.data_bytes += value.len() as u64;
                if let Some(slot) = self.data.get_mut(*key) {
                    self.data_bytes -= slot.len() as u64;
                    *slot = value;
                } else {
                    self.data_bytes += key.len() as u64;
                    self.data.insert((*key).to_owned(), value);
                }
            }
            WriteOp::Delete { key } => {
                if let Some(old) = self.data.remove(*key) {
                    self.data_bytes -= (key.len() + old.len()) as u64;
                }
            }
        }
    }

    fn expire(&mut self, index: Index) {
        let horizon = index.saturating_sub(self.limits.session_expiry_entries);
        while let Some((&last, _)) = self.activity.first_key_value() {
            if last >= horizon {
                break;
            }
            let (_, client) = self.activity.pop_first().expect("non-empty");
            self.sessions.remove(&client);
        }
    }

    fn evict(&mut self) {
        while self.sessions.len() > self.limits.max_sessions {
            let Some((_, client)) = self.activity.pop_first() else {
                break;
            };
            self.sessions.remove(&client);
        }
    }

    /// Serialises the whole state (map, sessions, applied index), straight from the maps (no
    /// intermediate copy of the state).
    pub fn snapshot(&self) -> Bytes {
        let image = SnapshotImageRef {
            applied: self.applied,
            data: DataRef(&self.data),
            sessions: SessionsRef(&self.sessions),
        };
        Bytes::from(postcard::to_allocvec(&image).expect("serialising to memory cannot fail"))
    }

    /// Writes the same bytes as [`KvStore::snapshot`] into `out` later, from a copy-on-write
    /// clone of the state taken now (cheap): the node goes on applying while this runs on
    /// the storage thread.
    pub fn snapshot_source(
        &self,
    ) -> impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static {
        let data = self.data.clone();
        let sessions = self.sessions.clone();
        let applied = self.applied;
        move |out| {
            let image = SnapshotImageRef {
                applied,
                data: DataRef(&data),
                sessions: SessionsRef(&sessions),
            };
            postcard::to_io(&image, out)
                .map(drop)
                .map_err(std::io::Error::other)
        }
    }

    /// Approximate bytes of keys and values held (what a snapshot's size is dominated by).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Replaces the state with a snapshot; empty bytes mean the empty state.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), postcard::Error> {
        if bytes.is_empty() {
            *self = Self::new(self.limits);
            return Ok(());
        }
        let image: SnapshotImage = postcard::from_bytes(bytes)?;
        let mut store = Self::new(self.limits);
        store.applied = image.applied;
        store.data_bytes = image
            .data
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        store.data = image.data.into_iter().collect();
        for (client, session) in image.sessions {
            let client: Arc<str> = Arc::from(client);
            store.activity.insert(session.last_index, client.clone());
            store.sessions.insert(client, session);
        }
        *self = store;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Op, Request};

    fn put(client: &str, id: u64, key: &str, value: &str) -> Request {
        Request {
            client_id: client.into(),
            request_id: id,
            op: Op::Put {
                key: key.into(),
                value: Bytes::copy_from_slice(value.as_bytes()),
            },
        }
    }

    #[test]
    fn a_retry_is_applied_once() {
        let mut s = KvStore::new(SessionLimits::default());
        assert_eq!(
            s.apply(1, &put("a", 100, "k", "v1").as_write()),
            WriteResult::Applied
        );
        assert_eq!(
            s.apply(2, &put("b", 1, "k", "other").as_write()),
            WriteResult::Applied
        );
        // The retry of (a, 100) must not overwrite b's later write.
        assert_eq!(
            s.apply(3, &put("a", 100, "k", "v1").as_write()),
            WriteResult::Duplicate
        );
        assert_eq!(s.get("k").unwrap(), "other");
        assert_eq!(
            s.apply(4, &put("a", 101, "k", "v2").as_write()),
            WriteResult::Applied
        );
        assert_eq!(s.get("k").unwrap(), "v2");
    }

    #[test]
    fn empty_client_id_means_no_dedupe() {
        let mut s = KvStore::new(SessionLimits::default());
        let del = Request {
            client_id: String::new(),
            request_id: 1,
            op: Op::Delete { key: "k".into() },
        };
        s.apply(1, &put("", 1, "k", "v").as_write());
        assert_eq!(s.apply(2, &del.as_write()), WriteResult::Applied);
        assert_eq!(
            s.apply(3, &put("", 1, "k", "v").as_write()),
            WriteResult::Applied
        );
        assert_eq!(s.get("k").unwrap(), "v");
        assert_eq!(s.sessions(), 0);
    }

    #[test]
    fn the_window_is_bounded_and_older_ids_are_refused() {
        let limits = SessionLimits {
            request_window: 3,
            ..SessionLimits::default()
        };
        let mut s = KvStore::new(limits);
        for id in 1..=5 {
            assert_eq!(
                s.apply(id, &put("a", id, "k", "v").as_write()),
                WriteResult::Applied
            );
        }
        assert_eq!(
            s.apply(6, &put("a", 5, "k", "x").as_write()),
            WriteResult::Duplicate
        );
        assert_eq!(
            s.apply(7, &put("a", 1, "k", "x").as_write()),
            WriteResult::TooOld
        );
        assert_eq!(s.get("k").unwrap(), "v");
        // Out-of-order ids inside the window are fine.
        assert_eq!(
            s.apply(8, &put("a", 10, "k", "ten").as_write()),
            WriteResult::Applied
        );
        assert_eq!(
            s.apply(9, &put("a", 9, "k", "nine").as_write()),
            WriteResult::Applied
        );
    }

    #[test]
    fn sessions_expire_by_log_position_and_are_evicted_lru() {
        let limits = SessionLimits {
            request_window: 8,
            max_sessions: 2,
            session_expiry_entries: 100,
        };
        let mut s = KvStore::new(limits);
        s.apply(1, &put("a", 1, "k", "v").as_write());
        s.apply(2, &put("b", 1, "k", "v").as_write());
        s.apply(3, &put("c", 1, "k", "v").as_write());
        assert_eq!(s.sessions(), 2, "a was evicted as least recently active");
        assert_eq!(
            s.apply(4, &put("a", 1, "k", "again").as_write()),
            WriteResult::Applied
        );
        s.skip(500);
        assert_eq!(
            s.sessions(),
            0,
            "all expired 100 entries after their last write"
        );
    }

    #[test]
    fn the_snapshot_encoding_is_the_owned_image() {
        let mut s = KvStore::new(SessionLimits::default());
        s.apply(1, &put("a", 7, "k1", "v1").as_write());
        s.apply(2, &put("b", 8, "k2", "value two").as_write());
        s.apply(3, &put("", 0, "k3", "v3").as_write());
        let owned = SnapshotImage {
            applied: 3,
            data: s.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            sessions: s
                .sessions
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        assert_eq!(s.snapshot(), postcard::to_allocvec(&owned).unwrap());
        assert_eq!(s.data_bytes(), 2 + 2 + 2 + 9 + 2 + 2);
        s.apply(4, &put("", 0, "k2", "v").as_write());
        s.apply(
            5,
            &Request {
                client_id: String::new(),
                request_id: 0,
                op: Op::Delete { key: "k1".into() },
            }
            .as_write(),
        );
        assert_eq!(s.data_bytes(), 2 + 1 + 2 + 2);
        let mut r = KvStore::new(SessionLimits::default());
        r.restore(&s.snapshot()).unwrap();
        assert_eq!(r.data_bytes(), s.data_bytes());
    }

    #[test]
    fn a_snapshot_source_writes_the_state_as_of_its_making() {
        let mut s = KvStore::new(SessionLimits::default());
        s.apply(1, &put("a", 1, "k1", "v1").as_write());
        s.apply(2, &put("b", 1, "k2", "v2").as_write());
        let expected = s.snapshot();
        let source = s.snapshot_source();
        // Later writes do not leak into the pending snapshot.
        s.apply(3, &put("a", 2, "k1", "changed").as_write());
        s.apply(4, &put("c", 1, "k3", "new").as_write());
        let mut out = Vec::new();
        source(&mut out).unwrap();
        assert_eq!(out, expected);
        let mut r = KvStore::new(SessionLimits::default());
        r.restore(&out).unwrap();
        assert_eq!(r.get("k1").unwrap(), "v1");
        assert!(r.get("k3").is_none());
        assert_eq!(r.sessions(), 2);
    }

    #[test]
    fn snapshots_carry_sessions() {
        let mut s = KvStore::new(SessionLimits::default());
        s.apply(1, &put("a", 7, "k1", "v1").as_write());
        s.apply(2, &put("a", 8, "k2", "v2").as_write());
        let image = s.snapshot();
        let mut r = KvStore::new(SessionLimits::default());
        r.restore(&image).unwrap();
        assert_eq!(r.get("k1").unwrap(), "v1");
        assert_eq!(r.applied(), 2);
        assert_eq!(
            r.apply(3, &put("a", 7, "k1", "changed").as_write()),
            WriteResult::Duplicate
        );
        assert_eq!(r.get("k1").unwrap(), "v1");
        assert!(r.restore(b"\xff\xff garbage").is_err());
        r.restore(&[]).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn an_undecodable_command_is_an_error_not_a_skip() {
        let mut s = KvStore::new(SessionLimits::default());
        let command = |index, bytes: Bytes| Entry::new(1, index, EntryPayload::Command(bytes));
        assert_eq!(
            s.apply_entry(&Entry::new(1, 1, EntryPayload::Noop)),
            Ok(None)
        );
        assert_eq!(
            s.apply_entry(&command(2, put("a", 1, "k", "v").encode())),
            Ok(Some(WriteResult::Applied))
        );
        // A write of a kind this version does not know (operation variant 7), as a newer
        // version might propose it, and plain garbage.
        for (index, bytes) in [(3, &b"\x00\x00\x07\x01k"[..]), (3, b"\xff\xff\xff")] {
            let error = s
                .apply_entry(&command(index, Bytes::from_static(bytes)))
                .unwrap_err();
            assert_eq!(error.index(), 3);
            assert!(error.to_string().contains("entry 3"), "{error}");
            assert_eq!(s.applied(), 2, "the entry must not count as applied");
            assert_eq!(s.get("k").unwrap(), "v");
        }
    }
}
