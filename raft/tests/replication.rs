//! Log replication and commitment (Raft §5.3, §5.4.2) and the persist-before-speak contract.

mod common;

use std::time::Duration;

use common::{Cluster, config, entry};
use raft::{AppendOutcome, Error, Instant, Membership, Message, Node, Output};

fn is_append_with_term(m: &Message, term: u64) -> bool {
    matches!(m, Message::Append { entries, .. } if entries.iter().any(|e| e.term() == term))
}

#[test]
fn figure_8_a_leader_never_commits_an_old_term_entry_by_counting_replicas() {
    // Raft paper, Figure 8. Index 2 holds term 2 on S1 and S2 (S1 led term 2), and term 3 on
    // S5 (S5 led term 3). Both leaders crashed before committing.
    let mut c = Cluster::with(&[1, 2, 3, 4, 5], |id| config(id).max_append_bytes(1));
    for id in [1, 2] {
        c.set_log(id, 3, vec![entry(1, 1, "a"), entry(2, 2, "s1-term2")]);
    }
    for id in [3, 4] {
        c.set_log(id, 3, vec![entry(1, 1, "a")]);
    }
    c.set_log(5, 3, vec![entry(1, 1, "a"), entry(3, 2, "s5-term3")]);

    // (c) S1 wins term 4 with S2, S3 and S4 (S5 is down) and copies index 2 to S3 and S4,
    // but its own term-4 entry has not reached anyone yet.
    c.timeout(1);
    let mut term_4_appends = std::collections::BTreeMap::new();
    c.deliver(|from, to, m| {
        if [from, to].iter().any(|id| [2, 5].contains(id)) {
            return false;
        }
        // The first append carrying the no-op is rejected (S3 and S4 lack index 2); later
        // ones, after the leader backed up and sent index 2 alone, are lost.
        !is_append_with_term(m, 4)
            || *term_4_appends
                .entry(to)
                .and_modify(|n| *n += 1)
                .or_insert(1)
                == 1
    });
    assert!(c.node(1).is_leader());
    assert_eq!(c.node(1).term(), 4);
    assert_eq!(c.node(1).match_index(3), Some(2));
    assert_eq!(c.node(1).match_index(4), Some(2));
    // Index 2 is on S1, S2, S3 and S4 — a majority — yet it is from term 2: not committed.
    assert_eq!(
        c.node(1).commit_index(),
        0,
        "committing an old-term entry by counting replicas"
    );

    // (d) S1 crashes; S5 can still win (its last term, 3, beats everyone's 2) and overwrites
    // index 2 everywhere. Had S1 committed index 2, a committed entry would now be lost.
    c.hold_messages_of(1);
    c.now += Duration::from_secs(2);
    for _ in 0..3 {
        c.timeout(5);
        c.stabilize();
        if c.node(5).is_leader() {
            break;
        }
    }
    assert!(c.node(5).is_leader());
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    for id in [2, 3, 4] {
        assert_eq!(
            c.node(id).log_term(2),
            Some(3),
            "node {id}'s index 2 was overwritten"
        );
    }
    assert_eq!(c.commands(3), vec!["a", "s5-term3"]);
}

#[test]
fn a_stale_leaders_uncommitted_entries_are_overwritten() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.stabilize();
    // Node 1 is cut off and keeps accepting proposals it can never commit.
    c.hold_messages_of(1);
    c.propose(1, "lost-1");
    c.propose(1, "lost-2");
    c.now += Duration::from_secs(2);
    c.elect(2);
    c.propose(2, "b");
    c.stabilize();
    c.heal();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert!(!c.node(1).is_leader());
    assert_eq!(c.log_terms(1), c.log_terms(2));
    assert_eq!(c.commands(1), vec!["a", "b"]);
    assert_eq!(c.commands(3), vec!["a", "b"]);
}

#[test]
fn a_follower_acknowledges_only_what_is_durable() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_disk(2);
    c.propose(1, "x");
    let mut acks_from_2 = 0;
    c.deliver(|from, _, m| {
        if from == 2 && matches!(m, Message::AppendResponse { .. }) {
            acks_from_2 += 1;
        }
        true
    });
    assert_eq!(acks_from_2, 0, "acknowledged before the write was durable");
    c.release_disk(2);
    assert!(
        c.mailbox
            .iter()
            .any(|(from, _, m)| *from == 2 && matches!(m, Message::AppendResponse { .. }))
    );
}

