//! The node loop: one task owns the Raft core and feeds it events.
//!
//! It reads inputs (peer messages from the transport, client requests from the gRPC layer,
//! storage completions from the persister thread, the core's deadline), feeds them to
//! [`raft::Node`], drains the core's outputs to storage, transport and the state machine, and
//! sleeps until the next deadline or event. Everything that arrived together is fed before
//! draining, so proposals batch into one write and one append per follower. Storage runs on
//! its own thread ([`storage::Persister`]), so the leader replicates while its write is in
//! flight; the core's persist-before-speak rule keeps that safe.
//!
//! A committed entry the state machine cannot apply ends the loop with an error
//! ([`ApplyError`]): the node stops rather than skip it and diverge from its peers.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use raft::{Entry, EntryPayload, Index, NodeId, Output, Role, Snapshot, Term};
use storage::{Event as StorageEvent, Job, Persister};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};
use transport::{Event as PeerEvent, Events, Transport};

use crate::faults::PANIC_ENV;
use crate::state_machine::{ApplyError, KvStore, WriteResult};

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// This node does not lead; `leader` is who does, if known.
    #[error("not the leader")]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<NodeId>,
    },
    /// The request may or may not have been applied (leadership changed while it was in
    /// flight); retrying with the same client and request id is safe.
    #[error("{0}")]
    Unavailable(String),
    /// The node is shutting down or its storage failed.
    #[error("{0}")]
    Stopped(String),
}

/// A request from the API layer to the loop.
#[derive(Debug)]
pub enum ClientRequest {
    /// Replicate and apply a write.
    Write {
        /// The write, encoded for the log (see [`crate::command`]).
        command: Bytes,
        /// Answered once applied (or failed).
        reply: oneshot::Sender<Result<WriteResult, ClientError>>,
    },
    /// Read a key, linearizably unless `stale`.
    Read {
        /// The key.
        key: String,
        /// Serve from local state without confirming leadership.
        stale: bool,
        /// The value, if any.
        reply: oneshot::Sender<Result<Option<Bytes>, ClientError>>,
    },
    /// Hand leadership to `to`.
    Transfer {
        /// The target voter.
        to: NodeId,
        /// Accepted or refused.
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// Report status.
    Status {
        /// The status.
        reply: oneshot::Sender<Status>,
    },
}

/// What the API layer needs to know without asking the loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Current term.
    pub term: Term,
    /// Whether this node leads.
    pub is_leader: bool,
    /// The leader's id, if known.
    pub leader: Option<NodeId>,
    /// Client API addresses of nodes, learned in transport handshakes (and this node's own).
    pub client_addrs: BTreeMap<NodeId, String>,
}

impl ClusterView {
    /// The leader's client address, if known.
    pub fn leader_addr(&self) -> Option<&str> {
        self.leader
            .and_then(|id| self.client_addrs.get(&id))
            .map(String::as_str)
    }
}

/// A node's status, for the admin API.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Role name.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// Leader id (0 if unknown).
    pub leader: NodeId,
    /// Commit index.
    pub commit_index: Index,
    /// Applied index.
    pub applied_index: Index,
    /// Last log index.
    pub last_index: Index,
    /// Snapshot index.
    pub snapshot_index: Index,
    /// On the leader: `(peer, match index, voter)`.
    pub peers: Vec<(NodeId, Index, bool)>,
    /// Keys in the state machine.
    pub keys: u64,
}

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// Snapshot after this many applied entries.
    pub snapshot_entries: u64,
    /// Snapshot after this much time with new entries applied.
    pub snapshot_interval: Option<Duration>,
    /// Test-only ([`crate::faults`]): panic at this applied entry, counted from 1 since
    /// start-up.
    pub panic_at_apply: Option<u64>,
}

