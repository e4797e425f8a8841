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

/// Proposes `target` on `leader`, then lets the cluster settle (a few heartbeats).
fn change(c: &mut Cluster, leader: NodeId, target: Membership) -> Result<Index, Error> {
    let now = c.now;
    let result = c.node_mut(leader).propose_membership(now, target);
    c.drain(leader);
    settle(c);
    result
}

fn settle(c: &mut Cluster) {
    for _ in 0..3 {
        c.stabilize();
        c.elapse(Duration::from_millis(60));
    }
    c.stabilize();
}

fn voters(c: &Cluster, id: NodeId) -> Vec<NodeId> {
    c.node(id).membership().voters().iter().copied().collect()
}

#[test]
fn replacing_a_node_goes_through_a_joint_configuration_and_leaves_it() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4);
    c.elect(1);
    change(&mut c, 1, Membership::new([1, 2, 3]).with_learners([4])).unwrap();
    // Replace 3 by 4 in one request: C_old,new first, then C_new on its own.
    let first = c.node(1).last_index() + 1;
    let index = change(&mut c, 1, Membership::new([1, 2, 4])).unwrap();
    assert_eq!(index, first);
    let configs: Vec<Membership> = c.applied[&2]
        .iter()
        .filter(|e| e.index() >= first)
        .filter_map(|e| match e.payload() {
            raft::EntryPayload::Membership(m) => Some((**m).clone()),
            _ => None,
        })
        .collect();
    assert_eq!(configs.len(), 2, "{configs:?}");
    assert!(configs[0].is_joint());
    assert_eq!(configs[0].outgoing_voters().len(), 3);
    assert_eq!(configs[1], Membership::new([1, 2, 4]));
    for id in [1, 2, 4] {
        assert_eq!(voters(&c, id), vec![1, 2, 4], "node {id}");
    }
    // The new configuration works: node 3 is no longer needed, and 4 can lead.
    c.hold_messages_of(3);
    c.propose(1, "after");
    settle(&mut c);
    assert_eq!(c.commands(4).last().map(String::as_str), Some("after"));
    c.now += Duration::from_secs(2);
    c.elect(4);
}

#[test]
fn a_joint_configuration_commits_only_with_both_majorities() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for id in [4, 5] {
        c.add_node(id);
    }
    c.elect(1);
    change(&mut c, 1, Membership::new([1, 2, 3]).with_learners([4, 5])).unwrap();
    // Move to {1, 4, 5}. With 4 and 5 cut off, {1, 2, 3} alone cannot commit the change.
    c.hold_messages_of(4);
    c.hold_messages_of(5);
    let now = c.now;
    let joint = c
        .node_mut(1)
        .propose_membership(now, Membership::new([1, 4, 5]))
        .unwrap();
    c.drain(1);
    settle(&mut c);
    assert!(c.node(1).membership().is_joint());
    assert!(c.node(1).commit_index() < joint);
    c.propose(1, "stuck");
    settle(&mut c);
    assert!(c.commands(2).iter().all(|cmd| cmd != "stuck"));
    c.heal();
    settle(&mut c);
    assert!(!c.node(1).membership().is_joint());
    assert_eq!(voters(&c, 5), vec![1, 4, 5]);
    assert_eq!(c.commands(5).last().map(String::as_str), Some("stuck"));
}

#[test]
fn a_learner_is_promoted_only_once_it_has_caught_up() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).catch_up_entries(10));
    c.add_node(4);
    c.elect(1);
    for i in 0..30 {
        c.propose(1, &format!("before-{i}"));
    }
    c.stabilize();
    // Node 4 joins as a learner but hears nothing yet.
    c.hold_messages_of(4);
    change(&mut c, 1, Membership::new([1, 2, 3]).with_learners([4])).unwrap();
    let refused = change(&mut c, 1, Membership::new([1, 2, 3, 4]));
    match refused {
        Err(Error::NotCaughtUp {
            id: 4,
            match_index: 0,
            last_index,
        }) => assert_eq!(last_index, c.node(1).last_index()),
        other => panic!("promotion of a learner that has nothing: {other:?}"),
    }
    // Adding a stranger directly as a voter is refused the same way.
    assert!(matches!(
        change(&mut c, 1, Membership::new([1, 2, 3, 9])),
        Err(Error::NotCaughtUp { id: 9, .. })
    ));
    c.heal();
    settle(&mut c);
    assert_eq!(c.node(1).match_index(4), Some(c.node(1).last_index()));
    change(&mut c, 1, Membership::new([1, 2, 3, 4])).unwrap();
    assert_eq!(voters(&c, 4), vec![1, 2, 3, 4]);
}

