//! Elections: timeouts, PreVote, votes, CheckQuorum, role changes and leadership transfer.

use crate::Node;
use crate::entry::EntryPayload;
use crate::error::Error;
use crate::membership::VoteResult;
use crate::message::Message;
use crate::progress::Progress;
use crate::types::{Index, NodeId, Role, Term};

impl Node {
    pub(crate) fn reset_election_timer(&mut self) {
        let min = self.cfg.election_timeout_min.as_nanos() as u64;
        let max = self.cfg.election_timeout_max.as_nanos() as u64;
        let timeout = self.rng.range(min, max);
        self.election_deadline = self.now + core::time::Duration::from_nanos(timeout);
    }

    /// Periodic work, run when a deadline passed.
    pub(crate) fn on_tick(&mut self) {
        let now = self.now;
        self.expire_reads();
        self.expire_fetch();
        if self.role == Role::Leader {
            if now >= self.heartbeat_deadline {
                self.heartbeat_deadline = now + self.cfg.heartbeat_interval;
                self.broadcast_heartbeat(true);
            }
            if now >= self.check_quorum_deadline {
                self.check_quorum_deadline = now + self.cfg.election_timeout_min;
                if self.cfg.check_quorum && !self.quorum_recently_active() {
                    self.become_follower(self.term, None);
                    return;
                }
            }
            if self.transfer.is_some_and(|(_, deadline)| now >= deadline) {
                self.transfer = None;
            }
        } else if now >= self.election_deadline {
            self.start_election(false);
        }
    }

    /// CheckQuorum: has a quorum (counting this leader) been heard from since the last check?
    /// Resets the activity flags for the next round.
    fn quorum_recently_active(&mut self) -> bool {
        let id = self.cfg.id;
        let progress = &self.progress;
        let active = self
            .membership
            .is_quorum(|p| p == id || progress.get(&p).is_some_and(|pr| pr.recent_active));
        for pr in self.progress.values_mut() {
            pr.recent_active = false;
        }
        active
    }

