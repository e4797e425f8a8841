//! A deterministic simulator for Raft clusters built on [`crate::Node`].
//!
//! This module is public API: embedders run it against their own [`StateMachine`] to check
//! that the machine is deterministic, that its snapshots round-trip, and that the core drives
//! it safely through faults ([`Simulation::with_machine`], [`Simulation::with_commands`]).
//!
//! N nodes, each with in-memory storage whose writes complete after a simulated disk delay
//! (sometimes a stall of up to [`SimConfig::max_disk_stall`], and now and then a disk that
//! stops for 0.5–3 s),
//! talk over a simulated network that loses, delays, duplicates and reorders messages, and
//! cuts links in one or both directions. The driver applies entries and writes snapshots
//! asynchronously, as a real one does. Nodes crash (losing whatever was not yet durable,
//! sometimes keeping a torn prefix of the write in progress), sometimes all at once, and
//! restart from what was persisted. The leader is asked to change the membership: add a
//! learner, promote one, remove a voter (the leader itself too) or replace one through joint
//! consensus. Virtual time jumps straight to the next event or deadline, so a run of many
//! virtual seconds takes milliseconds.
//!
//! After every step the invariants of [`checker`](self) are checked: Election Safety (one
//! leader per term, and only a voter of its configuration), one vote per term, Log Matching,
//! Leader Completeness, State Machine Safety and linearizable reads. The simulator adds its
//! own: every node's configuration is the latest one in its log; every node can restart
//! from its storage at every step; a leader resends little to a follower that acknowledges
//! nothing. After the fault phase the network heals and every node restarts; a leader must
//! then be elected and a new proposal applied on every member within
//! [`SimConfig::liveness_timeout`].
//!
//! Every run is a pure function of its [`SimConfig`] (its seed included): a failing seed
//! reproduces exactly, and [`check_seeds`] re-runs it with a trace for the report.
//!
//! ```
//! use raft::sim::{SimConfig, Simulation};
//!
//! let report = Simulation::new(SimConfig::new(7)).run().expect("no invariant broken");
//! assert!(report.committed > 0);
//! ```

mod checker;
mod driver;
mod faults;
mod machine;
mod network;

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::Bytes;

pub use checker::Violation;
pub use machine::{LogMachine, StateMachine};
pub use network::NetworkFaults;

use crate::config::Config;
use crate::entry::{Entry, Snapshot};
use crate::mem_storage::MemStorage;
use crate::membership::Membership;
use crate::message::Message;
use crate::node::Node;
use crate::output::Persist;
use crate::rng::Rng;
use crate::types::{Index, Instant, NodeId, Term};
use checker::Checker;
use network::Network;

