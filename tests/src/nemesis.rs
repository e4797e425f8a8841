//! The nemesis: faults injected into a running [`Cluster`] on a schedule drawn from a seed.
//!
//! The run is a series of rounds: a calm spell, then one kind of fault held for a while, then
//! a heal. The kinds take turns in a seeded order (each cycle of four rounds has one of each),
//! so even a short run sees them all:
//!
//! - **crash**: between one node and a minority, each either `kill -9` (restarted at the end
//!   of the round, from whatever reached its disk; a kill while writes are in flight can also
//!   leave a torn WAL tail) or SIGSTOP (SIGCONT at the end: a paused leader wakes up still
//!   believing it leads). The first victim is the leader half of the time.
//! - **partition**, one of three shapes: random halves (a majority and a minority); the leader
//!   alone against everyone else; a bridge, where one node sees both sides but the two sides
//!   do not see each other.
//! - **delay**: every message to and from one node waits 20-200 ms (each message draws its own
//!   delay, so they are also reordered).
//! - **torn write**: one node (the leader half of the time) is killed and restarted with
//!   kvd's failpoint armed for a random N in 1..=200: it aborts by itself in the middle of its
//!   N-th WAL write, and is restarted at once without the failpoint, so it must recover from
//!   the torn tail. The round lasts until then (at most 5 s); a node whose failpoint has not
//!   fired by the end of the round is killed and restarted unarmed.
//!
//! At most ⌊(N-1)/2⌋ nodes are down or paused at once, so a quorum always exists somewhere;
//! partitions may isolate anyone (a minority-side leader must step down, and no side may
//! answer what it cannot know). Every fault heals at the end of its round, and every node is
//! healed when the run ends.
//!
//! A run claims each kind of round, so the nemesis makes sure of it: if the run's time is up
//! before each kind had a round and a torn write fired ([`NemesisReport::missing`]), it goes
//! on with the missing kinds, for at most [`OVERTIME`] more (the clients keep running). The
//! shape of a crash (kill or pause) and of a partition is drawn, so not every shape need occur.
//!
//! While it waits, the nemesis watches for nodes whose process ended: a fired torn-write
//! failpoint is restarted and counted; any other exit is a crash it did not cause, noted in the
//! fault log and restarted (the [`Cluster`] records it, and the run fails on it).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvctl::client::Client;
use kvd::faults::RulesFile;

use crate::cluster::{Cluster, NodeState};
use crate::exits::{Exit, ExitCause};
use crate::rng::Rng;

/// How long the nemesis may go on past the run's end until every kind of round has run and a
/// torn write has fired.
pub const OVERTIME: Duration = Duration::from_secs(60);

/// One kind of fault, as counted in a run's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SIGKILL, restarted later.
    Kill,
    /// SIGSTOP, SIGCONT later.
    Pause,
    /// The nodes split into a majority and a minority that cannot talk to each other.
    Partition,
    /// The leader cut off from every other node.
    IsolateLeader,
    /// Two sides that cannot talk to each other, and one node that talks to both.
    Bridge,
    /// Messages to and from one node delayed (and reordered).
    Delay,
    /// A restart with the torn-write failpoint armed.
    TornWrite,
}

impl Fault {
    /// Every kind, in summary order.
    pub const ALL: [Self; 7] = [
        Self::Kill,
        Self::Pause,
        Self::Partition,
        Self::IsolateLeader,
        Self::Bridge,
        Self::Delay,
        Self::TornWrite,
    ];

    /// The name in summaries: `kill`, `pause`, `partition`, `isolate-leader`, `bridge`,
    /// `delay`, `torn-write`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Partition => "partition",
            Self::IsolateLeader => "isolate-leader",
            Self::Bridge => "bridge",
            Self::Delay => "delay",
            Self::TornWrite => "torn-write",
        }
    }
}

/// The kind of a round; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    Crash,
    Partition,
    Delay,
    TornWrite,
}

/// The fault schedule's parameters.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    seed: u64,
    quiet: (Duration, Duration),
    hold: (Duration, Duration),
    delay: (Duration, Duration),
    torn_write_at: (u64, u64),
    torn_write_wait: Duration,
}