#[test]
fn a_follower_with_a_slow_disk_still_answers_heartbeats_so_the_leader_keeps_its_quorum() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    // Both followers' disks stall with an append in flight, for several election timeouts.
    c.hold_disk(2);
    c.hold_disk(3);
    c.propose(1, "x");
    c.stabilize();
    let mut heartbeat_answers = 0;
    let mut acks = 0;
    for _ in 0..40 {
        c.elapse(std::time::Duration::from_millis(50));
        c.deliver(|from, _, m| {
            if from != 1 {
                match m {
                    Message::HeartbeatResponse { .. } => heartbeat_answers += 1,
                    Message::AppendResponse { .. } => acks += 1,
                    _ => {}
                }
            }
            true
        });
    }
    assert_eq!(acks, 0, "an append was acknowledged before it was durable");
    assert!(heartbeat_answers > 0, "heartbeats went unanswered");
    assert!(
        c.node(1).is_leader(),
        "CheckQuorum deposed the leader over a slow disk"
    );
    assert_eq!(c.node(1).term(), 1);
    assert_eq!(
        c.node(1).commit_index(),
        1,
        "nothing new committed while no follower's disk synced"
    );
    c.release_disk(2);
    c.stabilize();
    assert_eq!(c.commands(1), vec!["x"]);
}

#[test]
fn a_heartbeat_answer_in_a_new_term_waits_for_the_term_to_be_durable() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.elect(1);
    c.hold_disk(3);
    // 2 takes over in term 2 (a leadership transfer); 3 learns the new term but cannot make
    // it durable yet.
    let now = c.now;
    c.node_mut(1).transfer_leadership(now, 2).unwrap();
    c.drain(1);
    let mut from_3_in_term_2 = Vec::new();
    let deliver = |c: &mut Cluster, seen: &mut Vec<&'static str>| {
        c.deliver(|from, _, m| {
            if from == 3 && m.term() >= 2 {
                seen.push(m.kind());
            }
            true
        })
    };
    deliver(&mut c, &mut from_3_in_term_2);
    assert!(c.node(2).is_leader());
    assert_eq!(c.node(3).term(), 2, "3 saw the new term");
    for _ in 0..5 {
        c.elapse(std::time::Duration::from_millis(50));
        deliver(&mut c, &mut from_3_in_term_2);
    }
    assert!(
        from_3_in_term_2.is_empty(),
        "sent in a term not yet durable: {from_3_in_term_2:?}"
    );
    c.release_disk(3);
    deliver(&mut c, &mut from_3_in_term_2);
    c.elapse(std::time::Duration::from_millis(50));
    deliver(&mut c, &mut from_3_in_term_2);
    assert!(
        from_3_in_term_2.contains(&"HeartbeatResponse"),
        "{from_3_in_term_2:?}"
    );
}

#[test]
fn a_vote_is_granted_only_once_durable() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.hold_disk(2);
    c.hold_disk(3);
    c.timeout(1);
    c.stabilize();
    assert!(
        !c.node(1).is_leader(),
        "votes were sent before they were durable"
    );
    c.release_disk(2);
    c.stabilize();
    assert!(c.node(1).is_leader());
}

#[test]
fn a_candidate_asks_for_votes_only_once_its_own_vote_is_durable() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.hold_disk(1);
    c.timeout(1);
    assert_eq!(c.node(1).term(), 1);
    assert!(
        c.mailbox.is_empty(),
        "vote requests left before term and vote were durable"
    );
    c.release_disk(1);
    assert_eq!(c.mailbox.len(), 2);
}

#[test]
fn the_leader_counts_itself_only_after_its_own_write_is_durable() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let before = c.node(1).commit_index();
    c.hold_disk(1);
    let index = c.propose(1, "x");
    // Only node 2 answers: the quorum needs the leader's own durable copy.
    c.deliver(|_, to, _| to != 3);
    assert_eq!(
        c.node(1).match_index(2),
        Some(index),
        "replicated while the leader's write was in flight"
    );
    assert_eq!(c.node(1).commit_index(), before);
    c.release_disk(1);
    assert_eq!(c.node(1).commit_index(), index);
}

#[test]
fn proposals_fed_together_become_one_write_and_one_append_per_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    let node = c.node_mut(1);
    for i in 0..100 {
        node.propose(now, format!("p{i}").into()).unwrap();
    }
    let (mut persists, mut appends) = (0, 0);
    while let Some(out) = node.poll_output() {
        match out {
            Output::Persist(p) => {
                persists += 1;
                assert_eq!(p.entries().len(), 100);
            }
            Output::Send {
                message: Message::Append { entries, .. },
                ..
            } => {
                appends += 1;
                assert_eq!(entries.len(), 100);
            }
            _ => {}
        }
    }
    assert_eq!((persists, appends), (1, 2));
}

