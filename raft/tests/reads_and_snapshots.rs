//! ReadIndex reads (Raft dissertation §6.4) and snapshots / InstallSnapshot (§7).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, config};
use raft::{Membership, Message, Snapshot};

#[test]
fn a_leader_read_waits_for_a_quorum_to_confirm_leadership() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    let now = c.now;
    c.node_mut(1).read_index(now, 7).unwrap();
    c.drain(1);
    assert!(
        c.reads_ready.get(&1).is_none_or(Vec::is_empty),
        "served before confirmation"
    );
    assert!(
        c.mailbox
            .iter()
            .any(|(_, _, m)| matches!(m, Message::Heartbeat { read_round: 1, .. }))
    );
    c.stabilize();
    assert_eq!(c.reads_ready[&1], vec![(7, c.node(1).commit_index())]);
}

#[test]
fn reads_arriving_together_share_one_confirmation_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    for id in 0..50 {
        c.node_mut(1).read_index(now, id).unwrap();
    }
    c.drain(1);
    let heartbeats = c
        .mailbox
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Heartbeat { .. }))
        .count();
    assert_eq!(heartbeats, 2, "one heartbeat per follower for all 50 reads");
    c.stabilize();
    assert_eq!(c.reads_ready[&1].len(), 50);
}

#[test]
fn a_partitioned_leader_cannot_serve_a_read_and_fails_it_on_stepping_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_messages_of(1);
    let now = c.now;
    c.node_mut(1).read_index(now, 9).unwrap();
    c.drain(1);
    c.elapse(Duration::from_millis(600));
    c.elapse(Duration::from_millis(600));
    assert!(c.reads_ready.get(&1).is_none_or(Vec::is_empty));
    assert_eq!(c.reads_failed[&1], vec![9]);
}

#[test]
fn a_follower_read_is_forwarded_and_served_after_applying_the_read_index() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "x");
    // Deliver the append to node 1's followers but hold back the commit notification.
    c.stabilize();
    let now = c.now;
    c.node_mut(2).read_index(now, 3).unwrap();
    c.drain(2);
    assert!(matches!(
        c.mailbox.back(),
        Some((2, 1, Message::ReadIndex { id: 3, .. }))
    ));
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    let (id, index) = c.reads_ready[&2][0];
    assert_eq!(id, 3);
    assert!(index >= 2, "the read index covers the write");
    assert!(c.node(2).applied_index() >= index);
}

#[test]
fn a_new_leader_serves_reads_only_after_committing_in_its_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.timeout(1);
    // Win the election but keep the no-op from being acknowledged.
    c.deliver(|_, _, m| !matches!(m, Message::Append { .. }));
    assert!(c.node(1).is_leader());
    assert_eq!(c.node(1).commit_index(), 0);
    let now = c.now;
    c.node_mut(1).read_index(now, 1).unwrap();
    c.drain(1);
    c.elapse(Duration::from_millis(60));
    c.deliver(|_, _, m| !matches!(m, Message::Append { .. }));
    assert!(
        c.reads_ready.get(&1).is_none_or(Vec::is_empty),
        "read index from an older term's commit"
    );
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.reads_ready[&1], vec![(1, 1)]);
}

/// Takes a snapshot on `id` at its applied index and compacts its log.
fn snapshot(c: &mut Cluster, id: u64) -> Snapshot {
    let index = c.node(id).applied_index();
    let meta = c.node(id).snapshot_meta(index).unwrap();
    let snapshot = Snapshot::new(meta, Bytes::from(format!("state@{index}")));
    let now = c.now;
    c.node_mut(id).compact(now, index).unwrap();
    snapshot
}

#[test]
fn a_follower_behind_the_compaction_point_gets_a_snapshot() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_messages_of(3);
    for i in 0..20 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    let snap = snapshot(&mut c, 1);
    assert_eq!(c.node(1).snapshot_index(), snap.meta().index());
    assert!(
        c.node(1).snapshot_meta(0).is_err(),
        "older than the snapshot"
    );
    c.heal();
    // Appends lost during the partition are noticed after a few silent heartbeat rounds.
    for _ in 0..4 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert_eq!(c.snapshots_needed, vec![(1, 3)]);
    let now = c.now;
    c.node_mut(1).send_snapshot(now, 3, snap.clone()).unwrap();
    c.drain(1);
    c.stabilize();
    assert_eq!(c.node(3).stats().snapshots_installed(), 1);
    assert_eq!(c.storage(3).snapshot().meta().index(), snap.meta().index());
    assert_eq!(c.node(3).applied_index(), snap.meta().index());
    // Replication continues after the snapshot.
    c.propose(1, "after");
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.commands(3), vec!["after"]);
    assert_eq!(c.node(3).commit_index(), c.node(1).commit_index());
}

