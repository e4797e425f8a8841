//! The safety invariants of Raft (Figure 3 of the paper), checked as the simulation runs.
//!
//! - **Election Safety**: at most one leader per term.
//! - **Log Matching**: entries with the same index and term have the same payload, and so do
//!   all entries before them (checked as: same `(index, term)` ⇒ same payload and same term
//!   at `index - 1`, which implies the whole prefix by induction).
//! - **Leader Completeness**: a new leader's log holds every entry committed before.
//! - **State Machine Safety**: every replica applies the same entry at each index, in order,
//!   and its state machine then has the same fingerprint.
//! - **Linearizable reads**: a read is served at an index no lower than the highest index
//!   committed anywhere before the read started.

use std::collections::HashMap;
use std::fmt;

use crate::entry::{Entry, EntryPayload};
use crate::sim::machine::fnv1a;
use crate::types::{Index, Instant, NodeId, Term};

/// A broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
    /// Virtual time.
    pub at: Instant,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at {}: {}",
            self.invariant, self.at, self.detail
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct Checker {
    leaders: HashMap<Term, NodeId>,
    entries: HashMap<(Index, Term), (u64, Option<Term>)>,
    /// Term of each committed index (position `i - 1`), as claimed by any node's commit index.
    committed: Vec<Term>,
    /// Payload fingerprint of each applied index.
    applied_payloads: Vec<u64>,
    /// State machine fingerprint after each applied index.
    machine_states: Vec<u64>,
}

pub(crate) fn payload_fingerprint(entry: &Entry) -> u64 {
    match entry.payload() {
        EntryPayload::Noop => 1,
        EntryPayload::Command(data) => fnv1a(2, data),
        EntryPayload::Membership(m) => {
            let ids: Vec<u8> = m.members().flat_map(u64::to_le_bytes).collect();
            fnv1a(3, &ids)
        }
    }
}

fn violation(invariant: &'static str, at: Instant, detail: String) -> Result<(), Violation> {
    Err(Violation {
        invariant,
        detail,
        at,
    })
}

impl Checker {
    pub(crate) fn committed_len(&self) -> Index {
        self.committed.len() as Index
    }

    pub(crate) fn on_leader(
        &mut self,
        at: Instant,
        id: NodeId,
        term: Term,
    ) -> Result<(), Violation> {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => violation(
                "Election Safety",
                at,
                format!("nodes {other} and {id} both lead term {term}"),
            ),
            _ => Ok(()),
        }
    }

    /// Leader Completeness: `log_term` is the new leader's view of its log.
    pub(crate) fn check_leader_log(
        &self,
        at: Instant,
        id: NodeId,
        first_known: Index,
        log_term: impl Fn(Index) -> Option<Term>,
    ) -> Result<(), Violation> {
        for index in first_known.max(1)..=self.committed_len() {
            let want = self.committed[index as usize - 1];
            let have = log_term(index);
            if have != Some(want) {
                return violation(
                    "Leader Completeness",
                    at,
                    format!(
                        "leader {id} has term {have:?} at committed index {index} (term {want})"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Log Matching, for entries a node wrote; `prev_term` is its term at `index - 1`.
    pub(crate) fn on_entry_written(
        &mut self,
        at: Instant,
        id: NodeId,
        entry: &Entry,
        prev_term: Option<Term>,
    ) -> Result<(), Violation> {
        let fingerprint = payload_fingerprint(entry);
        let key = (entry.index(), entry.term());
        if prev_term.is_some_and(|prev| prev > entry.term()) {
            return violation(
                "Log Matching",
                at,
                format!(
                    "node {id}: entry {} has term {} after an entry of term {prev_term:?}",
                    key.0, key.1
                ),
            );
        }
        match self.entries.get(&key) {
            None => {
                self.entries.insert(key, (fingerprint, prev_term));
                Ok(())
            }
            Some(&(fp, prev)) => {
                if fp != fingerprint {
                    return violation(
                        "Log Matching",
                        at,
                        format!(
                            "node {id} holds a different payload at index {} term {}",
                            key.0, key.1
                        ),
                    );
                }
                if let (Some(a), Some(b)) = (prev, prev_term)
                    && a != b
                {
                    return violation(
                        "Log Matching",
                        at,
                        format!(
                            "node {id}: entry {} term {} follows term {b}, elsewhere term {a}",
                            key.0, key.1
                        ),
                    );
                }
                if prev.is_none() {
                    self.entries.insert(key, (fp, prev_term));
                }
                Ok(())
            }
        }
    }

    /// Records or checks the term of committed index `index` as seen by node `id`.
    pub(crate) fn on_committed(
        &mut self,
        at: Instant,
        id: NodeId,
        index: Index,
        term: Term,
    ) -> Result<(), Violation> {
        let pos = index as usize - 1;
        if pos < self.committed.len() {
            if self.committed[pos] != term {
                return violation(
                    "State Machine Safety",
                    at,
                    format!(
                        "node {id} committed term {term} at index {index}, elsewhere term {}",
                        self.committed[pos]
                    ),
                );
            }
        } else if pos == self.committed.len() {
            self.committed.push(term);
        }
        Ok(())
    }

    /// State Machine Safety for one applied entry; `state` is the fingerprint afterwards.
    pub(crate) fn on_applied(
        &mut self,
        at: Instant,
        id: NodeId,
        entry: &Entry,
        state: u64,
    ) -> Result<(), Violation> {
        let index = entry.index();
        let pos = index as usize - 1;
        match self.committed.get(pos) {
            Some(&term) if term == entry.term() => {}
            other => {
                return violation(
                    "State Machine Safety",
                    at,
                    format!(
                        "node {id} applied index {index} term {} but committed is {other:?}",
                        entry.term()
                    ),
                );
            }
        }
        let payload = payload_fingerprint(entry);
        self.check_or_record(at, id, index, payload, state)
    }

    /// After restoring a snapshot at `index`, the machine must be in the state replicas had.
    pub(crate) fn on_restored(
        &mut self,
        at: Instant,
        id: NodeId,
        index: Index,
        state: u64,
    ) -> Result<(), Violation> {
        if index == 0 {
            return Ok(());
        }
        match self.machine_states.get(index as usize - 1) {
            Some(&want) if want != state => violation(
                "State Machine Safety",
                at,
                format!(
                    "node {id} restored a snapshot at {index} whose state differs from the replicas'"
                ),
            ),
            _ => Ok(()),
        }
    }

    fn check_or_record(
        &mut self,
        at: Instant,
        id: NodeId,
        index: Index,
        payload: u64,
        state: u64,
    ) -> Result<(), Violation> {
        let pos = index as usize - 1;
        if pos < self.applied_payloads.len() {
            if self.applied_payloads[pos] != payload {
                return violation(
                    "State Machine Safety",
                    at,
                    format!("node {id} applied a different entry at index {index}"),
                );
            }
            if self.machine_states[pos] != state {
                return violation(
                    "State Machine Safety",
                    at,
                    format!("node {id}'s state machine diverged after index {index}"),
                );
            }
        } else if pos == self.applied_payloads.len() {
            self.applied_payloads.push(payload);
            self.machine_states.push(state);
        }
        Ok(())
    }
}
