//! Membership changes: single-voter changes, joint consensus, learners, removals.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, config};
use raft::{Error, Index, Membership, Message, NodeId, Term};

/// Every index applied on more than one node holds the same entry (term) everywhere.
fn assert_applied_agree(c: &Cluster) {
    let mut seen: BTreeMap<Index, (Term, NodeId)> = BTreeMap::new();
    for (&id, entries) in &c.applied {
        for e in entries {
            if let Some(&(term, other)) = seen.get(&e.index()) {
                assert_eq!(
                    term,
                    e.term(),
                    "index {} applied with term {term} on node {other} but term {} on node {id}",
                    e.index(),
                    e.term()
                );
            } else {
                seen.insert(e.index(), (e.term(), id));
            }
        }
    }
}

/// The bug Ongaro described on raft-dev in 2015: a single-server change proposed before the
/// leader committed an entry of its own term lets two configurations without overlapping
/// majorities both commit.
#[test]
fn a_single_server_change_waits_for_a_commit_in_the_leaders_term() {
    let mut c = Cluster::with(&[1, 2, 3, 4], |id| {
        config(id).pre_vote(false).check_quorum(false)
    });
    c.add_node(5);
    c.elect(1);
    let now = c.now;
    // Term 1: leader 1 appends D = C + {5} at index 2; only node 5 receives it.
    let d = c
        .node_mut(1)
        .propose_membership(now, Membership::new([1, 2, 3, 4, 5]))
        .unwrap();
    assert_eq!(d, 2);
    c.drain(1);
    c.deliver(|from, to, _| (from == 1 && to == 5) || (from == 5 && to == 1));
    assert_eq!(c.node(5).last_index(), 2);
    c.hold_messages_of(1);
    c.hold_messages_of(5);

    // Term 2: node 2 wins with votes from 3 and 4, and proposes E = C - {1} at once.
    c.timeout(2);
    let between_2_and_3 = |from: NodeId, to: NodeId| matches!((from, to), (2, 3) | (3, 2));
    c.deliver(|from, to, m| {
        let vote = matches!(
            m,
            Message::VoteRequest { .. } | Message::VoteResponse { .. }
        );
        vote || between_2_and_3(from, to)
    });
    assert!(c.node(2).is_leader());
    assert_eq!(c.node(2).term(), 2);
    let now = c.now;
    let refused = c
        .node_mut(2)
        .propose_membership(now, Membership::new([2, 3, 4]));
    c.drain(2);
    // Its appends reach node 3 only: {2, 3} is a majority of E = {2, 3, 4}.
    c.deliver(|from, to, _| between_2_and_3(from, to));

    // Term 3: node 1, still holding D, wins with votes from 4 and 5 (3 of 5) and commits.
    c.heal();
    c.hold_messages_of(2);
    c.hold_messages_of(3);
    while c.node(1).term() < 3 {
        c.timeout(1);
        c.stabilize();
    }
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_applied_agree(&c);
    assert_eq!(
        refused,
        Err(Error::LeaderNotReady),
        "a membership change was accepted before the leader committed in its term"
    );
}
