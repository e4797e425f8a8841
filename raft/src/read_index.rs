//! Linearizable reads with ReadIndex (Raft dissertation §6.4), batched.
//!
//! The leader records its commit index when a read arrives, then confirms it is still the
//! leader by a heartbeat round that a quorum acknowledges. Only one round is in flight at a
//! time: reads that arrive meanwhile wait for the next round, so one confirmation serves many
//! reads. Followers forward reads to the leader and serve them locally once they have applied
//! up to the index the leader returned.
//!
//! Every read is bounded: it fails with [`Error::ReadTimedOut`] if it is not served within
//! [`crate::Config::read_timeout`] (a forwarded request or its answer lost, a leader that
//! cannot reach a quorum), and a node tracks at most [`crate::Config::max_pending_reads`]
//! reads, its own and those forwarded to it, refusing more with [`Error::TooManyReads`].

use std::collections::{BTreeMap, VecDeque};

use crate::Node;
use crate::error::Error;
use crate::message::Message;
use crate::output::Output;
use crate::types::{Index, Instant, NodeId, Role};

#[derive(Debug)]
struct PendingRead {
    /// The heartbeat round whose quorum acknowledgement confirms this read.
    round: u64,
    index: Index,
    id: u64,
    /// `None` for a read made on this node; else the follower that forwarded it.
    requester: Option<NodeId>,
    deadline: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct ReadState {
    round_sent: u64,
    round_confirmed: u64,
    round_wanted: bool,
    /// Leader: reads waiting for a quorum to confirm their round.
    pending: VecDeque<PendingRead>,
    /// Leader: reads that arrived before the first commit of this term:
    /// `(requester, id, deadline)`.
    before_first_commit: Vec<(Option<NodeId>, u64, Instant)>,
    /// Follower: ids forwarded to the leader and not answered yet, with their deadlines.
    forwarded: BTreeMap<u64, Instant>,
    /// Confirmed reads waiting for the state machine to apply their index:
    /// `(index, id, deadline)`.
    confirmed: Vec<(Index, u64, Instant)>,
}

impl ReadState {
    pub(crate) fn round_sent(&self) -> u64 {
        self.round_sent
    }

    /// Reads tracked here, of any kind.
    fn len(&self) -> usize {
        self.pending.len()
            + self.before_first_commit.len()
            + self.forwarded.len()
            + self.confirmed.len()
    }

    /// The earliest deadline of any read tracked.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let pending = self.pending.iter().map(|r| r.deadline);
        let early = self.before_first_commit.iter().map(|r| r.2);
        let forwarded = self.forwarded.values().copied();
        let confirmed = self.confirmed.iter().map(|r| r.2);
        pending.chain(early).chain(forwarded).chain(confirmed).min()
    }

