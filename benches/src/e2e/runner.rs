//! `e2e run`: for each scenario, a fresh cluster, an optional fill, one load generator run,
//! a graceful stop, and one JSON line appended to the results file.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use serde_json::{Map, Value};

use super::Error;
use super::cluster::{Cluster, EtcdCluster, KvdCluster};
use super::cpu::{self, CpuMeter};
use super::record::{self, RunFacts};
use super::scenario::{self, Filter, Kind, Matrix, Scenario, System, Timing, Transport};

/// How long a fresh kvd cluster may take to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack past a measured run's expected end before the load generator counts as hung.
const LOADGEN_SLACK: Duration = Duration::from_secs(60);
/// Largest keyspace fill (keys × value size) a run may ask for.
const MAX_FILL_BYTES: u64 = 1 << 30;
/// Largest value kvd accepts by default.
const MAX_VALUE_BYTES: u32 = 1 << 20;

/// Options of `e2e run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Scenarios to run: the headline runs, the full grid, or exactly the filter flags.
    #[arg(long, value_enum, default_value_t = Matrix::Quick)]
    pub matrix: Matrix,
    /// Systems to measure, one after the other (etcd: three members, `etcd3.sh`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kvd")]
    pub system: Vec<System>,
    /// Only these scenario kinds.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Kind>,
    /// Only these cluster sizes.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<u16>,
    /// Only these kvd peer transports (etcd runs are not affected).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub transport: Vec<Transport>,
    /// Only these value sizes, in bytes.
    #[arg(long, value_delimiter = ',')]
    pub values: Vec<u32>,
    /// Only these client counts.
    #[arg(long, value_delimiter = ',')]
    pub clients: Vec<u32>,
    /// Connections per run instead of the default (puts 1 to the leader, reads up to 16 over
    /// every node, failover one per node).
    #[arg(long)]
    pub conns: Option<u32>,
    /// Measured seconds of each put, get or mixed run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Measured seconds of a failover run.
    #[arg(long = "failover-duration", default_value_t = 20.0)]
    pub failover_duration: f64,
    /// Seconds into a failover run's measured window at which the leader is killed.
    #[arg(long = "kill-at", default_value_t = 8.0)]
    pub kill_at: f64,
    /// Keys the load draws from (all filled before reads).
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// The load generator's per-request timeout, in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Results file the JSON lines are appended to (default:
    /// `target/bench-results/e2e-<UTC date>.jsonl`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The kvd binary (`cargo build --release -p kvd`).
    #[arg(long, default_value = "target/release/kvd")]
    pub kvd: PathBuf,
    /// The shared load generator's binary.
    #[arg(
        long,
        env = "LOADGEN",
        default_value = "target/loadgen/release/loadgen"
    )]
    pub loadgen: PathBuf,
    /// The shared script that starts and stops etcd.
    #[arg(
        long = "etcd-script",
        default_value = "../shared/tools/loadgen/etcd3.sh"
    )]
    pub etcd_script: PathBuf,
    /// Parent of each kvd run's data directory (removed after the run unless it failed).
    #[arg(long = "data-dir", default_value = "target/e2e-data")]
    pub data_dir: PathBuf,
    /// Print the scenarios and the load generator's command lines; run nothing.
    #[arg(long)]
    pub list: bool,
}

impl RunArgs {
    fn scenarios(&self) -> Vec<Scenario> {
        let filter = Filter {
            systems: self.system.clone(),
            kinds: self.scenarios.clone(),
            nodes: self.nodes.clone(),
            transports: self.transport.clone(),
            values: self.values.clone(),
            clients: self.clients.clone(),
        };
        let timing = Timing {
            duration_s: self.duration,
            warmup_s: self.warmup,
            failover_duration_s: self.failover_duration,
            kill_at_s: self.kill_at,
            keyspace: self.keyspace,
            timeout_ms: self.timeout_ms,
            conns: self.conns,
        };
        scenario::expand(self.matrix, &filter, &timing)
    }

