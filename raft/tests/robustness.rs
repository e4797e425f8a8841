//! No peer input can make a node panic or corrupt its state: stale, unknown, malformed,
//! duplicated and reordered messages are ignored and counted.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, entry};
use proptest::prelude::*;
use raft::{AppendOutcome, Membership, Message, Snapshot, SnapshotMeta};

#[test]
fn inconsistent_messages_are_ignored_and_counted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    let now = c.now;
    let term = c.node(1).term();
    let last = c.node(1).last_index();
    let invalid_before = c.node(2).stats().invalid();
    let follower = c.node_mut(2);
    // From itself, with term 0, entries that are not contiguous, entries with a future term,
    // and an append that would overwrite committed entries.
    follower.step(
        now,
        2,
        Message::Heartbeat {
            term,
            commit: 0,
            read_round: 0,
        },
    );
    follower.step(
        now,
        1,
        Message::Heartbeat {
            term: 0,
            commit: 0,
            read_round: 0,
        },
    );
    follower.step(
        now,
        1,
        Message::Append {
            term,
            prev_index: 0,
            prev_term: 0,
            entries: vec![entry(1, 2, "gap")],
            commit: 0,
        },
    );
    follower.step(
        now,
        1,
        Message::Append {
            term,
            prev_index: 0,
            prev_term: 0,
            entries: vec![entry(term + 1, 1, "future")],
            commit: 0,
        },
    );
    follower.step(
        now,
        1,
        Message::ReadIndexResponse {
            term,
            id: 77,
            index: Some(1),
        },
    );
    follower.step(now, 3, Message::TimeoutNow { term });
    assert!(c.node(2).stats().invalid() >= invalid_before + 5);
    // The leader ignores acknowledgements beyond its log and from strangers.
    let invalid_before = c.node(1).stats().invalid();
    let leader = c.node_mut(1);
    leader.step(
        now,
        2,
        Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted {
                match_index: last + 100,
            },
        },
    );
    leader.step(
        now,
        99,
        Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted { match_index: 1 },
        },
    );
    assert!(c.node(1).stats().unknown_peer() >= 1);
    assert_eq!(c.node(1).stats().invalid(), invalid_before + 1);
    assert_eq!(c.node(1).match_index(2), Some(last));
    assert!(c.node(1).is_leader());
    assert_eq!(c.node(1).commit_index(), last);
    c.drain(1);
    c.drain(2);
    c.stabilize();
    assert_eq!(c.commands(2), vec!["x"]);
}

#[test]
fn stale_term_messages_are_ignored() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.now += Duration::from_secs(2);
    c.hold_messages_of(1);
    c.elect(2);
    c.heal();
    let before = c.node(3).stats().stale_term();
    let now = c.now;
    c.node_mut(3).step(
        now,
        1,
        Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 5,
        },
    );
    assert_eq!(c.node(3).stats().stale_term(), before + 1);
    assert_eq!(c.node(3).leader(), Some(2));
    assert_eq!(
        c.node(3).commit_index(),
        c.node(2).commit_index().min(c.node(3).commit_index())
    );
}

#[test]
fn duplicated_and_reordered_messages_change_nothing() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, &format!("p{i}"));
    }
    // Deliver every message twice, in reverse order.
    let mut batch: Vec<_> = c.mailbox.drain(..).collect();
    batch.reverse();
    for (from, to, m) in batch.iter().chain(batch.iter()).cloned() {
        let now = c.now;
        c.node_mut(to).step(now, from, m);
        c.drain(to);
    }
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    for id in [2, 3] {
        assert_eq!(c.commands(id), vec!["p0", "p1", "p2", "p3", "p4"]);
    }
}

/// Small terms and indexes, as a real cluster has.
fn small(max: u64) -> BoxedStrategy<u64> {
    (0..max).boxed()
}

/// Any `u64`, with the edges (0, the top of the range, the core's 2^63 - 1 limit and their
/// neighbours) drawn often.
fn wide() -> BoxedStrategy<u64> {
    const LIMIT: u64 = i64::MAX as u64;
    prop_oneof![
        0u64..12,
        any::<u64>(),
        (0u64..4).prop_map(|k| u64::MAX - k),
        (0u64..4).prop_map(|k| LIMIT - 1 + k),
    ]
    .boxed()
}

fn arb_entry(t: BoxedStrategy<u64>, i: BoxedStrategy<u64>) -> impl Strategy<Value = raft::Entry> {
    (t, i, proptest::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(t, i, d)| raft::Entry::new(t, i, raft::EntryPayload::Command(Bytes::from(d))))
}

