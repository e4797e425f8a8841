//! Running one node: storage, transport, node loop and gRPC, started in that order and
//! stopped in reverse on SIGINT/SIGTERM.
//!
//! Start-up fails with one clear line (no panic, no backtrace) on bad configuration: an
//! unusable data directory, a port in use, damaged storage, or a peer list that disagrees with
//! the membership the node already stored.
//!
//! At run time the node loop is the node: if it ends on its own (a committed entry it cannot
//! apply, or a panic when the binary's fail-stop hook is not installed), the client API stops
//! at once and [`serve`] returns the error, so the process never answers without a loop
//! behind it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use raft::{Membership, Node, NodeId};
use storage::{Options, Persister, Storage};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::api::{Api, ApiConfig};
use crate::config::{NodeConfig, TransportKind};
use crate::faults::{RulesWatcher, TestFaults};
use crate::node_loop::{ClusterView, LoopConfig, LoopInputs, NodeLoop};
use crate::proto::admin::admin_server::AdminServer;
use crate::proto::kv::kv_server::KvServer;
use crate::state_machine::KvStore;

/// A start-up or run-time failure, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(pub String);

fn fail(message: impl Into<String>) -> ServerError {
    ServerError(message.into())
}

/// The Raft configuration for this node.
pub fn raft_config(config: &NodeConfig) -> raft::Config {
    raft::Config::new(config.id)
        .heartbeat_interval(config.heartbeat)
        .election_timeout(config.election_timeout.0, config.election_timeout.1)
        .seed(run_seed(config))
}