/// Inputs the loop selects over.
pub struct LoopInputs {
    /// Client requests from the API layer.
    pub requests: mpsc::Receiver<ClientRequest>,
    /// Storage completions from the persister thread.
    pub storage: mpsc::UnboundedReceiver<StorageEvent>,
    /// Peer events from the transport.
    pub peers: Events,
    /// Becomes true when the node should stop.
    pub shutdown: watch::Receiver<bool>,
}

type WriteReply = oneshot::Sender<Result<WriteResult, ClientError>>;
type ReadReply = oneshot::Sender<Result<Option<Bytes>, ClientError>>;

/// The loop's state. Build with [`NodeLoop::new`], run with [`NodeLoop::run`].
pub struct NodeLoop {
    node: raft::Node,
    kv: KvStore,
    persister: Persister,
    transport: Transport,
    started: std::time::Instant,
    config: LoopConfig,
    view: watch::Sender<ClusterView>,
    /// Writes proposed here: index → (term when proposed, reply).
    pending_writes: BTreeMap<Index, (Term, WriteReply)>,
    /// Reads waiting for their ReadIndex batch: read id → replies.
    pending_reads: HashMap<u64, Vec<(String, ReadReply)>>,
    /// Reads that arrived in this loop iteration; they share one ReadIndex.
    read_batch: Vec<(String, ReadReply)>,
    next_read_id: u64,
    snapshot_index: Index,
    /// Command bytes applied since the last snapshot.
    applied_bytes: u64,
    /// Extra share (in %) of the state's size the log must reach before the next snapshot:
    /// random per snapshot, so nodes sharing a disk do not all write theirs at once.
    snapshot_slack: u64,
    rng: raft::Rng,
    snapshot_at: std::time::Instant,
    snapshot_in_flight: bool,
    failed: Option<String>,
    /// Entries applied since start-up (for the panic failpoint).
    applied_entries: u64,
    /// Set when a committed entry cannot be applied: the loop ends with it.
    fatal: Option<ApplyError>,
}

impl NodeLoop {
    /// Assembles a loop around a node whose storage is already recovered.
    pub fn new(
        node: raft::Node,
        kv: KvStore,
        persister: Persister,
        transport: Transport,
        config: LoopConfig,
        view: watch::Sender<ClusterView>,
    ) -> Self {
        let snapshot_index = node.snapshot_index();
        let rng = raft::Rng::new(node.id() ^ 0x5eed_5a4a_5407);
        Self {
            node,
            kv,
            persister,
            transport,
            started: std::time::Instant::now(),
            config,
            view,
            pending_writes: BTreeMap::new(),
            pending_reads: HashMap::new(),
            read_batch: Vec::new(),
            next_read_id: 0,
            snapshot_index,
            applied_bytes: 0,
            snapshot_slack: 0,
            rng,
            snapshot_at: std::time::Instant::now(),
            snapshot_in_flight: false,
            failed: None,
            applied_entries: 0,
            fatal: None,
        }
    }

    fn now(&self) -> raft::Instant {
        raft::Instant::from_nanos(self.started.elapsed().as_nanos() as u64)
    }