#[test]
fn conflict_hints_skip_a_whole_term_per_round_trip() {
    // The follower holds 50 entries of term 2 the leader never had; the leader (term 4) must
    // find the match point without 50 round trips.
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    let mut leader_log = vec![entry(1, 1, "a")];
    let mut follower_log = vec![entry(1, 1, "a")];
    for i in 2..=51 {
        leader_log.push(entry(3, i, "leader"));
        follower_log.push(entry(2, i, "stale"));
    }
    c.set_log(1, 3, leader_log.clone());
    c.set_log(3, 3, leader_log);
    c.set_log(2, 3, follower_log);
    c.timeout(1);
    let mut rejections = 0;
    c.deliver(|from, _, m| {
        if from == 2
            && matches!(
                m,
                Message::AppendResponse {
                    outcome: AppendOutcome::Rejected { .. },
                    ..
                }
            )
        {
            rejections += 1;
        }
        true
    });
    assert!(
        rejections <= 2,
        "{rejections} round trips to find the match point"
    );
    assert_eq!(c.log_terms(2), c.log_terms(1));
}

#[test]
fn the_inflight_window_bounds_unacknowledged_appends() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_inflight_appends(3));
    c.elect(1);
    for i in 0..10 {
        c.propose(1, &format!("p{i}"));
    }
    let to_2 = c
        .mailbox
        .iter()
        .filter(|(_, to, m)| *to == 2 && matches!(m, Message::Append { .. }))
        .count();
    assert_eq!(to_2, 3, "more appends in flight than the window allows");
    c.stabilize();
    assert_eq!(c.commands(2).len(), 10);
}

#[test]
fn proposals_fail_fast_off_the_leader_and_under_backpressure() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).max_uncommitted_bytes(200));
    c.elect(1);
    let now = c.now;
    assert_eq!(
        c.node_mut(2).propose(now, "x".into()),
        Err(Error::NotLeader { leader: Some(1) })
    );
    let mut accepted = 0;
    loop {
        match c.node_mut(1).propose(now, vec![0u8; 50].into()) {
            Ok(_) => accepted += 1,
            Err(Error::Backpressure { .. }) => break,
            Err(other) => panic!("{other}"),
        }
    }
    assert!((1..=3).contains(&accepted), "{accepted}");
    c.drain(1);
    c.stabilize();
    // Once committed, there is room again.
    assert!(c.node_mut(1).propose(now, vec![0u8; 50].into()).is_ok());
}

#[test]
fn a_restarted_node_reapplies_committed_entries_and_rejoins() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    c.restart(3);
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.commands(3), vec!["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(c.node(3).leader(), Some(1));
}

#[test]
fn the_core_is_deterministic() {
    // Same inputs, same outputs: two runs of the same scenario produce identical traces.
    fn run() -> Vec<String> {
        let mut node = Node::new(config(1), Membership::new([1, 2, 3]), Instant::ZERO).unwrap();
        let mut trace = Vec::new();
        for step in 0..5u64 {
            let now = node.poll_timeout();
            node.handle_timeout(now);
            node.step(
                now,
                2,
                Message::VoteResponse {
                    term: node.term() + 1,
                    pre_vote: true,
                    granted: step > 2,
                },
            );
            while let Some(out) = node.poll_output() {
                trace.push(format!("{now} {out:?}"));
            }
        }
        trace
    }
    assert_eq!(run(), run());
}

/// A follower whose disk stalls through two elections learns of a commit covering an entry of
/// a term it has not made durable. Applying it, then snapshotting at that index and crashing,
/// left storage that `Node::restart` refused ("hard state term 1 is below the last entry's
/// term 2"). A follower applies, and snapshots, only what is durable on it.
#[test]
fn a_follower_applies_only_what_is_durable_so_it_can_always_restart() {
    let mut c = Cluster::with(&[1, 2, 3], |id| {
        config(id).pre_vote(false).check_quorum(false)
    });
    c.elect(1);
    c.propose(1, "a");
    c.stabilize();
    c.hold_disk(3);
    // Term 2: node 2 wins with node 1's vote; node 3 takes its no-op into memory only.
    c.elect(2);
    let term_2_noop = c.node(2).last_index();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.node(1).commit_index(), term_2_noop);
    // Term 3: node 1 wins with node 2's vote; its first append tells node 3 that the term-2
    // no-op is committed.
    c.elect(1);
    assert_eq!(c.node(3).commit_index(), term_2_noop);
    assert_eq!(
        c.node(3).term(),
        3,
        "node 3 saw term 3, but its disk holds term 1"
    );
    let applied = c.node(3).applied_index();
    assert!(
        c.node(3).log_term(applied) <= Some(1),
        "node 3 applied index {applied} of term {:?} before that term was durable",
        c.node(3).log_term(applied)
    );
    // The driver snapshots whatever it may, then the node crashes: it must restart.
    if let Ok(meta) = c.node(3).snapshot_meta(applied) {
        let snapshot = raft::Snapshot::new(meta, bytes::Bytes::new());
        c.storage_mut(3).save_snapshot(snapshot);
    }
    c.restart(3);
    c.release_disk(3);
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.node(3).applied_index(), c.node(1).commit_index());
}

