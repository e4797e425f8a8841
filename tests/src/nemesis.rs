//! The nemesis: faults injected into a running [`Cluster`] on a schedule drawn from a seed.
//!
//! Each round waits a while, then hurts between one node and a minority of the cluster, each
//! either with `kill -9` (restarted at the end of the round, from whatever reached its disk:
//! a kill while writes are in flight leaves a torn WAL tail, so this is also the "crash in
//! the middle of a WAL write" fault) or with SIGSTOP (SIGCONT at the end of the round: a
//! paused leader wakes up still believing it leads). The first victim is the leader half of
//! the time. At most ⌊(N-1)/2⌋ nodes are down or paused at once, so a quorum always remains.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvctl::client::Client;

use crate::cluster::{Cluster, NodeState};
use crate::rng::Rng;

/// What the nemesis did to one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, restarted later.
    Kill,
    /// SIGSTOP, SIGCONT later.
    Pause,
}

/// The fault schedule's parameters.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    seed: u64,
    quiet: (Duration, Duration),
    hold: (Duration, Duration),
}

impl NemesisConfig {
    /// Defaults for `seed`: 0.5-1.5 s of calm between rounds, faults held 0.5-2.5 s.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            quiet: (Duration::from_millis(500), Duration::from_millis(1500)),
            hold: (Duration::from_millis(500), Duration::from_millis(2500)),
        }
    }
}

/// What the nemesis did during a run.
#[derive(Clone, Debug, Default)]
pub struct NemesisReport {
    faults: usize,
    log: Vec<String>,
}

impl NemesisReport {
    /// How many faults were injected (one per node hurt).
    pub fn faults(&self) -> usize {
        self.faults
    }

    /// One line per fault and heal, with the time since the run began.
    pub fn log(&self) -> &[String] {
        &self.log
    }
}

/// Injects faults into `cluster` until `until`, then heals every node.
///
/// `probe` is used to find the leader (a health request to each running node).
pub async fn run(
    config: NemesisConfig,
    cluster: Arc<Mutex<Cluster>>,
    probe: Client,
    until: Instant,
) -> NemesisReport {
    let started = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut report = NemesisReport::default();
    let nodes = cluster.lock().expect("not poisoned").len();
    let max_down = (nodes - 1) / 2;
    let stamp = || format!("{:>7.3}s", started.elapsed().as_secs_f64());
    loop {
        let quiet = rng.duration(config.quiet.0, config.quiet.1);
        if Instant::now() + quiet >= until || max_down == 0 {
            break;
        }
        tokio::time::sleep(quiet).await;
        let victims_wanted = 1 + rng.index(max_down);
        let mut victims = Vec::new();
        let mut leader_hit = None;
        if rng.percent(50)
            && let Some(leader) = leader(&cluster, &probe).await
        {
            victims.push(leader);
            leader_hit = Some(leader);
        }
        while victims.len() < victims_wanted {
            let candidate = rng.index(nodes);
            if !victims.contains(&candidate) {
                victims.push(candidate);
            }
        }
        {
            let mut cluster = cluster.lock().expect("not poisoned");
            for &victim in &victims {
                let fault = if rng.percent(50) {
                    Fault::Kill
                } else {
                    Fault::Pause
                };
                match fault {
                    Fault::Kill => cluster.kill(victim),
                    Fault::Pause => cluster.pause(victim),
                }
                report.faults += 1;
                let role = if leader_hit == Some(victim) {
                    " (leader)"
                } else {
                    ""
                };
                report
                    .log
                    .push(format!("{} {fault:?} node {}{role}", stamp(), victim + 1));
            }
        }
        let hold = rng.duration(config.hold.0, config.hold.1);
        let remaining = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(hold.min(remaining)).await;
        cluster.lock().expect("not poisoned").heal();
        report.log.push(format!("{} heal", stamp()));
    }
    cluster.lock().expect("not poisoned").heal();
    report
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
