//! A deterministic simulator for Raft clusters built on [`crate::Node`].
//!
//! N nodes, each with in-memory storage whose writes complete after a simulated disk delay,
//! talk over a simulated network that loses, delays, duplicates, reorders and partitions
//! messages. Nodes crash (losing whatever was not yet durable, sometimes keeping a torn prefix
//! of the write in progress) and restart from what was persisted. Virtual time jumps straight
//! to the next event or deadline, so a run of many virtual seconds takes milliseconds.
//!
//! After every step the invariants of [`checker`](self) are checked: Election Safety, Log
//! Matching, Leader Completeness, State Machine Safety and linearizable reads. After the fault
//! phase the network heals and every node restarts; a leader must then be elected and a new
//! proposal applied everywhere within [`SimConfig::liveness_timeout`].
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
mod machine;
mod network;

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

use bytes::Bytes;

pub use checker::Violation;
pub use machine::{LogMachine, StateMachine};
pub use network::NetworkFaults;

use crate::config::Config;
use crate::entry::{Entry, EntryPayload};
use crate::mem_storage::MemStorage;
use crate::membership::Membership;
use crate::message::Message;
use crate::node::Node;
use crate::output::{Output, Persist};
use crate::rng::Rng;
use crate::types::{Index, Instant, NodeId, Role, Term};
use checker::Checker;
use network::Network;

/// What a simulation run does. Public fields: this is a plain bag of knobs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of voters (ids `1..=nodes`).
    pub nodes: usize,
    /// Seed of every random choice in the run (faults, delays, node jitter).
    pub seed: u64,
    /// Network behaviour during the fault phase.
    pub network: NetworkFaults,
    /// Length of the fault phase in virtual time.
    pub fault_time: Duration,
    /// Crash and restart nodes during the fault phase.
    pub crashes: bool,
    /// Partition the network during the fault phase.
    pub partitions: bool,
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
    /// Longest write stall.
    pub max_disk_stall: Duration,
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
}

impl SimConfig {
    /// Three nodes, a lossy network, crashes and partitions for 5 virtual seconds, snapshots
    /// every 40 entries.
    pub fn new(seed: u64) -> Self {
        Self {
            nodes: 3,
            seed,
            network: NetworkFaults::lossy(),
            fault_time: Duration::from_secs(5),
            crashes: true,
            partitions: true,
            snapshot_every: 40,
            max_cached_entries: 8,
            max_append_bytes: 4096,
            disk_stall_rate: 0.1,
            max_disk_stall: Duration::from_millis(60),
            max_fault_interval: Duration::from_millis(1200),
            proposal_interval: Duration::from_millis(15),
            read_interval: Duration::from_millis(40),
            liveness_timeout: Duration::from_secs(20),
            pre_vote: true,
            check_quorum: true,
            trace: false,
        }
    }

    /// No faults at all: a reliable network, no crashes, no partitions.
    pub fn reliable(seed: u64, nodes: usize) -> Self {
        Self {
            nodes,
            network: NetworkFaults::reliable(),
            crashes: false,
            partitions: false,
            ..Self::new(seed)
        }
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
    /// Node crashes injected.
    pub crashes: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Reads confirmed and checked.
    pub reads: u64,
    /// Snapshots installed by followers.
    pub snapshots_installed: u64,
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
    Propose,
    Read,
    Fault,
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
    epoch: u64,
    disk_free_at: Instant,
    machine: S,
    applied: Index,
    checked_commit: Index,
}

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
    reads: HashMap<(NodeId, u64), Index>,
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
        let membership = Membership::new(1..=cfg.nodes as NodeId);
        let mut sim = Self {
            rng: Rng::new(cfg.seed),
            now: Instant::ZERO,
            nodes: Vec::new(),
            net: Network::new(cfg.nodes, cfg.network.clone()),
            queue: BinaryHeap::new(),
            seq: 0,
            checker: Checker::default(),
            reads: HashMap::new(),
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
        for id in 1..=sim.cfg.nodes as NodeId {
            let node = Node::new(sim.node_config(id), membership.clone(), Instant::ZERO)
                .expect("valid config");
            sim.nodes.push(SimNode {
                node: Some(node),
                durable: MemStorage::new(),
                written: MemStorage::new(),
                in_flight: VecDeque::new(),
                epoch: 0,
                disk_free_at: Instant::ZERO,
                machine: (sim.make_machine)(),
                applied: 0,
                checked_commit: 0,
            });
        }
        sim
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
    }

