//! Messages exchanged between Raft peers.
//!
//! The driver moves these between nodes; the transport encodes them (kvd uses postcard). Every
//! message carries the sender's term. The sender's id is not inside the message: the transport
//! knows which peer a connection belongs to and passes it to [`crate::Node::step`].

use serde::{Deserialize, Serialize};

use crate::entry::{Entry, Snapshot};
use crate::types::{Index, MAX_INDEX, Term};

/// A message from one peer to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Asks for a vote (or, with `pre_vote`, whether a vote would be granted).
    VoteRequest {
        /// The term the candidate runs in (for a pre-vote: the term it would run in).
        term: Term,
        /// A PreVote probe: the receiver changes no state.
        pre_vote: bool,
        /// Index of the candidate's last log entry.
        last_log_index: Index,
        /// Term of the candidate's last log entry.
        last_log_term: Term,
        /// Sent on the leader's request ([`Message::TimeoutNow`]): overrides the leader lease.
        transfer: bool,
    },
    /// The answer to a [`Message::VoteRequest`].
    VoteResponse {
        /// The responder's term (for a granted pre-vote: the term asked about).
        term: Term,
        /// Answers a pre-vote.
        pre_vote: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Log entries from the leader, to be appended after `(prev_index, prev_term)`.
    Append {
        /// The leader's term.
        term: Term,
        /// Index of the entry just before `entries`.
        prev_index: Index,
        /// Term of the entry at `prev_index`.
        prev_term: Term,
        /// The entries, in index order (may be empty).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to an [`Message::Append`] or [`Message::InstallSnapshot`].
    AppendResponse {
        /// The responder's term.
        term: Term,
        /// Accepted (with the matched index) or rejected (with a hint).
        outcome: AppendOutcome,
    },
    /// The leader's periodic heartbeat; also confirms leadership for ReadIndex reads.
    Heartbeat {
        /// The leader's term.
        term: Term,
        /// The leader's commit index, capped at what the receiver is known to hold.
        commit: Index,
        /// ReadIndex round the heartbeat belongs to; echoed back.
        read_round: u64,
    },
    /// The answer to a [`Message::Heartbeat`].
    HeartbeatResponse {
        /// The responder's term.
        term: Term,
        /// The echoed ReadIndex round.
        read_round: u64,
    },
    /// A snapshot for a follower that is behind the leader's compacted log.
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// A follower forwards a linearizable read to the leader.
    ReadIndex {
        /// The follower's term.
        term: Term,
        /// The follower's read id, echoed back.
        id: u64,
    },
    /// The leader's answer to [`Message::ReadIndex`].
    ReadIndexResponse {
        /// The leader's term.
        term: Term,
        /// The echoed read id.
        id: u64,
        /// The read index, or `None` if the leader could not serve the read.
        index: Option<Index>,
    },
    /// The leader asks the receiver to start an election at once (leadership transfer).
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
}

/// How a follower answered an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The follower's log now matches the leader's up to `match_index`.
    Accepted {
        /// Highest index known to match the leader's log.
        match_index: Index,
    },
    /// The entry at `rejected_index` did not match; the hint lets the leader skip back fast.
    Rejected {
        /// The `prev_index` of the rejected append.
        rejected_index: Index,
        /// Where the leader should look next: the follower's last index + 1 if its log is
        /// shorter, else the first index of the conflicting term.
        hint_index: Index,
        /// The term of the follower's conflicting entry, if its log reaches `rejected_index`.
        hint_term: Option<Term>,
    },
}