fn arb_message() -> impl Strategy<Value = Message> {
    message_with(small(6), small(12))
}

fn message_with(t: BoxedStrategy<u64>, i: BoxedStrategy<u64>) -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            t.clone(),
            any::<bool>(),
            i.clone(),
            t.clone(),
            any::<bool>()
        )
            .prop_map(|(term, pre_vote, li, lt, transfer)| {
                Message::VoteRequest {
                    term,
                    pre_vote,
                    last_log_index: li,
                    last_log_term: lt,
                    transfer,
                }
            }),
        (t.clone(), any::<bool>(), any::<bool>()).prop_map(|(term, pre_vote, granted)| {
            Message::VoteResponse {
                term,
                pre_vote,
                granted,
            }
        }),
        (
            t.clone(),
            i.clone(),
            t.clone(),
            proptest::collection::vec(arb_entry(t.clone(), i.clone()), 0..4),
            i.clone()
        )
            .prop_map(
                |(term, prev_index, prev_term, entries, commit)| Message::Append {
                    term,
                    prev_index,
                    prev_term,
                    entries,
                    commit
                }
            ),
        (
            t.clone(),
            i.clone(),
            i.clone(),
            proptest::option::of(t.clone()),
            any::<bool>()
        )
            .prop_map(|(term, a, b, hint_term, ok)| Message::AppendResponse {
                term,
                outcome: if ok {
                    AppendOutcome::Accepted { match_index: a }
                } else {
                    AppendOutcome::Rejected {
                        rejected_index: a,
                        hint_index: b,
                        hint_term,
                    }
                },
            }),
        (t.clone(), i.clone(), i.clone()).prop_map(|(term, commit, read_round)| {
            Message::Heartbeat {
                term,
                commit,
                read_round,
            }
        }),
        (t.clone(), i.clone())
            .prop_map(|(term, read_round)| Message::HeartbeatResponse { term, read_round }),
        (t.clone(), i.clone(), t.clone()).prop_map(|(term, index, st)| Message::InstallSnapshot {
            term,
            snapshot: Snapshot::new(
                SnapshotMeta::new(index, st, Membership::new([1, 2, 3])),
                Bytes::new()
            ),
        }),
        (t.clone(), i.clone()).prop_map(|(term, id)| Message::ReadIndex { term, id }),
        (t.clone(), i.clone(), proptest::option::of(i.clone()))
            .prop_map(|(term, id, index)| Message::ReadIndexResponse { term, id, index }),
        t.prop_map(|term| Message::TimeoutNow { term }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary messages from arbitrary senders, interleaved with normal operation, never
    /// make a node panic or start a message storm.
    #[test]
    fn garbage_from_peers_never_panics(garbage in proptest::collection::vec((0u64..6, 1u64..4, arb_message()), 1..40)) {
        let mut c = Cluster::new(&[1, 2, 3]);
        c.elect(1);
        c.propose(1, "x");
        for (from, to, message) in garbage {
            let now = c.now;
            c.node_mut(to).step(now, from, message);
            c.drain(to);
            c.elapse(Duration::from_millis(7));
        }
        // The network quiets down (no message storm: `deliver` caps it) and every node is
        // internally consistent. Safety against fabricated messages is not a goal — Raft
        // trusts its peers — but robustness is.
        c.stabilize();
        for id in 1..=3 {
            let node = c.node(id);
            prop_assert!(node.commit_index() <= node.last_index());
            prop_assert!(node.applied_index() <= node.commit_index());
        }
    }

    /// The same over the whole `u64` range of every index and term field of every message
    /// type, with its edges drawn often: no overflow panics (tests build the core with
    /// overflow checks), terms and commit indexes never go backwards, and a node that took
    /// any of it still replicates once the garbage stops.
    #[test]
    fn full_range_values_in_every_message_never_panic(
        garbage in proptest::collection::vec((1u64..6, 1u64..4, message_with(wide(), wide())), 1..30)
    ) {
        let mut c = Cluster::new(&[1, 2, 3]);
        c.elect(1);
        c.propose(1, "x");
        for (from, to, message) in garbage {
            let (term, commit) = (c.node(to).term(), c.node(to).commit_index());
            let now = c.now;
            c.node_mut(to).step(now, from, message);
            c.drain(to);
            prop_assert!(c.node(to).term() >= term);
            prop_assert!(c.node(to).commit_index() >= commit);
            c.elapse(Duration::from_millis(7));
        }
        c.stabilize();
        for id in 1..=3 {
            let node = c.node(id);
            prop_assert!(node.term() < u64::MAX);
            prop_assert!(node.commit_index() <= node.last_index());
            prop_assert!(node.applied_index() <= node.commit_index());
        }
    }
}

