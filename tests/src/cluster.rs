//! A real cluster of `kvd` processes on loopback ports, with data in a temporary directory,
//! that a nemesis can hurt: SIGKILL and restart, SIGSTOP and SIGCONT, SIGTERM, network faults
//! and a torn WAL write.
//!
//! Signals go by PID, only to processes this cluster started. Ports are picked by binding
//! port 0; `KVD_WAL_SEGMENT_BYTES=1048576` keeps each node's disk use small.
//!
//! Network faults use kvd's test-only fault injection (`kvd::faults`): every node runs with
//! `KVD_FAULTS_FILE` naming a rules file of its own in the cluster's directory, which
//! [`Cluster::set_rules`] replaces atomically and each node reads every 25 ms. A torn write
//! is a restart with `KVD_FAILPOINT_TORN_WRITE=N` ([`Cluster::restart_with_torn_write`]): the
//! node aborts by itself in the middle of its N-th WAL write. [`Cluster::arm_panic`] arms
//! `KVD_FAILPOINT_PANIC=N` instead, a crash the harness must not accept.
//!
//! Every end of a node's process is recorded as an [`Exit`] with its cause (see
//! [`crate::exits`]): the cluster's kills and stops, the failpoint's abort, and anything else,
//! which is a bug. [`Cluster::poll_exits`] notices processes that ended on their own.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kvd::faults::{FAULTS_FILE_ENV, PANIC_ENV, RulesFile, TORN_WRITE_ENV};

use crate::exits::{Ended, Exit, Requested};

/// The transport between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// QUIC with a cluster CA made before the nodes start.
    Quic,
}

impl Transport {
    /// The `--transport` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }
}

/// What a node is doing, as far as the cluster knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running.
    Up,
    /// Stopped with SIGSTOP; resumes with SIGCONT.
    Paused,
    /// Not running (killed or stopped); [`Cluster::restart`] starts it again.
    Down,
}

/// `target/<profile>/kvd`, next to the directory holding the running test executable.
///
/// # Panics
///
/// If the binary is missing: `cargo test --workspace` builds it (kvd has integration tests);
/// with `cargo test -p tests` run `cargo build -p kvd` first.
pub fn kvd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let kvd = profile_dir.join(format!("kvd{}", std::env::consts::EXE_SUFFIX));
    assert!(
        kvd.exists(),
        "kvd binary not found at {}: run `cargo build -p kvd` first \
         (`cargo test --workspace` builds it)",
        kvd.display()
    );
    kvd
}

/// A running cluster. Dropping it kills every node it started.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    kvd: PathBuf,
    transport: Transport,
    client: Vec<SocketAddr>,
    raft: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// The failpoint node `i` was started with, if any.
    armed: Vec<Option<u64>>,
    /// Where the current process of node `i` began writing to its log.
    log_start: Vec<u64>,
    /// `(node, n)`: that node runs with `KVD_FAILPOINT_PANIC=n` until it crashes.
    panic_failpoint: Option<(usize, u64)>,
    /// Every end of a node's process, in order.
    exits: Vec<Exit>,
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