#[test]
fn a_removed_leader_steps_down_once_the_change_commits() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    let index = c
        .node_mut(1)
        .propose_membership(now, Membership::new([2, 3]))
        .unwrap();
    c.drain(1);
    // While the change is uncommitted, node 1 still leads it.
    assert!(c.node(1).is_leader());
    c.stabilize();
    assert!(c.node(1).commit_index() >= index);
    assert!(
        !c.node(1).is_leader(),
        "leader kept its role after its removal committed"
    );
    // It never campaigns again, and the others elect a leader among themselves.
    let campaigns = c.node(1).stats().pre_elections();
    c.timeout(1);
    assert_eq!(c.node(1).stats().pre_elections(), campaigns);
    c.now += Duration::from_secs(2);
    c.elect(2);
    c.propose(2, "without 1");
    settle(&mut c);
    assert_eq!(c.commands(3).last().map(String::as_str), Some("without 1"));
}

#[test]
fn replacing_the_leader_through_a_joint_configuration() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4);
    c.elect(1);
    change(&mut c, 1, Membership::new([1, 2, 3]).with_learners([4])).unwrap();
    change(&mut c, 1, Membership::new([2, 3, 4])).unwrap();
    assert!(!c.node(1).is_leader());
    assert_eq!(voters(&c, 2), vec![2, 3, 4]);
    c.now += Duration::from_secs(2);
    c.elect(4);
}

#[test]
fn a_removed_node_that_missed_its_removal_cannot_disrupt_the_cluster() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_messages_of(3);
    change(&mut c, 1, Membership::new([1, 2])).unwrap();
    assert_eq!(voters(&c, 2), vec![1, 2]);
    assert_eq!(
        voters(&c, 3),
        vec![1, 2, 3],
        "node 3 never heard of its removal"
    );
    // Node 3 campaigns again and again while the cluster runs.
    c.heal();
    let term = c.node(1).term();
    for _ in 0..20 {
        c.timeout(3);
        c.stabilize();
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert!(c.node(3).stats().pre_elections() >= 20);
    assert!(c.node(1).is_leader());
    assert_eq!(c.node(1).term(), term);
    assert_eq!(c.node(2).term(), term);
}

#[test]
fn ambiguous_changes_are_refused_clearly() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4);
    c.elect(1);
    let now = c.now;
    let follower = c
        .node_mut(2)
        .propose_membership(now, Membership::new([1, 2]));
    assert_eq!(follower, Err(Error::NotLeader { leader: Some(1) }));
    let leader = c.node_mut(1);
    assert!(matches!(
        leader.propose_membership(now, Membership::new([])),
        Err(Error::InvalidMembership("no voters left"))
    ));
    assert!(matches!(
        leader.propose_membership(now, Membership::new([1, 2, 3])),
        Err(Error::InvalidMembership(_))
    ));
    assert!(matches!(
        leader.propose_membership(now, Membership::new([0, 1, 2])),
        Err(Error::InvalidMembership(_))
    ));
    // One change at a time.
    leader
        .propose_membership(now, Membership::new([1, 2, 3]).with_learners([4]))
        .unwrap();
    assert_eq!(
        leader.propose_membership(now, Membership::new([1, 2])),
        Err(Error::MembershipChangeInProgress)
    );
    settle(&mut c);
    // No change during a leadership transfer.
    let now = c.now;
    c.hold_messages_of(2);
    c.node_mut(1).transfer_leadership(now, 2).unwrap();
    assert_eq!(
        c.node_mut(1)
            .propose_membership(now, Membership::new([1, 2, 3])),
        Err(Error::TransferInProgress)
    );
}

#[test]
fn leadership_goes_only_to_a_voter() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4);
    c.elect(1);
    change(&mut c, 1, Membership::new([1, 2, 3]).with_learners([4])).unwrap();
    let now = c.now;
    let leader = c.node_mut(1);
    assert_eq!(
        leader.transfer_leadership(now, 1),
        Ok(()),
        "to itself: nothing to do"
    );
    assert!(leader.is_leader());
    for (to, reason) in [(4, "it is a learner"), (9, "it is not a member")] {
        let result = leader.transfer_leadership(now, to);
        assert_eq!(result, Err(Error::InvalidTransfer { to, reason }));
        let text = result.unwrap_err().to_string();
        assert!(text.contains(&format!("node {to}")), "{text}");
    }
    // The leader still accepts proposals: no transfer was started.
    c.propose(1, "still leading");
}

#[test]
fn the_catch_up_distance_is_inclusive_and_applies_to_new_voters_only() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).catch_up_entries(5));
    c.add_node(4);
    c.elect(1);
    change(&mut c, 1, Membership::new([1, 2, 3]).with_learners([4])).unwrap();
    // Node 4 stops hearing from the leader, exactly 5 entries behind its last index.
    c.hold_messages_of(4);
    let matched = c.node(1).match_index(4).unwrap();
    while c.node(1).last_index() < matched + 5 {
        c.propose(1, "x");
    }
    c.stabilize();
    assert_eq!(c.node(1).last_index(), matched + 5);
    // Node 3 lags far behind too: as an existing voter, that blocks no change.
    c.hold_messages_of(3);
    let now = c.now;
    let promoted = c
        .node_mut(1)
        .propose_membership(now, Membership::new([1, 2, 3, 4]));
    assert!(
        promoted.is_ok(),
        "5 entries behind with a distance of 5: {promoted:?}"
    );
}
