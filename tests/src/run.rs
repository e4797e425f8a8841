//! One chaos run: start a cluster, run concurrent clients while the nemesis hurts it, heal,
//! read every key once more, check the history, and print one summary line.
//!
//! Besides the checker's verdict, a run reports [`RunReport::problems`]: a node process that
//! ended in a way the harness did not cause (see [`crate::exits`]), a panic in any node's
//! log, or a healed cluster whose nodes do not all come to apply everything the leader
//! committed.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvctl::client::{Client, ClientConfig, Consistency};
use kvctl::proto::admin::StatusResponse;
use tokio::sync::watch;

use crate::cluster::{Cluster, NodeState, Transport};
use crate::exits::panic_lines;
use crate::history::{Recorder, Tally};
use crate::linearizability::{self, Command, Outcome, Verdict};
use crate::nemesis::{self, NemesisConfig, NemesisReport};
use crate::rng::Rng;
use crate::settings::{
    ChaosSettings, DISTRUST_FORWARDED_ENV, INJECT_ENV, Inject, MINUTES_ENV, SEED_ENV,
};
use crate::workload::Worker;

/// States the checker may explore per key before answering "unknown".
const CHECK_BUDGET: usize = 300_000;

/// How long each configuration runs unless `CHAOS_MINUTES` says otherwise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);

/// How long the healed cluster has to bring every node to the leader's commit index.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// What one run does.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    nodes: usize,
    transport: Transport,
    duration: Duration,
    clients: usize,
    keys: usize,
    seed: u64,
    faults: bool,
    trust_forwarded: bool,
    inject: Option<Inject>,
}

impl ChaosConfig {
    /// `nodes` nodes over `transport` for `duration`, 5 clients over 5 keys, with faults,
    /// a seed from the clock, no injected bug.
    pub fn new(nodes: usize, transport: Transport, duration: Duration) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            nodes,
            transport,
            duration,
            clients: 5,
            keys: 5,
            seed,
            faults: true,
            trust_forwarded: true,
            inject: None,
        }
    }

    /// [`ChaosConfig::new`] as the environment asks: `CHAOS_MINUTES` (else
    /// [`DEFAULT_DURATION`]), `CHAOS_SEED`, `CHAOS_INJECT`, `CHAOS_DISTRUST_FORWARDED`.
    pub fn from_settings(nodes: usize, transport: Transport, settings: &ChaosSettings) -> Self {
        let config = Self::new(nodes, transport, settings.duration(DEFAULT_DURATION))
            .trust_forwarded(!settings.distrust_forwarded())
            .inject(settings.inject());
        match settings.seed() {
            Some(seed) => config.seed(seed),
            None => config,
        }
    }

    /// Injects `bug` (a negative control: the run must then fail).
    pub fn inject(mut self, bug: Option<Inject>) -> Self {
        self.inject = bug;
        self
    }

    /// The command that replays this run as test `test` of `tests/chaos.rs`: same seed,
    /// duration, injected bug and build profile.
    pub fn replay_command(&self, test: &str) -> String {
        let minutes = self.duration.as_secs_f64() / 60.0;
        let mut vars = vec![
            format!("{SEED_ENV}={}", self.seed),
            format!("{MINUTES_ENV}={minutes}"),
        ];
        if let Some(bug) = self.inject {
            vars.push(format!("{INJECT_ENV}={bug}"));
        }
        if !self.trust_forwarded {
            vars.push(format!("{DISTRUST_FORWARDED_ENV}=1"));
        }
        let profile = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        format!(
            "{} cargo test{profile} -p tests --test chaos {test}",
            vars.join(" ")
        )
    }

    /// Uses `seed` for the workload and the fault schedule.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Runs without the nemesis.
    pub fn without_faults(mut self) -> Self {
        self.faults = false;
        self
    }

    /// Records answers relayed by a forwarding node as acknowledged (see
    /// [`Worker::trust_forwarded`]); on unless `CHAOS_DISTRUST_FORWARDED` is set.
    pub fn trust_forwarded(mut self, trust: bool) -> Self {
        self.trust_forwarded = trust;
        self
    }

    /// `3-node-tcp`: names the configuration in summaries and report files.
    pub fn label(&self) -> String {
        format!("{}-node-{}", self.nodes, self.transport.as_str())
    }
}