#[test]
fn a_follower_behind_the_cache_is_served_from_storage() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_cached_entries(2));
    c.elect(1);
    c.hold_messages_of(3);
    for i in 0..20 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    c.heal();
    for _ in 0..5 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert!(
        c.fetches
            .iter()
            .any(|&(id, first, _)| id == 1 && first <= 2),
        "{:?}",
        c.fetches
    );
    assert_eq!(c.commands(3).len(), 20);
}

#[test]
fn a_snapshot_survives_restart() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    let snap = snapshot(&mut c, 2);
    // The driver stores its own snapshots; MemStorage stands in for that here.
    let mut storage = c.storage(2).clone();
    storage.save_snapshot(snap.clone());
    let restored = raft::Node::restart(config(2), storage.restore_state(), c.now).unwrap();
    assert_eq!(restored.snapshot_index(), snap.meta().index());
    assert_eq!(restored.applied_index(), snap.meta().index());
    assert_eq!(restored.membership(), snap.meta().membership());
}

#[test]
fn a_fetch_the_driver_never_answers_is_asked_again() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_cached_entries(2));
    c.elect(1);
    c.hold_messages_of(3);
    for i in 0..20 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    c.heal();
    c.ignore_fetches.insert(1);
    for _ in 0..5 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    let asked = c.fetches.len();
    assert!(asked >= 1, "node 3 is behind the cache: a fetch is needed");
    assert_eq!(c.node(1).stats().fetches_timed_out(), 0);
    // Past the election timeout the unanswered fetch is given up and asked again.
    c.elapse(Duration::from_millis(1000));
    c.stabilize();
    assert_eq!(c.node(1).stats().fetches_timed_out(), 1);
    assert!(c.fetches.len() > asked, "the fetch was not asked again");
    c.ignore_fetches.clear();
    c.elapse(Duration::from_millis(1000));
    for _ in 0..5 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert_eq!(c.commands(3).len(), 20);
}

#[test]
fn a_forwarded_read_whose_answer_is_lost_times_out() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    c.node_mut(2).read_index(now, 7).unwrap();
    c.drain(2);
    // The request (or the answer) is lost.
    c.mailbox.clear();
    for _ in 0..15 {
        c.elapse(Duration::from_millis(130));
        c.stabilize();
    }
    assert!(
        !c.reads_failed.contains_key(&2),
        "failed before its timeout"
    );
    for _ in 0..5 {
        c.elapse(Duration::from_millis(130));
        c.stabilize();
    }
    assert_eq!(c.reads_failed.get(&2), Some(&vec![7]));
    assert_eq!(c.node(2).stats().reads_timed_out(), 1);
}

#[test]
fn a_leader_read_without_a_quorum_times_out_even_without_check_quorum() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).check_quorum(false));
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    c.hold_messages_of(1);
    let now = c.now;
    c.node_mut(1).read_index(now, 5).unwrap();
    c.drain(1);
    for _ in 0..25 {
        c.elapse(Duration::from_millis(130));
    }
    assert!(c.node(1).is_leader());
    assert_eq!(c.reads_failed.get(&1), Some(&vec![5]));
    assert!(!c.reads_ready.contains_key(&1));
}

#[test]
fn a_read_forwarded_to_a_deposed_leader_fails_at_once() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).check_quorum(false));
    c.elect(1);
    // Node 2 leads term 2 unbeknownst to node 3, which forwards its read to node 1.
    c.hold_messages_of(3);
    c.now += Duration::from_secs(2);
    c.elect(2);
    c.heal();
    let now = c.now;
    c.node_mut(3).read_index(now, 9).unwrap();
    c.drain(3);
    assert!(
        c.mailbox
            .iter()
            .any(|(from, to, m)| (*from, *to) == (3, 1) && matches!(m, Message::ReadIndex { .. }))
    );
    c.deliver(|from, to, _| (from, to) == (3, 1) || (from, to) == (1, 3));
    assert_eq!(c.reads_failed.get(&3), Some(&vec![9]));
    assert_eq!(c.node(3).term(), c.node(2).term());
}

#[test]
fn reads_beyond_the_cap_are_refused() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_pending_reads(2));
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    let now = c.now;
    let leader = c.node_mut(1);
    leader.read_index(now, 1).unwrap();
    leader.read_index(now, 2).unwrap();
    assert_eq!(
        leader.read_index(now, 3),
        Err(raft::Error::TooManyReads { limit: 2 })
    );
    // A read forwarded meanwhile is answered with a refusal, not queued.
    c.drain(1);
    c.mailbox.clear();
    c.node_mut(2).read_index(now, 4).unwrap();
    c.drain(2);
    c.deliver(|from, to, m| {
        (from, to) == (2, 1) && matches!(m, Message::ReadIndex { .. })
            || (from, to) == (1, 2) && matches!(m, Message::ReadIndexResponse { .. })
    });
    assert_eq!(c.reads_failed.get(&2), Some(&vec![4]));
    // Once the queued ones are served, reads are accepted again.
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.reads_ready.get(&1).map(Vec::len), Some(2));
    let now = c.now;
    c.node_mut(1).read_index(now, 5).unwrap();
}

