//! An in-process Raft cluster for benchmarks, shared by the criterion suites in
//! `benches/benches/`.
//!
//! [`Cluster`] drives several [`raft::Node`]s in one thread with no faults and no IO: every
//! [`Output::Persist`] is reported durable at once (nothing is written anywhere), messages go
//! straight from one node's output queue into another's [`Node::step`], and applying an entry
//! only counts it. Virtual time stands still after the election, so no timer ever fires. What
//! is left to measure is the core itself: proposing, batching, replicating, counting the
//! quorum, and handing out entries to apply.
//!
//! [`ClosedLoop`] adds clients that each keep one proposal outstanding, proposing again as
//! soon as the previous one is applied on the leader.
//!
//! [`e2e`] is something else: end-to-end runs against real clusters of `kvd` (or etcd)
//! processes with the shared load generator, and charts of their results (the `e2e` binary).

pub mod e2e;

use std::mem;

use bytes::Bytes;
use raft::{Config, Index, Instant, Membership, Message, Node, NodeId, Output};

/// Several nodes driven in lockstep in one thread, with instant storage and delivery.
#[derive(Debug)]
pub struct Cluster {
    /// Node `id` is at `nodes[id - 1]`.
    nodes: Vec<Node>,
    /// Command entries applied so far, per node (same indexing as `nodes`).
    applied_commands: Vec<u64>,
    now: Instant,
    /// Messages sent and not yet delivered: `(from, to, message)`.
    in_transit: Vec<(NodeId, NodeId, Message)>,
    /// Spare buffer swapped with `in_transit` on every round, to keep its allocation.
    delivering: Vec<(NodeId, NodeId, Message)>,
    leader: NodeId,
}

impl Cluster {
    /// Starts `size` voters (ids `1..=size`, default [`Config`]) and runs them until one of
    /// them leads and has committed the entry that opens its term.
    ///
    /// # Panics
    /// If `size` is 0, or no leader emerges (a bug in the core).
    pub fn new(size: usize) -> Self {
        assert!(size > 0, "a cluster needs at least one node");
        let ids = 1..=size as NodeId;
        let membership = Membership::new(ids.clone());
        let nodes: Vec<Node> = ids
            .map(|id| Node::new(Config::new(id), membership.clone(), Instant::ZERO))
            .collect::<Result<_, _>>()
            .expect("default configuration is valid");
        let mut cluster = Self {
            applied_commands: vec![0; nodes.len()],
            nodes,
            now: Instant::ZERO,
            in_transit: Vec::new(),
            delivering: Vec::new(),
            leader: 0,
        };
        cluster.elect();
        cluster
    }

    /// Jumps virtual time from deadline to deadline until a leader has applied its first entry.
    fn elect(&mut self) {
        for _ in 0..100 {
            while self.round() {}
            if let Some(leader) = self.nodes.iter().find(|n| n.is_leader())
                && leader.applied_index() == leader.last_index()
            {
                self.leader = leader.id();
                return;
            }
            self.now = self
                .nodes
                .iter()
                .map(Node::poll_timeout)
                .min()
                .expect("at least one node");
            for node in &mut self.nodes {
                if node.poll_timeout() <= self.now {
                    node.handle_timeout(self.now);
                }
            }
        }
        panic!("no leader elected after 100 deadlines");
    }

    /// The leader's id.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The node with id `id`.
    ///
    /// # Panics
    /// If there is no such node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// Command entries node `id` has applied so far.
    ///
    /// # Panics
    /// If there is no such node.
    pub fn applied_commands(&self, id: NodeId) -> u64 {
        self.applied_commands[id as usize - 1]
    }

    /// Hands `command` to the leader and returns the index it will have. Nothing is sent
    /// until the next [`Cluster::round`], so proposals made together are batched.
    ///
    /// # Panics
    /// If the leader refuses it (for instance with backpressure, when far too much is
    /// proposed without running the cluster).
    pub fn propose(&mut self, command: Bytes) -> Index {
        let now = self.now;
        self.nodes[self.leader as usize - 1]
            .propose(now, command)
            .expect("the leader accepts proposals")
    }

    /// Proposes `count` copies of `command` as one batch, then runs the cluster until the
    /// leader has applied them all. Followers catch up during later rounds.
    pub fn propose_batch(&mut self, command: &Bytes, count: usize) {
        let mut last = 0;
        for _ in 0..count {
            last = self.propose(command.clone());
        }
        self.run_until_applied(last);
    }