/// What a run found.
#[derive(Debug)]
pub struct RunReport {
    label: String,
    seed: u64,
    tally: Tally,
    nemesis: NemesisReport,
    verdict: Verdict,
    report: Option<PathBuf>,
    problems: Vec<String>,
}

impl RunReport {
    /// What failed besides the history: node processes that ended in a way the harness did
    /// not cause, panics in node logs, a healed cluster that did not converge. Each is a
    /// failure of the run.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The checker's verdict on the whole history.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Operations by outcome.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The faults injected.
    pub fn nemesis(&self) -> &NemesisReport {
        &self.nemesis
    }

    /// Where the offending key's history was written, on a violation.
    pub fn report_path(&self) -> Option<&PathBuf> {
        self.report.as_ref()
    }

    /// `chaos: <config> seed=<s> ops=<n> ok=<n> unknown=<n> failed=<n> faults=<n>
    /// <kind>=<n>... torn-fired=<n> verdict=<v>` (the kinds are [`nemesis::Fault::ALL`]).
    pub fn summary_line(&self) -> String {
        format!(
            "chaos: {} seed={} ops={} ok={} unknown={} failed={} {} verdict={}",
            self.label,
            self.seed,
            self.tally.operations,
            self.tally.ok,
            self.tally.unknown,
            self.tally.failed,
            self.nemesis,
            self.verdict.label()
        )
    }
}

/// `target/chaos/`: where reports and summaries go (next to the test executable's profile
/// directory; the system temporary directory if that cannot be found).
pub fn report_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("chaos")))
        .unwrap_or_else(|| std::env::temp_dir().join("chaos"))
}

/// Prints `line` on the test's stderr without the test harness capturing it (so summary
/// lines show in CI logs of passing runs) and appends it to `target/chaos/summary.log`.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
    let dir = report_dir();
    if std::fs::create_dir_all(&dir).is_ok()
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("summary.log"))
    {
        let _ = writeln!(file, "{line}");
    }
}

/// Writes a violation's report (and the nodes' logs) under [`report_dir`] and prints its
/// excerpt; returns the report's path.
pub fn report_violation(
    verdict: &Verdict,
    name: &str,
    cluster: Option<&Cluster>,
) -> Option<PathBuf> {
    let Verdict::Violation(violation) = verdict else {
        return None;
    };
    let dir = report_dir();
    let path = violation.write_to(&dir, name).ok();
    if let Some(cluster) = cluster {
        let _ = cluster.copy_logs(&dir, name);
    }
    announce(&format!(
        "{}(history of the key written to {})",
        violation.excerpt(),
        path.as_ref()
            .map_or("nowhere: write failed".into(), |p| p.display().to_string())
    ));
    path
}

