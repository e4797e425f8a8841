//! A node that hits a bug stops: a panic, or a committed entry it cannot decode, ends the
//! `kvd` process with a non-zero status and one line saying why, instead of leaving a process
//! that still answers on its ports.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::{Entry, EntryPayload};
use support::seed::PutRequest;
use support::seed::kv_client::KvClient;
use tokio::process::{Child, Command};

/// How long a stopping node may take to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Where a single-node cluster listens (kept across restarts: the Raft address is part of
/// its identity).
struct Addresses {
    client: String,
    raft: String,
}

impl Addresses {
    fn new() -> Self {
        Self {
            client: free_addr(),
            raft: free_addr(),
        }
    }
}

/// A single-node cluster's process, its stderr going to `log`.
struct SingleNode {
    child: Child,
    client_addr: String,
    log: std::path::PathBuf,
}

impl SingleNode {
    fn start(addrs: &Addresses, data: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let client_addr = addrs.client.clone();
        let stderr = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kvd"))
            .args(["--node", "solo", "--addr", &client_addr])
            .args(["--raft-addr", &addrs.raft, "--peers", ""])
            .arg("--data-dir")
            .arg(data)
            .env("KVD_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn kvd");
        Self {
            child,
            client_addr,
            log: log.to_path_buf(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One put with a bounded wait; `Err` for any failure (refused, unavailable, timed out).
    async fn put(&self, key: &str) -> Result<(), String> {
        let endpoint = format!("http://{}", self.client_addr);
        let call = async {
            let mut client = KvClient::connect(endpoint)
                .await
                .map_err(|e| e.to_string())?;
            let request = PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                client_id: String::new(),
                request_id: 0,
            };
            let answer = client.put(request).await.map_err(|e| e.to_string())?;
            if answer.get_ref().ok {
                Ok(())
            } else {
                Err(format!("not applied: {answer:?}"))
            }
        };
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Retries a put until the node (its own leader) applies one, for at most 30 s.
    async fn wait_until_it_serves(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.put("ready").await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("the node never served: {e}\n{}", self.stderr())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Waits for the process to exit, for at most [`EXIT_WITHIN`].
    async fn exit_status(&mut self, why: &str) -> ExitStatus {
        match tokio::time::timeout(EXIT_WITHIN, self.child.wait()).await {
            Ok(status) => status.expect("wait for kvd"),
            Err(_) => panic!(
                "kvd still runs {EXIT_WITHIN:?} after {why}; its log:\n{}",
                self.stderr()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_node_loop_stops_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = SingleNode::start(
        &Addresses::new(),
        &dir.path().join("data"),
        &dir.path().join("kvd.log"),
        &[(kvd::faults::PANIC_ENV, "5")],
    );
    node.wait_until_it_serves().await;
    // The leader's first entry and a few writes reach the fifth applied entry: the write that
    // hits it gets no answer (an error), and no later one may succeed.
    let mut answered = Vec::new();
    for i in 0..10 {
        answered.push(node.put(&format!("k{i}")).await.is_ok());
        if let Ok(Some(_)) = node.child.try_wait() {
            break;
        }
    }
    let status = node.exit_status("the injected panic").await;
    let stderr = node.stderr();
    assert!(!status.success(), "{status}\n{stderr}");
    assert_eq!(
        status.code(),
        Some(kvd::fail_stop::PANIC_EXIT_STATUS),
        "the panic hook's status: {status}\n{stderr}"
    );
    let panics: Vec<&str> = stderr.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(panics.len(), 1, "one line about the panic:\n{stderr}");
    assert!(
        panics[0].starts_with("kvd: thread ")
            && panics[0].contains("panicked at kvd/src/node_loop.rs:")
            && panics[0].contains("KVD_FAILPOINT_PANIC=5"),
        "{}",
        panics[0]
    );
    let first_failure = answered.iter().position(|ok| !ok);
    assert!(
        first_failure.is_some_and(|at| answered[at..].iter().all(|ok| !ok)),
        "writes must fail from the panic on: {answered:?}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_committed_entry_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addrs = Addresses::new();
    let mut node = SingleNode::start(&addrs, &data, &dir.path().join("first.log"), &[]);
    node.wait_until_it_serves().await;
    let pid = node.child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = node.exit_status("SIGTERM").await;
    assert!(status.success(), "{status}\n{}", node.stderr());

    // Append what a newer version could have proposed: a write whose operation (variant 7)
    // this version does not know. It commits once the restarted node leads again.
    let bad_index = {
        let (mut storage, _) = storage::Storage::open(&data, storage::Options::new()).unwrap();
        let index = storage.last_index() + 1;
        let term = storage.hard_state().term();
        let command = Bytes::from_static(b"\x00\x00\x07\x01k");
        let entry = Entry::new(term, index, EntryPayload::Command(command));
        storage.persist_parts(None, &[entry], None).unwrap();
        storage.sync().unwrap();
        index
    };

    let mut node = SingleNode::start(&addrs, &data, &dir.path().join("second.log"), &[]);
    let status = node.exit_status("a committed entry it cannot decode").await;
    let stderr = node.stderr();
    assert!(!status.success(), "{status}\n{stderr}");
    let wanted = format!("committed entry {bad_index} cannot be decoded");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(&wanted)).collect();
    assert_eq!(lines.len(), 1, "one line naming the entry:\n{stderr}");
    assert!(lines[0].starts_with("kvd: "), "{}", lines[0]);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
