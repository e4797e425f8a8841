//! Linearizable reads with ReadIndex (Raft dissertation §6.4), batched.
//!
//! The leader records its commit index when a read arrives, then confirms it is still the
//! leader by a heartbeat round that a quorum acknowledges. Only one round is in flight at a
//! time: reads that arrive meanwhile wait for the next round, so one confirmation serves many
//! reads. Followers forward reads to the leader and serve them locally once they have applied
//! up to the index the leader returned.

use std::collections::{BTreeSet, VecDeque};

use crate::Node;
use crate::error::Error;
use crate::message::Message;
use crate::output::Output;
use crate::types::{Index, NodeId, Role};

#[derive(Debug)]
struct PendingRead {
    /// The heartbeat round whose quorum acknowledgement confirms this read.
    round: u64,
    index: Index,
    id: u64,
    /// `None` for a read made on this node; else the follower that forwarded it.
    requester: Option<NodeId>,
}

#[derive(Debug, Default)]
pub(crate) struct ReadState {
    round_sent: u64,
    round_confirmed: u64,
    round_wanted: bool,
    /// Leader: reads waiting for a quorum to confirm their round.
    pending: VecDeque<PendingRead>,
    /// Leader: reads that arrived before the first commit of this term.
    before_first_commit: Vec<(Option<NodeId>, u64)>,
    /// Follower: ids forwarded to the leader and not answered yet.
    forwarded: BTreeSet<u64>,
    /// Confirmed reads waiting for the state machine to apply their index: `(index, id)`.
    confirmed: Vec<(Index, u64)>,
}

impl ReadState {
    pub(crate) fn round_sent(&self) -> u64 {
        self.round_sent
    }

    /// Emits [`Output::ReadReady`] for every confirmed read whose index is applied.
    pub(crate) fn release_applied(&mut self, applied: Index, outputs: &mut VecDeque<Output>) {
        if self.confirmed.is_empty() {
            return;
        }
        self.confirmed.retain(|&(index, id)| {
            if index <= applied {
                outputs.push_back(Output::ReadReady { id, index });
                false
            } else {
                true
            }
        });
    }
}

impl Node {
    pub(crate) fn start_read(&mut self, id: u64) -> Result<(), Error> {
        match self.role {
            Role::Leader => {
                self.leader_read(None, id);
                Ok(())
            }
            Role::Follower if self.leader.is_some() => {
                let leader = self.leader.expect("checked");
                self.reads.forwarded.insert(id);
                self.send(
                    leader,
                    Message::ReadIndex {
                        term: self.term,
                        id,
                    },
                );
                Ok(())
            }
            _ => Err(Error::NotLeader {
                leader: self.leader,
            }),
        }
    }

    pub(crate) fn handle_forwarded_read(&mut self, from: NodeId, id: u64) {
        if self.role == Role::Leader {
            self.leader_read(Some(from), id);
        } else {
            self.send(
                from,
                Message::ReadIndexResponse {
                    term: self.term,
                    id,
                    index: None,
                },
            );
        }
    }

    fn leader_read(&mut self, requester: Option<NodeId>, id: u64) {
        // The commit index is only known to be current once an entry of this term committed.
        if self.log.term_at(self.commit) != Some(self.term) {
            self.reads.before_first_commit.push((requester, id));
            return;
        }
        let index = self.commit;
        let me = self.cfg.id;
        if self.membership.is_quorum(|p| p == me) {
            // A single voter confirms itself.
            self.read_confirmed(requester, id, index);
            return;
        }
        let round = self.reads.round_sent + 1;
        self.reads.pending.push_back(PendingRead {
            round,
            index,
            id,
            requester,
        });
        self.reads.round_wanted = true;
    }

    /// Called when the leader's commit index advanced.
    pub(crate) fn on_commit_in_term(&mut self) {
        if self.reads.before_first_commit.is_empty()
            || self.log.term_at(self.commit) != Some(self.term)
        {
            return;
        }
        for (requester, id) in std::mem::take(&mut self.reads.before_first_commit) {
            self.leader_read(requester, id);
        }
    }

    /// At flush time: start a confirmation round if reads wait and none is in flight.
    pub(crate) fn flush_read_rounds(&mut self) {
        if self.role != Role::Leader || !self.reads.round_wanted {
            return;
        }
        if self.reads.round_confirmed < self.reads.round_sent {
            return; // one round at a time; the next starts when this one is confirmed
        }
        self.reads.round_wanted = false;
        self.reads.round_sent += 1;
        self.heartbeat_deadline = self.now + self.cfg.heartbeat_interval;
        self.broadcast_heartbeat();
    }

    /// Releases reads whose round a quorum has acknowledged.
    pub(crate) fn confirm_reads(&mut self) {
        let me = self.cfg.id;
        let sent = self.reads.round_sent;
        let progress = &self.progress;
        let confirmed = self.membership.committed_index(|p| {
            if p == me {
                sent
            } else {
                progress.get(&p).map_or(0, |pr| pr.read_round)
            }
        });
        if confirmed <= self.reads.round_confirmed || confirmed > sent {
            return;
        }
        self.reads.round_confirmed = confirmed;
        while self
            .reads
            .pending
            .front()
            .is_some_and(|r| r.round <= confirmed)
        {
            let read = self.reads.pending.pop_front().expect("checked non-empty");
            self.read_confirmed(read.requester, read.id, read.index);
        }
        if !self.reads.pending.is_empty() {
            self.reads.round_wanted = true;
        }
    }

    fn read_confirmed(&mut self, requester: Option<NodeId>, id: u64, index: Index) {
        match requester {
            None => {
                self.reads.confirmed.push((index, id));
                self.reads.release_applied(self.applied, &mut self.outputs);
            }
            Some(peer) => self.send(
                peer,
                Message::ReadIndexResponse {
                    term: self.term,
                    id,
                    index: Some(index),
                },
            ),
        }
    }

    pub(crate) fn handle_read_response(&mut self, from: NodeId, id: u64, index: Option<Index>) {
        if self.leader != Some(from) || !self.reads.forwarded.remove(&id) {
            self.stats.invalid += 1;
            return;
        }
        match index {
            Some(index) => {
                self.reads.confirmed.push((index, id));
                self.reads.release_applied(self.applied, &mut self.outputs);
            }
            None => self.outputs.push_back(Output::ReadFailed {
                id,
                error: Error::ReadDropped,
            }),
        }
    }

    /// Leadership lost: every read not yet confirmed fails (forwarded ones are answered).
    pub(crate) fn fail_leader_reads(&mut self) {
        let pending = std::mem::take(&mut self.reads.pending);
        let early = std::mem::take(&mut self.reads.before_first_commit);
        let all = pending
            .into_iter()
            .map(|r| (r.requester, r.id))
            .chain(early);
        for (requester, id) in all.collect::<Vec<_>>() {
            match requester {
                None => self.outputs.push_back(Output::ReadFailed {
                    id,
                    error: Error::ReadDropped,
                }),
                Some(peer) => self.send(
                    peer,
                    Message::ReadIndexResponse {
                        term: self.term,
                        id,
                        index: None,
                    },
                ),
            }
        }
        self.reads.round_wanted = false;
        self.reads.round_confirmed = self.reads.round_sent;
    }

    /// The leader changed: reads forwarded to the old one will get no answer.
    pub(crate) fn fail_forwarded_reads(&mut self) {
        for id in std::mem::take(&mut self.reads.forwarded) {
            self.outputs.push_back(Output::ReadFailed {
                id,
                error: Error::ReadDropped,
            });
        }
    }
}
