//! The faults the simulator injects: crashes (of one node or of all), partitions (both ways
//! or one way), healing, disk stalls, restarts, and membership changes asked of the leader.

use core::time::Duration;
use std::collections::BTreeSet;

use super::{EventKind, Simulation, StateMachine};
use crate::error::Error;
use crate::membership::Membership;
use crate::node::Node;
use crate::output::Persist;
use crate::sim::checker::Violation;
use crate::types::NodeId;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Crash,
    CrashAll,
    Partition,
    OneWay,
    Heal,
    DiskStall,
}

impl<S: StateMachine> Simulation<S> {
    pub(super) fn inject_fault(&mut self) -> Result<(), Violation> {
        if self.faults_over {
            return Ok(());
        }
        let longest = self.cfg.max_fault_interval.as_millis() as u64;
        let next = Duration::from_millis(self.rng.range(longest / 10, longest + 1));
        self.schedule(next, EventKind::Fault);
        let mut kinds = Vec::new();
        if self.cfg.crashes {
            kinds.extend([Fault::Crash, Fault::Crash, Fault::CrashAll]);
        }
        if self.cfg.partitions {
            kinds.extend([Fault::Partition, Fault::Partition, Fault::OneWay]);
        }
        if self.cfg.long_disk_stalls {
            kinds.push(Fault::DiskStall);
        }
        if self.net.is_partitioned() {
            kinds.extend([Fault::Heal, Fault::Heal]);
        }
        let fault = kinds[self.rng.range(0, kinds.len() as u64) as usize];
        let n = self.nodes.len() as u64;
        match fault {
            Fault::Crash => {
                // Crash the leader half the time, else a random node.
                let victim = match self.leader() {
                    Some(leader) if self.rng.chance(0.5) => leader,
                    _ => self.rng.range(1, n + 1),
                };
                if self.sim_node(victim).node.is_some() {
                    self.crash(victim)?;
                    let downtime = Duration::from_millis(self.rng.range(50, 2000));
                    self.schedule(downtime, EventKind::Restart(victim));
                }
            }
            Fault::CrashAll => {
                self.report.whole_cluster_crashes += 1;
                self.note(|| "crash every node".to_string());
                let downtime = Duration::from_millis(self.rng.range(50, 1000));
                for id in 1..=n {
                    if self.sim_node(id).node.is_some() {
                        self.crash(id)?;
                        self.schedule(downtime, EventKind::Restart(id));
                    }
                }
            }
            Fault::Partition | Fault::OneWay => {
                let nodes: Vec<NodeId> = (1..=n).collect();
                let side: BTreeSet<NodeId> = nodes
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(0.5))
                    .collect();
                if matches!(fault, Fault::Partition) {
                    self.report.partitions += 1;
                    self.note(|| format!("partition {side:?} | rest"));
                    self.net.partition(&nodes, &side);
                } else {
                    self.report.one_way_partitions += 1;
                    self.note(|| format!("one-way partition: {side:?} -/-> rest"));
                    self.net.one_way(&nodes, &side);
                }
            }
            Fault::Heal => {
                self.note(|| "heal".to_string());
                self.net.heal();
            }
            Fault::DiskStall => {
                let id = self.rng.range(1, n + 1);
                let stall = Duration::from_millis(self.rng.range(500, 3001));
                self.report.long_stalls += 1;
                self.note(|| format!("node {id}: disk stalls for {stall:?}"));
                let now = self.now;
                let sn = self.sim_node(id);
                sn.disk_free_at = sn.disk_free_at.max(now) + stall;
            }
        }
        Ok(())
    }

    /// Asks the leader for a random membership change: add a learner, promote one, remove a
    /// voter (sometimes the leader itself), replace a voter by a learner (joint consensus),
    /// or remove a learner.
    pub(super) fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let now = self.now;
        let current = self
            .node(leader)
            .expect("leader is alive")
            .membership()
            .clone();
        let all: Vec<NodeId> = (1..=self.nodes.len() as NodeId).collect();
        let voters: Vec<NodeId> = current.voters().iter().copied().collect();
        let learners: Vec<NodeId> = current.learners().iter().copied().collect();
        let outsiders: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|&id| !current.contains(id))
            .collect();
        let pick =
            |rng: &mut crate::Rng, ids: &[NodeId]| ids[rng.range(0, ids.len() as u64) as usize];
        let with = |voters: &[NodeId], learners: &[NodeId]| {
            Membership::new(voters.iter().copied()).with_learners(learners.iter().copied())
        };
        let without = |ids: &[NodeId], id: NodeId| -> Vec<NodeId> {
            ids.iter().copied().filter(|&x| x != id).collect()
        };
        // The changes possible from here; one is drawn.
        let mut choices = Vec::new();
        if !outsiders.is_empty() && learners.len() < 2 {
            choices.push(0); // add a learner
        }
        if !learners.is_empty() && voters.len() < 5 {
            choices.push(1); // promote a learner
        }
        if voters.len() > 2 {
            choices.push(2); // remove a voter (the leader now and then)
        }
        if !learners.is_empty() {
            choices.extend([3, 3]); // replace a voter by a learner: joint consensus
        }
        if learners.len() >= 2 && voters.len() >= 2 {
            choices.push(4); // replace two voters by two learners: joint consensus
        }
        if !learners.is_empty() {
            choices.push(5); // remove a learner
        }
        if choices.is_empty() {
            return;
        }
        let target = match choices[self.rng.range(0, choices.len() as u64) as usize] {
            0 => {
                let id = pick(&mut self.rng, &outsiders);
                with(&voters, &[learners.clone(), vec![id]].concat())
            }
            1 => {
                let id = pick(&mut self.rng, &learners);
                with(
                    &[voters.clone(), vec![id]].concat(),
                    &without(&learners, id),
                )
            }
            2 => {
                let id = if self.rng.chance(0.3) {
                    leader
                } else {
                    pick(&mut self.rng, &voters)
                };
                with(&without(&voters, id), &learners)
            }
            3 => {
                let new = pick(&mut self.rng, &learners);
                let old = pick(&mut self.rng, &voters);
                with(
                    &[without(&voters, old), vec![new]].concat(),
                    &without(&learners, new),
                )
            }
            4 => {
                let (a, b) = (learners[0], learners[1]);
                let (x, y) = (voters[voters.len() - 1], voters[voters.len() - 2]);
                let kept: Vec<NodeId> = voters
                    .iter()
                    .copied()
                    .filter(|&v| v != x && v != y)
                    .collect();
                with(&[kept, vec![a, b]].concat(), &learners[2..])
            }
            _ => {
                let id = pick(&mut self.rng, &learners);
                with(&voters, &without(&learners, id))
            }
        };
        let joint = current.voter_changes(&target) > 1;
        let node = self
            .sim_node(leader)
            .node
            .as_mut()
            .expect("leader is alive");
        match node.propose_membership(now, target.clone()) {
            Ok(index) => {
                self.report.membership_changes += 1;
                self.report.joint_changes += u64::from(joint);
                self.note(|| {
                    format!("leader {leader} changes membership to {target:?} at {index}")
                });
            }
            Err(
                Error::LeaderNotReady
                | Error::MembershipChangeInProgress
                | Error::NotCaughtUp { .. }
                | Error::TransferInProgress,
            ) => self.report.membership_refused += 1,
            Err(e) => panic!("the simulator proposed an invalid change {target:?}: {e}"),
        }
    }

    pub(super) fn crash(&mut self, id: NodeId) -> Result<(), Violation> {
        self.report.crashes += 1;
        let torn = self.rng.chance(0.5);
        let cut = self.rng.next_u64();
        let machine = (self.make_machine)();
        let sn = self.sim_node(id);
        sn.node = None;
        sn.epoch += 1;
        // A crash in the middle of a write may leave a prefix of its entries on disk. A persist
        // that carries a hard state is all or nothing (the storage contract, see
        // `Persist`): its hard state is its commit point, and a term's entries must never
        // outlive a lost record of that term.
        let mut kept = Vec::new();
        if torn
            && let Some((first, prevs)) = sn.in_flight.front()
            && first.snapshot.is_none()
            && first.hard_state.is_none()
            && !first.entries.is_empty()
        {
            let keep = (cut % (first.entries.len() as u64 + 1)) as usize;
            let partial = Persist {
                token: first.token,
                hard_state: None,
                snapshot: None,
                entries: first.entries[..keep].to_vec(),
            };
            sn.durable.persist(&partial);
            kept = partial
                .entries
                .into_iter()
                .zip(prevs.iter().copied())
                .collect();
        }
        Self::forget_volatile(sn, machine);
        self.reads.retain(|(node, _), _| *node != id);
        self.note(|| format!("crash node {id}"));
        let now = self.now;
        for (entry, prev) in kept {
            self.checker.on_entry_written(now, id, &entry, prev)?;
        }
        self.check_restartable(id)
    }

    pub(super) fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        if self.sim_node(id).node.is_some() {
            return Ok(());
        }
        let cfg = self.node_config(id);
        let now = self.now;
        let sn = self.sim_node(id);
        let node = Node::restart(cfg, sn.durable.restore_state(), now).map_err(|e| Violation {
            invariant: "Restart",
            detail: format!("node {id} cannot restart from its own storage: {e}"),
            at: now,
        })?;
        let snapshot = sn.durable.snapshot().clone();
        sn.machine.restore(snapshot.data());
        sn.applied = snapshot.meta().index();
        sn.checked_commit = snapshot.meta().index();
        let state = sn.machine.fingerprint();
        sn.node = Some(node);
        self.checker
            .on_restored(now, id, snapshot.meta().index(), state)?;
        self.note(|| {
            format!(
                "restart node {id} from snapshot {}",
                snapshot.meta().index()
            )
        });
        self.drain(id)
    }
}