#[test]
fn a_confirmed_read_whose_index_never_applies_times_out() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    // Node 2 forwards a read; meanwhile the leader commits an entry node 2 never receives.
    let now = c.now;
    c.node_mut(2).read_index(now, 8).unwrap();
    c.drain(2);
    let forwarded: Vec<_> = c.mailbox.drain(..).collect();
    c.propose(1, "x");
    c.deliver(|_, to, _| to != 2);
    let committed = c.node(1).commit_index();
    for (from, to, m) in forwarded {
        let now = c.now;
        c.node_mut(to).step(now, from, m);
        c.drain(to);
    }
    // The read is confirmed at an index node 2 cannot apply while it hears no appends.
    for _ in 0..20 {
        c.elapse(Duration::from_millis(130));
        c.deliver(|_, _, m| !matches!(m, Message::Append { .. }));
    }
    assert!(c.node(2).applied_index() < committed);
    assert!(!c.reads_ready.contains_key(&2));
    assert_eq!(c.reads_failed.get(&2), Some(&vec![8]));
    assert_eq!(c.node(2).stats().reads_timed_out(), 1);
}

#[test]
fn read_requests_and_answers_from_the_wrong_peers_are_refused_and_counted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    // A stranger's forwarded read is answered with a refusal.
    let unknown = c.node(1).stats().unknown_peer();
    c.node_mut(1)
        .step(now, 9, Message::ReadIndex { term: 1, id: 4 });
    c.drain(1);
    assert_eq!(c.node(1).stats().unknown_peer(), unknown + 1);
    assert!(
        c.mailbox
            .iter()
            .any(|(_, to, m)| *to == 9
                && matches!(m, Message::ReadIndexResponse { index: None, .. }))
    );
    // An answer from a node that is not the leader, or to a read nobody forwarded.
    let invalid = c.node(2).stats().invalid();
    let answer = |id| Message::ReadIndexResponse {
        term: 1,
        id,
        index: Some(1),
    };
    c.node_mut(2).step(now, 3, answer(5));
    c.node_mut(2).step(now, 1, answer(6));
    assert_eq!(c.node(2).stats().invalid(), invalid + 2);
}

#[test]
fn a_read_waiting_for_the_first_commit_of_the_term_times_out() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).check_quorum(false));
    c.elect(1);
    c.now += Duration::from_secs(2);
    // Node 2 wins term 2 but its no-op never reaches anyone.
    c.timeout(2);
    c.deliver(|_, _, m| {
        matches!(
            m,
            Message::VoteRequest { .. } | Message::VoteResponse { .. }
        )
    });
    assert!(c.node(2).is_leader());
    c.hold_messages_of(2);
    let now = c.now;
    c.node_mut(2).read_index(now, 3).unwrap();
    c.drain(2);
    for _ in 0..15 {
        c.elapse(Duration::from_millis(130));
    }
    assert!(
        !c.reads_failed.contains_key(&2),
        "failed before its timeout"
    );
    for _ in 0..5 {
        c.elapse(Duration::from_millis(130));
    }
    assert_eq!(c.reads_failed.get(&2), Some(&vec![3]));
}

/// Node 3 falls behind the leader's cache by `behind` entries; the leader's fetches are
/// left unanswered. Returns the cluster and the first fetch asked for.
fn behind_the_cache(behind: usize) -> (Cluster, (u64, u64)) {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_cached_entries(2));
    c.elect(1);
    c.hold_messages_of(3);
    for i in 0..behind {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    c.heal();
    c.ignore_fetches.insert(1);
    for _ in 0..5 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
        if !c.fetches.is_empty() {
            break;
        }
    }
    let &(_, first, last) = c.fetches.first().expect("a fetch for node 3");
    (c, (first, last))
}