/// What a simulation run does. Public fields: this is a plain bag of knobs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of voters at the start (ids `1..=nodes`).
    pub nodes: usize,
    /// Further nodes that start outside the cluster (ids after the voters), for membership
    /// changes to add.
    pub spare_nodes: usize,
    /// Seed of every random choice in the run (faults, delays, node jitter).
    pub seed: u64,
    /// Network behaviour during the fault phase.
    pub network: NetworkFaults,
    /// Length of the fault phase in virtual time.
    pub fault_time: Duration,
    /// Crash and restart nodes (one, or all at once) during the fault phase.
    pub crashes: bool,
    /// Cut the network during the fault phase (in both directions, or in one).
    pub partitions: bool,
    /// Ask the leader for membership changes during the fault phase.
    pub membership_changes: bool,
    /// Each node snapshots its state machine every this many applied entries (0 = never).
    pub snapshot_every: u64,
    /// The nodes' [`Config::max_cached_entries`] (small values exercise fetches from storage).
    pub max_cached_entries: u64,
    /// The nodes' [`Config::max_append_bytes`] (1 sends one entry per append, which widens the
    /// windows in which a leader holds acknowledgements for only part of its log).
    pub max_append_bytes: usize,
    /// Probability that a write stalls (a slow disk) for up to [`SimConfig::max_disk_stall`]
    /// instead of completing in about a millisecond. Stalls open the windows in which a node
    /// has said or counted something its disk does not hold yet.
    pub disk_stall_rate: f64,
    /// Longest short write stall.
    pub max_disk_stall: Duration,
    /// Stall a node's disk for 0.5–3 s during the fault phase (every write waits for the
    /// stall to end): long enough for elections to come and go while the node's disk holds
    /// an old term.
    pub long_disk_stalls: bool,
    /// Longest time the driver takes to apply a batch of entries or write a snapshot (both
    /// run asynchronously, in order, as a real driver's would).
    pub max_apply_delay: Duration,
    /// Longest pause between two injected faults.
    pub max_fault_interval: Duration,
    /// Interval between client proposals to the leader.
    pub proposal_interval: Duration,
    /// Interval between linearizable reads on a random node.
    pub read_interval: Duration,
    /// After healing, a proposal must apply everywhere within this virtual time.
    pub liveness_timeout: Duration,
    /// PreVote on the nodes.
    pub pre_vote: bool,
    /// CheckQuorum on the nodes.
    pub check_quorum: bool,
    /// Record a human-readable trace (slower; used to report failures).
    pub trace: bool,
    /// A deliberate bug in the simulated driver, which the checks must catch (a negative
    /// control; `test-util` feature only).
    #[cfg(feature = "test-util")]
    pub inject: Option<InjectedBug>,
}

/// Bugs the simulated driver can be told to have, to show the simulator catches them.
#[cfg(feature = "test-util")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Report every persist as durable as soon as it is issued, before the simulated disk
    /// holds it: a crash then loses state the node has acknowledged.
    EarlyAck,
}

impl SimConfig {
    /// Three voters and two spare nodes, a lossy network, crashes, partitions and membership
    /// changes for 5 virtual seconds, snapshots every 40 entries.
    pub fn new(seed: u64) -> Self {
        Self {
            nodes: 3,
            spare_nodes: 2,
            seed,
            network: NetworkFaults::lossy(),
            fault_time: Duration::from_secs(5),
            crashes: true,
            partitions: true,
            membership_changes: true,
            snapshot_every: 40,
            max_cached_entries: 8,
            max_append_bytes: 4096,
            disk_stall_rate: 0.1,
            max_disk_stall: Duration::from_millis(60),
            long_disk_stalls: true,
            max_apply_delay: Duration::from_millis(5),
            max_fault_interval: Duration::from_millis(1200),
            proposal_interval: Duration::from_millis(15),
            read_interval: Duration::from_millis(40),
            liveness_timeout: Duration::from_secs(20),
            pre_vote: true,
            check_quorum: true,
            trace: false,
            #[cfg(feature = "test-util")]
            inject: None,
        }
    }

    /// No faults at all: a reliable network, no crashes, partitions, membership changes or
    /// long stalls.
    pub fn reliable(seed: u64, nodes: usize) -> Self {
        Self {
            nodes,
            spare_nodes: 0,
            network: NetworkFaults::reliable(),
            crashes: false,
            partitions: false,
            membership_changes: false,
            long_disk_stalls: false,
            ..Self::new(seed)
        }
    }

    fn total_nodes(&self) -> usize {
        self.nodes + self.spare_nodes
    }
}

