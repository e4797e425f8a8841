//! The driver's side of the contract: completions it reports (persisted, applied,
//! unreachable peers), what the node tells it (role changes, snapshots to apply, the next
//! deadline), and the limits it can rely on.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, config, entry};
use raft::{Config, Error, Instant, Membership, Message, Node, Output, Role};

fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

#[test]
fn completions_the_core_did_not_ask_for_are_ignored() {
    // Node 9 issues many tokens; node 1 only a few: node 9's latest is one node 1 never issued.
    let mut busy = Node::new(Config::new(9), Membership::new([9]), Instant::ZERO).unwrap();
    let mut now = Instant::ZERO;
    let mut foreign = None;
    for _ in 0..6 {
        for output in drain(&mut busy) {
            if let Output::Persist(p) = output {
                busy.persisted(now, p.token());
                foreign = Some(p.token());
            }
        }
        now = busy.poll_timeout();
        busy.handle_timeout(now);
        if busy.is_leader() {
            busy.propose(now, Bytes::from_static(b"x")).unwrap();
        }
    }
    let foreign = foreign.unwrap();

    let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
    let first = drain(&mut node);
    // The initial snapshot at index 0 is stored, not applied.
    assert!(!first.iter().any(|o| matches!(o, Output::ApplySnapshot(_))));
    let token = first
        .iter()
        .find_map(|o| match o {
            Output::Persist(p) => Some(p.token()),
            _ => None,
        })
        .unwrap();
    assert_eq!(token.get(), 1);
    assert!(foreign > token);
    node.persisted(Instant::ZERO, token);
    let after = drain(&mut node);
    assert!(!after.iter().any(|o| matches!(o, Output::ApplySnapshot(_))));
    let now = node.poll_timeout();
    node.handle_timeout(now);
    let vote = drain(&mut node)
        .iter()
        .find_map(|o| match o {
            Output::Persist(p) => Some(p.token()),
            _ => None,
        })
        .unwrap();
    assert_eq!(node.role(), Role::Candidate);
    // A token it never issued, and one it already had, change nothing.
    node.persisted(now, foreign);
    node.persisted(now, token);
    assert_eq!(
        node.role(),
        Role::Candidate,
        "a foreign token made its vote durable"
    );
    node.persisted(now, vote);
    assert!(node.is_leader());
    let later = drain(&mut node);
    assert!(!later.iter().any(|o| matches!(o, Output::ApplySnapshot(_))));
    // Applied indexes it never handed out change nothing either.
    node.applied(now, 5);
    assert_eq!(node.applied_index(), 0);
}

#[test]
fn role_changes_are_reported_once_each() {
    let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
    let mut roles = Vec::new();
    let mut now = Instant::ZERO;
    for _ in 0..5 {
        for output in drain(&mut node) {
            match output {
                Output::Persist(p) => node.persisted(now, p.token()),
                Output::RoleChanged { role, term, .. } => roles.push((role, term)),
                _ => {}
            }
        }
        for output in drain(&mut node) {
            if let Output::RoleChanged { role, term, .. } = output {
                roles.push((role, term));
            }
        }
        now = node.poll_timeout();
        node.handle_timeout(now);
    }
    assert_eq!(
        roles,
        vec![(Role::Follower, 0), (Role::Candidate, 1), (Role::Leader, 1)]
    );
}

#[test]
fn the_next_deadline_is_now_while_work_waits() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now + Duration::from_millis(10);
    let node = c.node_mut(2);
    assert!(node.poll_timeout() > now);
    // An input makes the node owe outputs (or at least a look): it wants to run at once.
    node.step(
        now,
        1,
        Message::Heartbeat {
            term: 1,
            commit: 1,
            read_round: 0,
        },
    );
    assert_eq!(node.poll_timeout(), now);
    drain(node);
    assert!(node.poll_timeout() > now);
}

#[test]
fn the_leader_counts_its_own_log_as_matched_only_once_durable() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let durable = c.node(1).last_index();
    assert_eq!(c.node(1).match_index(1), Some(durable));
    c.hold_disk(1);
    c.propose(1, "x");
    assert_eq!(c.node(1).match_index(1), Some(durable));
    assert_eq!(
        c.node(2).match_index(2),
        None,
        "only a leader tracks matches"
    );
    c.release_disk(1);
    assert_eq!(c.node(1).match_index(1), Some(durable + 1));
}

#[test]
fn backpressure_counts_bytes_up_to_the_limit_inclusive() {
    // The limit counts entries in flight by their size, plus the new command's bytes.
    let one = entry(1, 1, "").size() + 50;
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_uncommitted_bytes(one + 50));
    c.elect(1);
    c.hold_messages_of(2);
    c.hold_messages_of(3);
    let now = c.now;
    let leader = c.node_mut(1);
    assert!(leader.propose(now, Bytes::from(vec![0; 50])).is_ok());
    assert!(
        leader.propose(now, Bytes::from(vec![0; 50])).is_ok(),
        "exactly at the limit"
    );
    assert!(matches!(
        leader.propose(now, Bytes::from(vec![0; 1])),
        Err(Error::Backpressure { .. })
    ));
}

