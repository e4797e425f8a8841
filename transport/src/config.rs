//! Transport configuration shared by every implementation.
//!
//! One value describes the cluster (id and peer addresses), this node (id, listen address and
//! the metadata it announces in its handshake) and the limits that keep a node safe from slow or
//! hostile peers: frame sizes, queue bounds, timeouts and the reconnection back-off.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use raft::NodeId;

use crate::faults::FaultRules;

/// Default cap on one normal frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Default cap on one snapshot frame: 1 GiB (snapshots travel on their own connection/stream).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: usize = 1024 * 1024 * 1024;

/// Configuration of one node's transport.
///
/// Built with [`TransportConfig::new`] and refined with the `with_*` methods:
///
/// ```
/// use std::collections::BTreeMap;
/// use transport::TransportConfig;
///
/// let peers = BTreeMap::from([(2, "127.0.0.1:7002".parse().unwrap())]);
/// let config = TransportConfig::new("cluster-a", 1, "127.0.0.1:7001".parse().unwrap(), peers)
///     .with_metadata("127.0.0.1:8001")
///     .with_max_frame_bytes(4 << 20);
/// assert_eq!(config.max_frame_bytes(), 4 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct TransportConfig {
    cluster_id: String,
    node_id: NodeId,
    listen_addr: SocketAddr,
    peers: BTreeMap<NodeId, SocketAddr>,
    metadata: String,
    max_frame_bytes: usize,
    max_snapshot_bytes: usize,
    control_queue: usize,
    bulk_queue: usize,
    bulk_queue_bytes: usize,
    snapshot_queue: usize,
    event_queue: usize,
    event_queue_bytes: usize,
    batch_bytes: usize,
    backoff_initial: Duration,
    backoff_max: Duration,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    jitter_seed: u64,
    faults: Option<FaultRules>,
}

impl TransportConfig {
    /// A configuration with default limits. `peers` maps every other member to its address;
    /// an entry for `node_id` itself is ignored.
    pub fn new(
        cluster_id: impl Into<String>,
        node_id: NodeId,
        listen_addr: SocketAddr,
        mut peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Self {
        peers.remove(&node_id);
        Self {
            cluster_id: cluster_id.into(),
            node_id,
            listen_addr,
            peers,
            metadata: String::new(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            control_queue: 1024,
            bulk_queue: 1024,
            bulk_queue_bytes: 64 * 1024 * 1024,
            snapshot_queue: 2,
            event_queue: 4096,
            event_queue_bytes: 256 * 1024 * 1024,
            batch_bytes: 256 * 1024,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            jitter_seed: node_id ^ 0x9e37_79b9_7f4a_7c15,
            faults: None,
        }
    }

    /// Opaque text announced to peers in the handshake (kvd puts its client address there).
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Largest normal frame accepted or sent (length prefix excluded).
    pub fn with_max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Largest snapshot frame accepted or sent on the snapshot connection/stream.
    pub fn with_max_snapshot_bytes(mut self, bytes: usize) -> Self {
        self.max_snapshot_bytes = bytes;
        self
    }

    /// Bounds of the per-peer outbound queues, in messages: the control lane (votes,
    /// heartbeats, responses), the bulk lane (appends) and the snapshot lane.
    pub fn with_queue_bounds(mut self, control: usize, bulk: usize, snapshot: usize) -> Self {
        self.control_queue = control.max(1);
        self.bulk_queue = bulk.max(1);
        self.snapshot_queue = snapshot.max(1);
        self
    }

    /// Bound of the bulk lane in bytes of queued entries (besides its bound in messages), so
    /// that large appends cannot pile up memory. A message is always accepted into an empty
    /// lane.
    pub fn with_bulk_queue_bytes(mut self, bytes: usize) -> Self {
        self.bulk_queue_bytes = bytes;
        self
    }

    /// Bound of the inbound event queue handed to the driver; a full queue slows readers down
    /// (back-pressure reaches the sending peer through the connection).
    pub fn with_event_queue(mut self, events: usize) -> Self {
        self.event_queue = events.max(1);
        self
    }

    /// Bound of the inbound event queue in bytes of message payload (besides its bound in
    /// events), capped at 4 GiB. A message larger than the bound still passes, alone.
    pub fn with_event_queue_bytes(mut self, bytes: usize) -> Self {
        self.event_queue_bytes = bytes.clamp(1, u32::MAX as usize);
        self
    }

    /// How many bytes a writer gathers from its queues into one write.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// Reconnection back-off: the first delay and the cap; each failure doubles the delay and
    /// a jitter picks a value in the upper half of it.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Time allowed for a connection attempt and for the handshake.
    pub fn with_timeouts(mut self, connect: Duration, handshake: Duration) -> Self {
        self.connect_timeout = connect;
        self.handshake_timeout = handshake;
        self
    }

    /// Seed of the back-off jitter (defaults to a value derived from the node id).
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = seed;
        self
    }

    /// Applies `rules` to this transport's messages (tests only: see [`crate::faults`]).
    /// Without this call the transport carries no fault-injection code on its paths.
    pub fn with_faults(mut self, rules: FaultRules) -> Self {
        self.faults = Some(rules);
        self
    }

    /// The cluster this node belongs to; peers announcing another one are refused.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address to listen on (port 0 picks a free port).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// The other members and their addresses.
    pub fn peers(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.peers
    }

    /// Whether `id` is a known peer (connections from anyone else are refused).
    pub fn is_peer(&self, id: NodeId) -> bool {
        self.peers.contains_key(&id)
    }

    /// The metadata announced in this node's handshake.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// Largest normal frame.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Largest snapshot frame.
    pub fn max_snapshot_bytes(&self) -> usize {
        self.max_snapshot_bytes
    }

    /// Control lane bound per peer.
    pub fn control_queue(&self) -> usize {
        self.control_queue
    }

    /// Bulk lane bound per peer.
    pub fn bulk_queue(&self) -> usize {
        self.bulk_queue
    }

    /// Bulk lane bound per peer, in bytes of queued entries.
    pub fn bulk_queue_bytes(&self) -> usize {
        self.bulk_queue_bytes
    }

    /// Snapshot lane bound per peer.
    pub fn snapshot_queue(&self) -> usize {
        self.snapshot_queue
    }

    /// Inbound event queue bound.
    pub fn event_queue(&self) -> usize {
        self.event_queue
    }

    /// Inbound event queue bound in bytes.
    pub fn event_queue_bytes(&self) -> usize {
        self.event_queue_bytes
    }

    /// Write batch size.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// First reconnection delay.
    pub fn backoff_initial(&self) -> Duration {
        self.backoff_initial
    }

    /// Largest reconnection delay.
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max
    }

    /// Connection attempt timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Seed of the back-off jitter.
    pub fn jitter_seed(&self) -> u64 {
        self.jitter_seed
    }

    /// The fault rules applied to this transport, if any.
    pub fn faults(&self) -> Option<&FaultRules> {
        self.faults.as_ref()
    }
}