impl NemesisConfig {
    /// Defaults for `seed`: 0.5-1.5 s of calm between rounds, faults held 0.5-2.5 s, delays
    /// of 20-200 ms, failpoints armed at WAL write 1-200 and given up to 5 s to fire (the
    /// round ends half a second after the node died).
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            quiet: (Duration::from_millis(500), Duration::from_millis(1500)),
            hold: (Duration::from_millis(500), Duration::from_millis(2500)),
            delay: (Duration::from_millis(20), Duration::from_millis(200)),
            torn_write_at: (1, 200),
            torn_write_wait: Duration::from_secs(5),
        }
    }
}

/// What the nemesis did during a run.
#[derive(Clone, Debug, Default)]
pub struct NemesisReport {
    counts: [usize; Fault::ALL.len()],
    torn_fired: usize,
    log: Vec<String>,
}

impl NemesisReport {
    /// How many faults were injected (one per node crashed, per partition, per delayed node,
    /// per armed failpoint).
    pub fn faults(&self) -> usize {
        self.counts.iter().sum()
    }

    /// How many faults of `kind` were injected.
    pub fn count(&self, kind: Fault) -> usize {
        self.counts[Fault::ALL.iter().position(|&k| k == kind).expect("listed")]
    }

    /// How many armed failpoints fired (the node tore a write and aborted).
    pub fn torn_writes_fired(&self) -> usize {
        self.torn_fired
    }

    /// One line per fault and heal, with the time since the run began.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// What the run lacks of what it claims: a round of each kind (crash, partition, delay,
    /// torn write) and a torn write that fired. Empty when covered.
    pub fn missing(&self) -> Vec<&'static str> {
        self.missing_rounds()
            .into_iter()
            .map(|round| match round {
                Round::Crash => "a crash round (kill or pause)",
                Round::Partition => "a partition round (any shape)",
                Round::Delay => "a delay round",
                Round::TornWrite if self.count(Fault::TornWrite) > 0 => {
                    "a torn write that fired (torn-fired=0)"
                }
                Round::TornWrite => "a torn-write round",
            })
            .collect()
    }

    fn missing_rounds(&self) -> Vec<Round> {
        let seen = |kinds: &[Fault]| kinds.iter().any(|&kind| self.count(kind) > 0);
        let mut missing = Vec::new();
        if !seen(&[Fault::Kill, Fault::Pause]) {
            missing.push(Round::Crash);
        }
        if !seen(&[Fault::Partition, Fault::IsolateLeader, Fault::Bridge]) {
            missing.push(Round::Partition);
        }
        if !seen(&[Fault::Delay]) {
            missing.push(Round::Delay);
        }
        if self.torn_fired == 0 {
            missing.push(Round::TornWrite);
        }
        missing
    }

    fn add(&mut self, kind: Fault) {
        self.counts[Fault::ALL.iter().position(|&k| k == kind).expect("listed")] += 1;
    }
}

impl fmt::Display for NemesisReport {
    /// `faults=9 kill=2 pause=1 partition=1 isolate-leader=1 bridge=0 delay=2 torn-write=2
    /// torn-fired=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faults={}", self.faults())?;
        for kind in Fault::ALL {
            write!(f, " {}={}", kind.name(), self.count(kind))?;
        }
        write!(f, " torn-fired={}", self.torn_fired)
    }
}

/// Injects faults into `cluster` until `until` (and past it, for at most [`OVERTIME`], until
/// every kind of round has run and a torn write fired), then heals every node.
///
/// `probe` is used to find the leader (a health request to each running node).
pub async fn run(
    config: NemesisConfig,
    cluster: Arc<Mutex<Cluster>>,
    probe: Client,
    until: Instant,
) -> NemesisReport {
    let nodes = cluster.lock().expect("not poisoned").len();
    let mut nemesis = Nemesis {
        rng: Rng::new(config.seed),
        config,
        started: Instant::now(),
        nodes,
        cluster,
        probe,
        report: NemesisReport::default(),
        cycle: Vec::new(),
    };
    nemesis.run(until).await;
    nemesis.cluster.lock().expect("not poisoned").heal();
    nemesis.report
}

struct Nemesis {
    config: NemesisConfig,
    rng: Rng,
    started: Instant,
    nodes: usize,
    cluster: Arc<Mutex<Cluster>>,
    probe: Client,
    report: NemesisReport,
    /// The kinds left in the current cycle.
    cycle: Vec<Round>,
}