    /// Whether this node heard from a live leader recently enough to ignore vote requests
    /// (only with CheckQuorum, which makes leaders step down when they lose their quorum).
    pub(crate) fn in_lease(&self) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        self.leader.is_some()
            && self.leader_contact.is_some_and(|at| {
                self.now.saturating_duration_since(at) < self.cfg.election_timeout_min
            })
    }

    pub(crate) fn start_election(&mut self, transfer: bool) {
        self.reset_election_timer();
        if !self.can_campaign() {
            return;
        }
        if self.cfg.pre_vote && !transfer {
            self.role = Role::PreCandidate;
            self.stats.pre_elections += 1;
            self.leave_leadership();
            self.set_leader(None);
            self.votes.clear();
            self.votes.insert(self.cfg.id, true);
            self.request_votes(self.term + 1, true, false);
        } else {
            self.become_candidate(transfer);
        }
        self.tally_votes();
    }

    /// Whether this node may start an election: it is a voter of its latest configuration,
    /// or of the one before while the latest, which removes it, is not known committed. Until
    /// then the cluster may still need it (Raft dissertation §4.2.2): a leader that appended
    /// its own removal and crashed may hold the only log the others would vote for. Its own
    /// vote counts only where it is a voter.
    pub(crate) fn can_campaign(&self) -> bool {
        let me = self.cfg.id;
        self.membership.is_voter(me)
            || (self.membership_index > self.commit
                && self.membership_at(self.membership_index - 1).is_voter(me))
    }

    fn become_candidate(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
        self.stats.elections += 1;
        self.leave_leadership();
        self.set_leader(None);
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        self.request_votes(self.term, false, transfer);
    }

    fn request_votes(&mut self, term: Term, pre_vote: bool, transfer: bool) {
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self
            .membership
            .members()
            .filter(|&id| id != self.cfg.id)
            .collect();
        for to in voters {
            if self.membership.is_voter(to) {
                self.send(
                    to,
                    Message::VoteRequest {
                        term,
                        pre_vote,
                        last_log_index,
                        last_log_term,
                        transfer,
                    },
                );
            }
        }
    }

    /// Counts the votes received. A candidate's own vote counts once it is durable, like any
    /// other: a single voter that declared itself leader before that could, after a crash,
    /// vote for someone else in the same term.
    pub(crate) fn tally_votes(&mut self) {
        let me = self.cfg.id;
        let emitted = (
            self.emitted_hard_state.term(),
            self.emitted_hard_state.vote(),
        );
        let own_vote_durable = self.role == Role::PreCandidate
            || (emitted == (self.term, self.vote) && self.hard_state_token <= self.durable_token);
        let votes = &self.votes;
        let answer = |id| {
            if id == me && !own_vote_durable {
                None
            } else {
                votes.get(&id).copied()
            }
        };
        match self.membership.vote_result(answer) {
            VoteResult::Won if self.role == Role::PreCandidate => {
                self.become_candidate(false);
                self.tally_votes();
            }
            VoteResult::Won if self.role == Role::Candidate => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            _ => {}
        }
    }

    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: Index,
        last_log_term: Term,
    ) {
        let up_to_date = self.log.is_up_to_date(last_log_term, last_log_index);
        let granted = if pre_vote {
            term > self.term && up_to_date
        } else {
            let can_vote =
                self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
            term == self.term && can_vote && up_to_date
        };
        if granted && !pre_vote {
            self.vote = Some(from);
            self.reset_election_timer();
        }
        let term = if pre_vote && granted { term } else { self.term };
        self.send(
            from,
            Message::VoteResponse {
                term,
                pre_vote,
                granted,
            },
        );
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let expected = match (self.role, pre_vote) {
            (Role::PreCandidate, true) => (!granted && term <= self.term) || term == self.term + 1,
            (Role::Candidate, false) => term == self.term,
            _ => false,
        };
        if !expected || !self.membership.is_voter(from) {
            self.stats.invalid += 1;
            return;
        }
        self.votes.insert(from, granted);
        self.tally_votes();
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role != Role::Follower || self.leader != leader {
            self.reset_election_timer();
        }
        self.leave_leadership();
        self.role = Role::Follower;
        self.set_leader(leader);
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.set_leader(Some(self.cfg.id));
        self.stats.leader_terms += 1;
        self.uncommitted_bytes = 0;
        self.transfer = None;
        self.commit_broadcast = self.commit;
        self.heartbeat_deadline = self.now + self.cfg.heartbeat_interval;
        self.check_quorum_deadline = self.now + self.cfg.election_timeout_min;
        self.progress.clear();
        self.sync_progress();
        self.append_as_leader(EntryPayload::Noop);
    }

    /// Makes the leader's progress map match the membership: new members are probed from
    /// the end of the log, removed ones are forgotten.
    pub(crate) fn sync_progress(&mut self) {
        let next = self.log.last_index() + 1;
        let me = self.cfg.id;
        let members: Vec<NodeId> = self.membership.members().filter(|&id| id != me).collect();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next));
        }
    }

    /// Clears leader-only state when leaving the leader role (or a candidacy).
    fn leave_leadership(&mut self) {
        if self.role == Role::Leader {
            self.progress.clear();
            self.transfer = None;
            self.fetch_in_flight = None;
            self.fail_leader_reads();
        }
    }

    /// Records the known leader; forwarded reads die with the old one.
    pub(crate) fn set_leader(&mut self, leader: Option<NodeId>) {
        if self.leader != leader {
            self.fail_forwarded_reads();
            self.leader = leader;
        }
    }

    pub(crate) fn start_transfer(&mut self, to: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.cfg.id {
            return Ok(()); // already the leader
        }
        let reason = if self.membership.voters().contains(&to) {
            None
        } else if self.membership.learners().contains(&to) && !self.membership.is_voter(to) {
            Some("it is a learner")
        } else if self.membership.is_voter(to) {
            Some("it is leaving the voters")
        } else {
            Some("it is not a member")
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidTransfer { to, reason });
        }
        self.transfer = Some((to, self.now + self.cfg.election_timeout_max));
        self.maybe_send_timeout_now(to);
        Ok(())
    }

    /// During a transfer: once the target has the whole log, tell it to campaign.
    pub(crate) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        if self.transfer.map(|(to, _)| to) != Some(peer) {
            return;
        }
        let caught_up = self
            .progress
            .get(&peer)
            .is_some_and(|pr| pr.match_index == self.log.last_index());
        if caught_up {
            self.send(peer, Message::TimeoutNow { term: self.term });
        } else {
            self.send_append(peer, true);
        }
    }
}
