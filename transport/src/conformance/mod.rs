//! The conformance suite every transport must pass.
//!
//! Each check is an async function taking a [`Harness`], which starts the transport under test
//! and opens raw streams to it. A transport crate runs them all with one macro in its
//! `tests/conformance.rs`:
//!
//! ```ignore
//! transport::conformance_tests!(my_transport::TestHarness::new());
//! ```
//!
//! Everything runs on 127.0.0.1 with ports picked by binding port 0. Waits are on events or
//! counters, with timeouts only as failure guards: no check depends on how fast the machine
//! is, so the suite passes on a loaded machine as it does on an idle one.

mod delivery;
mod faults;
mod hostile;
pub mod sample;

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use raft::NodeId;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{Counter, Counters, Event, Events, Transport, TransportConfig};

pub use delivery::{
    delivery_after_peer_restart, dropping_the_handle_stops_the_transport,
    full_lane_refuses_at_once, ordering_per_peer, peer_info_carries_metadata, shutdown_is_clean,
    snapshot_streams_while_heartbeats_flow,
};
pub use faults::{blocked_peer_is_cut_off_both_ways, delayed_messages_arrive_late};
pub use hostile::{
    garbage_bytes_are_refused, oversized_frame_is_refused, truncated_frame_is_counted,
    unknown_node_is_refused, wrong_cluster_id_is_refused,
};

/// The cluster id the suite uses.
pub const CLUSTER_ID: &str = "conformance";

/// Guard against a hung test: no single wait should come near it.
pub const WAIT: Duration = Duration::from_secs(20);

/// Starts the transport under test and opens raw streams to it.
pub trait Harness: Send + Sync {
    /// Starts a transport with `config` (security material for `config.node_id()` is the
    /// harness's business).
    fn start(
        &self,
        config: TransportConfig,
    ) -> impl Future<Output = io::Result<(Transport, Events)>> + Send;

    /// A loopback address with a port that is free right now.
    fn free_addr(&self) -> SocketAddr;

    /// Opens a byte stream to node `node` at `addr`, authenticated below the handshake as
    /// `as_node` (QUIC: presenting that node's certificate), and sends nothing on it.
    fn raw_stream(
        &self,
        addr: SocketAddr,
        node: NodeId,
        as_node: NodeId,
    ) -> impl Future<Output = io::Result<RawStream>> + Send;
}

/// A raw stream opened by [`Harness::raw_stream`].
pub struct RawStream {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    _guard: Box<dyn Any + Send>,
}

impl RawStream {
    /// Wraps the halves of a stream; `guard` is kept alive as long as the stream (e.g. the
    /// QUIC endpoint the stream belongs to).
    pub fn new(
        reader: impl AsyncRead + Unpin + Send + 'static,
        writer: impl AsyncWrite + Unpin + Send + 'static,
        guard: impl Any + Send,
    ) -> Self {
        Self {
            reader: Box::new(reader),
            writer: Box::new(writer),
            _guard: Box::new(guard),
        }
    }

    /// The read half.
    pub fn reader(&mut self) -> &mut (dyn AsyncRead + Unpin + Send) {
        &mut *self.reader
    }

    /// The write half.
    pub fn writer(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        &mut *self.writer
    }
}

impl std::fmt::Debug for RawStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawStream")
    }
}

/// One started node of a test cluster.
#[derive(Debug)]
pub struct TestNode {
    /// The node's id.
    pub id: NodeId,
    /// Its configuration (restart it with the same one).
    pub config: TransportConfig,
    /// Its transport.
    pub transport: Transport,
    /// Its events.
    pub events: EventLog,
}

/// A node's event stream that loses nothing: a wait takes the first event it asks for, and
/// the events it passes over on the way stay queued, in order, for later waits and checks.
///
/// A wait that threw away what it passed over could swallow the very event a later wait (or
/// a "nothing from X arrived" check) needs, and whether it did would depend on timing.
#[derive(Debug)]
pub struct EventLog {
    events: Events,
    passed_over: VecDeque<Event>,
}

impl EventLog {
    /// Wraps a transport's event stream.
    pub fn new(events: Events) -> Self {
        Self {
            events,
            passed_over: VecDeque::new(),
        }
    }

    /// The next event, passed-over ones first; `None` once the transport has shut down and
    /// every event has been taken.
    pub async fn recv(&mut self) -> Option<Event> {
        match self.passed_over.pop_front() {
            Some(event) => Some(event),
            None => self.events.recv().await,
        }
    }

