//! The safety invariants of Raft (Figure 3 of the paper), checked as the simulation runs.
//!
//! - **Election Safety**: at most one leader per term, and only a node eligible by its own
//!   log becomes leader: a voter of its latest configuration, or of the one before while the
//!   latest (which removes it) is not known committed.
//! - **One Vote Per Term**: a node grants at most one vote in a term, across restarts.
//! - **Log Matching**: entries with the same index and term have the same payload, and so do
//!   all entries before them (checked as: same `(index, term)` ⇒ same payload and same term
//!   at `index - 1`, which implies the whole prefix by induction).
//! - **Leader Completeness**: a new leader's log holds every entry committed in an earlier
//!   term. (A vote delayed long enough can make a leader of an old term after a newer term
//!   has committed entries it lacks; it can commit nothing, and the property does not cover
//!   it.)
//! - **State Machine Safety**: every replica commits and applies the same entry at each
//!   index, in order, never above what is committed, and its state machine then has the same
//!   fingerprint; a restored snapshot has the state replicas had at its index.
//! - **Linearizable reads**: a read is served at an index no lower than the highest index
//!   committed anywhere before the read started, and only once the node applied it.
//!
//! The checker is fed events by the simulator; each method returns a [`Violation`] for an
//! event no correct history contains. Nothing is skipped silently: an event the checker
//! cannot place (a commit beyond what is known committed, a snapshot at an index no replica
//! applied) is a violation too.

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
    votes: HashMap<(NodeId, Term), NodeId>,
    entries: HashMap<(Index, Term), (u64, Option<Term>)>,
    /// For each committed index (position `i - 1`): the entry's term, and the lowest term a
    /// node was in when it reported the index committed (an upper bound of the term in
    /// which it was committed; the leader that commits it usually reports first).
    committed: Vec<(Term, Term)>,
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
            let ids: Vec<u8> = m
                .voters()
                .iter()
                .chain([&0])
                .chain(m.outgoing_voters())
                .chain([&0])
                .chain(m.learners())
                .flat_map(|id| id.to_le_bytes())
                .collect();
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

    /// Node `id` became leader of `term`; `eligible`: whether its log allowed it to run.
    pub(crate) fn on_leader(
        &mut self,
        at: Instant,
        id: NodeId,
        term: Term,
        eligible: bool,
    ) -> Result<(), Violation> {
        if !eligible {
            return violation(
                "Election Safety",
                at,
                format!("node {id} leads term {term} but is outside its configuration"),
            );
        }
        match self.leaders.insert(term, id) {
            Some(other) if other != id => violation(
                "Election Safety",
                at,
                format!("nodes {other} and {id} both lead term {term}"),
            ),
            _ => Ok(()),
        }
    }

    /// Node `voter` granted its vote in `term` to `candidate`.
    pub(crate) fn on_vote(
        &mut self,
        at: Instant,
        voter: NodeId,
        term: Term,
        candidate: NodeId,
    ) -> Result<(), Violation> {
        match self.votes.insert((voter, term), candidate) {
            Some(other) if other != candidate => violation(
                "One Vote Per Term",
                at,
                format!("node {voter} voted for {other} and for {candidate} in term {term}"),
            ),
            _ => Ok(()),
        }
    }

    /// Leader Completeness: `log_term` is the view of its log of the new leader of `term`.
    pub(crate) fn check_leader_log(
        &self,
        at: Instant,
        id: NodeId,
        term: Term,
        first_known: Index,
        log_term: impl Fn(Index) -> Option<Term>,
    ) -> Result<(), Violation> {
        for index in first_known.max(1)..=self.committed_len() {
            let (want, committed_in) = self.committed[index as usize - 1];
            if committed_in >= term {
                continue;
            }
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

    /// Records or checks the term of committed index `index` as seen by node `id`, in term
    /// `in_term`. Nodes report their commits in index order, so an index past the first
    /// unknown one means a node claims a commit nobody could have made.
    pub(crate) fn on_committed(
        &mut self,
        at: Instant,
        id: NodeId,
        index: Index,
        term: Term,
        in_term: Term,
    ) -> Result<(), Violation> {
        let pos = index as usize - 1;
        if pos < self.committed.len() {
            let (known, committed_in) = &mut self.committed[pos];
            if *known != term {
                return violation(
                    "State Machine Safety",
                    at,
                    format!(
                        "node {id} committed term {term} at index {index}, elsewhere term {known}"
                    ),
                );
            }
            *committed_in = (*committed_in).min(in_term);
            Ok(())
        } else if pos == self.committed.len() {
            self.committed.push((term, in_term));
            Ok(())
        } else {
            violation(
                "State Machine Safety",
                at,
                format!(
                    "node {id} committed index {index}, but only {} entries are known committed",
                    self.committed.len()
                ),
            )
        }
    }

    /// Node `id` knows `index` committed only through a snapshot (its term is compacted
    /// away): someone must have committed it before.
    pub(crate) fn on_committed_in_snapshot(
        &self,
        at: Instant,
        id: NodeId,
        index: Index,
    ) -> Result<(), Violation> {
        if index > self.committed_len() {
            return violation(
                "State Machine Safety",
                at,
                format!(
                    "node {id} holds a snapshot covering index {index}, but only {} entries \
                     are known committed",
                    self.committed_len()
                ),
            );
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
        match self.committed.get(pos).map(|&(term, _)| term) {
            Some(term) if term == entry.term() => {}
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
            Ok(())
        } else if pos == self.applied_payloads.len() {
            self.applied_payloads.push(payload);
            self.machine_states.push(state);
            Ok(())
        } else {
            violation(
                "State Machine Safety",
                at,
                format!(
                    "node {id} applied index {index} before anyone applied index {}",
                    self.applied_payloads.len() + 1
                ),
            )
        }
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
            Some(&want) if want == state => Ok(()),
            Some(_) => violation(
                "State Machine Safety",
                at,
                format!(
                    "node {id} restored a snapshot at {index} whose state differs from the replicas'"
                ),
            ),
            None => violation(
                "State Machine Safety",
                at,
                format!(
                    "node {id} restored a snapshot at {index}, but no replica applied that index"
                ),
            ),
        }
    }

    /// A linearizable read `read` on node `id` was served at `index` with `applied` applied;
    /// `required` entries were committed when it started.
    pub(crate) fn on_read(
        &self,
        at: Instant,
        id: NodeId,
        read: u64,
        required: Index,
        index: Index,
        applied: Index,
    ) -> Result<(), Violation> {
        if index < required || applied < index {
            return violation(
                "Linearizable Read",
                at,
                format!(
                    "node {id} served read {read} at index {index} (applied {applied}) \
                     but index {required} had committed before it started"
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made histories: each invariant rejects a history that breaks it and accepts a
    //! close one that does not, so a checker that rejects everything fails too.

    use bytes::Bytes;

    use super::*;

    const T: Instant = Instant::ZERO;

    fn cmd(term: Term, index: Index, data: &'static str) -> Entry {
        Entry::new(term, index, EntryPayload::Command(Bytes::from(data)))
    }

    fn invariant(result: Result<(), Violation>) -> &'static str {
        result
            .expect_err("the checker accepted a broken history")
            .invariant
    }

    #[test]
    fn two_leaders_in_one_term() {
        let mut c = Checker::default();
        c.on_leader(T, 1, 1, true).unwrap();
        c.on_leader(T, 1, 1, true).unwrap();
        c.on_leader(T, 2, 2, true).unwrap();
        assert_eq!(invariant(c.on_leader(T, 3, 2, true)), "Election Safety");
        assert_eq!(invariant(c.on_leader(T, 4, 3, false)), "Election Safety");
    }

    #[test]
    fn replicas_applying_different_payloads_at_one_index() {
        let mut c = Checker::default();
        c.on_committed(T, 1, 1, 1, 1).unwrap();
        c.on_applied(T, 1, &cmd(1, 1, "a"), 10).unwrap();
        c.on_applied(T, 2, &cmd(1, 1, "a"), 10).unwrap();
        assert_eq!(
            invariant(c.on_applied(T, 3, &cmd(1, 1, "b"), 10)),
            "State Machine Safety"
        );
        // Same entry, but the replica's state machine ended elsewhere.
        assert_eq!(
            invariant(c.on_applied(T, 3, &cmd(1, 1, "a"), 11)),
            "State Machine Safety"
        );
    }

    #[test]
    fn an_apply_above_the_commit_index() {
        let mut c = Checker::default();
        c.on_committed(T, 1, 1, 1, 1).unwrap();
        c.on_applied(T, 1, &cmd(1, 1, "a"), 1).unwrap();
        assert_eq!(
            invariant(c.on_applied(T, 1, &cmd(1, 2, "b"), 2)),
            "State Machine Safety"
        );
        // Applying a committed index with another term is as bad.
        c.on_committed(T, 1, 2, 1, 1).unwrap();
        assert_eq!(
            invariant(c.on_applied(T, 1, &cmd(2, 2, "b"), 2)),
            "State Machine Safety"
        );
        c.on_applied(T, 1, &cmd(1, 2, "b"), 2).unwrap();
    }

    #[test]
    fn commits_that_nobody_could_have_made() {
        let mut c = Checker::default();
        c.on_committed(T, 1, 1, 1, 1).unwrap();
        assert_eq!(
            invariant(c.on_committed(T, 2, 3, 1, 1)),
            "State Machine Safety"
        );
        assert_eq!(
            invariant(c.on_committed(T, 2, 1, 2, 2)),
            "State Machine Safety"
        );
        c.on_committed_in_snapshot(T, 2, 1).unwrap();
        assert_eq!(
            invariant(c.on_committed_in_snapshot(T, 2, 2)),
            "State Machine Safety"
        );
    }

    #[test]
    fn a_committed_entry_missing_from_a_later_leaders_log() {
        let mut c = Checker::default();
        c.on_committed(T, 1, 1, 1, 1).unwrap();
        c.on_committed(T, 1, 2, 2, 2).unwrap();
        let complete = |i: Index| {
            [None, Some(1), Some(2), Some(2)]
                .get(i as usize)
                .copied()
                .flatten()
        };
        c.check_leader_log(T, 2, 3, 1, complete).unwrap();
        let missing = |i: Index| if i == 1 { Some(1) } else { None };
        assert_eq!(
            invariant(c.check_leader_log(T, 3, 3, 1, missing)),
            "Leader Completeness"
        );
        let other_term = |i: Index| Some(if i == 2 { 3 } else { 1 });
        assert_eq!(
            invariant(c.check_leader_log(T, 3, 3, 1, other_term)),
            "Leader Completeness"
        );
        // A leader of term 2 (a vote that arrived late) need not hold what term 2 committed.
        c.check_leader_log(T, 3, 2, 1, missing).unwrap();
    }

    #[test]
    fn one_node_granting_two_votes_in_one_term_across_a_restart() {
        let mut c = Checker::default();
        c.on_vote(T, 1, 5, 2).unwrap();
        // The same vote again (a duplicated request) is fine, as is a vote in another term.
        c.on_vote(T, 1, 5, 2).unwrap();
        c.on_vote(T, 1, 6, 3).unwrap();
        // The node restarted having lost its vote, and voted again in term 5.
        assert_eq!(invariant(c.on_vote(T, 1, 5, 3)), "One Vote Per Term");
    }

    #[test]
    fn a_read_returning_less_than_a_write_completed_before_it() {
        let c = Checker::default();
        c.on_read(T, 1, 7, 5, 5, 5).unwrap();
        c.on_read(T, 1, 7, 5, 6, 9).unwrap();
        assert_eq!(invariant(c.on_read(T, 1, 7, 5, 4, 9)), "Linearizable Read");
        // Served before the node applied its read index.
        assert_eq!(invariant(c.on_read(T, 1, 7, 5, 6, 5)), "Linearizable Read");
    }

    #[test]
    fn log_matching() {
        let mut c = Checker::default();
        c.on_entry_written(T, 1, &cmd(1, 1, "a"), Some(0)).unwrap();
        c.on_entry_written(T, 2, &cmd(1, 1, "a"), Some(0)).unwrap();
        assert_eq!(
            invariant(c.on_entry_written(T, 3, &cmd(1, 1, "b"), Some(0))),
            "Log Matching"
        );
        c.on_entry_written(T, 1, &cmd(2, 2, "c"), Some(1)).unwrap();
        assert_eq!(
            invariant(c.on_entry_written(T, 2, &cmd(2, 2, "c"), Some(2))),
            "Log Matching"
        );
        assert_eq!(
            invariant(c.on_entry_written(T, 2, &cmd(1, 3, "d"), Some(2))),
            "Log Matching"
        );
    }

    #[test]
    fn a_restored_snapshot_must_match_the_replicas() {
        let mut c = Checker::default();
        c.on_committed(T, 1, 1, 1, 1).unwrap();
        c.on_applied(T, 1, &cmd(1, 1, "a"), 42).unwrap();
        c.on_restored(T, 2, 1, 42).unwrap();
        c.on_restored(T, 2, 0, 7).unwrap();
        assert_eq!(
            invariant(c.on_restored(T, 2, 1, 43)),
            "State Machine Safety"
        );
        assert_eq!(
            invariant(c.on_restored(T, 2, 2, 42)),
            "State Machine Safety"
        );
    }
}
