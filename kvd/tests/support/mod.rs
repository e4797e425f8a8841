//! A real multi-process cluster for integration tests: `kvd` child processes on loopback
//! ports, data in a temporary directory, killed with SIGKILL or stopped with SIGTERM by PID.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The client generated from the seed's `kv.proto`, unchanged.
pub(crate) mod seed {
    include!(concat!(env!("OUT_DIR"), "/seed/kv.rs"));
}

use seed::kv_client::KvClient;
use tonic::transport::Channel;

pub(crate) struct Cluster {
    pub dir: tempfile::TempDir,
    pub transport: &'static str,
    pub client: Vec<SocketAddr>,
    pub raft: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    /// Extra environment for every node (settings as `KVD_*` variables).
    env: Vec<(String, String)>,
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Cluster {
    pub(crate) fn start(nodes: usize, transport: &'static str) -> Self {
        Self::start_with(nodes, transport, &[])
    }

    /// Like [`Cluster::start`], with extra `KVD_*` settings for every node.
    pub(crate) fn start_with(nodes: usize, transport: &'static str, env: &[(&str, &str)]) -> Self {
        let mut cluster = Self {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir: tempfile::tempdir().unwrap(),
            transport,
            client: (0..nodes).map(|_| free_port()).collect(),
            raft: (0..nodes).map(|_| free_port()).collect(),
            children: (0..nodes).map(|_| None).collect(),
        };
        if transport == "quic" {
            // One CA for the cluster, made before any node starts (as `kvd dev` does).
            let certs = cluster.dir.path().join("certs");
            let run = |args: &[&str]| {
                let status = Command::new(env!("CARGO_BIN_EXE_kvd"))
                    .args(args)
                    .arg("--dir")
                    .arg(&certs)
                    .status();
                assert!(status.unwrap().success(), "kvd {args:?}");
            };
            run(&["certs", "init"]);
            for i in 0..nodes {
                run(&["certs", "issue", "--node", &format!("node-{}", i + 1)]);
            }
        }
        for i in 0..nodes {
            cluster.spawn(i);
        }
        cluster
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}", i + 1))
    }

    pub(crate) fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = (0..self.raft.len())
            .filter(|&j| j != i)
            .map(|j| format!("node-{}={}", j + 1, self.raft[j]))
            .collect();
        let log =
            std::fs::File::create(self.dir.path().join(format!("node-{}.log", i + 1))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kvd"))
            .args(["--node", &format!("node-{}", i + 1)])
            .args([
                "--addr",
                &self.client[i].to_string(),
                "--raft-addr",
                &self.raft[i].to_string(),
            ])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .arg("--certs-dir")
            .arg(self.dir.path().join("certs"))
            .args(["--peers", &peers.join(","), "--transport", self.transport])
            .env("KVD_LOG", "info")
            .env("KVD_WAL_SEGMENT_BYTES", "1048576")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(kvd::faults::FAULTS_FILE_ENV, self.rules_path(i))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kvd");
        self.children[i] = Some(child);
    }

    fn rules_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}.faults", i + 1))
    }

    /// Replaces node `i`'s fault rules (test-only fault injection; empty heals), atomically.
    pub(crate) fn set_rules(&self, i: usize, rules: &kvd::faults::RulesFile) {
        let path = self.rules_path(i);
        let staging = path.with_extension("new");
        std::fs::write(&staging, rules.to_string()).unwrap();
        std::fs::rename(&staging, &path).unwrap();
    }

    /// SIGKILL: no chance to flush or hand over.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.children[i].take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not stop on SIGTERM",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{}.log", i + 1)))
            .unwrap_or_default()
    }

    pub(crate) async fn client(&self, i: usize) -> KvClient<Channel> {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.client[i])).unwrap();
        KvClient::new(endpoint.connect_lazy())
    }

    /// Waits until some running node reports itself leader; returns its index.
    pub(crate) async fn leader(&self) -> usize {
        self.wait_for("a leader", || async {
            for i in 0..self.client.len() {
                if self.children[i].is_none() {
                    continue;
                }
                let mut client = self.client(i).await;
                if let Ok(health) = client.health(seed::HealthRequest {}).await
                    && health.into_inner().is_leader
                {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    /// Retries `probe` (a request to the cluster) until it yields a value, for at most 30 s.
    pub(crate) async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = (0..self.client.len()).map(|i| self.log(i)).collect();
                panic!(
                    "timed out waiting for {what}; logs:\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn put(
        &self,
        node: usize,
        key: &str,
        value: &str,
        client_id: &str,
        request_id: u64,
    ) -> seed::PutResponse {
        let mut client = self.client(node).await;
        let request = seed::PutRequest {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            client_id: client_id.into(),
            request_id,
        };
        client.put(request).await.expect("put").into_inner()
    }

    pub(crate) async fn get(&self, node: usize, key: &str) -> Option<String> {
        let mut client = self.client(node).await;
        let answer = client
            .get(seed::GetRequest { key: key.into() })
            .await
            .expect("get")
            .into_inner();
        answer
            .found
            .then(|| String::from_utf8(answer.value).unwrap())
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