/// Runs `config` to the end and checks the history, then the nodes (see
/// [`RunReport::problems`]).
///
/// # Panics
///
/// If the cluster elects no leader within 30 s at the start, or does not answer a read of
/// every key within 60 s after the faults stop (the cluster must recover once healed).
pub async fn run(config: ChaosConfig) -> RunReport {
    let cluster = Arc::new(Mutex::new(Cluster::start(config.nodes, config.transport)));
    let endpoints = cluster.lock().expect("not poisoned").endpoints();
    let probe = Client::new(
        ClientConfig::new(endpoints.clone())
            .client_id("")
            .timeout(Duration::from_millis(500))
            .attempt_timeout(Duration::from_millis(300)),
    )
    .expect("probe client");
    wait_for_leader(&cluster, &probe, &config).await;
    let injected = inject(&cluster, &config);

    let recorder = Recorder::new();
    let keys: Vec<String> = (0..config.keys).map(|k| format!("k{k}")).collect();
    let workers_client = Client::new(
        ClientConfig::new(endpoints.clone())
            .timeout(Duration::from_millis(1000))
            .attempt_timeout(Duration::from_millis(400))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .expect("client");
    let until = Instant::now() + config.duration;
    let (stop_clients, clients_stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for worker in 0..config.clients as u64 {
        let client = workers_client
            .with_new_connections()
            .expect("client")
            .with_client_id(format!("chaos-{}-{worker}", config.seed));
        let seed = config.seed.wrapping_add(worker + 1);
        let task = Worker::new(worker, keys.clone(), Consistency::Linearizable, seed)
            .trust_forwarded(config.trust_forwarded);
        let stop = clients_stop.clone();
        tasks.push(tokio::spawn(task.run(client, recorder.clone(), stop)));
    }
    // The clients run as long as the nemesis, which may go past `until` (see `nemesis`).
    let nemesis_report = if config.faults {
        nemesis::run(
            NemesisConfig::new(config.seed),
            Arc::clone(&cluster),
            probe.clone(),
            until,
        )
        .await
    } else {
        tokio::time::sleep_until(until.into()).await;
        NemesisReport::default()
    };
    let _ = stop_clients.send(true);
    for task in tasks {
        task.await.expect("client task");
    }
    cluster.lock().expect("not poisoned").heal();
    final_reads(&cluster, &endpoints, &keys, &recorder, &config).await;
    let mut problems = Vec::new();
    if let Err(problem) = converge(&cluster, &probe).await {
        problems.push(problem);
    }
    problems.extend(node_problems(&cluster));

    let history = recorder.operations();
    let verdict = linearizability::check(&history, CHECK_BUDGET);
    let name = format!("{}-seed{}", config.label(), config.seed);
    let report = {
        let cluster = cluster.lock().expect("not poisoned");
        if !problems.is_empty() && cluster.copy_logs(&report_dir(), &name).is_ok() {
            problems.push(format!(
                "(the nodes' logs are in {}/{name}-node-*.log)",
                report_dir().display()
            ));
        }
        report_violation(&verdict, &name, Some(&cluster))
    };
    let fault_log: Vec<String> = injected
        .into_iter()
        .chain(nemesis_report.log().iter().cloned())
        .collect();
    let _ = std::fs::create_dir_all(report_dir());
    let _ = std::fs::write(
        report_dir().join(format!("{name}.faults")),
        fault_log.join("\n"),
    );
    if report.is_some() || !problems.is_empty() {
        announce(&format!("faults: {}", fault_log.join("; ")));
    }
    let run_report = RunReport {
        label: config.label(),
        seed: config.seed,
        tally: Tally::of(&history),
        nemesis: nemesis_report,
        verdict,
        report,
        problems,
    };
    announce(&run_report.summary_line());
    run_report
}

/// Arms the bug `config` injects, if any; returns the lines for the fault log.
fn inject(cluster: &Mutex<Cluster>, config: &ChaosConfig) -> Vec<String> {
    let Some(bug) = config.inject else {
        return Vec::new();
    };
    let mut rng = Rng::new(config.seed ^ 0x1_4a3c_7ed5);
    match bug {
        Inject::Panic => {
            let node = rng.index(config.nodes);
            // Early enough to fire in the shortest run, whatever the load.
            let n = 20 + rng.below(181);
            let mut cluster = cluster.lock().expect("not poisoned");
            cluster.arm_panic(node, n);
            cluster.kill(node);
            cluster.restart(node);
            vec![format!(
                "  0.000s {INJECT_ENV}={bug}: node {} restarted with {}={n}",
                node + 1,
                kvd::faults::PANIC_ENV
            )]
        }
    }
}

/// Exits the harness did not cause and panics in the nodes' logs, one line each (an exit
/// with the last lines of its log).
fn node_problems(cluster: &Mutex<Cluster>) -> Vec<String> {
    let mut cluster = cluster.lock().expect("not poisoned");
    cluster.poll_exits();
    let mut problems: Vec<String> = cluster
        .exits()
        .iter()
        .filter(|exit| !exit.expected())
        .map(ToString::to_string)
        .collect();
    for i in 0..cluster.len() {
        let log = cluster.log(i);
        problems.extend(
            panic_lines(&log)
                .into_iter()
                .map(|line| format!("{}'s log reports a panic: {line}", cluster.name(i))),
        );
    }
    problems
}

/// Waits (at most [`CONVERGE_WITHIN`]) until every node is up and has applied everything the
/// leader committed, asking each for its admin status; the reason and every node's status
/// if they do not.
async fn converge(cluster: &Mutex<Cluster>, probe: &Client) -> Result<(), String> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let nodes: Vec<(String, String, bool)> = {
            let mut cluster = cluster.lock().expect("not poisoned");
            cluster.poll_exits();
            (0..cluster.len())
                .map(|i| {
                    let up = cluster.state(i) == NodeState::Up;
                    (cluster.name(i), cluster.endpoint(i), up)
                })
                .collect()
        };
        let mut statuses = Vec::new();
        for (name, endpoint, up) in nodes {
            let status = if up {
                probe
                    .node_status(&endpoint)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                Err("down".to_string())
            };
            statuses.push((name, status));
        }
        match convergence(&statuses) {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() > deadline => {
                let table: Vec<String> = statuses
                    .iter()
                    .map(|(name, status)| match status {
                        Ok(s) => format!(
                            "    {name}: {} term={} commit={} applied={}",
                            s.role, s.term, s.commit_index, s.applied_index
                        ),
                        Err(e) => format!("    {name}: {e}"),
                    })
                    .collect();
                return Err(format!(
                    "the healed cluster did not converge within {CONVERGE_WITHIN:?}: {why}\n{}",
                    table.join("\n")
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether every node answered and has `applied = commit = ` the leader's commit (the leader
/// being the node that says it leads in the highest term); if not, why.
pub fn convergence(statuses: &[(String, Result<StatusResponse, String>)]) -> Result<(), String> {
    for (name, status) in statuses {
        if let Err(e) = status {
            return Err(format!("{name} did not answer: {e}"));
        }
    }
    let answers = statuses
        .iter()
        .filter_map(|(name, status)| Some((name, status.as_ref().ok()?)));
    let Some((leader, leading)) = answers
        .clone()
        .filter(|(_, s)| s.role == "leader")
        .max_by_key(|(_, s)| s.term)
    else {
        return Err("no node leads".to_string());
    };
    let commit = leading.commit_index;
    for (name, s) in answers {
        if s.commit_index != commit || s.applied_index != commit {
            return Err(format!(
                "{name} has commit {} and applied {}, the leader ({leader}) commit {commit}",
                s.commit_index, s.applied_index
            ));
        }
    }
    Ok(())
}

async fn wait_for_leader(cluster: &Arc<Mutex<Cluster>>, probe: &Client, config: &ChaosConfig) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while nemesis::leader(cluster, probe).await.is_none() {
        if Instant::now() > deadline {
            let cluster = cluster.lock().expect("not poisoned");
            let name = format!("{}-seed{}-no-leader", config.label(), config.seed);
            let _ = cluster.copy_logs(&report_dir(), &name);
            panic!(
                "{}: no leader within 30 s (logs in {})",
                name,
                report_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One linearizable read of every key after healing: the cluster must answer again, and the
/// last writes' effects are checked too.
async fn final_reads(
    cluster: &Arc<Mutex<Cluster>>,
    endpoints: &[String],
    keys: &[String],
    recorder: &Recorder,
    config: &ChaosConfig,
) {
    let reader = Client::new(
        ClientConfig::new(endpoints.to_vec())
            .client_id("")
            .timeout(Duration::from_secs(5)),
    )
    .expect("client");
    let client_id = config.clients as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in keys {
        loop {
            let invoked = recorder.now_ns();
            match reader.get(key, Consistency::Linearizable).await {
                Ok(answer) => {
                    let found = answer
                        .value
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                    let command = Command::Get {
                        key: key.clone(),
                        found,
                    };
                    recorder.record(client_id, command, invoked, Outcome::Ok);
                    break;
                }
                Err(error) if Instant::now() > deadline => {
                    let cluster = cluster.lock().expect("not poisoned");
                    let name = format!("{}-seed{}-no-recovery", config.label(), config.seed);
                    let _ = cluster.copy_logs(&report_dir(), &name);
                    panic!(
                        "{name}: the healed cluster did not answer a read of {key} within 60 s: \
                         {error} (logs in {})",
                        report_dir().display()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_command_carries_seed_duration_and_bug() {
        let config = ChaosConfig::new(3, Transport::Tcp, Duration::from_secs(15)).seed(42);
        let profile = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        assert_eq!(
            config.replay_command("three_nodes_tcp"),
            format!(
                "CHAOS_SEED=42 CHAOS_MINUTES=0.25 cargo test{profile} -p tests --test chaos \
                 three_nodes_tcp"
            )
        );
        let settings = ChaosSettings::from_lookup(|name| match name {
            "CHAOS_SEED" => Some("7".into()),
            "CHAOS_MINUTES" => Some("2".into()),
            "CHAOS_INJECT" => Some("panic".into()),
            "CHAOS_DISTRUST_FORWARDED" => Some("1".into()),
            _ => None,
        })
        .unwrap();
        let config = ChaosConfig::from_settings(5, Transport::Quic, &settings);
        assert_eq!(
            config.replay_command("five_nodes_quic"),
            format!(
                "CHAOS_SEED=7 CHAOS_MINUTES=2 CHAOS_INJECT=panic CHAOS_DISTRUST_FORWARDED=1 \
                 cargo test{profile} -p tests --test chaos five_nodes_quic"
            )
        );
    }

    fn status(role: &str, term: u64, commit: u64, applied: u64) -> Result<StatusResponse, String> {
        Ok(StatusResponse {
            role: role.into(),
            term,
            commit_index: commit,
            applied_index: applied,
            ..StatusResponse::default()
        })
    }

    fn nodes(
        statuses: Vec<Result<StatusResponse, String>>,
    ) -> Vec<(String, Result<StatusResponse, String>)> {
        statuses
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("node-{}", i + 1), s))
            .collect()
    }

    #[test]
    fn converged_means_everyone_applied_the_leaders_commit() {
        let converged = nodes(vec![
            status("follower", 3, 40, 40),
            status("leader", 3, 40, 40),
            status("follower", 3, 40, 40),
        ]);
        assert_eq!(convergence(&converged), Ok(()));
        let cases = [
            (
                vec![status("leader", 3, 40, 40), status("follower", 3, 40, 39)],
                "node-2 has commit 40 and applied 39",
            ),
            (
                vec![status("leader", 3, 40, 40), status("follower", 3, 38, 38)],
                "node-2 has commit 38",
            ),
            (
                vec![status("follower", 3, 40, 40), status("follower", 3, 40, 40)],
                "no node leads",
            ),
            (
                vec![status("leader", 3, 40, 40), Err("down".into())],
                "node-2 did not answer: down",
            ),
            // A deposed leader that has not heard of the new term is not the reference.
            (
                vec![status("leader", 2, 30, 30), status("leader", 3, 40, 40)],
                "node-1 has commit 30",
            ),
        ];
        for (statuses, why) in cases {
            let error = convergence(&nodes(statuses)).unwrap_err();
            assert!(error.contains(why), "{error} (expected {why:?})");
        }
    }
}