/// What a successful run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Highest committed index at the end.
    pub committed: Index,
    /// Highest term reached.
    pub max_term: Term,
    /// Node crashes injected (each node of a whole-cluster crash counts).
    pub crashes: u64,
    /// Crashes of every node at once.
    pub whole_cluster_crashes: u64,
    /// Partitions injected (both directions cut).
    pub partitions: u64,
    /// One-way partitions injected (one side hears the other, not the reverse).
    pub one_way_partitions: u64,
    /// Disk stalls of 0.5–3 s injected.
    pub long_stalls: u64,
    /// Membership changes the leader accepted.
    pub membership_changes: u64,
    /// Of those, changes that went through a joint configuration.
    pub joint_changes: u64,
    /// Membership changes the leader refused (not ready, one in progress, not caught up).
    pub membership_refused: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Reads confirmed and checked.
    pub reads: u64,
    /// Snapshots from the leader installed by followers (applied to their state machines).
    pub snapshots_installed: u64,
    /// Snapshots the driver wrote of its state machine.
    pub snapshots_written: u64,
    /// Snapshots written whose compaction was superseded (a newer snapshot from the leader
    /// arrived while it was being written).
    pub snapshots_superseded: u64,
    /// Snapshots the leader asked for that could not be sent (the follower left meanwhile).
    pub snapshot_sends_refused: u64,
    /// Commits checked only through a snapshot (their terms were compacted away).
    pub commits_in_snapshots: u64,
    /// Times a node's storage was checked to restart cleanly.
    pub restart_checks: u64,
    /// Largest number of bytes a leader resent to one follower between two of its answers.
    pub max_resent_bytes: u64,
    /// Virtual time the run took.
    pub virtual_time: Duration,
}

#[derive(Debug)]
enum EventKind {
    Deliver {
        from: NodeId,
        to: NodeId,
        message: Message,
    },
    PersistDone {
        node: NodeId,
        epoch: u64,
    },
    ApplyDone {
        node: NodeId,
        epoch: u64,
    },
    SnapshotDone {
        node: NodeId,
        epoch: u64,
        snapshot: Snapshot,
    },
    FetchDone {
        node: NodeId,
        epoch: u64,
        first: Index,
        last: Index,
    },
    Propose,
    Read,
    Fault,
    ChangeMembership,
    Restart(NodeId),
    EndFaults,
}

#[derive(Debug)]
struct Event {
    at: Instant,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Work handed to the driver's applier, done in order.
#[derive(Debug)]
enum ApplyWork {
    Entries(Vec<Entry>),
    Snapshot(Snapshot),
}

struct SimNode<S> {
    node: Option<Node>,
    /// What survives a crash.
    durable: MemStorage,
    /// What the node has written (durable or not): serves fetches and snapshots.
    written: MemStorage,
    /// Persists written but not yet durable, oldest first, each with the term before each of
    /// its entries (for the Log Matching check, made once the entries are durable: an entry
    /// lost in a crash before it was durable or sent never existed).
    in_flight: VecDeque<(Persist, Vec<Option<Term>>)>,
    /// Bumped at every crash: completions of work started before it are dropped.
    epoch: u64,
    disk_free_at: Instant,
    machine: S,
    /// Index the state machine has applied.
    applied: Index,
    apply_queue: VecDeque<ApplyWork>,
    applying: bool,
    snapshotting: bool,
    checked_commit: Index,
}

/// Bytes a leader resent to one follower since it last heard an append answer from it.
#[derive(Debug)]
struct Resends {
    /// Indexes sent in this term, as disjoint ranges `start -> end` (inclusive).
    sent: std::collections::BTreeMap<Index, Index>,
    bytes: u64,
    since: Instant,
}

type CommandSource = Box<dyn FnMut(&mut Rng, u64) -> Bytes>;

/// A simulated cluster. See the [module docs](self).
pub struct Simulation<S: StateMachine = LogMachine> {
    cfg: SimConfig,
    rng: Rng,
    now: Instant,
    nodes: Vec<SimNode<S>>,
    net: Network,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    checker: Checker,
    make_machine: Box<dyn Fn() -> S>,
    commands: CommandSource,
    reads: HashMap<(NodeId, u64), Index>,
    resends: HashMap<(NodeId, Term, NodeId), Resends>,
    largest_entry: usize,
    next_read: u64,
    next_command: u64,
    faults_over: bool,
    liveness_target: Option<(Index, Term)>,
    report: Report,
    trace: VecDeque<String>,
}

impl Simulation<LogMachine> {
    /// A simulation whose nodes run [`LogMachine`].
    pub fn new(cfg: SimConfig) -> Self {
        Self::with_machine(cfg, LogMachine::default)
    }
}

impl<S: StateMachine> Simulation<S> {
    /// A simulation whose nodes run state machines made by `make_machine`.
    pub fn with_machine(cfg: SimConfig, make_machine: impl Fn() -> S + 'static) -> Self {
        let voters = Membership::new(1..=cfg.nodes as NodeId);
        let mut sim = Self {
            rng: Rng::new(cfg.seed),
            now: Instant::ZERO,
            nodes: Vec::new(),
            net: Network::new(cfg.network.clone()),
            queue: BinaryHeap::new(),
            seq: 0,
            checker: Checker::default(),
            commands: Box::new(|_, n| Bytes::from(format!("cmd-{n}"))),
            reads: HashMap::new(),
            resends: HashMap::new(),
            largest_entry: 0,
            next_read: 0,
            next_command: 0,
            faults_over: false,
            liveness_target: None,
            report: Report {
                seed: cfg.seed,
                ..Report::default()
            },
            trace: VecDeque::new(),
            make_machine: Box::new(make_machine),
            cfg,
        };
        for id in 1..=sim.cfg.total_nodes() as NodeId {
            let membership = if voters.is_voter(id) {
                voters.clone()
            } else {
                Membership::default() // a spare: it joins when a leader contacts it
            };
            let node =
                Node::new(sim.node_config(id), membership, Instant::ZERO).expect("valid config");
            sim.nodes.push(SimNode {
                node: Some(node),
                durable: MemStorage::new(),
                written: MemStorage::new(),
                in_flight: VecDeque::new(),
                epoch: 0,
                disk_free_at: Instant::ZERO,
                machine: (sim.make_machine)(),
                applied: 0,
                apply_queue: VecDeque::new(),
                applying: false,
                snapshotting: false,
                checked_commit: 0,
            });
        }
        sim
    }