    /// Runs rounds until the leader has applied `index`.
    ///
    /// # Panics
    /// If the cluster has nothing left to do before that (`index` was never proposed).
    pub fn run_until_applied(&mut self, index: Index) {
        while self.node(self.leader).applied_index() < index {
            assert!(
                self.round(),
                "cluster idle before the leader applied index {index}"
            );
        }
    }

    /// Runs rounds until no node has anything left to do: every node has then applied
    /// everything the leader committed.
    pub fn settle(&mut self) {
        while self.round() {}
    }

    /// One round: every node carries out all its outputs, then every message sent meanwhile
    /// is delivered. Delivering them all before the next round lets each node batch the
    /// answers to what it received together. Returns whether any message was delivered.
    pub fn round(&mut self) -> bool {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        if self.in_transit.is_empty() {
            return false;
        }
        mem::swap(&mut self.in_transit, &mut self.delivering);
        for (from, to, message) in self.delivering.drain(..) {
            self.nodes[to as usize - 1].step(self.now, from, message);
        }
        true
    }

    /// Carries out every output of `nodes[i]`.
    fn drain(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        while let Some(output) = node.poll_output() {
            match output {
                Output::Persist(persist) => node.persisted(now, persist.token()),
                Output::Send { to, message } => self.in_transit.push((node.id(), to, message)),
                Output::Apply(entries) => {
                    let commands = entries.iter().filter(|e| e.command().is_some()).count();
                    self.applied_commands[i] += commands as u64;
                    if let Some(last) = entries.last() {
                        node.applied(now, last.index());
                    }
                }
                Output::RoleChanged { .. }
                | Output::ReadReady { .. }
                | Output::ReadFailed { .. }
                | Output::ApplySnapshot(_) => {}
                Output::FetchEntries { .. } | Output::SnapshotNeeded { .. } => {
                    panic!("benchmark cluster keeps no log, but a follower fell behind: {output:?}")
                }
            }
        }
    }
}

/// Clients that each keep one proposal outstanding: a client proposes again as soon as its
/// previous proposal is applied on the leader (openraft's benchmark conditions).
#[derive(Debug)]
pub struct ClosedLoop {
    cluster: Cluster,
    command: Bytes,
    completed: u64,
}

impl ClosedLoop {
    /// A three-node [`Cluster`] with `clients` clients, each of which has just proposed
    /// `command`.
    pub fn new(clients: usize, command: Bytes) -> Self {
        let mut cluster = Cluster::new(3);
        for _ in 0..clients {
            cluster.propose(command.clone());
        }
        Self {
            cluster,
            command,
            completed: 0,
        }
    }

    /// Runs until `proposals` more proposals have been applied on the leader (a few more
    /// may complete in the last round). Clients stay outstanding across calls.
    pub fn run(&mut self, proposals: u64) {
        let target = self.completed + proposals;
        let leader = self.cluster.leader();
        while self.completed < target {
            let before = self.cluster.applied_commands(leader);
            assert!(self.cluster.round(), "closed loop went idle");
            let done = self.cluster.applied_commands(leader) - before;
            self.completed += done;
            for _ in 0..done {
                self.cluster.propose(self.command.clone());
            }
        }
    }

    /// Proposals applied on the leader so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// The cluster underneath.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_commits_and_applies_everywhere() {
        let mut cluster = Cluster::new(3);
        let leader = cluster.leader();
        let command = Bytes::from(vec![7; 64]);
        cluster.propose_batch(&command, 1000);
        assert_eq!(cluster.applied_commands(leader), 1000);
        cluster.propose_batch(&command, 500);
        assert_eq!(cluster.applied_commands(leader), 1500);
        cluster.settle();
        for id in 1..=3 {
            assert_eq!(cluster.applied_commands(id), 1500, "node {id}");
            assert_eq!(
                cluster.node(id).commit_index(),
                cluster.node(leader).commit_index()
            );
        }
    }

    #[test]
    fn closed_loop_clients_keep_proposing() {
        for clients in [1, 64, 256] {
            let mut closed = ClosedLoop::new(clients, Bytes::new());
            closed.run(5000);
            closed.run(5000);
            let leader = closed.cluster().leader();
            assert!(closed.completed() >= 10_000);
            assert_eq!(
                closed.cluster().applied_commands(leader),
                closed.completed()
            );
            // Every client still has exactly one proposal outstanding.
            let node = closed.cluster().node(leader);
            assert_eq!(
                node.last_index() - node.applied_index(),
                clients as u64,
                "{clients} clients"
            );
        }
    }
}
