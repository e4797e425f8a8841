//! The simulated driver: the event loop, and what it does with each node's outputs (write to
//! the simulated disk, send over the simulated network, apply and snapshot asynchronously),
//! with the checks made along the way.

use core::time::Duration;
use std::cmp::Reverse;

use super::{ApplyWork, Event, EventKind, Resends, SimNode, Simulation, StateMachine, truncate};
use crate::entry::{EntryPayload, Snapshot};
use crate::error::Error;
use crate::message::Message;
use crate::node::Node;
use crate::output::{Output, Persist};
use crate::sim::checker::Violation;
use crate::sim::network::NetworkFaults;
use crate::types::{NodeId, Role, Term};

impl<S: StateMachine> Simulation<S> {
    /// Advances to the next event or deadline and processes everything due then.
    pub(super) fn step(&mut self) -> Result<(), Violation> {
        let next_event = self.queue.peek().map(|Reverse(e)| e.at);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(Node::poll_timeout)
            .min();
        let next = match (next_event, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return Ok(()),
        };
        self.now = self.now.max(next);
        while self.queue.peek().is_some_and(|Reverse(e)| e.at <= self.now) {
            let Reverse(event) = self.queue.pop().expect("peeked");
            self.handle_event(event.kind)?;
        }
        for id in 1..=self.nodes.len() as NodeId {
            let now = self.now;
            if let Some(node) = self.sim_node(id).node.as_mut()
                && node.poll_timeout() <= now
            {
                node.handle_timeout(now);
            }
            self.drain(id)?;
        }
        Ok(())
    }

