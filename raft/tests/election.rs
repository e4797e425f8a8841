//! Leader election rules (Raft §5.2, §5.4.1) and the PreVote / CheckQuorum extensions.

mod common;

use std::time::Duration;

use common::{Cluster, config, entry};
use raft::{Message, Role};

#[test]
fn a_node_that_times_out_wins_a_majority_and_appends_a_noop() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    assert_eq!(c.node(1).term(), 1);
    assert_eq!(c.node(2).leader(), Some(1));
    assert_eq!(c.node(3).leader(), Some(1));
    // The no-op of the new term commits, on every node.
    assert_eq!(c.node(1).commit_index(), 1);
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).commit_index(), 1, "node {id}");
        assert_eq!(c.node(id).log_term(1), Some(1));
    }
}

#[test]
fn each_node_votes_once_per_term() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.timeout(1);
    c.timeout(2);
    // Both are candidates in term 1; node 3 grants the first request it sees only.
    let mut granted = Vec::new();
    c.deliver(|from, to, m| {
        if let Message::VoteResponse { granted: true, .. } = m {
            granted.push((from, to));
        }
        true
    });
    let from_3: Vec<_> = granted.iter().filter(|(from, _)| *from == 3).collect();
    assert_eq!(from_3.len(), 1, "node 3 voted for {from_3:?}");
    let leaders = [1, 2, 3]
        .iter()
        .filter(|&&id| c.node(id).is_leader())
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn a_candidate_with_a_stale_log_is_refused() {
    // §5.4.1: node 3's log ends in term 1, nodes 1 and 2 have an entry of term 2.
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.set_log(1, 2, vec![entry(1, 1, "a"), entry(2, 2, "b")]);
    c.set_log(2, 2, vec![entry(1, 1, "a"), entry(2, 2, "b")]);
    c.set_log(3, 2, vec![entry(1, 1, "a")]);
    c.timeout(3);
    c.stabilize();
    assert!(!c.node(3).is_leader());
    assert_eq!(c.node(3).stats().elections(), 1);
    c.elect(1);
    // Node 3's failed candidacy raised everyone to term 3; node 1 leads term 4.
    assert_eq!(c.log_terms(3), vec![1, 2, 4]);
    assert_eq!(c.log_terms(1), c.log_terms(3));
}

#[test]
fn a_leader_steps_down_on_a_higher_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let now = c.now;
    c.node_mut(1).step(
        now,
        2,
        Message::HeartbeatResponse {
            term: 7,
            read_round: 0,
        },
    );
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).term(), 7);
}

/// Isolates node 3 for ten election timeouts, then reconnects it.
fn isolate_and_rejoin(c: &mut Cluster) {
    c.elect(1);
    for _ in 0..10 {
        c.elapse(Duration::from_millis(1000));
        c.deliver(|from, to, _| from != 3 && to != 3);
    }
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
}

#[test]
fn prevote_lets_a_partitioned_node_rejoin_without_disrupting_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    isolate_and_rejoin(&mut c);
    assert!(
        c.node(3).stats().pre_elections() > 0,
        "node 3 should have tried"
    );
    assert_eq!(c.node(3).term(), 1, "pre-votes must not bump the term");
    assert!(c.node(1).is_leader(), "the leader must survive the rejoin");
    assert_eq!(c.node(1).term(), 1);
    assert_eq!(c.node(3).leader(), Some(1));
}

#[test]
fn without_prevote_a_rejoining_node_deposes_the_leader() {
    // The contrast that shows what PreVote buys.
    let mut c = Cluster::with(&[1, 2, 3], |id| {
        config(id).pre_vote(false).check_quorum(false)
    });
    isolate_and_rejoin(&mut c);
    assert!(c.node(3).term() > 1);
    assert!(
        c.node(1).term() > 1,
        "the old leader was forced into a new term"
    );
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.hold_messages_of(1);
    c.elapse(Duration::from_millis(600));
    c.elapse(Duration::from_millis(600));
    assert_eq!(
        c.node(1).role(),
        Role::Follower,
        "no quorum heard within an election timeout"
    );
    assert_eq!(c.node(1).leader(), None);
}

#[test]
fn without_check_quorum_an_isolated_leader_stays() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).check_quorum(false));
    c.elect(1);
    c.hold_messages_of(1);
    c.elapse(Duration::from_millis(1200));
    assert!(c.node(1).is_leader());
}