/// Indexes and terms at the top of the `u64` range: each of these overflowed (a panic in
/// debug builds, a wrap in release that could leave the node stuck for good). They are
/// refused and counted, and the node keeps working.
#[test]
fn indexes_and_terms_at_the_top_of_the_range_are_refused() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    let term = c.node(1).term();
    let now = c.now;

    // An append after the last possible index.
    let before = c.node(2).stats().out_of_range();
    c.node_mut(2).step(
        now,
        1,
        Message::Append {
            term,
            prev_index: u64::MAX,
            prev_term: term,
            entries: vec![entry(term, 0, "wraps")],
            commit: 0,
        },
    );
    assert_eq!(c.node(2).stats().out_of_range(), before + 1);

    // A snapshot at the last possible index: in release the commit index became u64::MAX
    // and the follower never accepted an entry again.
    let membership = Membership::new([1, 2, 3]);
    let snapshot = Snapshot::new(SnapshotMeta::new(u64::MAX, term, membership), Bytes::new());
    c.node_mut(3)
        .step(now, 1, Message::InstallSnapshot { term, snapshot });
    assert!(c.node(3).stats().out_of_range() >= 1);
    assert!(c.node(3).commit_index() < u64::MAX);
    c.drain(2);
    c.drain(3);
    c.mailbox.clear();

    // A rejection of the last possible index, sent to a leader probing node 2.
    c.timeout(1);
    c.stabilize();
    let term = c.node(1).term();
    let before = c.node(1).stats().out_of_range();
    c.node_mut(1).step(
        now,
        2,
        Message::AppendResponse {
            term,
            outcome: AppendOutcome::Rejected {
                rejected_index: u64::MAX,
                hint_index: u64::MAX,
                hint_term: Some(u64::MAX),
            },
        },
    );
    assert_eq!(c.node(1).stats().out_of_range(), before + 1);
    c.drain(1);

    // Replication still works on every node.
    c.propose(1, "y");
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(
            c.commands(id).last().map(String::as_str),
            Some("y"),
            "node {id}"
        );
    }

    // A vote request in the last possible term, then the node's own election timeout.
    let before = c.node(3).stats().out_of_range();
    let now = c.now;
    c.node_mut(3).step(
        now,
        2,
        Message::VoteRequest {
            term: u64::MAX,
            pre_vote: false,
            last_log_index: u64::MAX,
            last_log_term: u64::MAX,
            transfer: true,
        },
    );
    assert_eq!(c.node(3).stats().out_of_range(), before + 1);
    assert!(c.node(3).term() < u64::MAX);
    c.drain(3);
    c.mailbox.clear();
    c.timeout(3);
    c.stabilize();
}