    /// Runs until shutdown. On shutdown a leader first hands leadership to the most caught-up
    /// voter (for up to `handover`), then everything queued is flushed to storage.
    ///
    /// Ends early with an error, without waiting for shutdown, when a committed entry cannot
    /// be applied: the node must stop serving then (storage is still flushed, on drop).
    pub async fn run(
        mut self,
        mut inputs: LoopInputs,
        handover: Duration,
    ) -> Result<Persister, ApplyError> {
        self.drain();
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            let deadline = self.tokio_deadline();
            tokio::select! {
                biased;
                Some(event) = inputs.storage.recv() => self.on_storage(event),
                Some(event) = inputs.peers.recv() => self.on_peer(event),
                Some(request) = inputs.requests.recv(), if self.failed.is_none() => self.on_request(request),
                changed = inputs.shutdown.changed(), if stopping.is_none() => {
                    if changed.is_err() || *inputs.shutdown.borrow() {
                        stopping = Some(tokio::time::Instant::now() + handover);
                        self.begin_handover();
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
            }
            // Take whatever else is already waiting, so it is batched into this round.
            for _ in 0..1024 {
                let mut progressed = false;
                if let Ok(event) = inputs.storage.try_recv() {
                    self.on_storage(event);
                    progressed = true;
                }
                if let Some(event) = inputs.peers.try_recv() {
                    self.on_peer(event);
                    progressed = true;
                }
                if self.failed.is_none()
                    && let Ok(request) = inputs.requests.try_recv()
                {
                    self.on_request(request);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            self.flush_read_batch();
            self.drain();
            if let Some(error) = self.fatal.take() {
                self.fail_all(ClientError::Stopped(format!("the node stopped: {error}")));
                return Err(error);
            }
            if let Some(until) = stopping {
                let handed_over = !self.node.is_leader();
                if handed_over || tokio::time::Instant::now() >= until || self.failed.is_some() {
                    break;
                }
            }
        }
        self.fail_all(ClientError::Stopped("node is shutting down".into()));
        Ok(self.persister)
    }

    fn tokio_deadline(&self) -> tokio::time::Instant {
        let wake = self.node.poll_timeout();
        let wait = wake.saturating_duration_since(self.now());
        tokio::time::Instant::now() + wait
    }

    fn begin_handover(&mut self) {
        if !self.node.is_leader() {
            return;
        }
        let best = self
            .node
            .membership()
            .voters()
            .iter()
            .copied()
            .filter(|&id| id != self.node.id())
            .max_by_key(|&id| self.node.match_index(id).unwrap_or(0));
        if let Some(to) = best {
            let now = self.now();
            match self.node.transfer_leadership(now, to) {
                Ok(()) => info!(to, "shutting down: handing leadership over"),
                Err(e) => warn!("shutting down: cannot hand leadership over: {e}"),
            }
        }
    }

    fn on_storage(&mut self, event: StorageEvent) {
        let now = self.now();
        match event {
            StorageEvent::Durable(token) => self.node.persisted(now, token),
            StorageEvent::Fetched { entries, .. } => self.node.entries_fetched(now, entries),
            StorageEvent::SnapshotSaved(meta) => {
                info!(index = meta.index(), "snapshot saved");
                self.snapshot_in_flight = false;
                self.snapshot_index = meta.index();
                if let Err(e) = self.node.compact(now, meta.index()) {
                    warn!("compacting the log to {}: {e}", meta.index());
                }
            }
            StorageEvent::LatestSnapshot { to, snapshot } => {
                if let Err(e) = self.node.send_snapshot(now, to, snapshot) {
                    warn!(to, "sending a snapshot: {e}");
                }
            }
            StorageEvent::Failed(e) => {
                error!("storage failed, the node stops serving: {e}");
                self.failed = Some(e.to_string());
                self.fail_all(ClientError::Stopped(format!("storage failed: {e}")));
            }
        }
    }

    fn on_peer(&mut self, event: PeerEvent) {
        let now = self.now();
        match event {
            PeerEvent::Message { from, message } => self.node.step(now, from, message),
            PeerEvent::Unreachable { peer } => self.node.report_unreachable(now, peer),
            PeerEvent::PeerInfo { peer, metadata } => {
                self.view.send_modify(|view| {
                    view.client_addrs.insert(peer, metadata);
                });
            }
        }
    }

    fn on_request(&mut self, request: ClientRequest) {
        let now = self.now();
        match request {
            ClientRequest::Write { command, reply } => {
                let term = self.node.term();
                match self.node.propose(now, command) {
                    Ok(index) => {
                        self.pending_writes.insert(index, (term, reply));
                    }
                    Err(raft::Error::NotLeader { leader }) => {
                        let _ = reply.send(Err(ClientError::NotLeader { leader }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ClientError::Unavailable(e.to_string())));
                    }
                }
            }
            ClientRequest::Read {
                key,
                stale: true,
                reply,
            } => {
                let _ = reply.send(Ok(self.kv.get(&key).cloned()));
            }
            ClientRequest::Read {
                key,
                stale: false,
                reply,
            } => self.read_batch.push((key, reply)),
            ClientRequest::Transfer { to, reply } => {
                let result = self.node.transfer_leadership(now, to).map_err(|e| match e {
                    raft::Error::NotLeader { leader } => ClientError::NotLeader { leader },
                    other => ClientError::Unavailable(other.to_string()),
                });
                let _ = reply.send(result);
            }
            ClientRequest::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    /// Starts one ReadIndex for every linearizable read that arrived in this iteration.
    fn flush_read_batch(&mut self) {
        if self.read_batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.read_batch);
        self.next_read_id += 1;
        let id = self.next_read_id;
        let now = self.now();
        match self.node.read_index(now, id) {
            Ok(()) => {
                self.pending_reads.insert(id, batch);
            }
            Err(raft::Error::NotLeader { leader }) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(ClientError::NotLeader { leader }));
                }
            }
            Err(e) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(ClientError::Unavailable(e.to_string())));
                }
            }
        }
    }

    /// Carries out every output of the core.
    fn drain(&mut self) {
        // After a fatal error nothing more is carried out: the loop ends.
        while self.fatal.is_none()
            && let Some(output) = self.node.poll_output()
        {
            match output {
                Output::Persist(persist) => self.submit(Job::Persist(persist)),
                Output::Send { to, message } => {
                    // A full queue drops the message; the core re-sends what matters.
                    let _ = self.transport.send(to, message);
                }
                Output::Apply(entries) => self.apply(entries),
                Output::ApplySnapshot(snapshot) => self.restore(&snapshot),
                Output::ReadReady { id, .. } => {
                    for (key, reply) in self.pending_reads.remove(&id).unwrap_or_default() {
                        let _ = reply.send(Ok(self.kv.get(&key).cloned()));
                    }
                }
                Output::ReadFailed { id, error } => {
                    for (_, reply) in self.pending_reads.remove(&id).unwrap_or_default() {
                        let _ = reply.send(Err(ClientError::Unavailable(format!(
                            "read not confirmed: {error}"
                        ))));
                    }
                }
                Output::FetchEntries { first, last } => self.submit(Job::Fetch { first, last }),
                Output::SnapshotNeeded { to } => self.submit(Job::LatestSnapshot { to }),
                Output::RoleChanged { role, term, leader } => self.on_role(role, term, leader),
            }
        }
        self.maybe_snapshot();
    }

    fn submit(&mut self, job: Job) {
        if let Err(e) = self.persister.submit(job)
            && self.failed.is_none()
        {
            error!("storage stopped: {e}");
            self.failed = Some(e.to_string());
        }
    }

    fn on_role(&mut self, role: Role, term: Term, leader: Option<NodeId>) {
        info!(%role, term, ?leader, "role changed");
        if role != Role::Leader {
            // Writes proposed as leader may or may not commit: the client retries (with the
            // same ids, so a write that did commit is not applied twice).
            let lost = std::mem::take(&mut self.pending_writes);
            for (_, (_, reply)) in lost {
                let _ = reply.send(Err(ClientError::Unavailable(
                    "leadership changed while the write was in flight; retry".into(),
                )));
            }
        }
        self.view.send_modify(|view| {
            view.term = term;
            view.is_leader = role == Role::Leader;
            view.leader = leader;
        });
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let mut applied = None;
        for entry in entries {
            let index = entry.index();
            self.applied_entries += 1;
            if self.config.panic_at_apply == Some(self.applied_entries) {
                panic!(
                    "test-only failpoint {PANIC_ENV}={}: panicking while applying entry {index}",
                    self.applied_entries
                );
            }
            if let EntryPayload::Command(bytes) = entry.payload() {
                self.applied_bytes += bytes.len() as u64;
            }
            let result = match self.kv.apply_entry(&entry) {
                Ok(result) => result,
                Err(error) => {
                    // Not applied, and nothing after it may be: the loop ends with the error.
                    self.fatal = Some(error);
                    break;
                }
            };
            if let Some((term, reply)) = self.pending_writes.remove(&index) {
                let answer = match result {
                    Some(result) if term == entry.term() => Ok(result),
                    _ => Err(ClientError::Unavailable(
                        "the write was superseded by a new leader; retry".into(),
                    )),
                };
                let _ = reply.send(answer);
            }
            applied = Some(index);
        }
        if let Some(last) = applied {
            let now = self.now();
            self.node.applied(now, last);
        }
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        if let Err(e) = self.kv.restore(snapshot.data()) {
            error!("installing a snapshot at {}: {e}", snapshot.meta().index());
            self.failed = Some(format!("snapshot from the leader cannot be decoded: {e}"));
            return;
        }
        self.snapshot_index = snapshot.meta().index();
        info!(
            index = snapshot.meta().index(),
            bytes = snapshot.data().len(),
            "installed a snapshot from the leader"
        );
        let now = self.now();
        self.node.applied(now, snapshot.meta().index());
    }

    /// Saves a snapshot when enough entries (or enough time with new entries) passed.
    fn maybe_snapshot(&mut self) {
        if self.snapshot_in_flight || self.failed.is_some() || self.fatal.is_some() {
            return;
        }
        let applied = self.node.applied_index();
        let since = applied.saturating_sub(self.snapshot_index);
        // A snapshot costs time and disk in proportion to the state: take one only after the
        // log has grown by a quarter of the state's size too, so a large state is not
        // rewritten every few thousand writes (snapshot work stays ≤ 4× the bytes written).
        let by_count = since >= self.config.snapshot_entries
            && self.applied_bytes.saturating_mul(400)
                >= self
                    .kv
                    .data_bytes()
                    .saturating_mul(100 + self.snapshot_slack);
        let by_time = since > 0
            && self
                .config
                .snapshot_interval
                .is_some_and(|every| self.snapshot_at.elapsed() >= every);
        if !by_count && !by_time {
            return;
        }
        let Ok(meta) = self.node.snapshot_meta(applied) else {
            return;
        };
        self.snapshot_in_flight = true;
        self.snapshot_at = std::time::Instant::now();
        self.applied_bytes = 0;
        self.snapshot_slack = self.rng.range(0, 50);
        let started = std::time::Instant::now();
        let source = Box::new(self.kv.snapshot_source());
        info!(
            index = meta.index(),
            keys = self.kv.len(),
            bytes = self.kv.data_bytes(),
            took_us = started.elapsed().as_micros() as u64,
            "snapshot started"
        );
        self.submit(Job::WriteSnapshot { meta, source });
    }

    fn status(&self) -> Status {
        let node = &self.node;
        let membership = node.membership();
        let peers = if node.is_leader() {
            membership
                .members()
                .filter(|&id| id != node.id())
                .map(|id| {
                    (
                        id,
                        node.match_index(id).unwrap_or(0),
                        membership.is_voter(id),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            role: node.role().to_string(),
            term: node.term(),
            leader: node.leader().unwrap_or(0),
            commit_index: node.commit_index(),
            applied_index: node.applied_index(),
            last_index: node.last_index(),
            snapshot_index: node.snapshot_index(),
            peers,
            keys: self.kv.len() as u64,
        }
    }

    fn fail_all(&mut self, error: ClientError) {
        for (_, (_, reply)) in std::mem::take(&mut self.pending_writes) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, replies) in std::mem::take(&mut self.pending_reads) {
            for (_, reply) in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        for (_, reply) in std::mem::take(&mut self.read_batch) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}