#[test]
fn fetched_entries_that_do_not_match_the_log_are_not_sent() {
    let (mut c, (first, last)) = behind_the_cache(20);
    let mut bogus = common::entries_of(&c, 1, first, last);
    // Right first index, but a later entry of another term (a driver bug or a stale read).
    bogus[1] = raft::Entry::new(9, bogus[1].index(), raft::EntryPayload::Noop);
    let asked = c.fetches.len();
    let now = c.now;
    c.node_mut(1).entries_fetched(now, bogus);
    c.drain(1);
    let sent_bogus = c.mailbox.iter().any(|(_, to, m)| {
        *to == 3
            && matches!(m, Message::Append { entries, .. } if entries.iter().any(|e| e.term() == 9))
    });
    assert!(!sent_bogus, "sent entries that are not in the leader's log");
    assert!(
        c.fetches.len() > asked,
        "the entries were not asked for again"
    );
    // Entries that start elsewhere, or that end before the follower's next index, are asked
    // for again too.
    let (mut c, (first, last)) = behind_the_cache(20);
    let shifted = common::entries_of(&c, 1, first + 1, last);
    let asked = c.fetches.len();
    let now = c.now;
    c.node_mut(1).entries_fetched(now, shifted);
    c.drain(1);
    assert!(c.fetches.len() > asked);
    // The fetch asked again meanwhile went unanswered: it is asked once more after its timeout.
    c.ignore_fetches.clear();
    for _ in 0..30 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert_eq!(c.commands(3).len(), 20);
}

#[test]
fn fetches_ask_for_at_most_a_batch() {
    let (_, (first, last)) = behind_the_cache(5000);
    assert_eq!(last - first + 1, 4096, "fetched {first}..={last}");
}

#[test]
fn snapshots_are_taken_sent_and_installed_only_within_their_bounds() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_messages_of(3);
    for i in 0..10 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    let applied = c.node(1).applied_index();
    let older = snapshot_at(&mut c, 1, applied - 4);
    let first = c.node(1).snapshot_index();
    // At the snapshot point again: fine; before it, or past what is applied: refused.
    assert!(c.node(1).snapshot_meta(first).is_ok());
    assert!(c.node(1).snapshot_meta(first - 1).is_err());
    assert!(c.node(1).snapshot_meta(applied).is_ok());
    assert!(c.node(1).snapshot_meta(applied + 1).is_err());
    let latest = snapshot_at(&mut c, 1, applied);
    assert_eq!(c.node(1).stats().snapshots_sent(), 0);
    // The leader sends only its latest snapshot, with the right term, to a member.
    c.heal();
    for _ in 0..6 {
        c.elapse(Duration::from_millis(60));
        c.stabilize();
    }
    assert!(c.snapshots_needed.contains(&(1, 3)));
    let now = c.now;
    assert!(matches!(
        c.node_mut(1).send_snapshot(now, 3, older),
        Err(raft::Error::IndexOutOfRange { .. })
    ));
    let wrong_term = Snapshot::new(
        raft::SnapshotMeta::new(applied, 7, Membership::new([1, 2, 3])),
        Bytes::new(),
    );
    assert!(c.node_mut(1).send_snapshot(now, 3, wrong_term).is_err());
    assert!(c.node_mut(1).send_snapshot(now, 9, latest.clone()).is_err());
    assert!(c.node_mut(2).send_snapshot(now, 3, latest.clone()).is_err());
    c.node_mut(1).send_snapshot(now, 3, latest).unwrap();
    assert_eq!(c.node(1).stats().snapshots_sent(), 1);
    c.drain(1);
    c.stabilize();
    assert_eq!(c.node(3).stats().snapshots_installed(), 1);
    assert_eq!(c.node(3).applied_index(), applied);
}

/// Takes a snapshot on `id` at `index` and compacts its log to there.
fn snapshot_at(c: &mut Cluster, id: u64, index: u64) -> Snapshot {
    let meta = c.node(id).snapshot_meta(index).unwrap();
    let snapshot = Snapshot::new(meta, Bytes::from(format!("state@{index}")));
    let now = c.now;
    c.node_mut(id).compact(now, index).unwrap();
    snapshot
}

#[test]
fn an_install_snapshot_no_leader_could_send_is_refused() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let term = c.node(2).term();
    let send = |c: &mut Cluster, index: u64, snapshot_term: u64, voters: Vec<u64>| {
        let invalid = c.node(2).stats().invalid();
        let meta = raft::SnapshotMeta::new(index, snapshot_term, Membership::new(voters));
        let now = c.now;
        c.node_mut(2).step(
            now,
            1,
            Message::InstallSnapshot {
                term,
                snapshot: Snapshot::new(meta, Bytes::new()),
            },
        );
        c.drain(2);
        c.node(2).stats().invalid() > invalid
    };
    assert!(
        send(&mut c, 50, term + 1, vec![1, 2, 3]),
        "from a future term"
    );
    assert!(send(&mut c, 50, 0, vec![1, 2, 3]), "term 0 past index 0");
    assert!(send(&mut c, 50, term, vec![]), "no voters");
    assert_eq!(c.node(2).snapshot_index(), 0);
    assert_eq!(c.node(2).stats().snapshots_installed(), 0);
    assert!(
        !send(&mut c, 50, term, vec![1, 2, 3]),
        "a snapshot of the leader's term"
    );
    assert_eq!(c.node(2).snapshot_index(), 50);
    assert_eq!(c.node(2).stats().snapshots_installed(), 1);
}