impl Nemesis {
    async fn run(&mut self, until: Instant) {
        if self.nodes < 3 {
            return;
        }
        let give_up = until + OVERTIME;
        loop {
            let quiet = self.rng.duration(self.config.quiet.0, self.config.quiet.1);
            let next = Instant::now() + quiet;
            let overtime = next >= until;
            if overtime && (self.report.missing_rounds().is_empty() || next >= give_up) {
                break;
            }
            self.hold_until(next).await;
            let round = match self.report.missing_rounds().first() {
                Some(&missing) if overtime => missing,
                _ => self.next_round(),
            };
            if overtime {
                self.note(format!(
                    "overtime: {round:?} round, a kind the run still lacks"
                ));
            }
            let mut hold = self.rng.duration(self.config.hold.0, self.config.hold.1);
            match round {
                Round::Crash => self.crash().await,
                Round::Partition => self.partition().await,
                Round::Delay => self.delay(),
                Round::TornWrite => {
                    self.torn_write().await;
                    hold = self.config.torn_write_wait;
                }
            }
            let mut end = Instant::now() + hold;
            if !overtime {
                end = end.min(until);
            }
            self.hold_until(end).await;
            self.heal();
        }
    }

    fn stamp(&self) -> String {
        format!("{:>7.3}s", self.started.elapsed().as_secs_f64())
    }

    fn note(&mut self, line: String) {
        let line = format!("{} {line}", self.stamp());
        self.report.log.push(line);
    }

    /// The next kind in a seeded order that has each kind once per cycle.
    fn next_round(&mut self) -> Round {
        if self.cycle.is_empty() {
            self.cycle = vec![
                Round::Crash,
                Round::Partition,
                Round::Delay,
                Round::TornWrite,
            ];
            // Fisher-Yates, drawn from the seed.
            for i in (1..self.cycle.len()).rev() {
                let j = self.rng.index(i + 1);
                self.cycle.swap(i, j);
            }
        }
        self.cycle.pop().expect("refilled above")
    }

    async fn leader(&self) -> Option<usize> {
        leader(&self.cluster, &self.probe).await
    }

    /// Between one node and a minority: kill or pause each.
    async fn crash(&mut self) {
        let max_down = (self.nodes - 1) / 2;
        let victims_wanted = 1 + self.rng.index(max_down);
        let mut victims = Vec::new();
        let mut leader_hit = None;
        if self.rng.percent(50)
            && let Some(leader) = self.leader().await
        {
            victims.push(leader);
            leader_hit = Some(leader);
        }
        while victims.len() < victims_wanted {
            let candidate = self.rng.index(self.nodes);
            if !victims.contains(&candidate) {
                victims.push(candidate);
            }
        }
        for victim in victims {
            let fault = if self.rng.percent(50) {
                Fault::Kill
            } else {
                Fault::Pause
            };
            let killed = {
                let mut cluster = self.cluster.lock().expect("not poisoned");
                match fault {
                    Fault::Kill => cluster.kill(victim),
                    _ => {
                        cluster.pause(victim);
                        None
                    }
                }
            };
            if let Some(exit) = killed {
                self.on_exit(victim, &exit);
            }
            self.report.add(fault);
            let role = if leader_hit == Some(victim) {
                " (leader)"
            } else {
                ""
            };
            self.note(format!("{} node {}{role}", fault.name(), victim + 1));
        }
    }

