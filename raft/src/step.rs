//! Message dispatch: the term rules every message goes through before its handler.

use crate::Node;
use crate::message::{AppendOutcome, Message};
use crate::types::{NodeId, Role};

impl Node {
    pub(crate) fn handle_message(&mut self, from: NodeId, message: Message) {
        if from == self.cfg.id || from == 0 || message.term() == 0 {
            self.stats.invalid += 1;
            return;
        }
        if !message.in_range() {
            self.stats.out_of_range += 1;
            return;
        }
        let term = message.term();
        if term > self.term {
            match &message {
                Message::VoteRequest { transfer, .. } if !transfer && self.in_lease() => {
                    // A leader we heard from recently is alive: do not let this candidate
                    // (a partitioned or removed node) disrupt it.
                    self.stats.stale_term += 1;
                    return;
                }
                Message::VoteRequest { pre_vote: true, .. } => {}
                Message::VoteResponse {
                    pre_vote: true,
                    granted: true,
                    ..
                } => {}
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => {
                    self.become_follower(term, Some(from));
                }
                _ => self.become_follower(term, None),
            }
        } else if term < self.term {
            self.stats.stale_term += 1;
            match message {
                // Tell a deposed leader about the newer term so it steps down.
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => {
                    let outcome = AppendOutcome::Accepted { match_index: 0 };
                    self.send(
                        from,
                        Message::AppendResponse {
                            term: self.term,
                            outcome,
                        },
                    );
                }
                Message::VoteRequest { pre_vote: true, .. } => {
                    self.send(
                        from,
                        Message::VoteResponse {
                            term: self.term,
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                // A follower that forwarded a read to an old leader learns of the newer term
                // and fails the read at once instead of waiting for it to time out.
                Message::ReadIndex { id, .. } => self.refuse_forwarded_read(from, id),
                _ => {}
            }
            return;
        }

        match message {
            Message::VoteRequest {
                term,
                pre_vote,
                last_log_index,
                last_log_term,
                ..
            } => {
                self.handle_vote_request(from, term, pre_vote, last_log_index, last_log_term);
            }
            Message::VoteResponse {
                term,
                pre_vote,
                granted,
            } => {
                self.handle_vote_response(from, term, pre_vote, granted);
            }
            Message::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                ..
            } => {
                if self.accept_leader(from) {
                    self.handle_append(from, prev_index, prev_term, entries, commit);
                }
            }
            Message::Heartbeat {
                commit, read_round, ..
            } => {
                if self.accept_leader(from) {
                    self.handle_heartbeat(from, commit, read_round);
                }
            }
            Message::InstallSnapshot { snapshot, .. } => {
                if self.accept_leader(from) {
                    self.handle_install_snapshot(from, snapshot);
                }
            }
            Message::AppendResponse { outcome, .. } => self.handle_append_response(from, outcome),
            Message::HeartbeatResponse { read_round, .. } => {
                self.handle_heartbeat_response(from, read_round)
            }
            Message::ReadIndex { id, .. } => self.handle_forwarded_read(from, id),
            Message::ReadIndexResponse { id, index, .. } => {
                self.handle_read_response(from, id, index)
            }
            Message::TimeoutNow { .. } => {
                if self.role == Role::Follower && self.leader == Some(from) {
                    self.start_election(true);
                } else {
                    self.stats.invalid += 1;
                }
            }
        }
    }

    /// A message from the leader of the current term: follow it. Returns false if the sender
    /// cannot be the leader (this node leads the same term, or another leader is known).
    fn accept_leader(&mut self, from: NodeId) -> bool {
        match self.role {
            Role::Leader => {
                self.stats.invalid += 1;
                return false;
            }
            Role::Candidate | Role::PreCandidate => self.become_follower(self.term, Some(from)),
            Role::Follower => {
                if self.leader.is_some_and(|l| l != from) {
                    self.stats.invalid += 1;
                    return false;
                }
                if self.leader.is_none() {
                    self.set_leader(Some(from));
                }
            }
        }
        self.leader_contact = Some(self.now);
        self.reset_election_timer();
        true
    }
}