/// Storage no correct run could have produced is refused with an error naming the problem;
/// nothing panics.
#[test]
fn restarting_from_inconsistent_storage_is_an_error() {
    use raft::{Config, Error, HardState, Instant, Node, RestoreState};
    let voters = || SnapshotMeta::new(0, 0, Membership::new([1, 2, 3]));
    let log = |range: std::ops::RangeInclusive<u64>| -> Vec<raft::Entry> {
        range.map(|i| entry(1, i, "e")).collect()
    };
    let cases = [
        (
            "commit past the last index",
            RestoreState {
                hard_state: HardState::new(1, None, 9),
                snapshot: voters(),
                entries: log(1..=3),
            },
            "commit index 9 is past the last index 3",
        ),
        (
            "a snapshot past the log",
            RestoreState {
                hard_state: HardState::new(1, None, 0),
                snapshot: SnapshotMeta::new(5, 1, Membership::new([1, 2, 3])),
                entries: log(1..=3),
            },
            "not contiguous after the snapshot at 5",
        ),
        (
            "a gap in the log",
            RestoreState {
                hard_state: HardState::new(1, None, 0),
                snapshot: voters(),
                entries: [log(1..=2), log(4..=4)].concat(),
            },
            "expected index 3, found 4",
        ),
        (
            "a vote for node 0",
            RestoreState {
                hard_state: HardState::new(1, Some(0), 0),
                snapshot: voters(),
                entries: log(1..=1),
            },
            "vote for node 0",
        ),
        (
            "a hard state behind the log",
            RestoreState {
                hard_state: HardState::new(0, None, 0),
                snapshot: voters(),
                entries: log(1..=1),
            },
            "hard state term 0 is below the last entry's term 1",
        ),
        (
            "a snapshot of term 0",
            RestoreState {
                hard_state: HardState::new(1, None, 0),
                snapshot: SnapshotMeta::new(4, 0, Membership::new([1, 2, 3])),
                entries: Vec::new(),
            },
            "snapshot at index 4 has term 0",
        ),
        (
            "a snapshot term at the top of the range",
            RestoreState {
                hard_state: HardState::new(u64::MAX, None, 0),
                snapshot: SnapshotMeta::new(1, u64::MAX, Membership::new([1, 2, 3])),
                entries: Vec::new(),
            },
            "out of range",
        ),
        (
            "an entry term at the top of the range",
            RestoreState {
                hard_state: HardState::new(u64::MAX, None, 0),
                snapshot: voters(),
                entries: vec![entry(u64::MAX, 1, "e")],
            },
            "entry 1 has term",
        ),
        (
            "an entry index past the top of the range",
            RestoreState {
                hard_state: HardState::new(1, None, 0),
                snapshot: SnapshotMeta::new(i64::MAX as u64, 1, Membership::new([1, 2, 3])),
                entries: vec![entry(1, i64::MAX as u64 + 1, "e")],
            },
            "entry 9223372036854775808 has term",
        ),
        (
            "an index at the top of the range",
            RestoreState {
                hard_state: HardState::new(1, None, 0),
                snapshot: SnapshotMeta::new(u64::MAX, 1, Membership::new([1, 2, 3])),
                entries: Vec::new(),
            },
            "out of range",
        ),
    ];
    for (what, state, expected) in cases {
        match Node::restart(Config::new(1), state, Instant::ZERO) {
            Err(Error::InvalidConfig(why)) => {
                assert!(why.contains(expected), "{what}: {why}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A vote for a node outside the configuration is a state a correct run can reach (a
    // candidate of a configuration this node has not seen yet): it restarts.
    let state = RestoreState {
        hard_state: HardState::new(1, Some(7), 0),
        snapshot: voters(),
        entries: log(1..=1),
    };
    assert!(Node::restart(Config::new(1), state, Instant::ZERO).is_ok());
}

/// Each of the basic checks on a message refuses it on its own.
#[test]
fn messages_from_itself_from_node_0_or_of_term_0_are_refused() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    let heartbeat = |term| Message::Heartbeat {
        term,
        commit: 0,
        read_round: 0,
    };
    for (from, term) in [(2, 1), (0, 1), (1, 0)] {
        let invalid = c.node(2).stats().invalid();
        c.node_mut(2).step(now, from, heartbeat(term));
        assert_eq!(
            c.node(2).stats().invalid(),
            invalid + 1,
            "from {from} in term {term}"
        );
    }
    // TimeoutNow from anyone but the leader starts nothing.
    let invalid = c.node(2).stats().invalid();
    c.node_mut(2).step(now, 3, Message::TimeoutNow { term: 1 });
    assert_eq!(c.node(2).stats().invalid(), invalid + 1);
    assert_eq!(
        (c.node(2).term(), c.node(2).role()),
        (1, raft::Role::Follower)
    );
    // An append from a second leader of the same term is refused and counted.
    let invalid = c.node(2).stats().invalid();
    c.node_mut(2).step(
        now,
        3,
        Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 0,
        },
    );
    assert_eq!(c.node(2).stats().invalid(), invalid + 1);
    assert_eq!(c.node(2).leader(), Some(1));
    // And an append to the leader itself.
    let invalid = c.node(1).stats().invalid();
    c.node_mut(1).step(
        now,
        3,
        Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 0,
        },
    );
    assert_eq!(c.node(1).stats().invalid(), invalid + 1);
    assert!(c.node(1).is_leader());
}

#[test]
fn a_pre_vote_request_of_a_higher_term_changes_no_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    // Out of node 2's lease: the request is answered, but node 2 stays in its term.
    let later = c.now + Duration::from_secs(2);
    let last = c.node(3).last_index();
    c.node_mut(2).step(
        later,
        3,
        Message::VoteRequest {
            term: 5,
            pre_vote: true,
            last_log_index: last,
            last_log_term: 1,
            transfer: false,
        },
    );
    assert_eq!(c.node(2).term(), 1);
    assert_eq!(c.node(2).leader(), Some(1));
    // Within the lease, a vote request is ignored and counted as stale.
    let stale = c.node(3).stats().stale_term();
    let now = c.now;
    c.node_mut(3).step(
        now,
        2,
        Message::VoteRequest {
            term: 5,
            pre_vote: false,
            last_log_index: last,
            last_log_term: 1,
            transfer: false,
        },
    );
    assert_eq!(c.node(3).stats().stale_term(), stale + 1);
}