    fn check(&self, scenarios: &[Scenario]) -> Result<(), Error> {
        let setup = |message: String| Err(Error::Setup(message));
        if scenarios.is_empty() {
            return setup("no scenario matches the filters".to_string());
        }
        if !(self.duration > 0.0 && self.failover_duration > 0.0 && self.warmup >= 0.0) {
            return setup("--duration and --failover-duration must be > 0, --warmup >= 0".into());
        }
        let failover = scenarios.iter().any(|s| s.kind == Kind::Failover);
        if failover && !(0.0..self.failover_duration).contains(&self.kill_at) {
            return setup("--kill-at must fall within --failover-duration".to_string());
        }
        if let Some(s) = scenarios
            .iter()
            .find(|s| s.clients == 0 || s.conns == 0 || s.nodes == 0)
        {
            return setup(format!(
                "{}: nodes, clients and conns must be >= 1",
                s.label()
            ));
        }
        if let Some(s) = scenarios.iter().find(|s| s.value_size > MAX_VALUE_BYTES) {
            return setup(format!("{}: kvd accepts values up to 1 MiB", s.label()));
        }
        if let Some(s) = scenarios.iter().find(|s| {
            s.kind.needs_fill()
                && s.keyspace.saturating_mul(u64::from(s.value_size)) > MAX_FILL_BYTES
        }) {
            return setup(format!(
                "{}: filling {} keys of {} B is over 1 GiB; use a smaller --keyspace",
                s.label(),
                s.keyspace,
                s.value_size
            ));
        }
        if !self.loadgen.exists() {
            return setup(format!(
                "load generator not found at {}; build it with\n  cargo build --release \
                 --manifest-path ../shared/tools/loadgen/Cargo.toml --target-dir target/loadgen\n\
                 or point --loadgen (or LOADGEN) at it",
                self.loadgen.display()
            ));
        }
        if scenarios.iter().any(|s| s.system == System::Kvd) && !self.kvd.exists() {
            return setup(format!(
                "kvd not found at {}; build it with `cargo build --release -p kvd` or give --kvd",
                self.kvd.display()
            ));
        }
        if scenarios.iter().any(|s| s.system == System::Etcd) && !self.etcd_script.exists() {
            return setup(format!(
                "{} not found; give --etcd-script",
                self.etcd_script.display()
            ));
        }
        Ok(())
    }
}

/// Runs every scenario of `args`, appending one JSON line per successful run to the results
/// file, and returns that file's path. A failed run is reported and the next one starts; the
/// result is an error if any failed. Stops at the next step once `interrupted` is set.
pub fn run(args: &RunArgs, interrupted: &AtomicBool) -> Result<PathBuf, Error> {
    let scenarios = args.scenarios();
    if args.list {
        for s in &scenarios {
            println!("{}", s.label());
            if s.kind.needs_fill() {
                println!("  loadgen {}", s.fill_args(&["ENDPOINTS".into()]).join(" "));
            }
            println!(
                "  loadgen {}",
                s.loadgen_args(&["ENDPOINTS".into()]).join(" ")
            );
        }
        println!("{} scenarios", scenarios.len());
        return Ok(PathBuf::new());
    }
    args.check(&scenarios)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench-results")
            .join(format!("e2e-{}.jsonl", record::utc_date(SystemTime::now())))
    });
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| Error::io(format!("create {}", parent.display()), source))?;
    }
    let (git_commit, git_dirty) = git_state();
    let ticks = cpu::ticks_per_second();
    let mut failed = 0;
    for (i, scenario) in scenarios.iter().enumerate() {
        eprintln!("e2e [{}/{}] {}", i + 1, scenarios.len(), scenario.label());
        let base = RunFacts {
            git_commit: git_commit.clone(),
            git_dirty,
            ..RunFacts::default()
        };
        match run_one(args, scenario, base, ticks, interrupted) {
            Ok((facts, loadgen)) => {
                eprintln!("e2e   {}", summary(&facts, &loadgen));
                append_line(&out, &record::json_line(scenario, &facts, loadgen))?;
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                failed += 1;
                eprintln!("e2e   FAILED: {e}");
            }
        }
    }
    eprintln!(
        "e2e: {} of {} runs written to {}",
        scenarios.len() - failed,
        scenarios.len(),
        out.display()
    );
    if failed > 0 {
        return Err(Error::Run(format!(
            "{failed} of {} runs failed",
            scenarios.len()
        )));
    }
    Ok(out)
}