impl Message {
    /// The sender's term.
    pub fn term(&self) -> Term {
        match self {
            Self::VoteRequest { term, .. }
            | Self::VoteResponse { term, .. }
            | Self::Append { term, .. }
            | Self::AppendResponse { term, .. }
            | Self::Heartbeat { term, .. }
            | Self::HeartbeatResponse { term, .. }
            | Self::InstallSnapshot { term, .. }
            | Self::ReadIndex { term, .. }
            | Self::ReadIndexResponse { term, .. }
            | Self::TimeoutNow { term } => *term,
        }
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VoteRequest { pre_vote: true, .. } => "PreVoteRequest",
            Self::VoteRequest { .. } => "VoteRequest",
            Self::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            Self::VoteResponse { .. } => "VoteResponse",
            Self::Append { .. } => "Append",
            Self::AppendResponse { .. } => "AppendResponse",
            Self::Heartbeat { .. } => "Heartbeat",
            Self::HeartbeatResponse { .. } => "HeartbeatResponse",
            Self::InstallSnapshot { .. } => "InstallSnapshot",
            Self::ReadIndex { .. } => "ReadIndex",
            Self::ReadIndexResponse { .. } => "ReadIndexResponse",
            Self::TimeoutNow { .. } => "TimeoutNow",
        }
    }

    /// Whether every index and term in the message is at most [`MAX_INDEX`], and its entries
    /// end there too: what the core may then add to them cannot overflow.
    pub(crate) fn in_range(&self) -> bool {
        let ok = |x: u64| x <= MAX_INDEX;
        ok(self.term())
            && match self {
                Self::VoteRequest {
                    last_log_index,
                    last_log_term,
                    ..
                } => ok(*last_log_index) && ok(*last_log_term),
                Self::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    ..
                } => {
                    ok(*prev_index)
                        && ok(*prev_term)
                        && ok(*commit)
                        && (entries.len() as u64)
                            .checked_add(*prev_index)
                            .is_some_and(ok)
                        && entries.iter().all(|e| ok(e.index()) && ok(e.term()))
                }
                Self::AppendResponse { outcome, .. } => match *outcome {
                    AppendOutcome::Accepted { match_index } => ok(match_index),
                    AppendOutcome::Rejected {
                        rejected_index,
                        hint_index,
                        hint_term,
                    } => ok(rejected_index) && ok(hint_index) && hint_term.is_none_or(ok),
                },
                Self::Heartbeat { commit, .. } => ok(*commit),
                Self::InstallSnapshot { snapshot, .. } => {
                    ok(snapshot.meta().index()) && ok(snapshot.meta().term())
                }
                Self::ReadIndexResponse { index, .. } => index.is_none_or(ok),
                Self::VoteResponse { .. }
                | Self::HeartbeatResponse { .. }
                | Self::ReadIndex { .. }
                | Self::TimeoutNow { .. } => true,
            }
    }

    /// Whether this message carries a snapshot (transports send those on their own stream so
    /// heartbeats and appends never queue behind them).
    pub fn is_snapshot(&self) -> bool {
        matches!(self, Self::InstallSnapshot { .. })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::entry::{EntryPayload, SnapshotMeta};
    use crate::membership::Membership;

    const TOP: u64 = MAX_INDEX;
    const OVER: u64 = MAX_INDEX + 1;

    /// Every message kind, with every index and term field set by `f(field number)`.
    fn messages(f: impl Fn(usize) -> u64) -> Vec<Message> {
        let entry = |term, index| Entry::new(term, index, EntryPayload::Noop);
        let snapshot = |index, term| {
            Snapshot::new(
                SnapshotMeta::new(index, term, Membership::new([1])),
                Bytes::new(),
            )
        };
        vec![
            Message::VoteRequest {
                term: 1,
                pre_vote: false,
                last_log_index: f(0),
                last_log_term: f(1),
                transfer: false,
            },
            Message::Append {
                term: 1,
                prev_index: f(2),
                prev_term: f(3),
                entries: vec![entry(f(4), f(5))],
                commit: f(6),
            },
            Message::AppendResponse {
                term: 1,
                outcome: AppendOutcome::Accepted { match_index: f(7) },
            },
            Message::AppendResponse {
                term: 1,
                outcome: AppendOutcome::Rejected {
                    rejected_index: f(8),
                    hint_index: f(9),
                    hint_term: Some(f(10)),
                },
            },
            Message::Heartbeat {
                term: 1,
                commit: f(11),
                read_round: 0,
            },
            Message::InstallSnapshot {
                term: 1,
                snapshot: snapshot(f(12), f(13)),
            },
            Message::ReadIndexResponse {
                term: 1,
                id: 0,
                index: Some(f(14)),
            },
        ]
    }

    #[test]
    fn one_field_past_the_limit_puts_a_message_out_of_range() {
        // The append's previous index is kept low so that its entry ends within the limit.
        let at_limit = |field| if field == 2 { 0 } else { TOP };
        assert!(messages(at_limit).iter().all(Message::in_range));
        for field in 0..15 {
            let over = |f| if f == field { OVER } else { at_limit(f) };
            let bad: Vec<_> = messages(over)
                .into_iter()
                .filter(|m| !m.in_range())
                .collect();
            assert_eq!(bad.len(), 1, "field {field} past the limit went unnoticed");
        }
        // Entries may not end past the limit, whatever their own fields say.
        let ends_past = Message::Append {
            term: 1,
            prev_index: TOP,
            prev_term: 1,
            entries: vec![Entry::new(1, 5, EntryPayload::Noop)],
            commit: 0,
        };
        assert!(!ends_past.in_range());
        let term_over = Message::TimeoutNow { term: OVER };
        assert!(!term_over.in_range());
        assert!(Message::TimeoutNow { term: TOP }.in_range());
    }

    #[test]
    fn only_install_snapshot_is_a_snapshot() {
        let all = messages(|_| 1);
        let snapshots: Vec<_> = all.iter().filter(|m| m.is_snapshot()).collect();
        assert_eq!(snapshots.len(), 1);
        assert_eq!(snapshots[0].kind(), "InstallSnapshot");
    }
}