    /// Cuts the cluster along one of three shapes.
    async fn partition(&mut self) {
        let mut order: Vec<usize> = (0..self.nodes).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.index(i + 1);
            order.swap(i, j);
        }
        let bridge = order[0];
        let (kind, sides): (Fault, Vec<Vec<usize>>) = match self.rng.below(3) {
            0 => {
                let minority = order.split_off(self.nodes.div_ceil(2));
                (Fault::Partition, vec![order, minority])
            }
            1 => {
                let leader = self.leader().await.unwrap_or(order[0]);
                let rest = (0..self.nodes).filter(|&i| i != leader).collect();
                (Fault::IsolateLeader, vec![vec![leader], rest])
            }
            _ => {
                // `bridge` (order[0]) stays connected to both sides.
                let mut left = order.split_off(1);
                let right = left.split_off(left.len() / 2);
                (Fault::Bridge, vec![left, right])
            }
        };
        {
            let cluster = self.cluster.lock().expect("not poisoned");
            for (i, blocked) in blocked_peers(self.nodes, &sides).iter().enumerate() {
                let rules = blocked
                    .iter()
                    .fold(RulesFile::new(), |rules, &j| rules.block(cluster.name(j)));
                cluster.set_rules(i, &rules);
            }
        }
        self.report.add(kind);
        let shown: Vec<String> = sides
            .iter()
            .map(|side| {
                let names: Vec<String> = side.iter().map(|i| (i + 1).to_string()).collect();
                format!("{{{}}}", names.join(","))
            })
            .collect();
        let bridge = if kind == Fault::Bridge {
            format!(" bridged by node {}", bridge + 1)
        } else {
            String::new()
        };
        self.note(format!("{} {}{bridge}", kind.name(), shown.join(" | ")));
    }

    /// Slows every link of one node.
    fn delay(&mut self) {
        let node = self.rng.index(self.nodes);
        let (low, high) = self.config.delay;
        let a = self.rng.duration(low, high);
        let b = self.rng.duration(low, high);
        let (min, max) = (a.min(b), a.max(b));
        {
            let cluster = self.cluster.lock().expect("not poisoned");
            let mut own = RulesFile::new();
            for other in (0..self.nodes).filter(|&j| j != node) {
                own = own.delay(cluster.name(other), min, max);
                cluster.set_rules(other, &RulesFile::new().delay(cluster.name(node), min, max));
            }
            cluster.set_rules(node, &own);
        }
        self.report.add(Fault::Delay);
        self.note(format!(
            "delay node {} {}-{} ms",
            node + 1,
            min.as_millis(),
            max.as_millis()
        ));
    }

    /// Restarts one node with the torn-write failpoint armed.
    async fn torn_write(&mut self) {
        let leader = if self.rng.percent(50) {
            self.leader().await
        } else {
            None
        };
        let node = leader.unwrap_or_else(|| self.rng.index(self.nodes));
        let (low, high) = self.config.torn_write_at;
        let n = low + self.rng.below(high - low + 1);
        let killed = {
            let mut cluster = self.cluster.lock().expect("not poisoned");
            let killed = cluster.kill(node);
            cluster.restart_with_torn_write(node, n);
            killed
        };
        if let Some(exit) = killed {
            self.on_exit(node, &exit);
        }
        self.report.add(Fault::TornWrite);
        let role = if leader.is_some() { " (leader)" } else { "" };
        self.note(format!(
            "torn-write node {}{role} at WAL write {n}",
            node + 1
        ));
    }

    /// Waits until `end`, watching for processes that ended: a node whose torn-write
    /// failpoint fired is restarted unarmed, and once the last armed node has fired the round
    /// ends half a second later; a node that crashed is noted and restarted.
    async fn hold_until(&mut self, mut end: Instant) {
        loop {
            let exits = self.cluster.lock().expect("not poisoned").poll_exits();
            let mut any_fired = false;
            for (node, exit) in &exits {
                any_fired |= exit.cause() == ExitCause::TornWrite;
                self.on_exit(*node, exit);
                self.cluster.lock().expect("not poisoned").restart(*node);
            }
            if any_fired {
                let cluster = self.cluster.lock().expect("not poisoned");
                if (0..self.nodes).all(|i| cluster.armed(i).is_none()) {
                    end = end.min(Instant::now() + Duration::from_millis(500));
                }
            }
            let now = Instant::now();
            if now >= end {
                return;
            }
            tokio::time::sleep((end - now).min(Duration::from_millis(20))).await;
        }
    }

    /// Counts a fired failpoint, and notes any exit the nemesis did not plan (the cluster
    /// keeps the record that fails the run).
    fn on_exit(&mut self, node: usize, exit: &Exit) {
        match exit.cause() {
            ExitCause::TornWrite => {
                self.report.torn_fired += 1;
                self.note(format!(
                    "node {} tore a WAL write and died ({}); restarted",
                    node + 1,
                    exit.ended()
                ));
            }
            ExitCause::Unexpected => self.note(format!(
                "node {} crashed by itself ({}), a fault the nemesis did not inject; restarted",
                node + 1,
                exit.ended()
            )),
            ExitCause::Killed | ExitCause::Stopped => {}
        }
    }

    /// Ends the round: network healed, nodes resumed and restarted, failpoints disarmed.
    fn heal(&mut self) {
        let (ended, disarmed) = {
            let mut cluster = self.cluster.lock().expect("not poisoned");
            let mut ended = cluster.poll_exits();
            let armed: Vec<usize> = (0..self.nodes)
                .filter(|&i| cluster.armed(i).is_some())
                .collect();
            let mut disarmed = Vec::new();
            for i in armed {
                // It may have fired just now: then its exit says so.
                match cluster.kill(i) {
                    Some(exit) if exit.cause() != ExitCause::Killed => ended.push((i, exit)),
                    _ => disarmed.push(i),
                }
            }
            cluster.heal();
            (ended, disarmed)
        };
        for (node, exit) in &ended {
            self.on_exit(*node, exit);
        }
        for node in disarmed {
            self.note(format!(
                "node {}'s failpoint did not fire: killed and restarted",
                node + 1
            ));
        }
        self.note("heal".to_string());
    }
}

