//! One chaos run: start a cluster, run concurrent clients while the nemesis hurts it, heal,
//! read every key once more, check the history, and print one summary line.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvctl::client::{Client, ClientConfig, Consistency};

use crate::cluster::{Cluster, Transport};
use crate::history::{Recorder, Tally};
use crate::linearizability::{self, Command, Outcome, Verdict};
use crate::nemesis::{self, NemesisConfig, NemesisReport};
use crate::workload::Worker;

/// States the checker may explore per key before answering "unknown".
const CHECK_BUDGET: usize = 300_000;

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
}

impl ChaosConfig {
    /// `nodes` nodes over `transport` for `duration`, 5 clients over 5 keys, with faults,
    /// the seed from `CHAOS_SEED` or else the clock.
    pub fn new(nodes: usize, transport: Transport, duration: Duration) -> Self {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        Self {
            nodes,
            transport,
            duration,
            clients: 5,
            keys: 5,
            seed,
            faults: true,
            trust_forwarded: std::env::var_os("CHAOS_DISTRUST_FORWARDED").is_none(),
        }
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
}

impl RunReport {
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

/// Runs `config` to the end and checks the history.
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
    let mut tasks = Vec::new();
    for worker in 0..config.clients as u64 {
        let client = workers_client
            .with_new_connections()
            .expect("client")
            .with_client_id(format!("chaos-{}-{worker}", config.seed));
        let seed = config.seed.wrapping_add(worker + 1);
        let task = Worker::new(worker, keys.clone(), Consistency::Linearizable, seed)
            .trust_forwarded(config.trust_forwarded);
        tasks.push(tokio::spawn(task.run(client, recorder.clone(), until)));
    }
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
    for task in tasks {
        task.await.expect("client task");
    }
    cluster.lock().expect("not poisoned").heal();
    final_reads(&cluster, &endpoints, &keys, &recorder, &config).await;

    let history = recorder.operations();
    let verdict = linearizability::check(&history, CHECK_BUDGET);
    let name = format!("{}-seed{}", config.label(), config.seed);
    let report = {
        let cluster = cluster.lock().expect("not poisoned");
        report_violation(&verdict, &name, Some(&cluster))
    };
    let _ = std::fs::create_dir_all(report_dir());
    let _ = std::fs::write(
        report_dir().join(format!("{name}.faults")),
        nemesis_report.log().join("\n"),
    );
    if report.is_some() {
        announce(&format!("faults: {}", nemesis_report.log().join("; ")));
    }
    let run_report = RunReport {
        label: config.label(),
        seed: config.seed,
        tally: Tally::of(&history),
        nemesis: nemesis_report,
        verdict,
        report,
    };
    announce(&run_report.summary_line());
    run_report
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