/// One scenario on its own fresh cluster, which is stopped whatever happens.
fn run_one(
    args: &RunArgs,
    scenario: &Scenario,
    base: RunFacts,
    ticks: f64,
    interrupted: &AtomicBool,
) -> Result<(RunFacts, Map<String, Value>), Error> {
    let mut cluster = match (scenario.system, scenario.transport) {
        (System::Kvd, transport) => Cluster::Kvd(KvdCluster::start(
            &args.kvd,
            &args.data_dir,
            scenario.nodes,
            transport.unwrap_or(Transport::Tcp),
        )?),
        (System::Etcd, _) => Cluster::Etcd(EtcdCluster::start(&args.etcd_script)?),
    };
    match measure(args, scenario, &mut cluster, base, ticks, interrupted) {
        Ok(result) => {
            if let Err(e) = cluster.stop() {
                eprintln!("e2e   warning: {e}");
            }
            Ok(result)
        }
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(e) => Err(Error::Run(format!("{e} ({})", cluster.keep_evidence()))),
    }
}

fn measure(
    args: &RunArgs,
    scenario: &Scenario,
    cluster: &mut Cluster,
    mut facts: RunFacts,
    ticks: f64,
    interrupted: &AtomicBool,
) -> Result<(RunFacts, Map<String, Value>), Error> {
    if let Cluster::Kvd(kvd) = cluster {
        kvd.wait_for_leader(&args.loadgen, ELECTION_TIMEOUT, interrupted)?;
    }
    let endpoints = cluster.endpoints();
    if scenario.kind.needs_fill() {
        eprintln!("e2e   filling {} keys", scenario.keyspace);
        let fill = run_loadgen(
            &args.loadgen,
            &scenario.fill_args(&endpoints),
            None,
            None,
            interrupted,
        )?;
        let result = record::parse_loadgen_output(&fill.stdout).map_err(Error::Run)?;
        if result.get("errors").and_then(Value::as_u64) != Some(0) {
            eprintln!("e2e   warning: the fill had errors; some reads will find nothing");
        }
        facts.filled = true;
    }
    let expected = Duration::from_secs_f64(scenario.warmup_s + scenario.duration_s);
    let kill_at = scenario.kill_after_s.map(Duration::from_secs_f64);
    let mut meter = CpuMeter::start(cluster.pids());
    let reaped_before = own_children_ticks();
    facts.started_at = record::utc_timestamp(SystemTime::now());
    let mut killed = None;
    let mut kill_leader = || {
        meter.sample();
        let name = cluster.kill_leader(&args.loadgen)?;
        killed = Some(name.clone());
        Ok(name)
    };
    let kill: Option<(Duration, &mut KillLeader<'_>)> =
        kill_at.map(|at| (at, &mut kill_leader as _));
    let run = run_loadgen(
        &args.loadgen,
        &scenario.loadgen_args(&endpoints),
        Some(expected + LOADGEN_SLACK),
        kill,
        interrupted,
    )?;
    if let Some(at) = kill_at
        && run.killed_at.is_none()
    {
        return Err(Error::Run(format!(
            "the load generator ended before the leader was to be killed at {:.1} s",
            at.as_secs_f64()
        )));
    }
    meter.sample();
    let reaped_after = own_children_ticks();
    cluster.check_running()?;
    facts.killed = killed;
    facts.killed_at_s = run.killed_at.map(|at| at.as_secs_f64());
    facts.wall_s = run.wall.as_secs_f64();
    facts.cluster_cpu_s = meter.used_ticks().map(|t| t as f64 / ticks);
    facts.loadgen_cpu_s = reaped_before
        .zip(reaped_after)
        .map(|(before, after)| after.saturating_sub(before) as f64 / ticks);
    let result = record::parse_loadgen_output(&run.stdout).map_err(Error::Run)?;
    if !run.status.success() {
        eprintln!(
            "e2e   warning: the load generator exited with {}",
            run.status
        );
    }
    Ok((facts, result))
}

/// Kills the cluster's leader, returning its name.
type KillLeader<'a> = dyn FnMut() -> Result<String, Error> + 'a;

/// What one load generator process did.
struct LoadgenRun {
    stdout: String,
    status: ExitStatus,
    wall: Duration,
    /// When the leader was killed, after the start.
    killed_at: Option<Duration>,
}

/// Runs the load generator with `args` to completion and returns its stdout (its stderr
/// goes to ours). With `kill` set to `(after, kill_leader)`, calls `kill_leader` once that
/// long after the start. Kills the load generator if it outlives `limit` or the run is
/// interrupted.
fn run_loadgen(
    loadgen: &Path,
    args: &[String],
    limit: Option<Duration>,
    mut kill: Option<(Duration, &mut KillLeader<'_>)>,
    interrupted: &AtomicBool,
) -> Result<LoadgenRun, Error> {
    let mut command = Command::new(loadgen);
    command.args(args);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| Error::io(format!("run {}", loadgen.display()), source))?;
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let mut killed_at = None;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(source) => break Err(Error::io("wait for the load generator", source)),
        }
        let elapsed = started.elapsed();
        if interrupted.load(Ordering::SeqCst) {
            break Err(Error::Interrupted);
        }
        if limit.is_some_and(|limit| elapsed > limit) {
            break Err(Error::Run(format!(
                "the load generator was still running after {} s",
                elapsed.as_secs()
            )));
        }
        if let Some((at, kill_leader)) = &mut kill
            && killed_at.is_none()
            && elapsed >= *at
        {
            if let Err(e) = kill_leader() {
                break Err(e);
            }
            killed_at = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let status = match outcome {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let stdout = reader.join().unwrap_or_default();
    Ok(LoadgenRun {
        stdout,
        status,
        wall,
        killed_at,
    })
}

/// CPU ticks of this process's waited-for children so far.
fn own_children_ticks() -> Option<u64> {
    cpu::read_stat(std::process::id())
        .as_deref()
        .and_then(cpu::children_ticks)
}

/// `git rev-parse HEAD` and whether tracked files differ from it.
fn git_state() -> (Option<String>, bool) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    (commit, dirty)
}

fn append_line(path: &Path, line: &str) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::io(format!("open {}", path.display()), source))?;
    writeln!(file, "{line}")
        .and_then(|()| file.flush())
        .map_err(|source| Error::io(format!("write {}", path.display()), source))
}

/// One human line per run: throughput, latency, errors, gap.
fn summary(facts: &RunFacts, loadgen: &Map<String, Value>) -> String {
    let number = |key: &str| loadgen.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let mut text = format!(
        "{:.0} ops/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  max gap {:.0} ms",
        number("throughput_ops_s"),
        number("p50_ms"),
        number("p99_ms"),
        number("errors"),
        number("max_gap_ms"),
    );
    if let Some(cpu) = facts.cluster_cpu_s {
        text += &format!("  cluster CPU {cpu:.1} s / {:.1} s", facts.wall_s);
    }
    if let Some(name) = &facts.killed {
        text += &format!("  (killed {name})");
    }
    text
}