    /// Replaces the commands clients propose: `make(rng, n)` builds the `n`-th (from 1), with
    /// the simulation's generator for any random choice (so the run stays reproducible). The
    /// default is `cmd-{n}`; a state machine that decodes its commands needs its own.
    pub fn with_commands(mut self, make: impl FnMut(&mut Rng, u64) -> Bytes + 'static) -> Self {
        self.commands = Box::new(make);
        self
    }

    fn node_config(&self, id: NodeId) -> Config {
        Config::new(id)
            .seed(self.cfg.seed.wrapping_mul(0x9E37_79B9).wrapping_add(id))
            .pre_vote(self.cfg.pre_vote)
            .check_quorum(self.cfg.check_quorum)
            .max_cached_entries(self.cfg.max_cached_entries)
            .max_inflight_appends(8)
            .max_append_bytes(self.cfg.max_append_bytes)
            .snapshot_timeout(Duration::from_millis(500))
            .catch_up_entries(20)
    }

    /// Runs the fault phase, heals, and checks liveness. Any broken invariant ends the run.
    pub fn run(&mut self) -> Result<Report, Violation> {
        self.schedule(self.cfg.proposal_interval, EventKind::Propose);
        self.schedule(self.cfg.read_interval, EventKind::Read);
        if self.cfg.crashes || self.cfg.partitions || self.cfg.long_disk_stalls {
            let first = Duration::from_millis(self.rng.range(200, 1000));
            self.schedule(first, EventKind::Fault);
        }
        if self.cfg.membership_changes {
            self.schedule(Duration::from_millis(300), EventKind::ChangeMembership);
        }
        self.schedule(self.cfg.fault_time, EventKind::EndFaults);
        let deadline = Instant::ZERO + self.cfg.fault_time + self.cfg.liveness_timeout;
        loop {
            if self.faults_over && self.live() {
                return Ok(self.finish_report());
            }
            if self.now > deadline {
                let members: Vec<String> = self
                    .leader()
                    .and_then(|id| self.node(id))
                    .map(|leader| {
                        leader
                            .membership()
                            .members()
                            .map(|id| {
                                format!("{id}: applied {}", self.nodes[id as usize - 1].applied)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let detail = format!(
                    "no proposal applied on every member within {:?} of healing (leader: {:?}, \
                     committed: {}, target: {:?}, members: {})",
                    self.cfg.liveness_timeout,
                    self.leader(),
                    self.checker.committed_len(),
                    self.liveness_target,
                    members.join(", ")
                );
                return Err(Violation {
                    invariant: "Liveness",
                    detail,
                    at: self.now,
                });
            }
            self.step()?;
        }
    }

    /// The trace recorded so far (only with [`SimConfig::trace`]), oldest first.
    pub fn trace(&self) -> impl Iterator<Item = &str> {
        self.trace.iter().map(String::as_str)
    }

    /// The node that currently believes it leads the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .filter(|n| n.is_leader())
            .max_by_key(|n| n.term())
            .map(Node::id)
    }

    /// The node with this id, unless it is crashed.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes
            .get((id as usize).checked_sub(1)?)
            .and_then(|n| n.node.as_ref())
    }

    fn finish_report(&mut self) -> Report {
        let mut report = self.report.clone();
        report.committed = self.checker.committed_len();
        report.max_term = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(Node::term)
            .max()
            .unwrap_or(0);
        report.virtual_time = self.now.saturating_duration_since(Instant::ZERO);
        report
    }

    /// Liveness: a proposal made after healing is applied on every member of the leader's
    /// configuration.
    fn live(&self) -> bool {
        let Some((index, term)) = self.liveness_target else {
            return false;
        };
        let Some(leader) = self.leader().and_then(|id| self.node(id)) else {
            return false;
        };
        if self.checker.committed_len() < index || self.committed_term(index) != Some(term) {
            return false;
        }
        leader.membership().members().all(|id| {
            let sn = &self.nodes[id as usize - 1];
            sn.node.is_some() && sn.applied >= index
        })
    }

    fn committed_term(&self, index: Index) -> Option<Term> {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .find_map(|n| n.log_term(index))
    }

    fn schedule(&mut self, after: Duration, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at: self.now + after,
            seq: self.seq,
            kind,
        }));
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            if self.trace.len() >= 20_000 {
                self.trace.pop_front();
            }
            let text = format!("{} {}", self.now, line());
            self.trace.push_back(text);
        }
    }

    fn sim_node(&mut self, id: NodeId) -> &mut SimNode<S> {
        &mut self.nodes[id as usize - 1]
    }
}