#[test]
fn an_unreachable_follower_is_probed_again_from_its_match_index() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.stabilize();
    let matched = c.node(1).match_index(2).unwrap();
    // Appends to node 2 are lost; the leader keeps streaming until told it is unreachable.
    c.propose(1, "b");
    c.deliver(|_, to, _| to != 2);
    c.propose(1, "c");
    let resumed = |c: &Cluster| {
        c.mailbox.iter().any(|(_, to, m)| {
            *to == 2 && matches!(m, Message::Append { prev_index, .. } if *prev_index == matched)
        })
    };
    assert!(!resumed(&c), "streaming went on after the lost append");
    c.mailbox.clear();
    let now = c.now;
    c.node_mut(1).report_unreachable(now, 3); // a peer in Probe already: no effect
    c.node_mut(1).report_unreachable(now, 2);
    c.propose(1, "d");
    assert!(
        resumed(&c),
        "the leader did not go back to node 2's match index"
    );
    c.stabilize();
    assert_eq!(c.commands(2), vec!["a", "b", "c", "d"]);
}

#[test]
fn a_follower_applies_a_rewritten_suffix_only_once_it_is_durable() {
    // Node 2 holds durable entries of term 1 at 1..4, only the first committed.
    let state = raft::RestoreState {
        hard_state: raft::HardState::new(1, None, 1),
        snapshot: raft::SnapshotMeta::new(0, 0, Membership::new([1, 2, 3])),
        entries: vec![
            entry(1, 1, "a"),
            entry(1, 2, "x"),
            entry(1, 3, "y"),
            entry(1, 4, "z"),
        ],
    };
    let mut node = Node::restart(Config::new(2), state, Instant::ZERO).unwrap();
    for output in drain(&mut node) {
        if let Output::Apply(entries) = output {
            node.applied(Instant::ZERO, entries.last().unwrap().index());
        }
    }
    assert_eq!(node.applied_index(), 1);
    // The leader of term 2 replaces 2..3 and says they are committed; the write is slow.
    node.step(
        Instant::ZERO,
        1,
        Message::Append {
            term: 2,
            prev_index: 1,
            prev_term: 1,
            entries: vec![entry(2, 2, "b"), entry(2, 3, "c")],
            commit: 3,
        },
    );
    let outputs = drain(&mut node);
    assert_eq!(node.commit_index(), 3);
    let applied: Vec<_> = outputs
        .iter()
        .filter(|o| matches!(o, Output::Apply(_)))
        .collect();
    assert!(applied.is_empty(), "applied before durable: {applied:?}");
    let token = outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist(p) => Some(p.token()),
            _ => None,
        })
        .unwrap();
    node.persisted(Instant::ZERO, token);
    let applied: Vec<_> = drain(&mut node)
        .into_iter()
        .filter_map(|o| match o {
            Output::Apply(entries) => Some(entries),
            _ => None,
        })
        .flatten()
        .map(|e| (e.index(), e.term()))
        .collect();
    assert_eq!(applied, vec![(2, 2), (3, 2)]);
}

#[test]
fn an_installed_snapshot_is_applied_once_durable() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_cached_entries(1));
    c.elect(1);
    c.hold_messages_of(3);
    for i in 0..10 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    let applied = c.node(1).applied_index();
    let meta = c.node(1).snapshot_meta(applied).unwrap();
    let snapshot = raft::Snapshot::new(meta, Bytes::from_static(b"state"));
    c.storage_mut(1).save_snapshot(snapshot.clone());
    let now = c.now;
    c.node_mut(1).compact(now, applied).unwrap();
    c.heal();
    c.hold_disk(3);
    for _ in 0..40 {
        if c.snapshots_needed.contains(&(1, 3)) {
            break;
        }
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert!(c.snapshots_needed.contains(&(1, 3)));
    let now = c.now;
    c.node_mut(1).send_snapshot(now, 3, snapshot).unwrap();
    c.drain(1);
    c.stabilize();
    assert_eq!(c.node(3).commit_index(), applied);
    assert!(
        c.node(3).applied_index() < applied,
        "applied before the snapshot was durable"
    );
    c.release_disk(3);
    assert_eq!(c.node(3).applied_index(), applied);
}

#[test]
fn a_leader_may_snapshot_what_it_applied_ahead_of_its_own_disk() {
    // A leader applies what a majority holds, even before its own write is durable; its term
    // is durable, so a snapshot there can be restarted from.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_disk(1);
    c.propose(1, "x");
    c.stabilize();
    let applied = c.node(1).applied_index();
    assert_eq!(
        c.node(1).match_index(1),
        Some(applied - 1),
        "its own write is pending"
    );
    let meta = c
        .node(1)
        .snapshot_meta(applied)
        .expect("the leader's term is durable");
    assert_eq!((meta.index(), meta.term()), (applied, 1));
}