/// A follower whose disk stalls keeps answering heartbeats. The leader used to clear its probe
/// on every heartbeat answer and resend the whole unacknowledged suffix, up to a full append
/// every heartbeat (38 resends in 40 heartbeats). What it resends to a follower that
/// acknowledges nothing is bounded.
#[test]
fn a_leader_resends_little_to_a_follower_whose_disk_is_stalled() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_disk(3);
    let value = "v".repeat(10_000);
    for _ in 0..20 {
        c.propose(1, &value);
    }
    c.stabilize();
    let (mut appends, mut bytes) = (0, 0);
    for _ in 0..40 {
        c.elapse(Duration::from_millis(50));
        c.deliver(|from, to, m| {
            if let Message::Append { entries, .. } = m
                && from == 1
                && to == 3
                && !entries.is_empty()
            {
                appends += 1;
                bytes += entries.iter().map(raft::Entry::size).sum::<usize>();
            }
            true
        });
    }
    // 40 heartbeats (2 s): the stall detector may resend the suffix (200 KB) once, then
    // retries back off and carry one entry each.
    assert!(
        appends <= 8,
        "{appends} appends resent to a stalled follower"
    );
    assert!(
        bytes <= 300_000,
        "{bytes} bytes resent to a stalled follower"
    );
    c.release_disk(3);
    c.elapse(Duration::from_millis(50));
    c.stabilize();
    assert_eq!(c.commands(3).len(), 20);
}

/// A node answers an append from a stale term with `Accepted { match_index: 0 }`. If that
/// answer reaches the same leader re-elected in the answer's term, it must not move the
/// follower to Replicate from index 1 (resending the whole log, or asking for a snapshot
/// for a follower that is caught up).
#[test]
fn an_acknowledgement_that_advances_nothing_keeps_the_follower_in_probe() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, &format!("p{i}"));
    }
    c.stabilize();
    // Re-elect node 1 in a new term: its followers start again in Probe with nothing matched.
    c.now += Duration::from_secs(2);
    c.elect(2);
    c.now += Duration::from_secs(2);
    c.timeout(1);
    c.deliver(|_, _, m| !matches!(m, Message::Append { .. }));
    assert!(c.node(1).is_leader());
    let term = c.node(1).term();
    let last = c.node(1).last_index();
    let now = c.now;
    c.node_mut(1).step(
        now,
        2,
        Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted { match_index: 0 },
        },
    );
    c.drain(1);
    c.propose(1, "next");
    let from_start: Vec<_> = c
        .mailbox
        .iter()
        .filter(|(from, to, m)| {
            *from == 1
                && *to == 2
                && matches!(m, Message::Append { prev_index, .. } if *prev_index + 1 < last)
        })
        .collect();
    assert!(
        from_start.is_empty(),
        "the leader replicated from the start of its log: {from_start:?}"
    );
    assert!(c.snapshots_needed.is_empty());
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.commands(2).last().map(String::as_str), Some("next"));
}

/// The prev index of every append node 1 queued for node 2, then clears the mailbox.
fn appends_to_2(c: &mut Cluster) -> Vec<u64> {
    let prevs = c
        .mailbox
        .iter()
        .filter_map(|(from, to, m)| match m {
            Message::Append { prev_index, .. } if (*from, *to) == (1, 2) => Some(*prev_index),
            _ => None,
        })
        .collect();
    c.mailbox.clear();
    prevs
}

fn answer(c: &mut Cluster, outcome: AppendOutcome) {
    let now = c.now;
    let term = c.node(1).term();
    c.node_mut(1)
        .step(now, 2, Message::AppendResponse { term, outcome });
    c.drain(1);
}

fn rejected(rejected_index: u64, hint_index: u64, hint_term: Option<u64>) -> AppendOutcome {
    AppendOutcome::Rejected {
        rejected_index,
        hint_index,
        hint_term,
    }
}