impl Cluster {
    /// Starts `nodes` kvd processes talking over `transport`.
    pub fn start(nodes: usize, transport: Transport) -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            kvd: kvd_binary(),
            transport,
            client: (0..nodes).map(|_| free_port()).collect(),
            raft: (0..nodes).map(|_| free_port()).collect(),
            children: (0..nodes).map(|_| None).collect(),
            paused: vec![false; nodes],
            armed: vec![None; nodes],
            log_start: vec![0; nodes],
            panic_failpoint: None,
            exits: Vec::new(),
        };
        if transport == Transport::Quic {
            let certs = cluster.dir.path().join("certs");
            let run = |args: &[&str]| {
                let status = Command::new(&cluster.kvd)
                    .args(args)
                    .arg("--dir")
                    .arg(&certs)
                    .stdout(Stdio::null())
                    .status();
                assert!(status.expect("run kvd certs").success(), "kvd {args:?}");
            };
            run(&["certs", "init"]);
            for i in 0..nodes {
                run(&["certs", "issue", "--node", &node_name(i)]);
            }
        }
        for i in 0..nodes {
            cluster.restart(i);
        }
        cluster
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.client.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.client.is_empty()
    }

    /// The transport between nodes.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Every node's client address, as `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.client.iter().map(ToString::to_string).collect()
    }

    /// Node `i`'s client address.
    pub fn endpoint(&self, i: usize) -> String {
        self.client[i].to_string()
    }

    /// Node `i`'s state.
    pub fn state(&self, i: usize) -> NodeState {
        match (&self.children[i], self.paused[i]) {
            (None, _) => NodeState::Down,
            (Some(_), true) => NodeState::Paused,
            (Some(_), false) => NodeState::Up,
        }
    }

    /// Starts node `i` (again) with its data directory as it is. No-op if it runs.
    pub fn restart(&mut self, i: usize) {
        self.start_node(i, None);
    }

    /// Starts node `i` (again) with the torn-write failpoint armed: its `n`-th WAL write is
    /// torn and the process aborts. No-op if it runs. See [`Cluster::poll_exits`].
    pub fn restart_with_torn_write(&mut self, i: usize, n: u64) {
        self.start_node(i, Some(n));
    }

    /// The torn-write failpoint node `i` runs with, if it was started armed and still runs.
    pub fn armed(&self, i: usize) -> Option<u64> {
        self.armed[i].filter(|_| self.children[i].is_some())
    }

    /// Arms kvd's panic failpoint on node `i`: from its next start on it runs with
    /// `KVD_FAILPOINT_PANIC=n` (it panics at its `n`-th applied entry), until it has crashed
    /// once.
    pub fn arm_panic(&mut self, i: usize, n: u64) {
        self.panic_failpoint = Some((i, n));
    }

    /// Records every node whose process ended on its own since the last look, and returns
    /// them with their exits (the process is forgotten: the node is down).
    pub fn poll_exits(&mut self) -> Vec<(usize, Exit)> {
        let mut ended = Vec::new();
        for i in 0..self.len() {
            let status = self.children[i]
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = status {
                ended.push((i, self.ended(i, status, Requested::Nothing)));
            }
        }
        ended
    }

    /// Every exit recorded so far.
    pub fn exits(&self) -> &[Exit] {
        &self.exits
    }

    /// Forgets node `i`'s ended process and records how and why it ended.
    fn ended(&mut self, i: usize, status: ExitStatus, requested: Requested) -> Exit {
        let log = self.log_since(i, self.log_start[i]);
        let exit = Exit::new(
            node_name(i),
            Ended::of(status),
            requested,
            self.armed[i].is_some(),
            &log,
        );
        self.children[i] = None;
        self.paused[i] = false;
        self.armed[i] = None;
        if !exit.expected() && self.panic_failpoint.is_some_and(|(node, _)| node == i) {
            // One crash is the point; restarts after it run clean.
            self.panic_failpoint = None;
        }
        self.exits.push(exit.clone());
        exit
    }

    /// Node `i`'s log from byte `start` on.
    fn log_since(&self, i: usize, start: u64) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path(i)) {
            let _ = file
                .seek(SeekFrom::Start(start))
                .and_then(|_| file.read_to_end(&mut text));
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Node `i`'s whole log, across every process it ran.
    pub fn log(&self, i: usize) -> String {
        self.log_since(i, 0)
    }

    fn start_node(&mut self, i: usize, torn_write_at: Option<u64>) {
        if self.children[i].is_some() {
            return;
        }
        let peers: Vec<String> = (0..self.len())
            .filter(|&j| j != i)
            .map(|j| format!("{}={}", node_name(j), self.raft[j]))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open node log");
        let log_start = log.metadata().map_or(0, |meta| meta.len());
        let mut command = Command::new(&self.kvd);
        if let Some(n) = torn_write_at {
            command.env(TORN_WRITE_ENV, n.to_string());
        }
        if let Some((_, n)) = self.panic_failpoint.filter(|&(node, _)| node == i) {
            command.env(PANIC_ENV, n.to_string());
        }
        let child = command
            .args(["--node", &node_name(i)])
            .args(["--addr", &self.client[i].to_string()])
            .args(["--raft-addr", &self.raft[i].to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(node_name(i)))
            .arg("--certs-dir")
            .arg(self.dir.path().join("certs"))
            .args([
                "--peers",
                &peers.join(","),
                "--transport",
                self.transport.as_str(),
            ])
            .env("KVD_LOG", "info")
            .env("KVD_WAL_SEGMENT_BYTES", "1048576")
            .env(FAULTS_FILE_ENV, self.rules_path(i))
            // A core dump of an aborted node, if the system writes one, stays in the
            // temporary directory.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kvd");
        self.children[i] = Some(child);
        self.paused[i] = false;
        self.armed[i] = torn_write_at;
        self.log_start[i] = log_start;
    }

    /// SIGKILL node `i`: no chance to flush, possibly in the middle of a WAL write. Returns
    /// the exit recorded, if it ran (a process that had already ended by itself is recorded
    /// as such, not as killed).
    pub fn kill(&mut self, i: usize) -> Option<Exit> {
        let mut child = self.children[i].take()?;
        let _ = child.kill();
        let status = child.wait().expect("wait for a killed kvd");
        Some(self.ended(i, status, Requested::Kill))
    }

    /// Replaces node `i`'s fault rules (an empty `rules` heals it). The file is written
    /// elsewhere and renamed into place, so the node never reads half of it.
    pub fn set_rules(&self, i: usize, rules: &RulesFile) {
        let path = self.rules_path(i);
        let staging = path.with_extension("new");
        std::fs::write(&staging, rules.to_string())
            .and_then(|()| std::fs::rename(&staging, &path))
            .expect("write a fault rules file");
    }

    /// Removes every node's fault rules.
    pub fn heal_network(&self) {
        for i in 0..self.len() {
            self.set_rules(i, &RulesFile::new());
        }
    }

    /// Node `i`'s name, as the others know it (`node-1`, ...).
    pub fn name(&self, i: usize) -> String {
        node_name(i)
    }

    fn rules_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.faults", node_name(i)))
    }

    /// SIGTERM node `i` and wait (at most 20 s, then SIGKILL) for it to exit. Returns the
    /// exit recorded, if it ran: anything but a clean exit is unexpected.
    pub fn stop(&mut self, i: usize) -> Option<Exit> {
        self.resume(i);
        let child = self.children[i].as_mut()?;
        signal(child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for kvd") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().expect("wait for a killed kvd");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Some(self.ended(i, status, Requested::Stop))
    }

    /// SIGSTOP node `i`: it stays alive but does nothing until [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) {
        if let Some(child) = &self.children[i]
            && !self.paused[i]
        {
            signal(child, "STOP");
            self.paused[i] = true;
        }
    }

    /// SIGCONT node `i` if it is paused.
    pub fn resume(&mut self, i: usize) {
        if let Some(child) = &self.children[i]
            && self.paused[i]
        {
            signal(child, "CONT");
            self.paused[i] = false;
        }
    }

    /// Removes every fault rule, resumes every paused node and restarts every node that is
    /// down (without the torn-write failpoint). Processes that ended by themselves are
    /// recorded first (see [`Cluster::exits`]).
    pub fn heal(&mut self) {
        self.heal_network();
        self.poll_exits();
        for i in 0..self.len() {
            self.resume(i);
            self.restart(i);
        }
    }

    /// Node `i`'s log (stderr of every run of it).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", node_name(i)))
    }

    /// Copies every node's log into `dir` (to keep them after the cluster is gone).
    pub fn copy_logs(&self, dir: &Path, prefix: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for i in 0..self.len() {
            let target = dir.join(format!("{prefix}-{}.log", node_name(i)));
            std::fs::copy(self.log_path(i), target)?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn node_name(i: usize) -> String {
    format!("node-{}", i + 1)
}

/// Sends `SIG<name>` to `child` (the `kill` utility keeps this crate free of `unsafe`).
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {} failed", child.id());
}
