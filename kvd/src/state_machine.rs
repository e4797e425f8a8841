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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use raft::Index;
use serde::{Deserialize, Serialize};

use crate::command::{Op, Request};

/// Limits of the client session table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Request ids remembered per client (a retry older than that is refused).
    pub request_window: usize,
    /// Clients remembered at once; the least recently active is evicted beyond this.
    pub max_sessions: usize,
    /// A client that has not written for this many log entries is forgotten.
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
    data: BTreeMap<String, Bytes>,
    sessions: HashMap<String, Session>,
    /// `(last_index, client_id)` for expiry and eviction in log order.
    activity: BTreeSet<(Index, String)>,
    limits: SessionLimits,
    applied: Index,
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

    /// Records that the entry at `index` applied without touching the map (no-op and
    /// membership entries, or undecodable commands).
    pub fn skip(&mut self, index: Index) {
        self.applied = self.applied.max(index);
        self.expire(index);
    }

    /// Applies the write at log `index`.
    pub fn apply(&mut self, index: Index, request: &Request) -> WriteResult {
        self.applied = self.applied.max(index);
        self.expire(index);
        if request.client_id.is_empty() {
            self.apply_op(&request.op);
            return WriteResult::Applied;
        }
        let window = self.limits.request_window.max(1);
        let session = self.sessions.entry(request.client_id.clone()).or_default();
        if session.recent.contains(&request.request_id) {
            return WriteResult::Duplicate;
        }
        if session
            .forgotten_up_to
            .is_some_and(|old| request.request_id <= old)
        {
            return WriteResult::TooOld;
        }
        self.activity
            .remove(&(session.last_index, request.client_id.clone()));
        session.last_index = index;
        session.recent.insert(request.request_id);
        while session.recent.len() > window {
            let oldest = session.recent.pop_first().expect("non-empty");
            session.forgotten_up_to =
                Some(session.forgotten_up_to.map_or(oldest, |f| f.max(oldest)));
        }
        self.activity.insert((index, request.client_id.clone()));
        self.evict();
        self.apply_op(&request.op);
        WriteResult::Applied
    }

    fn apply_op(&mut self, op: &Op) {
        match op {
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                self.data.remove(key);
            }
        }
    }

    fn expire(&mut self, index: Index) {
        let horizon = index.saturating_sub(self.limits.session_expiry_entries);
        while let Some((last, _)) = self.activity.first() {
            if *last >= horizon {
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

    /// Serialises the whole state (map, sessions, applied index).
    pub fn snapshot(&self) -> Bytes {
        let image = SnapshotImage {
            applied: self.applied,
            data: self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect(),
        };
        Bytes::from(postcard::to_allocvec(&image).expect("serialising to memory cannot fail"))
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
        store.data = image.data.into_iter().collect();
        for (client, session) in image.sessions {
            store.activity.insert((session.last_index, client.clone()));
            store.sessions.insert(client, session);
        }
        *self = store;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.apply(1, &put("a", 100, "k", "v1")), WriteResult::Applied);
        assert_eq!(s.apply(2, &put("b", 1, "k", "other")), WriteResult::Applied);
        // The retry of (a, 100) must not overwrite b's later write.
        assert_eq!(
            s.apply(3, &put("a", 100, "k", "v1")),
            WriteResult::Duplicate
        );
        assert_eq!(s.get("k").unwrap(), "other");
        assert_eq!(s.apply(4, &put("a", 101, "k", "v2")), WriteResult::Applied);
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
        s.apply(1, &put("", 1, "k", "v"));
        assert_eq!(s.apply(2, &del), WriteResult::Applied);
        assert_eq!(s.apply(3, &put("", 1, "k", "v")), WriteResult::Applied);
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
            assert_eq!(s.apply(id, &put("a", id, "k", "v")), WriteResult::Applied);
        }
        assert_eq!(s.apply(6, &put("a", 5, "k", "x")), WriteResult::Duplicate);
        assert_eq!(s.apply(7, &put("a", 1, "k", "x")), WriteResult::TooOld);
        assert_eq!(s.get("k").unwrap(), "v");
        // Out-of-order ids inside the window are fine.
        assert_eq!(s.apply(8, &put("a", 10, "k", "ten")), WriteResult::Applied);
        assert_eq!(s.apply(9, &put("a", 9, "k", "nine")), WriteResult::Applied);
    }

    #[test]
    fn sessions_expire_by_log_position_and_are_evicted_lru() {
        let limits = SessionLimits {
            request_window: 8,
            max_sessions: 2,
            session_expiry_entries: 100,
        };
        let mut s = KvStore::new(limits);
        s.apply(1, &put("a", 1, "k", "v"));
        s.apply(2, &put("b", 1, "k", "v"));
        s.apply(3, &put("c", 1, "k", "v"));
        assert_eq!(s.sessions(), 2, "a was evicted as least recently active");
        assert_eq!(s.apply(4, &put("a", 1, "k", "again")), WriteResult::Applied);
        s.skip(500);
        assert_eq!(
            s.sessions(),
            0,
            "all expired 100 entries after their last write"
        );
    }

    #[test]
    fn snapshots_carry_sessions() {
        let mut s = KvStore::new(SessionLimits::default());
        s.apply(1, &put("a", 7, "k1", "v1"));
        s.apply(2, &put("a", 8, "k2", "v2"));
        let image = s.snapshot();
        let mut r = KvStore::new(SessionLimits::default());
        r.restore(&image).unwrap();
        assert_eq!(r.get("k1").unwrap(), "v1");
        assert_eq!(r.applied(), 2);
        assert_eq!(
            r.apply(3, &put("a", 7, "k1", "changed")),
            WriteResult::Duplicate
        );
        assert_eq!(r.get("k1").unwrap(), "v1");
        assert!(r.restore(b"\xff\xff garbage").is_err());
        r.restore(&[]).unwrap();
        assert!(r.is_empty());
    }
}