    /// Runs the fault phase, heals, and checks liveness. Any broken invariant ends the run.
    pub fn run(&mut self) -> Result<Report, Violation> {
        self.schedule(self.cfg.proposal_interval, EventKind::Propose);
        self.schedule(self.cfg.read_interval, EventKind::Read);
        if self.cfg.crashes || self.cfg.partitions {
            let first = Duration::from_millis(self.rng.range(200, 1000));
            self.schedule(first, EventKind::Fault);
        }
        self.schedule(self.cfg.fault_time, EventKind::EndFaults);
        let deadline = Instant::ZERO + self.cfg.fault_time + self.cfg.liveness_timeout;
        loop {
            if self.faults_over && self.live() {
                return Ok(self.finish_report());
            }
            if self.now > deadline {
                let detail = format!(
                    "no proposal applied on every node within {:?} of healing (leader: {:?}, committed: {})",
                    self.cfg.liveness_timeout,
                    self.leader(),
                    self.checker.committed_len()
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
            .get(id as usize - 1)
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
        report.snapshots_installed = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(|n| n.stats().snapshots_installed())
            .sum();
        report
    }

    /// Liveness: a proposal made after healing is applied on every node.
    fn live(&self) -> bool {
        let Some((index, term)) = self.liveness_target else {
            return false;
        };
        if self.checker.committed_len() < index {
            return false;
        }
        self.nodes
            .iter()
            .all(|n| n.node.is_some() && n.applied >= index)
            && self.committed_term(index) == Some(term)
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
            if self.trace.len() >= 400 {
                self.trace.pop_front();
            }
            let text = format!("{} {}", self.now, line());
            self.trace.push_back(text);
        }
    }

    /// Advances to the next event or deadline and processes everything due then.
    fn step(&mut self) -> Result<(), Violation> {
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
        for i in 0..self.nodes.len() {
            let now = self.now;
            if let Some(node) = self.nodes[i].node.as_mut()
                && node.poll_timeout() <= now
            {
                node.handle_timeout(now);
            }
            self.drain(i as NodeId + 1)?;
        }
        Ok(())
    }

    fn handle_event(&mut self, kind: EventKind) -> Result<(), Violation> {
        let now = self.now;
        match kind {
            EventKind::Deliver { from, to, message } => {
                if !self.net.connected(from, to) {
                    return Ok(());
                }
                if self.nodes[to as usize - 1].node.is_none() {
                    return Ok(());
                }
                self.report.delivered += 1;
                if self.cfg.trace {
                    let line = format!("{from}->{to} {message:?}");
                    self.note(|| truncate(line));
                }
                let node = self.nodes[to as usize - 1]
                    .node
                    .as_mut()
                    .expect("checked alive");
                node.step(now, from, message);
                self.drain(to)?;
            }
            EventKind::PersistDone { node: id, epoch } => {
                let sn = &mut self.nodes[id as usize - 1];
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
                if let Some(node) = sn.node.as_mut() {
                    node.persisted(now, persist.token());
                }
                self.drain(id)?;
            }
            EventKind::Propose => {
                let interval = self.cfg.proposal_interval;
                self.schedule(interval, EventKind::Propose);
                if let Some(id) = self.leader() {
                    self.next_command += 1;
                    let command = Bytes::from(format!("cmd-{}", self.next_command));
                    let node = self.nodes[id as usize - 1]
                        .node
                        .as_mut()
                        .expect("leader is alive");
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
                let id = self.rng.range(1, self.cfg.nodes as u64 + 1);
                let required = self.checker.committed_len();
                self.next_read += 1;
                let read = self.next_read;
                if let Some(node) = self.nodes[id as usize - 1].node.as_mut() {
                    if node.read_index(now, read).is_ok() {
                        self.reads.insert((id, read), required);
                    }
                    self.drain(id)?;
                }
            }
            EventKind::Fault => self.inject_fault()?,
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
                for id in 1..=self.cfg.nodes as NodeId {
                    if self.nodes[id as usize - 1].node.is_none() {
                        self.restart(id)?;
                    }
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

    fn inject_fault(&mut self) -> Result<(), Violation> {
        if self.faults_over {
            return Ok(());
        }
        let longest = self.cfg.max_fault_interval.as_millis() as u64;
        let next = Duration::from_millis(self.rng.range(longest / 10, longest + 1));
        self.schedule(next, EventKind::Fault);
        let n = self.cfg.nodes as u64;
        let choice = self.rng.range(0, 3);
        if choice == 0 && self.cfg.crashes {
            // Crash the leader half the time, else a random node.
            let victim = match self.leader() {
                Some(leader) if self.rng.chance(0.5) => leader,
                _ => self.rng.range(1, n + 1),
            };
            if self.nodes[victim as usize - 1].node.is_some() {
                self.crash(victim)?;
                let downtime = Duration::from_millis(self.rng.range(50, 2000));
                self.schedule(downtime, EventKind::Restart(victim));
            }
        } else if choice == 1 && self.cfg.partitions {
            let mut side = BTreeSet::new();
            for id in 1..=n {
                if self.rng.chance(0.5) {
                    side.insert(id);
                }
            }
            self.report.partitions += 1;
            self.note(|| format!("partition {side:?} | rest"));
            self.net.partition(&side);
        } else if self.net.is_partitioned() {
            self.note(|| "heal".to_string());
            self.net.heal();
        }
        Ok(())
    }

    fn crash(&mut self, id: NodeId) -> Result<(), Violation> {
        self.report.crashes += 1;
        let torn = self.rng.chance(0.5);
        let cut = self.rng.next_u64();
        let sn = &mut self.nodes[id as usize - 1];
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
        sn.in_flight.clear();
        sn.written = sn.durable.clone();
        sn.machine = (self.make_machine)();
        sn.applied = 0;
        self.reads.retain(|(node, _), _| *node != id);
        self.note(|| format!("crash node {id}"));
        let now = self.now;
        for (entry, prev) in kept {
            self.checker.on_entry_written(now, id, &entry, prev)?;
        }
        Ok(())
    }

    fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        if self.nodes[id as usize - 1].node.is_some() {
            return Ok(());
        }
        let cfg = self.node_config(id);
        let now = self.now;
        let sn = &mut self.nodes[id as usize - 1];
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

    /// Records commit indexes, then carries out every output of node `id`.
    fn drain(&mut self, id: NodeId) -> Result<(), Violation> {
        self.check_commits(id)?;
        let now = self.now;
        loop {
            let sn = &mut self.nodes[id as usize - 1];
            let Some(node) = sn.node.as_mut() else {
                return Ok(());
            };
            let Some(output) = node.poll_output() else {
                break;
            };
            match output {
                Output::Persist(persist) => {
                    let prevs: Vec<Option<Term>> = persist
                        .entries()
                        .iter()
                        .map(|entry| node.log_term(entry.index() - 1))
                        .collect();
                    let sn = &mut self.nodes[id as usize - 1];
                    sn.written.persist(&persist);
                    sn.in_flight.push_back((persist, prevs));
                    let delay = if self.rng.chance(self.cfg.disk_stall_rate) {
                        Duration::from_micros(
                            self.rng
                                .range(2000, self.cfg.max_disk_stall.as_micros() as u64 + 1),
                        )
                    } else {
                        Duration::from_micros(self.rng.range(50, 2000))
                    };
                    let at = sn.disk_free_at.max(now) + delay;
                    sn.disk_free_at = at;
                    let epoch = sn.epoch;
                    self.seq += 1;
                    self.queue.push(Reverse(Event {
                        at,
                        seq: self.seq,
                        kind: EventKind::PersistDone { node: id, epoch },
                    }));
                }
                Output::Send { to, message } => {
                    for delay in self.net.delays(&mut self.rng) {
                        self.schedule(
                            delay,
                            EventKind::Deliver {
                                from: id,
                                to,
                                message: message.clone(),
                            },
                        );
                    }
                }
                Output::Apply(entries) => self.apply(id, &entries)?,
                Output::ApplySnapshot(snapshot) => {
                    let sn = &mut self.nodes[id as usize - 1];
                    sn.machine.restore(snapshot.data());
                    sn.applied = snapshot.meta().index();
                    let state = sn.machine.fingerprint();
                    if let Some(node) = sn.node.as_mut() {
                        node.applied(now, snapshot.meta().index());
                    }
                    self.checker
                        .on_restored(now, id, snapshot.meta().index(), state)?;
                }
                Output::ReadReady { id: read, index } => {
                    let applied = self.nodes[id as usize - 1].applied;
                    if let Some(required) = self.reads.remove(&(id, read)) {
                        self.report.reads += 1;
                        if index < required || applied < index {
                            return Err(Violation {
                                invariant: "Linearizable Read",
                                detail: format!(
                                    "node {id} served read {read} at index {index} (applied {applied}) \
                                     but index {required} had committed before it started"
                                ),
                                at: now,
                            });
                        }
                    }
                }
                Output::ReadFailed { id: read, .. } => {
                    self.reads.remove(&(id, read));
                }
                Output::FetchEntries { first, last } => {
                    let entries = self.nodes[id as usize - 1].written.entries(first, last);
                    if let Some(node) = self.nodes[id as usize - 1].node.as_mut() {
                        node.entries_fetched(now, entries);
                    }
                }
                Output::SnapshotNeeded { to } => {
                    let sn = &mut self.nodes[id as usize - 1];
                    let snapshot = sn.written.snapshot().clone();
                    if let Some(node) = sn.node.as_mut() {
                        let _ = node.send_snapshot(now, to, snapshot);
                    }
                }
                Output::RoleChanged { role, term, leader } => {
                    self.note(|| format!("node {id}: {role} term {term} leader {leader:?}"));
                    if role == Role::Leader {
                        self.checker.on_leader(now, id, term)?;
                        let node = self.nodes[id as usize - 1].node.as_ref().expect("alive");
                        let first = node.snapshot_index() + 1;
                        self.checker
                            .check_leader_log(now, id, first, |i| node.log_term(i))?;
                    }
                }
            }
        }
        self.check_commits(id)
    }

    fn check_commits(&mut self, id: NodeId) -> Result<(), Violation> {
        let now = self.now;
        let sn = &mut self.nodes[id as usize - 1];
        let Some(node) = sn.node.as_ref() else {
            return Ok(());
        };
        let commit = node.commit_index();
        for index in sn.checked_commit + 1..=commit {
            if let Some(term) = node.log_term(index) {
                self.checker.on_committed(now, id, index, term)?;
            }
        }
        sn.checked_commit = sn.checked_commit.max(commit);
        Ok(())
    }

    fn apply(&mut self, id: NodeId, entries: &[Entry]) -> Result<(), Violation> {
        let now = self.now;
        for entry in entries {
            let sn = &mut self.nodes[id as usize - 1];
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
            if let EntryPayload::Command(command) = entry.payload() {
                sn.machine.apply(entry.index(), command);
            }
            sn.applied = entry.index();
            let state = sn.machine.fingerprint();
            self.checker.on_applied(now, id, entry, state)?;
        }
        let sn = &mut self.nodes[id as usize - 1];
        let Some(node) = sn.node.as_mut() else {
            return Ok(());
        };
        node.applied(now, sn.applied);
        let every = self.cfg.snapshot_every;
        if every > 0 && sn.applied >= sn.written.snapshot().meta().index() + every {
            // Save a snapshot durably (as a real driver would, before compacting).
            if let Ok(meta) = node.snapshot_meta(sn.applied) {
                let snapshot = crate::entry::Snapshot::new(meta, sn.machine.snapshot());
                sn.durable.save_snapshot(snapshot.clone());
                sn.written.save_snapshot(snapshot);
                let _ = node.compact(now, sn.applied);
            }
        }
        Ok(())
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
    let mut reports = Vec::new();
    for seed in seeds {
        match Simulation::new(make(seed)).run() {
            Ok(report) => reports.push(report),
            Err(violation) => {
                let mut traced = Simulation::new(SimConfig {
                    trace: true,
                    ..make(seed)
                });
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
