//! The clusters a run measures: kvd nodes started here as child processes, or etcd members
//! started by the shared `etcd3.sh`.
//!
//! Both stop when dropped, so a failed or interrupted run never leaves a cluster behind:
//! kvd nodes get SIGTERM (SIGKILL after a grace period), etcd gets `etcd3.sh stop`. Signals go
//! by PID, only to processes started here, through the `kill` utility (no `unsafe` here).
//! Children run in their own process group, so a Ctrl+C at the terminal reaches only the
//! runner, which then stops them in order.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Error;
use super::scenario::Transport;

/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How often a waiting loop looks at processes and the interrupt flag.
const POLL: Duration = Duration::from_millis(50);
/// etcd's client endpoints, as `etcd3.sh` starts them.
const ETCD_ENDPOINTS: [&str; 3] = ["127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:32379"];
/// Where `etcd3.sh` records its members: lines of `NAME PID CLIENT_URL`.
const ETCD_PID_FILE: &str = "/tmp/etcd-bench.pids";

/// Puts `command` in a process group of its own, away from the terminal's Ctrl+C.
fn own_process_group(command: &mut Command) -> &mut Command {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    command
}

/// Sends `SIG<name>` to `pid` with the `kill` utility.
fn signal(pid: u32, name: &str) -> Result<(), Error> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| Error::io("run kill", source))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Run(format!("kill -{name} {pid} failed")))
    }
}

/// The endpoint that reports itself leader in `loadgen status` output (one JSON object per
/// line, each with `endpoint` and `is_leader`).
pub(crate) fn leader_in_status(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|status| status["is_leader"] == Value::Bool(true))
        .and_then(|status| status["endpoint"].as_str().map(str::to_string))
}

/// The member named in `etcd3.sh kill-leader`'s `killed: NAME PID URL at TIME`.
pub(crate) fn killed_in_etcd_output(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("killed:")?;
        rest.split_whitespace().next().map(str::to_string)
    })
}

/// Runs `loadgen status` and returns the leader's endpoint, if one answers as leader.
fn probe_leader(
    loadgen: &Path,
    proto: &str,
    endpoints: &[String],
) -> Result<Option<String>, Error> {
    let output = own_process_group(Command::new(loadgen).args([
        "status",
        "--proto",
        proto,
        "--endpoints",
        &endpoints.join(","),
    ]))
    .stdin(Stdio::null())
    .stderr(Stdio::null())
    .output()
    .map_err(|source| Error::io(format!("run {}", loadgen.display()), source))?;
    Ok(leader_in_status(&String::from_utf8_lossy(&output.stdout)))
}

/// A cluster under test.
#[derive(Debug)]
pub(crate) enum Cluster {
    /// kvd nodes started here.
    Kvd(KvdCluster),
    /// etcd members started by `etcd3.sh`.
    Etcd(EtcdCluster),
}

impl Cluster {
    /// Every node's client address, `host:port`.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        match self {
            Self::Kvd(cluster) => cluster.endpoints(),
            Self::Etcd(_) => ETCD_ENDPOINTS.map(str::to_string).to_vec(),
        }
    }

    /// The PIDs of the cluster's processes.
    pub(crate) fn pids(&self) -> Vec<u32> {
        match self {
            Self::Kvd(cluster) => cluster.pids(),
            Self::Etcd(cluster) => cluster.members.iter().map(|(_, pid)| *pid).collect(),
        }
    }

    /// Kills the current leader with SIGKILL; returns its name.
    pub(crate) fn kill_leader(&mut self, loadgen: &Path) -> Result<String, Error> {
        match self {
            Self::Kvd(cluster) => cluster.kill_leader(loadgen),
            Self::Etcd(cluster) => cluster.kill_leader(),
        }
    }

    /// Fails if a node exited that was not killed on purpose (kvd; etcd's members are the
    /// script's).
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        match self {
            Self::Kvd(cluster) => {
                let exits = cluster.unexpected_exits();
                if exits.is_empty() {
                    Ok(())
                } else {
                    Err(Error::Run(format!("during the run: {}", exits.join(", "))))
                }
            }
            Self::Etcd(_) => Ok(()),
        }
    }

    /// Stops every process gracefully and waits for it.
    pub(crate) fn stop(&mut self) -> Result<(), Error> {
        match self {
            Self::Kvd(cluster) => cluster.stop(),
            Self::Etcd(cluster) => cluster.stop(),
        }
    }

    /// Where to look when something went wrong (kvd keeps its data directory from now on).
    pub(crate) fn keep_evidence(&mut self) -> String {
        match self {
            Self::Kvd(cluster) => format!(
                "data and node logs kept in {}",
                cluster.keep_data().display()
            ),
            Self::Etcd(_) => "etcd logs in /tmp/etcd-bench-logs".to_string(),
        }
    }
}