fn truncate(mut line: String) -> String {
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// Runs every seed in `seeds` with the configuration `make(seed)`. On the first failure,
/// re-runs that seed with a trace and returns a report naming the seed, the broken invariant
/// and the last events before it.
pub fn check_seeds(
    seeds: impl IntoIterator<Item = u64>,
    make: impl Fn(u64) -> SimConfig,
) -> Result<Vec<Report>, String> {
    check_runs(seeds, |seed, trace| {
        Simulation::new(SimConfig {
            trace,
            ..make(seed)
        })
    })
}

/// Like [`check_seeds`], for simulations built by `make(seed, trace)` (a custom state
/// machine or commands); `trace` is set when a failing seed is re-run for its report.
pub fn check_runs<S: StateMachine>(
    seeds: impl IntoIterator<Item = u64>,
    make: impl Fn(u64, bool) -> Simulation<S>,
) -> Result<Vec<Report>, String> {
    let mut reports = Vec::new();
    for seed in seeds {
        match make(seed, false).run() {
            Ok(report) => reports.push(report),
            Err(violation) => {
                let mut traced = make(seed, true);
                let _ = traced.run();
                let trace: Vec<&str> = traced.trace().collect();
                let tail = &trace[trace.len().saturating_sub(80)..];
                return Err(format!(
                    "seed {seed}: {violation}\nlast events:\n{}",
                    tail.join("\n")
                ));
            }
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliable_cluster_commits_and_stays_safe() {
        let report = Simulation::new(SimConfig::reliable(1, 3)).run().unwrap();
        assert!(report.committed > 10, "{report:?}");
    }

    #[test]
    fn a_few_faulty_seeds() {
        check_seeds(0..20, SimConfig::new).unwrap();
    }
}