#[test]
fn followers_in_lease_ignore_a_disruptive_candidate() {
    // With CheckQuorum, a follower that heard from its leader recently ignores vote requests
    // even from a node that (wrongly) jumped to a higher term.
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.elect(1);
    let now = c.now;
    let last = c.node(3).last_index();
    let term = c.node(3).term();
    c.node_mut(2).step(
        now,
        3,
        Message::VoteRequest {
            term: term + 5,
            pre_vote: false,
            last_log_index: last,
            last_log_term: term,
            transfer: false,
        },
    );
    assert_eq!(c.node(2).term(), 1);
    assert_eq!(c.node(2).leader(), Some(1));
}

#[test]
fn leadership_transfer_hands_over_to_a_caught_up_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    let now = c.now;
    c.node_mut(1).transfer_leadership(now, 2).unwrap();
    assert!(matches!(
        c.node_mut(1).propose(now, "refused".into()),
        Err(raft::Error::TransferInProgress)
    ));
    c.drain(1);
    c.stabilize();
    assert!(c.node(2).is_leader());
    assert_eq!(c.node(2).term(), 2);
    assert_eq!(c.node(1).leader(), Some(2));
}

#[test]
fn learners_replicate_but_never_campaign() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4);
    c.elect(1);
    let now = c.now;
    let with_learner = raft::Membership::new([1, 2, 3]).with_learners([4]);
    c.node_mut(1)
        .propose_membership(now, with_learner.clone())
        .unwrap();
    c.drain(1);
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(c.node(4).membership(), &with_learner);
    assert_eq!(c.node(4).commit_index(), c.node(1).commit_index());
    // A learner whose timer fires does not start an election.
    c.timeout(4);
    assert_eq!(c.node(4).stats().pre_elections(), 0);
    assert_eq!(c.node(4).role(), Role::Follower);
    // Promote it, then remove node 3: one voter at a time.
    let now = c.now;
    let promoted = raft::Membership::new([1, 2, 3, 4]);
    c.node_mut(1)
        .propose_membership(now, promoted.clone())
        .unwrap();
    c.drain(1);
    c.stabilize();
    let now = c.now;
    c.node_mut(1)
        .propose_membership(now, raft::Membership::new([1, 2, 4]))
        .unwrap();
    c.drain(1);
    c.stabilize();
    c.elapse(Duration::from_millis(60));
    c.stabilize();
    assert_eq!(
        c.node(2)
            .membership()
            .voters()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
}

/// A single voter wins its election with its own vote alone. It used to declare itself leader
/// before that vote was durable; after a crash it had forgotten the vote and could grant it to
/// another candidate of the same term (the simulator found two leaders of one term this way,
/// seed 3032 of the one-node configuration).
#[test]
fn a_candidate_counts_its_own_vote_only_once_durable() {
    let mut c = Cluster::new(&[1]);
    c.hold_disk(1);
    c.timeout(1);
    assert_eq!(
        c.node(1).role(),
        Role::Candidate,
        "won before its vote was durable"
    );
    c.release_disk(1);
    assert!(c.node(1).is_leader());
    assert_eq!(c.storage(1).hard_state().vote(), Some(1));
}

/// Sends node `to` a vote response from `from`, and returns whether it was counted (a
/// response that is not counted is recorded as invalid).
fn vote_response(
    c: &mut Cluster,
    to: u64,
    from: u64,
    term: u64,
    pre_vote: bool,
    granted: bool,
) -> bool {
    let invalid = c.node(to).stats().invalid();
    let now = c.now;
    let message = Message::VoteResponse {
        term,
        pre_vote,
        granted,
    };
    c.node_mut(to).step(now, from, message);
    c.drain(to);
    c.node(to).stats().invalid() == invalid
}

#[test]
fn a_pre_candidate_counts_only_answers_to_its_own_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.now += Duration::from_secs(2);
    c.timeout(2);
    c.mailbox.clear();
    assert_eq!(
        (c.node(2).role(), c.node(2).term()),
        (Role::PreCandidate, 1)
    );
    // A grant tagged with the current term answers an older round: not counted.
    assert!(!vote_response(&mut c, 2, 3, 1, true, true));
    assert_eq!(c.node(2).role(), Role::PreCandidate);
    // A refusal tagged with the current term is counted, and a majority of them ends the
    // round.
    assert!(vote_response(&mut c, 2, 1, 1, true, false));
    assert!(vote_response(&mut c, 2, 3, 1, true, false));
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).term(), 1, "a pre-vote never bumps the term");
}