    fn handle_event(&mut self, kind: EventKind) -> Result<(), Violation> {
        let now = self.now;
        match kind {
            EventKind::Deliver { from, to, message } => {
                if !self.net.connected(from, to) || self.sim_node(to).node.is_none() {
                    return Ok(());
                }
                self.report.delivered += 1;
                if let Message::AppendResponse { term, .. } = &message {
                    // The follower answered: the leader learns what it has, and may send again.
                    if let Some(r) = self.resends.get_mut(&(to, *term, from)) {
                        r.sent.clear();
                        r.bytes = 0;
                        r.since = now;
                    }
                }
                if self.cfg.trace {
                    let line = format!("{from}->{to} {message:?}");
                    self.note(|| truncate(line));
                }
                let node = self.sim_node(to).node.as_mut().expect("checked alive");
                node.step(now, from, message);
                self.drain(to)?;
            }
            EventKind::PersistDone { node: id, epoch } => {
                let sn = self.sim_node(id);
                if sn.epoch != epoch {
                    return Ok(());
                }
                let Some((persist, prevs)) = sn.in_flight.pop_front() else {
                    return Ok(());
                };
                sn.durable.persist(&persist);
                for (entry, prev) in persist.entries().iter().zip(prevs) {
                    self.checker.on_entry_written(now, id, entry, prev)?;
                }
                self.check_restartable(id)?;
                if !self.early_ack()
                    && let Some(node) = self.sim_node(id).node.as_mut()
                {
                    node.persisted(now, persist.token());
                }
                self.drain(id)?;
            }
            EventKind::ApplyDone { node: id, epoch } => {
                if self.sim_node(id).epoch == epoch {
                    self.apply_next(id)?;
                    self.drain(id)?;
                }
            }
            EventKind::SnapshotDone {
                node: id,
                epoch,
                snapshot,
            } => {
                if self.sim_node(id).epoch == epoch {
                    self.snapshot_written(id, snapshot)?;
                    self.drain(id)?;
                }
            }
            EventKind::FetchDone {
                node: id,
                epoch,
                first,
                last,
            } => {
                let sn = self.sim_node(id);
                if sn.epoch == epoch {
                    let entries = sn.written.entries(first, last);
                    if let Some(node) = sn.node.as_mut() {
                        node.entries_fetched(now, entries);
                    }
                    self.drain(id)?;
                }
            }
            EventKind::Propose => {
                let interval = self.cfg.proposal_interval;
                self.schedule(interval, EventKind::Propose);
                if let Some(id) = self.leader() {
                    self.next_command += 1;
                    let command = (self.commands)(&mut self.rng, self.next_command);
                    let node = self.sim_node(id).node.as_mut().expect("leader is alive");
                    let term = node.term();
                    if let Ok(index) = node.propose(now, command)
                        && self.faults_over
                        && self
                            .liveness_target
                            .is_none_or(|(_, t)| self.committed_term_is_not(t))
                    {
                        self.liveness_target = Some((index, term));
                    }
                    self.drain(id)?;
                }
            }
            EventKind::Read => {
                let interval = self.cfg.read_interval;
                self.schedule(interval, EventKind::Read);
                let id = self.rng.range(1, self.nodes.len() as u64 + 1);
                let required = self.checker.committed_len();
                self.next_read += 1;
                let read = self.next_read;
                if let Some(node) = self.sim_node(id).node.as_mut() {
                    if node.read_index(now, read).is_ok() {
                        self.reads.insert((id, read), required);
                    }
                    self.drain(id)?;
                }
            }
            EventKind::Fault => self.inject_fault()?,
            EventKind::ChangeMembership => {
                if !self.faults_over {
                    let next = Duration::from_millis(self.rng.range(100, 600));
                    self.schedule(next, EventKind::ChangeMembership);
                    self.change_membership();
                    if let Some(leader) = self.leader() {
                        self.drain(leader)?;
                    }
                }
            }
            EventKind::Restart(id) => self.restart(id)?,
            EventKind::EndFaults => {
                self.faults_over = true;
                self.net.heal();
                self.net.faults = NetworkFaults {
                    drop_rate: 0.0,
                    duplicate_rate: 0.0,
                    ..self.cfg.network.clone()
                };
                self.note(|| "faults over: healed, restarting everyone".to_string());
                for id in 1..=self.nodes.len() as NodeId {
                    self.restart(id)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the liveness target's entry was overwritten (its proposal was lost).
    fn committed_term_is_not(&self, term: Term) -> bool {
        let Some((index, _)) = self.liveness_target else {
            return true;
        };
        self.checker.committed_len() >= index && self.committed_term(index) != Some(term)
    }

    #[cfg(feature = "test-util")]
    fn early_ack(&self) -> bool {
        self.cfg.inject == Some(super::InjectedBug::EarlyAck)
    }

    #[cfg(not(feature = "test-util"))]
    fn early_ack(&self) -> bool {
        false
    }

    /// Records commit indexes, then carries out every output of node `id`.
    pub(super) fn drain(&mut self, id: NodeId) -> Result<(), Violation> {
        self.check_commits(id)?;
        let now = self.now;
        let mut persisted = false;
        loop {
            let Some(node) = self.sim_node(id).node.as_mut() else {
                return Ok(());
            };
            let Some(output) = node.poll_output() else {
                break;
            };
            match output {
                Output::Persist(persist) => {
                    persisted = true;
                    self.write(id, persist);
                }
                Output::Send { to, message } => self.send(id, to, message)?,
                Output::Apply(entries) => self.queue_apply(id, ApplyWork::Entries(entries)),
                Output::ApplySnapshot(snapshot) => {
                    self.queue_apply(id, ApplyWork::Snapshot(snapshot));
                }
                Output::ReadReady { id: read, index } => {
                    let applied = self.sim_node(id).applied;
                    if let Some(required) = self.reads.remove(&(id, read)) {
                        self.report.reads += 1;
                        self.checker
                            .on_read(now, id, read, required, index, applied)?;
                    }
                }
                Output::ReadFailed { id: read, .. } => {
                    self.reads.remove(&(id, read));
                }
                Output::FetchEntries { first, last } => {
                    // Storage answers after a short read; now and then never (the core must
                    // ask again).
                    if !self.rng.chance(0.02) {
                        let delay = Duration::from_micros(self.rng.range(100, 3000));
                        let epoch = self.sim_node(id).epoch;
                        self.schedule(
                            delay,
                            EventKind::FetchDone {
                                node: id,
                                epoch,
                                first,
                                last,
                            },
                        );
                    }
                }
                Output::SnapshotNeeded { to } => {
                    let sn = self.sim_node(id);
                    let snapshot = sn.written.snapshot().clone();
                    let node = sn.node.as_mut().expect("checked alive");
                    match node.send_snapshot(now, to, snapshot) {
                        Ok(()) => {}
                        // The follower left the configuration meanwhile.
                        Err(Error::InvalidMembership(_)) => self.report.snapshot_sends_refused += 1,
                        Err(e) => {
                            return Err(Violation {
                                invariant: "Snapshot Transfer",
                                detail: format!(
                                    "node {id} cannot send its latest snapshot to {to}: {e}"
                                ),
                                at: now,
                            });
                        }
                    }
                }
                Output::RoleChanged { role, term, leader } => {
                    self.note(|| format!("node {id}: {role} term {term} leader {leader:?}"));
                    if role == Role::Leader {
                        // A voter of its latest configuration, or of the one before while the
                        // latest (its removal) is not known committed (dissertation §4.2.2).
                        let node = self.node(id).expect("alive");
                        let sn = &self.nodes[id as usize - 1];
                        let ((index, latest), previous) = sn.written.latest_memberships();
                        let eligible = latest.is_voter(id)
                            || (index > node.commit_index() && previous.is_voter(id));
                        self.checker.on_leader(now, id, term, eligible)?;
                        let node = self.nodes[id as usize - 1].node.as_ref().expect("alive");
                        let first = node.snapshot_index() + 1;
                        self.checker
                            .check_leader_log(now, id, term, first, |i| node.log_term(i))?;
                    }
                }
            }
        }
        if persisted {
            self.check_membership_is_latest(id)?;
        }
        self.check_commits(id)
    }

    /// Starts writing `persist` to node `id`'s simulated disk.
    fn write(&mut self, id: NodeId, persist: Persist) {
        let now = self.now;
        let stall = if self.rng.chance(self.cfg.disk_stall_rate) {
            let max = self.cfg.max_disk_stall.as_micros() as u64;
            Duration::from_micros(self.rng.range(2000, max.max(2000) + 1))
        } else {
            Duration::from_micros(self.rng.range(50, 2000))
        };
        let early_ack = self.early_ack();
        let sn = self.sim_node(id);
        let node = sn.node.as_mut().expect("alive");
        let prevs: Vec<Option<Term>> = persist
            .entries()
            .iter()
            .map(|entry| node.log_term(entry.index() - 1))
            .collect();
        if early_ack {
            node.persisted(now, persist.token());
        }
        sn.written.persist(&persist);
        sn.in_flight.push_back((persist, prevs));
        let at = sn.disk_free_at.max(now) + stall;
        sn.disk_free_at = at;
        let epoch = sn.epoch;
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            kind: EventKind::PersistDone { node: id, epoch },
        }));
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: Message) -> Result<(), Violation> {
        let now = self.now;
        match &message {
            Message::VoteResponse {
                term,
                pre_vote: false,
                granted: true,
            } => self.checker.on_vote(now, from, *term, to)?,
            Message::Append { term, entries, .. } if !entries.is_empty() => {
                self.track_resends(from, *term, to, entries)?;
            }
            _ => {}
        }
        for delay in self.net.delays(&mut self.rng) {
            self.schedule(
                delay,
                EventKind::Deliver {
                    from,
                    to,
                    message: message.clone(),
                },
            );
        }
        Ok(())
    }

    /// A leader resends little to a follower that acknowledges nothing: between two of its
    /// answers, at most one full append (the re-probe after a stall) plus a few entries for
    /// every round of backed-off probes.
    fn track_resends(
        &mut self,
        leader: NodeId,
        term: Term,
        follower: NodeId,
        entries: &[crate::Entry],
    ) -> Result<(), Violation> {
        let now = self.now;
        let largest = entries.iter().map(crate::Entry::size).max().unwrap_or(0);
        self.largest_entry = self.largest_entry.max(largest);
        let r = self
            .resends
            .entry((leader, term, follower))
            .or_insert(Resends {
                sent: std::collections::BTreeMap::new(),
                bytes: 0,
                since: now,
            });
        for entry in entries {
            let index = entry.index();
            let covering = r.sent.range(..=index).next_back().map(|(&s, &e)| (s, e));
            match covering {
                Some((_, end)) if end >= index => r.bytes += entry.size() as u64,
                Some((start, end)) if end + 1 == index => {
                    r.sent.insert(start, index);
                }
                _ => {
                    r.sent.insert(index, index);
                }
            }
            // Merge with a range that now follows directly.
            let (start, end) = r
                .sent
                .range(..=index)
                .next_back()
                .map(|(&s, &e)| (s, e))
                .expect("just inserted");
            if let Some(next_end) = r.sent.get(&(end + 1)).copied() {
                r.sent.remove(&(end + 1));
                r.sent.insert(start, next_end);
            }
        }
        let heartbeat = crate::Config::new(1).heartbeat_interval;
        let rounds =
            (now.saturating_duration_since(r.since).as_nanos() / heartbeat.as_nanos()) as u64;
        let bound = self.cfg.max_append_bytes.max(self.largest_entry) as u64
            + self.largest_entry as u64 * (8 + rounds / 8);
        self.report.max_resent_bytes = self.report.max_resent_bytes.max(r.bytes);
        if r.bytes > bound {
            return Err(Violation {
                invariant: "Resend Bound",
                detail: format!(
                    "leader {leader} (term {term}) resent {} bytes to {follower} in {rounds} \
                     heartbeat rounds without an answer (bound {bound})",
                    r.bytes
                ),
                at: now,
            });
        }
        Ok(())
    }

    fn queue_apply(&mut self, id: NodeId, work: ApplyWork) {
        let sn = self.sim_node(id);
        sn.apply_queue.push_back(work);
        if !sn.applying {
            sn.applying = true;
            self.schedule_apply(id);
        }
    }

    fn schedule_apply(&mut self, id: NodeId) {
        let max = self.cfg.max_apply_delay.as_micros() as u64;
        let delay = Duration::from_micros(self.rng.range(0, max + 1));
        let epoch = self.sim_node(id).epoch;
        self.schedule(delay, EventKind::ApplyDone { node: id, epoch });
    }

    /// The applier finished the work at the head of node `id`'s queue.
    fn apply_next(&mut self, id: NodeId) -> Result<(), Violation> {
        let now = self.now;
        let Some(work) = self.sim_node(id).apply_queue.pop_front() else {
            self.sim_node(id).applying = false;
            return Ok(());
        };
        match work {
            ApplyWork::Entries(entries) => {
                for entry in &entries {
                    let sn = self.sim_node(id);
                    if entry.index() != sn.applied + 1 {
                        return Err(Violation {
                            invariant: "State Machine Safety",
                            detail: format!(
                                "node {id} asked to apply index {} after {}",
                                entry.index(),
                                sn.applied
                            ),
                            at: now,
                        });
                    }
                    match entry.payload() {
                        EntryPayload::Command(command) => sn.machine.apply(entry.index(), command),
                        _ => sn.machine.skip(entry.index()),
                    }
                    sn.applied = entry.index();
                    let state = sn.machine.fingerprint();
                    self.checker.on_applied(now, id, entry, state)?;
                }
            }
            ApplyWork::Snapshot(snapshot) => {
                self.report.snapshots_installed += 1;
                let sn = self.sim_node(id);
                sn.machine.restore(snapshot.data());
                sn.applied = snapshot.meta().index();
                let state = sn.machine.fingerprint();
                self.checker
                    .on_restored(now, id, snapshot.meta().index(), state)?;
            }
        }
        let sn = self.sim_node(id);
        let applied = sn.applied;
        if let Some(node) = sn.node.as_mut() {
            node.applied(now, applied);
        }
        self.maybe_snapshot(id);
        if self.sim_node(id).apply_queue.is_empty() {
            self.sim_node(id).applying = false;
        } else {
            self.schedule_apply(id);
        }
        Ok(())
    }

    /// Starts writing a snapshot of the state machine once enough was applied since the last.
    fn maybe_snapshot(&mut self, id: NodeId) {
        let every = self.cfg.snapshot_every;
        let sn = self.sim_node(id);
        if every == 0
            || sn.snapshotting
            || sn.applied < sn.written.snapshot().meta().index() + every
        {
            return;
        }
        let Some(node) = sn.node.as_ref() else {
            return;
        };
        // The core refuses an index not yet durable enough on this node; try again later.
        let Ok(meta) = node.snapshot_meta(sn.applied) else {
            return;
        };
        let snapshot = Snapshot::new(meta, sn.machine.snapshot());
        sn.snapshotting = true;
        let epoch = sn.epoch;
        let max = self.cfg.max_apply_delay.as_micros() as u64 * 4;
        let delay = Duration::from_micros(self.rng.range(0, max + 1));
        self.schedule(
            delay,
            EventKind::SnapshotDone {
                node: id,
                epoch,
                snapshot,
            },
        );
    }

    /// A snapshot is durably written: storage drops what it covers, and so does the core.
    fn snapshot_written(&mut self, id: NodeId, snapshot: Snapshot) -> Result<(), Violation> {
        let now = self.now;
        let index = snapshot.meta().index();
        self.report.snapshots_written += 1;
        let sn = self.sim_node(id);
        sn.snapshotting = false;
        sn.durable.save_snapshot(snapshot.clone());
        sn.written.save_snapshot(snapshot);
        self.check_restartable(id)?;
        let sn = self.sim_node(id);
        let Some(node) = sn.node.as_mut() else {
            return Ok(());
        };
        match node.compact(now, index) {
            Ok(()) => Ok(()),
            // A newer snapshot from the leader replaced the log meanwhile.
            Err(Error::IndexOutOfRange { first, .. }) if first > index => {
                self.report.snapshots_superseded += 1;
                Ok(())
            }
            Err(e) => Err(Violation {
                invariant: "Snapshot",
                detail: format!("node {id} cannot compact to its own snapshot at {index}: {e}"),
                at: now,
            }),
        }
    }

    /// Every node can restart from what its storage holds, at every step.
    pub(super) fn check_restartable(&mut self, id: NodeId) -> Result<(), Violation> {
        self.report.restart_checks += 1;
        let cfg = self.node_config(id);
        let state = self.sim_node(id).durable.restore_state();
        match Node::restart(cfg, state, self.now) {
            Ok(_) => Ok(()),
            Err(e) => Err(Violation {
                invariant: "Restart",
                detail: format!("node {id} could not restart from its storage: {e}"),
                at: self.now,
            }),
        }
    }

    /// A node's configuration is the latest one in its log (or its snapshot's).
    fn check_membership_is_latest(&mut self, id: NodeId) -> Result<(), Violation> {
        let now = self.now;
        let sn = self.sim_node(id);
        let Some(node) = sn.node.as_ref() else {
            return Ok(());
        };
        let ((_, latest), _) = sn.written.latest_memberships();
        if node.membership() != latest {
            return Err(Violation {
                invariant: "Configuration",
                detail: format!(
                    "node {id} acts on {:?} but the latest configuration in its log is {latest:?}",
                    node.membership()
                ),
                at: now,
            });
        }
        Ok(())
    }

    pub(super) fn check_commits(&mut self, id: NodeId) -> Result<(), Violation> {
        let now = self.now;
        let sn = &mut self.nodes[id as usize - 1];
        let Some(node) = sn.node.as_ref() else {
            return Ok(());
        };
        let commit = node.commit_index();
        let in_term = node.term();
        for index in sn.checked_commit + 1..=commit {
            match node.log_term(index) {
                Some(term) => self.checker.on_committed(now, id, index, term, in_term)?,
                None if index <= node.snapshot_index() => {
                    self.report.commits_in_snapshots += 1;
                    self.checker.on_committed_in_snapshot(now, id, index)?;
                }
                None => {
                    return Err(Violation {
                        invariant: "State Machine Safety",
                        detail: format!(
                            "node {id} committed index {index} beyond its log (last {})",
                            node.last_index()
                        ),
                        at: now,
                    });
                }
            }
        }
        sn.checked_commit = sn.checked_commit.max(commit);
        Ok(())
    }

    /// Clears what a node loses in a crash.
    pub(super) fn forget_volatile(sn: &mut SimNode<S>, machine: S) {
        sn.in_flight.clear();
        sn.written = sn.durable.clone();
        sn.machine = machine;
        sn.applied = 0;
        sn.apply_queue.clear();
        sn.applying = false;
        sn.snapshotting = false;
    }
}
