//! A real 3-node cluster of `kvd` processes on loopback ports for kvctl's tests, and a helper
//! to run the `kvctl` binary against it.
//!
//! `kvd` is taken from the same target directory as the test executable
//! (`target/debug/kvd`). `cargo test --workspace` builds it (kvd has integration tests of its
//! own); with `cargo test -p kvctl` run `cargo build -p kvd` first.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub client: Vec<SocketAddr>,
    raft: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `target/<profile>/kvd`, next to the directory holding this test executable.
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

impl Cluster {
    pub fn start() -> Self {
        let nodes = 3;
        let mut cluster = Self {
            dir: tempfile::tempdir().unwrap(),
            client: (0..nodes).map(|_| free_port()).collect(),
            raft: (0..nodes).map(|_| free_port()).collect(),
            children: (0..nodes).map(|_| None).collect(),
        };
        for i in 0..nodes {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = (0..self.raft.len())
            .filter(|&j| j != i)
            .map(|j| format!("node-{}={}", j + 1, self.raft[j]))
            .collect();
        let log =
            std::fs::File::create(self.dir.path().join(format!("node-{}.log", i + 1))).unwrap();
        let child = Command::new(kvd_binary())
            .args(["--node", &format!("node-{}", i + 1)])
            .args(["--addr", &self.client[i].to_string()])
            .args(["--raft-addr", &self.raft[i].to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node-{}", i + 1)))
            .args(["--peers", &peers.join(","), "--transport", "tcp"])
            .env("KVD_LOG", "info")
            .env("KVD_WAL_SEGMENT_BYTES", "1048576")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kvd");
        self.children[i] = Some(child);
    }

    /// All client addresses, comma-separated, for `--endpoints`.
    pub fn endpoints(&self) -> String {
        self.client
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL node `i` (by its PID) and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn logs(&self) -> String {
        (0..self.client.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("node-{}.log", i + 1)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// Polls `kvctl -addr <node> health` until a running node says it leads; returns its index.
    pub fn leader(&self) -> usize {
        self.wait_for("a leader", || {
            (0..self.client.len())
                .filter(|&i| self.children[i].is_some())
                .find(|&i| {
                    let out = kvctl(&[
                        "-addr",
                        &self.client[i].to_string(),
                        "-timeout",
                        "1s",
                        "health",
                    ]);
                    out.status.success() && stdout(&out).contains("is_leader=true")
                })
        })
    }

    /// Retries `probe` until it yields a value; fails the test after 30 s with the node logs.
    pub fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = probe() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// Runs kvctl with `args`.
pub fn kvctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .args(args)
        .env_remove("KVCTL_ENDPOINTS")
        .env_remove("KVCTL_CLIENT_ID")
        .env_remove("KVCTL_OUTPUT")
        .env_remove("KVCTL_TIMEOUT")
        .stdin(Stdio::null())
        .output()
        .expect("run kvctl")
}

/// Runs kvctl with `args` and `input` on stdin.
pub fn kvctl_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kvctl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code, failing the test with kvctl's output if there is none.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("kvctl killed: {}", stderr(out)))
}