    /// The next event if one is ready, passed-over ones first.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.passed_over
            .pop_front()
            .or_else(|| self.events.try_recv())
    }

    /// Waits for at least one event and moves up to `limit` into `buffer`, passed-over ones
    /// first; returns how many were added (0 once the stream has ended).
    pub async fn recv_many(&mut self, buffer: &mut Vec<Event>, limit: usize) -> usize {
        if self.passed_over.is_empty() {
            return self.events.recv_many(buffer, limit).await;
        }
        let taken = limit.min(self.passed_over.len());
        buffer.extend(self.passed_over.drain(..taken));
        taken
    }

    /// Takes every event that has arrived so far, passed-over ones first, without waiting.
    ///
    /// A check that starts from a known point calls this there, so that an earlier event of
    /// the same kind (say, an `Unreachable` from before the peer had started) cannot answer a
    /// later wait; a check that nothing unwanted arrived inspects what it returns.
    pub fn take_ready(&mut self) -> Vec<Event> {
        let mut taken: Vec<Event> = self.passed_over.drain(..).collect();
        while let Some(event) = self.events.try_recv() {
            taken.push(event);
        }
        taken
    }

    /// Waits (at most [`WAIT`]) for the first event that `pick` accepts and takes it; every
    /// other event stays queued.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        if let Some((at, found)) = self
            .passed_over
            .iter()
            .enumerate()
            .find_map(|(at, event)| Some((at, pick(event)?)))
        {
            self.passed_over.remove(at);
            return found;
        }
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(event) => match pick(&event) {
                        Some(found) => return found,
                        None => self.passed_over.push_back(event),
                    },
                    None => panic!("event stream ended while waiting for {what}"),
                }
            }
        };
        match tokio::time::timeout(WAIT, wait).await {
            Ok(found) => found,
            Err(_) => panic!(
                "timed out waiting for {what}; passed over: {}",
                self.summary()
            ),
        }
    }

    /// The passed-over events in short (a snapshot's bytes would flood a failure message).
    fn summary(&self) -> String {
        const SHOWN: usize = 20;
        let mut shown: Vec<String> = self
            .passed_over
            .iter()
            .take(SHOWN)
            .map(|event| match event {
                Event::Message { from, message } => format!("{} from {from}", message.kind()),
                Event::Unreachable { peer } => format!("unreachable {peer}"),
                Event::PeerInfo { peer, .. } => format!("peer info {peer}"),
            })
            .collect();
        if self.passed_over.len() > SHOWN {
            shown.push(format!("{} more", self.passed_over.len() - SHOWN));
        }
        format!("[{}]", shown.join(", "))
    }
}

/// The configuration the suite gives node `id` of a cluster at `addrs`: short back-off and
/// timeouts so that failures show quickly.
pub fn test_config(
    cluster_id: &str,
    id: NodeId,
    addrs: &BTreeMap<NodeId, SocketAddr>,
) -> TransportConfig {
    let listen = addrs
        .get(&id)
        .copied()
        .unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal address"));
    TransportConfig::new(cluster_id, id, listen, addrs.clone())
        .with_metadata(format!("meta-{id}"))
        .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
}

/// Reserves addresses for nodes `ids`.
pub fn addresses(harness: &impl Harness, ids: &[NodeId]) -> BTreeMap<NodeId, SocketAddr> {
    ids.iter().map(|&id| (id, harness.free_addr())).collect()
}

/// Starts one node.
pub async fn start_node(harness: &impl Harness, config: TransportConfig) -> TestNode {
    let id = config.node_id();
    let (transport, events) = harness
        .start(config.clone())
        .await
        .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"));
    TestNode {
        id,
        config,
        transport,
        events: EventLog::new(events),
    }
}

/// Starts nodes `ids` of one cluster, each knowing all the others.
pub async fn start_cluster(harness: &impl Harness, ids: &[NodeId]) -> Vec<TestNode> {
    let addrs = addresses(harness, ids);
    let mut nodes = Vec::new();
    for &id in ids {
        nodes.push(start_node(harness, test_config(CLUSTER_ID, id, &addrs)).await);
    }
    nodes
}

/// Waits (at most [`WAIT`]) until `counter` reaches `at_least`.
///
/// Counters are plain atomics with no notification, so this polls; unlike a sleep followed by
/// an assertion it waits for the condition itself, however slowly the machine runs.
pub async fn wait_counter(counters: &Counters, counter: Counter, at_least: u64) {
    let reached = tokio::time::timeout(WAIT, async {
        while counters.get(counter) < at_least {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{} never reached {at_least} (it is {})",
        counter.name(),
        counters.get(counter)
    );
}

/// Waits until `node` has completed a handshake with `peer` (in either direction).
pub async fn wait_connected(node: &mut TestNode, peer: NodeId) {
    let what = format!("node {} to learn about peer {peer}", node.id);
    node.events
        .wait_for(&what, |event| match event {
            Event::PeerInfo { peer: p, .. } if *p == peer => Some(()),
            _ => None,
        })
        .await
}

/// Waits for the next message from `from` (other events stay queued).
pub async fn wait_message(node: &mut TestNode, from: NodeId) -> raft::Message {
    let what = format!("node {} to receive a message from {from}", node.id);
    node.events
        .wait_for(&what, |event| match event {
            Event::Message { from: f, message } if *f == from => Some(message.clone()),
            _ => None,
        })
        .await
}

/// Sends `message`, retrying while the lane is full (the queue drains as the link writes).
pub async fn send_retrying(transport: &Transport, to: NodeId, message: raft::Message) {
    loop {
        match transport.send(to, message.clone()) {
            Ok(()) => return,
            Err(crate::SendError::QueueFull { .. }) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("send to {to} failed: {e}"),
        }
    }
}

/// Shuts every node down.
pub async fn shutdown_all(nodes: Vec<TestNode>) {
    for node in nodes {
        node.transport.shutdown().await;
    }
}

/// Expands to one `#[tokio::test]` per conformance check, each with a fresh harness built by
/// `$harness`. The calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@tests $harness;
            ordering_per_peer,
            delivery_after_peer_restart,
            snapshot_streams_while_heartbeats_flow,
            peer_info_carries_metadata,
            full_lane_refuses_at_once,
            shutdown_is_clean,
            dropping_the_handle_stops_the_transport,
            garbage_bytes_are_refused,
            oversized_frame_is_refused,
            truncated_frame_is_counted,
            wrong_cluster_id_is_refused,
            unknown_node_is_refused,
            blocked_peer_is_cut_off_both_ways,
            delayed_messages_arrive_late,
        );
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}