    /// Emits [`Output::ReadReady`] for every confirmed read whose index is applied.
    pub(crate) fn release_applied(&mut self, applied: Index, outputs: &mut VecDeque<Output>) {
        if self.confirmed.is_empty() {
            return;
        }
        self.confirmed.retain(|&(index, id, _)| {
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
        // The leader serves the read itself; a follower that knows it forwards the read.
        let forward_to = match self.role {
            Role::Leader => None,
            Role::Follower if self.leader.is_some() => self.leader,
            _ => {
                return Err(Error::NotLeader {
                    leader: self.leader,
                });
            }
        };
        let limit = self.cfg.max_pending_reads;
        if self.reads.len() >= limit {
            return Err(Error::TooManyReads { limit });
        }
        let deadline = self.now + self.cfg.read_timeout_duration();
        match forward_to {
            None => self.leader_read(None, id, deadline),
            Some(leader) => {
                self.reads.forwarded.insert(id, deadline);
                self.send(
                    leader,
                    Message::ReadIndex {
                        term: self.term,
                        id,
                    },
                );
            }
        }
        Ok(())
    }

    pub(crate) fn handle_forwarded_read(&mut self, from: NodeId, id: u64) {
        let refuse = if self.role != Role::Leader {
            true
        } else if !self.membership.contains(from) {
            self.stats.unknown_peer += 1;
            true
        } else {
            self.reads.len() >= self.cfg.max_pending_reads
        };
        if refuse {
            self.refuse_forwarded_read(from, id);
            return;
        }
        let deadline = self.now + self.cfg.read_timeout_duration();
        self.leader_read(Some(from), id, deadline);
    }

    /// Tells a follower its forwarded read cannot be served here.
    pub(crate) fn refuse_forwarded_read(&mut self, to: NodeId, id: u64) {
        self.send(
            to,
            Message::ReadIndexResponse {
                term: self.term,
                id,
                index: None,
            },
        );
    }

    fn leader_read(&mut self, requester: Option<NodeId>, id: u64, deadline: Instant) {
        // The commit index is only known to be current once an entry of this term committed.
        if !self.has_committed_in_term() {
            self.reads
                .before_first_commit
                .push((requester, id, deadline));
            return;
        }
        let index = self.commit;
        let me = self.cfg.id;
        if self.membership.is_quorum(|p| p == me) {
            // A single voter confirms itself.
            self.read_confirmed(requester, id, index, deadline);
            return;
        }
        let round = self.reads.round_sent + 1;
        self.reads.pending.push_back(PendingRead {
            round,
            index,
            id,
            requester,
            deadline,
        });
        self.reads.round_wanted = true;
    }

    /// Called when the leader's commit index advanced.
    pub(crate) fn on_commit_in_term(&mut self) {
        if self.reads.before_first_commit.is_empty() || !self.has_committed_in_term() {
            return;
        }
        for (requester, id, deadline) in std::mem::take(&mut self.reads.before_first_commit) {
            self.leader_read(requester, id, deadline);
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
        // The periodic heartbeat keeps its own schedule: it also paces the stall detector.
        self.broadcast_heartbeat(false);
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
            self.read_confirmed(read.requester, read.id, read.index, read.deadline);
        }
        if !self.reads.pending.is_empty() {
            self.reads.round_wanted = true;
        }
    }

    fn read_confirmed(
        &mut self,
        requester: Option<NodeId>,
        id: u64,
        index: Index,
        deadline: Instant,
    ) {
        match requester {
            None => {
                self.reads.confirmed.push((index, id, deadline));
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
        if self.leader != Some(from) {
            self.stats.invalid += 1;
            return;
        }
        let Some(deadline) = self.reads.forwarded.remove(&id) else {
            self.stats.invalid += 1;
            return;
        };
        match index {
            Some(index) => {
                self.reads.confirmed.push((index, id, deadline));
                self.reads.release_applied(self.applied, &mut self.outputs);
            }
            None => self.outputs.push_back(Output::ReadFailed {
                id,
                error: Error::ReadDropped,
            }),
        }
    }

    /// Fails every read whose deadline has passed.
    pub(crate) fn expire_reads(&mut self) {
        let now = self.now;
        if self.reads.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        let mut expired_local = Vec::new();
        let mut expired_forwarded = Vec::new();
        self.reads.pending.retain(|r| {
            if r.deadline > now {
                return true;
            }
            match r.requester {
                None => expired_local.push(r.id),
                Some(peer) => expired_forwarded.push((peer, r.id)),
            }
            false
        });
        self.reads
            .before_first_commit
            .retain(|&(requester, id, deadline)| {
                if deadline > now {
                    return true;
                }
                match requester {
                    None => expired_local.push(id),
                    Some(peer) => expired_forwarded.push((peer, id)),
                }
                false
            });
        self.reads.forwarded.retain(|&id, &mut deadline| {
            let keep = deadline > now;
            if !keep {
                expired_local.push(id);
            }
            keep
        });
        self.reads.confirmed.retain(|&(_, id, deadline)| {
            let keep = deadline > now;
            if !keep {
                expired_local.push(id);
            }
            keep
        });
        self.stats.reads_timed_out += (expired_local.len() + expired_forwarded.len()) as u64;
        for id in expired_local {
            self.outputs.push_back(Output::ReadFailed {
                id,
                error: Error::ReadTimedOut,
            });
        }
        for (peer, id) in expired_forwarded {
            self.refuse_forwarded_read(peer, id);
        }
    }

    /// Leadership lost: every read not yet confirmed fails (forwarded ones are answered).
    pub(crate) fn fail_leader_reads(&mut self) {
        let pending = std::mem::take(&mut self.reads.pending);
        let early = std::mem::take(&mut self.reads.before_first_commit);
        let all = pending
            .into_iter()
            .map(|r| (r.requester, r.id))
            .chain(early.into_iter().map(|(requester, id, _)| (requester, id)));
        for (requester, id) in all.collect::<Vec<_>>() {
            match requester {
                None => self.outputs.push_back(Output::ReadFailed {
                    id,
                    error: Error::ReadDropped,
                }),
                Some(peer) => self.refuse_forwarded_read(peer, id),
            }
        }
        self.reads.round_wanted = false;
        self.reads.round_confirmed = self.reads.round_sent;
    }

    /// The leader changed: reads forwarded to the old one will get no answer.
    pub(crate) fn fail_forwarded_reads(&mut self) {
        for id in std::mem::take(&mut self.reads.forwarded).into_keys() {
            self.outputs.push_back(Output::ReadFailed {
                id,
                error: Error::ReadDropped,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_read_counts_toward_the_cap() {
        let mut reads = ReadState::default();
        let at = Instant::from_millis(9);
        reads.pending.push_back(PendingRead {
            round: 1,
            index: 1,
            id: 1,
            requester: None,
            deadline: Instant::from_millis(7),
        });
        reads.before_first_commit.push((Some(2), 2, at));
        reads.before_first_commit.push((None, 3, at));
        reads.forwarded.insert(4, at);
        reads
            .confirmed
            .extend([(1, 5, at), (2, 6, at), (3, 7, Instant::from_millis(5))]);
        assert_eq!(reads.len(), 7);
        assert_eq!(reads.next_deadline(), Some(Instant::from_millis(5)));
    }
}