/// A seed that differs between nodes and between runs of one node.
fn run_seed(config: &NodeConfig) -> u64 {
    config.id
        ^ std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs a node until SIGINT/SIGTERM, then shuts it down gracefully. Test-only faults come
/// from the environment (see [`crate::faults`]).
pub async fn run(config: NodeConfig) -> Result<(), ServerError> {
    let faults = TestFaults::from_env().map_err(fail)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = async move {
        wait_for_signal().await;
        info!("signal received: shutting down");
        let _ = stop_tx.send(true);
    };
    tokio::spawn(signal);
    serve(config, faults, stop_rx).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a node until `stop` becomes true, with `faults` injected (tests only; normally
/// [`TestFaults::none`]).
pub async fn serve(
    config: NodeConfig,
    faults: TestFaults,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        fail(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    check_writable(&config.data_dir)?;

    // Ports first, so a port in use fails before anything is written.
    let client_listener = tokio::net::TcpListener::bind(config.client_addr)
        .await
        .map_err(|e| {
            fail(format!(
                "cannot listen for clients on {}: {e}",
                config.client_addr
            ))
        })?;

    if let Some(n) = faults.torn_write_at() {
        warn!("test-only failpoint armed: WAL persist {n} will be torn and the process aborted");
    }
    let (storage, recovered) = Storage::open(
        &config.data_dir,
        Options::new()
            .segment_size(config.wal_segment_bytes)
            .torn_write_at(faults.torn_write_at()),
    )
    .map_err(|e| {
        fail(format!(
            "cannot open storage in {}: {e}",
            config.data_dir.display()
        ))
    })?;
    if let Some(cut) = recovered.report().cut() {
        warn!("recovery cut a torn write: {cut:?}");
    }
    let voters: BTreeSet<NodeId> = config.peers.keys().copied().chain([config.id]).collect();
    let fresh = recovered.is_fresh();
    let (state, snapshot, _report) = recovered.into_parts();
    let now = raft::Instant::ZERO;
    let node = if fresh {
        Node::new(
            raft_config(&config),
            Membership::new(voters.iter().copied()),
            now,
        )
    } else {
        Node::restart(raft_config(&config), state, now)
    }
    .map_err(|e| {
        fail(format!(
            "cannot start the Raft node from {}: {e}",
            config.data_dir.display()
        ))
    })?;
    if !fresh {
        let stored: BTreeSet<NodeId> = node.membership().voters().iter().copied().collect();
        if stored != voters {
            let names = |set: &BTreeSet<NodeId>| describe(set, &config);
            return Err(fail(format!(
                "the peer list disagrees with the membership stored in {}: stored voters {}, configured {}",
                config.data_dir.display(),
                names(&stored),
                names(&voters)
            )));
        }
    }
    let mut kv = KvStore::new(config.sessions);
    kv.restore(snapshot.data()).map_err(|e| {
        fail(format!(
            "the snapshot in {} cannot be decoded: {e}",
            config.data_dir.display()
        ))
    })?;

    let (storage_tx, storage_rx) = mpsc::unbounded_channel();
    let persister = Persister::spawn(storage, move |event| drop(storage_tx.send(event)));

    let peers: BTreeMap<NodeId, SocketAddr> = config
        .peers
        .iter()
        .map(|(&id, p)| (id, p.raft_addr))
        .collect();
    let mut transport_config = transport::TransportConfig::new(
        config.cluster_id.clone(),
        config.id,
        config.raft_addr,
        peers,
    )
    .with_metadata(config.client_addr.to_string());
    // Test-only: rules read before the transport starts, so that a node restarted inside a
    // partition starts partitioned.
    let (fault_rules, rules_watcher) = match faults.rules_file() {
        Some(path) => {
            warn!(path = %path.display(), "test-only fault injection enabled");
            let rules = transport::FaultRules::new(run_seed(&config).rotate_left(17));
            let mut watcher = RulesWatcher::new(path, config.peers.clone(), rules.clone());
            watcher.poll();
            transport_config = transport_config.with_faults(rules.clone());
            (Some(rules), Some(watcher))
        }
        None => (None, None),
    };
    let (transport, events) = match config.transport {
        TransportKind::Tcp => transport_tcp::start(transport_config).await.map_err(|e| {
            fail(format!(
                "cannot listen for peers on {}: {e}",
                config.raft_addr
            ))
        })?,
        TransportKind::Quic => {
            let dir = &config.certs_dir;
            transport_quic::certs::ensure_dev_certs(dir, voters.iter().copied())
                .map_err(|e| fail(format!("certificates in {}: {e}", dir.display())))?;
            let identity = transport_quic::NodeIdentity::from_dir(dir, config.id)
                .map_err(|e| fail(format!("certificates in {}: {e}", dir.display())))?;
            transport_quic::start(transport_config, identity)
                .await
                .map_err(|e| fail(format!("cannot start QUIC on {}: {e}", config.raft_addr)))?
        }
    };

    let rules_task = rules_watcher.map(|watcher| tokio::spawn(watcher.run()));

    let mut view = ClusterView::default();
    view.client_addrs
        .insert(config.id, config.client_addr.to_string());
    let (view_tx, view_rx) = watch::channel(view);
    let (request_tx, request_rx) = mpsc::channel(65_536);
    let loop_config = LoopConfig {
        snapshot_entries: config.snapshot_entries,
        snapshot_interval: config.snapshot_interval,
        panic_at_apply: faults.panic_at_apply(),
    };
    if let Some(n) = faults.panic_at_apply() {
        warn!("test-only failpoint armed: the node loop will panic at applied entry {n}");
    }
    let node_loop = NodeLoop::new(node, kv, persister, transport.clone(), loop_config, view_tx);
    let (loop_stop_tx, loop_stop_rx) = watch::channel(false);
    let inputs = LoopInputs {
        requests: request_rx,
        storage: storage_rx,
        peers: events,
        shutdown: loop_stop_rx,
    };
    let handover = config.election_timeout.1 * 2;
    let mut loop_task = tokio::spawn(node_loop.run(inputs, handover));

    let api = Api::new(
        ApiConfig {
            name: config.name.clone(),
            id: config.id,
            client_addr: config.client_addr.to_string(),
            max_key_bytes: config.max_key_bytes,
            max_value_bytes: config.max_value_bytes,
            request_timeout: Duration::from_secs(10),
            transport: config.transport.name().to_string(),
            peer_names: config
                .peers
                .iter()
                .map(|(&id, p)| (id, p.name.clone()))
                .collect::<HashMap<_, _>>(),
            faults: fault_rules,
        },
        request_tx,
        view_rx,
    );
    info!(
        name = %config.name,
        id = config.id,
        client = %config.client_addr,
        raft = %config.raft_addr,
        transport = config.transport.name(),
        data = %config.data_dir.display(),
        "node started"
    );
    // TCP_NODELAY on accepted client sockets: without it, small answers wait for delayed ACKs
    // (~40 ms). The builder's `tcp_nodelay` does not apply to an incoming stream we supply.
    let incoming =
        tonic::transport::server::TcpIncoming::from(client_listener).with_nodelay(Some(true));
    let stop_serving = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    // Standard gRPC health checking (grpc.health.v1) for load balancers and orchestrators.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<KvServer<Api>>().await;
    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(KvServer::new(api.clone()))
        .add_service(AdminServer::new(api))
        .serve_with_incoming_shutdown(incoming, stop_serving);
    tokio::pin!(grpc);
    let (served, ended) = tokio::select! {
        served = &mut grpc => {
            // Stop accepting (done), then hand leadership over and flush storage.
            let _ = loop_stop_tx.send(true);
            (served, (&mut loop_task).await)
        }
        // The loop only ends by itself on a fatal error: leaving this select drops the gRPC
        // server, so nothing more is answered.
        ended = &mut loop_task => (Ok(()), ended),
    };
    let persister = match ended {
        Ok(Ok(persister)) => persister,
        Ok(Err(fatal)) => {
            stop_now(rules_task, &transport).await;
            return Err(fail(format!("the node stopped: {fatal}")));
        }
        Err(crashed) => {
            stop_now(rules_task, &transport).await;
            return Err(fail(format!("the node loop crashed: {crashed}")));
        }
    };
    let flushed = persister.shutdown();
    if let Some(task) = rules_task {
        task.abort();
    }
    transport.shutdown().await;
    served.map_err(|e| fail(format!("client API failed: {e}")))?;
    flushed.map_err(|e| fail(format!("flushing storage on shutdown: {e}")))?;
    info!("stopped cleanly");
    Ok(())
}

/// Closes the transport (and the rules watcher) after the node loop failed.
async fn stop_now(
    rules_task: Option<tokio::task::JoinHandle<()>>,
    transport: &transport::Transport,
) {
    if let Some(task) = rules_task {
        task.abort();
    }
    transport.shutdown().await;
}

fn describe(set: &BTreeSet<NodeId>, config: &NodeConfig) -> String {
    let names: Vec<String> = set
        .iter()
        .map(|id| {
            if *id == config.id {
                config.name.clone()
            } else {
                config
                    .peers
                    .get(id)
                    .map_or_else(|| format!("#{id}"), |p| p.name.clone())
            }
        })
        .collect();
    format!("[{}]", names.join(", "))
}

fn check_writable(dir: &Path) -> Result<(), ServerError> {
    let probe = dir.join(".kvd-write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            fail(format!(
                "data directory {} is not writable: {e}",
                dir.display()
            ))
        })
}