#[derive(Debug)]
struct KvdNode {
    name: String,
    client: SocketAddr,
    child: Option<Child>,
    /// Killed on purpose (failover), so its exit is expected.
    killed: bool,
}

/// kvd nodes on loopback ports picked at start, each with a data directory under one
/// temporary directory (removed on drop unless kept).
#[derive(Debug)]
pub(crate) struct KvdCluster {
    /// Removed when dropped (after the nodes stopped), unless kept.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    nodes: Vec<KvdNode>,
}

/// `count` distinct free loopback ports (all held open until every one is picked).
fn free_ports(count: usize) -> Result<Vec<SocketAddr>, Error> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|source| Error::io("bind a free loopback port", source))?;
    listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()
        .map_err(|source| Error::io("read a bound port", source))
}

impl KvdCluster {
    /// Starts `nodes` kvd processes (`node-1`..) talking over `transport`, with their data in
    /// a new directory under `parent`. Does not wait for an election.
    pub(crate) fn start(
        kvd: &Path,
        parent: &Path,
        nodes: u16,
        transport: Transport,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(parent)
            .map_err(|source| Error::io(format!("create {}", parent.display()), source))?;
        let dir = tempfile::Builder::new()
            .prefix("e2e-")
            .tempdir_in(parent)
            .map_err(|source| {
                Error::io(
                    format!("create a directory in {}", parent.display()),
                    source,
                )
            })?;
        let count = usize::from(nodes);
        let ports = free_ports(2 * count)?;
        let (client, raft) = ports.split_at(count);
        let names: Vec<String> = (1..=count).map(|i| format!("node-{i}")).collect();
        let certs = dir.path().join("certs");
        if transport == Transport::Quic {
            // One CA for the whole cluster, made before any node starts.
            run_kvd(kvd, &["certs", "init", "--dir"], &certs, None)?;
            for name in &names {
                run_kvd(kvd, &["certs", "issue", "--dir"], &certs, Some(name))?;
            }
        }
        let mut cluster = Self {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
            nodes: Vec::with_capacity(count),
        };
        for i in 0..count {
            let peers: Vec<String> = (0..count)
                .filter(|&j| j != i)
                .map(|j| format!("{}={}", names[j], raft[j]))
                .collect();
            let log_path = cluster.path.join(format!("{}.log", names[i]));
            let log = std::fs::File::create(&log_path)
                .map_err(|source| Error::io(format!("create {}", log_path.display()), source))?;
            let child = own_process_group(
                Command::new(kvd)
                    .args(["--node", &names[i]])
                    .args(["--addr", &client[i].to_string()])
                    .args(["--raft-addr", &raft[i].to_string()])
                    .arg("--data-dir")
                    .arg(cluster.path.join(&names[i]))
                    .arg("--certs-dir")
                    .arg(&certs)
                    .args(["--peers", &peers.join(",")])
                    .args(["--transport", transport.name()]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| Error::io(format!("start {}", kvd.display()), source))?;
            cluster.nodes.push(KvdNode {
                name: names[i].clone(),
                client: client[i],
                child: Some(child),
                killed: false,
            });
        }
        Ok(cluster)
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client.to_string()).collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// Polls the nodes' health until one leads; fails if a node exits, `timeout` passes or
    /// the run is interrupted.
    pub(crate) fn wait_for_leader(
        &mut self,
        loadgen: &Path,
        timeout: Duration,
        interrupted: &AtomicBool,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            let exits = self.unexpected_exits();
            if !exits.is_empty() {
                return Err(Error::Run(format!("at start: {}", exits.join(", "))));
            }
            if let Some(leader) = probe_leader(loadgen, "kv", &self.endpoints())? {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                return Err(Error::Run(format!(
                    "no leader elected within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Nodes that exited without being killed on purpose, with how they ended.
    fn unexpected_exits(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter(|node| !node.killed)
            .filter_map(|node| {
                let status = node.child.as_mut()?.try_wait().ok()??;
                Some(format!("{} exited ({status})", node.name))
            })
            .collect()
    }

    fn kill_leader(&mut self, loadgen: &Path) -> Result<String, Error> {
        let leader = probe_leader(loadgen, "kv", &self.endpoints())?
            .ok_or_else(|| Error::Run("no node reports itself leader".to_string()))?;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| leader.ends_with(&n.client.to_string()))
            .ok_or_else(|| Error::Run(format!("leader {leader} is not one of the nodes")))?;
        let child = node
            .child
            .as_mut()
            .ok_or_else(|| Error::Run(format!("{} is not running", node.name)))?;
        // Not reaped until the cluster stops, so the load generator's CPU figure (time of
        // waited-for children) does not take in the killed node's.
        child
            .kill()
            .map_err(|source| Error::io(format!("kill {}", node.name), source))?;
        node.killed = true;
        Ok(node.name.clone())
    }

    fn stop(&mut self) -> Result<(), Error> {
        let mut stopping = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                match child.try_wait() {
                    Ok(None) => {
                        signal(child.id(), "TERM")?;
                        stopping.push(node);
                    }
                    // Already gone (killed by a failover run, or reported by
                    // `unexpected_exits`): it is reaped now.
                    _ => node.child = None,
                }
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut problems = Vec::new();
        for node in stopping {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        problems.push(format!("{} exited with {status} after SIGTERM", node.name));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        problems.push(format!(
                            "{} did not exit within {} s of SIGTERM; killed",
                            node.name,
                            STOP_GRACE.as_secs()
                        ));
                        break;
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Run(problems.join("; ")))
        }
    }

    /// Keeps the data directory (with the nodes' logs) after the cluster is dropped.
    pub(crate) fn keep_data(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }
}

impl Drop for KvdCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("e2e: stopping the cluster: {e}");
        }
    }
}

/// Runs `kvd <args> <dir> [--node NAME]` to completion.
fn run_kvd(kvd: &Path, args: &[&str], dir: &Path, node: Option<&str>) -> Result<(), Error> {
    let mut command = Command::new(kvd);
    command.args(args).arg(dir);
    if let Some(node) = node {
        command.args(["--node", node]);
    }
    let status = command
        .stdout(Stdio::null())
        .status()
        .map_err(|source| Error::io(format!("run {}", kvd.display()), source))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Run(format!(
            "kvd {} failed ({status})",
            args.join(" ")
        )))
    }
}