#[test]
fn a_candidate_refused_by_a_majority_steps_down_and_keeps_its_vote() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.timeout(1);
    c.mailbox.clear();
    assert_eq!((c.node(1).role(), c.node(1).term()), (Role::Candidate, 1));
    let deadline_as_candidate = c.node(1).poll_timeout();
    c.now += Duration::from_millis(400);
    // A refusal from another round is not counted; two from this one end the election.
    assert!(!vote_response(&mut c, 1, 2, 1, true, false));
    assert!(vote_response(&mut c, 1, 2, 1, false, false));
    assert_eq!(c.node(1).role(), Role::Candidate);
    assert!(vote_response(&mut c, 1, 3, 1, false, false));
    assert_eq!(
        c.node(1).role(),
        Role::Follower,
        "lost, but still a candidate"
    );
    // Stepping down restarts the election timer from now.
    let deadline = c.node(1).poll_timeout();
    assert!(
        deadline >= c.now + Duration::from_millis(500),
        "{deadline} vs {}",
        c.now
    );
    assert_ne!(deadline, deadline_as_candidate);
    // It voted for itself in term 1: another candidate of term 1 gets nothing.
    let now = c.now;
    let last = c.node(2).last_index();
    c.node_mut(1).step(
        now,
        2,
        Message::VoteRequest {
            term: 1,
            pre_vote: false,
            last_log_index: last,
            last_log_term: 0,
            transfer: false,
        },
    );
    c.drain(1);
    let granted = c
        .mailbox
        .iter()
        .any(|(from, _, m)| *from == 1 && matches!(m, Message::VoteResponse { granted: true, .. }));
    assert!(!granted, "voted twice in term 1");
    assert_eq!(c.storage(1).hard_state().vote(), Some(1));
}

#[test]
fn an_isolated_leader_keeps_its_role_for_an_election_timeout() {
    // CheckQuorum judges a leader once per election timeout, not at every heartbeat.
    let mut c = Cluster::new(&[1, 2, 3]);
    assert_eq!(c.node(1).stats().elections(), 0);
    c.elect(1);
    assert_eq!(c.node(1).stats().leader_terms(), 1);
    assert_eq!(c.node(1).stats().elections(), 1);
    c.hold_messages_of(1);
    for _ in 0..8 {
        c.elapse(Duration::from_millis(50));
    }
    assert!(c.node(1).is_leader(), "stepped down within 400 ms");
    for _ in 0..16 {
        c.elapse(Duration::from_millis(50));
    }
    assert!(!c.node(1).is_leader());
}

#[test]
fn terms_led_and_elections_are_counted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.now += Duration::from_secs(2);
    c.elect(2);
    c.now += Duration::from_secs(2);
    c.elect(1);
    let stats = c.node(1).stats();
    assert_eq!((stats.leader_terms(), stats.elections()), (2, 2));
    assert_eq!(c.node(2).stats().leader_terms(), 1);
    assert_eq!(c.node(3).stats().leader_terms(), 0);
}

#[test]
fn a_follower_ignores_vote_requests_only_within_the_lease() {
    // CheckQuorum's lease lasts the minimum election timeout (500 ms) after hearing from the
    // leader: a disruptive candidate is ignored just before it ends, heard just after.
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.elect(1);
    c.hold_messages_of(1);
    let heard = c.now;
    let request = |c: &Cluster| Message::VoteRequest {
        term: c.node(2).term() + 1,
        pre_vote: false,
        last_log_index: c.node(3).last_index(),
        last_log_term: 1,
        transfer: false,
    };
    let at = heard + Duration::from_millis(499);
    let message = request(&c);
    c.node_mut(2).step(at, 3, message);
    assert_eq!(c.node(2).term(), 1, "a candidate got through the lease");
    let at = heard + Duration::from_millis(500);
    let message = request(&c);
    c.node_mut(2).step(at, 3, message);
    assert_eq!(
        c.node(2).term(),
        2,
        "the lease outlived the election timeout"
    );
}

#[test]
fn a_follower_that_loses_its_leader_to_a_new_term_restarts_its_timer() {
    let mut c = Cluster::with(&[1, 2, 3], |id| config(id).pre_vote(false));
    c.elect(1);
    c.propose(1, "x");
    c.stabilize();
    // Long after it last heard from node 1, node 2 hears of term 2 from a candidate whose log
    // is behind: no vote, no leader, but a new term, and a fresh election timeout.
    c.now += Duration::from_secs(2);
    let now = c.now;
    c.node_mut(2).step(
        now,
        3,
        Message::VoteRequest {
            term: 2,
            pre_vote: false,
            last_log_index: 1,
            last_log_term: 1,
            transfer: false,
        },
    );
    c.drain(2);
    assert_eq!((c.node(2).term(), c.node(2).leader()), (2, None));
    assert_eq!(c.storage(2).hard_state().vote(), None);
    assert!(c.node(2).poll_timeout() >= now + Duration::from_millis(500));
}