#[test]
fn a_leader_follows_rejection_hints_back_and_ignores_stale_ones() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    let log = vec![
        entry(1, 1, "a"),
        entry(1, 2, "b"),
        entry(2, 3, "c"),
        entry(2, 4, "d"),
        entry(3, 5, "e"),
    ];
    c.set_log(1, 3, log);
    c.timeout(1);
    c.deliver(|_, _, m| {
        matches!(
            m,
            Message::VoteRequest { .. } | Message::VoteResponse { .. }
        )
    });
    assert!(c.node(1).is_leader());
    c.mailbox.clear();
    let invalid = c.node(1).stats().invalid();
    // Probing at 6: the follower has term 2 at 5. The leader skips to after its last entry
    // of term 2.
    answer(&mut c, rejected(5, 3, Some(2)));
    assert_eq!(appends_to_2(&mut c), vec![4]);
    // A term the leader does not have: go to the hint itself.
    answer(&mut c, rejected(4, 2, Some(9)));
    assert_eq!(appends_to_2(&mut c), vec![1]);
    // A rejection of another probe than the last one is stale.
    answer(&mut c, rejected(3, 1, None));
    assert_eq!(appends_to_2(&mut c), Vec::<u64>::new());
    answer(&mut c, rejected(1, 1, None));
    assert_eq!(appends_to_2(&mut c), vec![0]);
    assert_eq!(c.node(1).stats().invalid(), invalid);
}

#[test]
fn a_rejection_of_the_last_index_counts_and_a_contradiction_waits_for_the_heartbeat() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    let log = vec![
        entry(1, 1, "a"),
        entry(1, 2, "b"),
        entry(1, 3, "c"),
        entry(1, 4, "d"),
    ];
    c.set_log(1, 1, log);
    c.timeout(1);
    c.deliver(|_, _, m| {
        matches!(
            m,
            Message::VoteRequest { .. } | Message::VoteResponse { .. }
        )
    });
    c.mailbox.clear();
    let invalid = c.node(1).stats().invalid();
    let last = c.node(1).last_index();
    assert_eq!(last, 5);
    // The follower matches up to 4: streaming resumes after it.
    answer(&mut c, AppendOutcome::Accepted { match_index: 4 });
    assert_eq!(appends_to_2(&mut c), vec![4]);
    // A rejection past the leader's log is nonsense.
    answer(&mut c, rejected(last + 1, 1, None));
    assert_eq!(c.node(1).stats().invalid(), invalid + 1);
    // It rejects the leader's last index: a real answer, the leader backs up.
    answer(&mut c, rejected(last, last, None));
    assert_eq!(c.node(1).stats().invalid(), invalid + 1);
    assert_eq!(appends_to_2(&mut c), vec![4]);
    // It then rejects index 4, which it had acknowledged: the leader cannot back up past its
    // match and waits for the heartbeat pace instead of answering at once.
    answer(&mut c, rejected(4, 1, None));
    assert_eq!(appends_to_2(&mut c), Vec::<u64>::new());
}

#[test]
fn committing_frees_exactly_the_bytes_of_what_committed() {
    // Entries of 50 bytes weigh 74 with their overhead; the limit fits two of them.
    let limit = 2 * entry(1, 1, "").size() + 100;
    let mut c = Cluster::with(&[1, 2, 3], |id| {
        config(id).max_uncommitted_bytes(limit).max_append_bytes(1)
    });
    c.elect(1);
    let now = c.now;
    let fifty = || bytes::Bytes::from(vec![b'v'; 50]);
    c.node_mut(1).propose(now, fifty()).unwrap();
    c.node_mut(1).propose(now, fifty()).unwrap();
    c.drain(1);
    // One entry per append: deliver only the first round, so only the first commits.
    let first_round: Vec<_> = c.mailbox.drain(..).collect();
    for (from, to, m) in first_round {
        let now = c.now;
        c.node_mut(to).step(now, from, m);
        c.drain(to);
    }
    c.deliver(|_, to, m| to == 1 && matches!(m, Message::AppendResponse { .. }));
    c.mailbox.clear();
    let committed = c.node(1).commit_index();
    assert_eq!(c.node(1).log_term(committed), Some(1));
    assert_eq!(
        committed,
        c.node(1).last_index() - 1,
        "one of the two committed"
    );
    // 74 bytes are in flight: 50 more fit, then not one byte more.
    c.node_mut(1).propose(now, fifty()).unwrap();
    assert!(matches!(
        c.node_mut(1).propose(now, bytes::Bytes::from_static(b"x")),
        Err(Error::Backpressure { .. })
    ));
}