/// etcd's three members, started and stopped by `etcd3.sh`.
#[derive(Debug)]
pub(crate) struct EtcdCluster {
    script: PathBuf,
    /// `(name, pid)` per member, from the script's PID file.
    members: Vec<(String, u32)>,
    running: bool,
}

impl EtcdCluster {
    /// Starts a fresh cluster (the script wipes its data directories and waits for health).
    ///
    /// Refuses while the script's PID file exists: `etcd3.sh start` would first stop that
    /// cluster, which may be someone else's.
    pub(crate) fn start(script: &Path) -> Result<Self, Error> {
        if Path::new(ETCD_PID_FILE).exists() {
            return Err(Error::Setup(format!(
                "{ETCD_PID_FILE} exists: an etcd3.sh cluster seems to be running; \
                 stop it first (etcd3.sh stop) if it is yours"
            )));
        }
        let mut cluster = Self {
            script: script.to_path_buf(),
            members: Vec::new(),
            running: true,
        };
        cluster.script_command("start")?;
        let pids = std::fs::read_to_string(ETCD_PID_FILE)
            .map_err(|source| Error::io(format!("read {ETCD_PID_FILE}"), source))?;
        cluster.members = pids
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next()?.to_string();
                Some((name, words.next()?.parse().ok()?))
            })
            .collect();
        Ok(cluster)
    }

    /// Runs `etcd3.sh <command>`; returns its stdout, echoing it to stderr.
    fn script_command(&self, command: &str) -> Result<String, Error> {
        let output = own_process_group(Command::new("bash").arg(&self.script).arg(command))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::io(format!("run {}", self.script.display()), source))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in stdout.lines() {
            eprintln!("  etcd3.sh: {line}");
        }
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Run(format!(
                "etcd3.sh {command} failed ({})",
                output.status
            )))
        }
    }

    fn kill_leader(&mut self) -> Result<String, Error> {
        let stdout = self.script_command("kill-leader")?;
        killed_in_etcd_output(&stdout)
            .ok_or_else(|| Error::Run("etcd3.sh kill-leader named no member".to_string()))
    }

    fn stop(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        self.script_command("stop").map(drop)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("e2e: stopping etcd: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_leader_in_status_lines() {
        let stdout = r#"{"endpoint":"http://127.0.0.1:50051","is_leader":false,"node_id":"node-1","term":2}
{"endpoint":"http://127.0.0.1:50052","error":"connect: transport error"}
{"endpoint":"http://127.0.0.1:50053","is_leader":true,"node_id":"node-3","term":2}
"#;
        assert_eq!(
            leader_in_status(stdout).as_deref(),
            Some("http://127.0.0.1:50053")
        );
        assert_eq!(
            leader_in_status(r#"{"endpoint":"x","is_leader":false}"#),
            None
        );
        assert_eq!(leader_in_status(""), None);
    }

    #[test]
    fn finds_the_killed_etcd_member() {
        let stdout = "leader: n2 1234 http://127.0.0.1:22379\n\
                      killed: n2 1234 http://127.0.0.1:22379 at 1764150000.123\n";
        assert_eq!(killed_in_etcd_output(stdout).as_deref(), Some("n2"));
        assert_eq!(killed_in_etcd_output("no leader found\n"), None);
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(6).unwrap();
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 6);
    }
}