/// For each of `nodes` nodes, the peers it must block so that no two `sides` can talk (nodes
/// on no side, such as a bridge, block nobody).
fn blocked_peers(nodes: usize, sides: &[Vec<usize>]) -> Vec<BTreeSet<usize>> {
    let mut blocked = vec![BTreeSet::new(); nodes];
    for (a, side) in sides.iter().enumerate() {
        for other in &sides[a + 1..] {
            for &i in side {
                for &j in other {
                    blocked[i].insert(j);
                    blocked[j].insert(i);
                }
            }
        }
    }
    blocked
}

/// The running node that says it leads, with the highest term; `None` if none answers.
pub async fn leader(cluster: &Mutex<Cluster>, probe: &Client) -> Option<usize> {
    let up: Vec<(usize, String)> = {
        let cluster = cluster.lock().expect("not poisoned");
        (0..cluster.len())
            .filter(|&i| cluster.state(i) == NodeState::Up)
            .map(|i| (i, cluster.endpoint(i)))
            .collect()
    };
    let mut best: Option<(u64, usize)> = None;
    for (i, endpoint) in up {
        if let Ok(health) = probe.health(&endpoint).await
            && health.is_leader
            && best.is_none_or(|(term, _)| health.term > term)
        {
            best = Some((health.term, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nodes: &[usize]) -> BTreeSet<usize> {
        nodes.iter().copied().collect()
    }

    #[test]
    fn a_partition_blocks_exactly_the_links_across_it() {
        let blocked = blocked_peers(5, &[vec![0, 3, 4], vec![1, 2]]);
        assert_eq!(blocked[0], set(&[1, 2]));
        assert_eq!(blocked[3], set(&[1, 2]));
        assert_eq!(blocked[1], set(&[0, 3, 4]));
        assert_eq!(blocked[2], set(&[0, 3, 4]));
    }

    #[test]
    fn a_bridge_blocks_nothing_and_is_blocked_by_no_one() {
        // Node 2 bridges {0, 1} and {3, 4}.
        let blocked = blocked_peers(5, &[vec![0, 1], vec![3, 4]]);
        assert!(blocked[2].is_empty());
        assert_eq!(blocked[0], set(&[3, 4]));
        assert_eq!(blocked[4], set(&[0, 1]));
        assert!(blocked.iter().all(|b| !b.contains(&2)));
    }

    #[test]
    fn the_summary_names_every_kind() {
        let mut report = NemesisReport::default();
        report.add(Fault::Kill);
        report.add(Fault::Bridge);
        report.add(Fault::TornWrite);
        report.torn_fired = 1;
        assert_eq!(
            report.to_string(),
            "faults=3 kill=1 pause=0 partition=0 isolate-leader=0 bridge=1 delay=0 torn-write=1 \
             torn-fired=1"
        );
    }

    #[test]
    fn a_run_lacks_each_kind_of_round_until_it_had_one() {
        let mut report = NemesisReport::default();
        assert_eq!(report.missing().len(), 4);
        report.add(Fault::Pause);
        report.add(Fault::Bridge);
        report.add(Fault::Delay);
        assert_eq!(report.missing(), ["a torn-write round"]);
        report.add(Fault::TornWrite);
        assert_eq!(report.missing(), ["a torn write that fired (torn-fired=0)"]);
        report.torn_fired = 1;
        assert!(report.missing().is_empty());
        let mut kills_only = NemesisReport::default();
        kills_only.add(Fault::Kill);
        kills_only.add(Fault::IsolateLeader);
        assert_eq!(
            kills_only.missing(),
            ["a delay round", "a torn-write round"]
        );
    }
}
