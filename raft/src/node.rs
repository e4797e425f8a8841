//! [`Node`]: one member of a Raft cluster, as a pure state machine.
//!
//! This file holds the node's state, its constructors, the inputs a driver feeds it, and the
//! output queue. The protocol rules live beside it: `election.rs`, `replication.rs`,
//! `read_index.rs` and `snapshot.rs` each add the handlers of one concern.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::config::Config;
use crate::entry::{Entry, EntryPayload, HardState, Snapshot, SnapshotMeta};
use crate::error::Error;
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::Message;
use crate::output::{Output, Persist, PersistToken};
use crate::progress::Progress;
use crate::read_index::ReadState;
use crate::rng::Rng;
use crate::stats::Stats;
use crate::types::{Index, Instant, NodeId, Role, Term};

/// State recovered from storage, for [`Node::restart`].
#[derive(Clone, Debug, Default)]
pub struct RestoreState {
    /// The last hard state persisted.
    pub hard_state: HardState,
    /// Metadata of the snapshot the state machine was restored from (index 0 if none).
    pub snapshot: SnapshotMeta,
    /// Every log entry after the snapshot, in order.
    pub entries: Vec<Entry>,
}

/// One member of a Raft cluster: events in, [`Output`]s out, no IO.
///
/// # Driving a node
///
/// A driver owns the node and repeats:
/// 1. feed inputs as they happen, each with the current time: [`Node::step`] for a peer's
///    message, [`Node::propose`] and [`Node::read_index`] for client requests,
///    [`Node::handle_timeout`] when [`Node::poll_timeout`]'s deadline has passed, and the
///    completions [`Node::persisted`], [`Node::applied`], [`Node::entries_fetched`],
///    [`Node::send_snapshot`];
/// 2. drain [`Node::poll_output`] until it returns `None`, acting on each [`Output`] in order
///    (persist, send, apply, ...);
/// 3. sleep until [`Node::poll_timeout`] or the next event.
///
/// Feeding many inputs before draining batches them: many proposals become one
/// [`Output::Persist`] and one append per follower.
///
/// # Persist before you speak
///
/// A message that depends on state not yet durable (a granted vote, an append
/// acknowledgement, anything a candidate sends in its new term) is held back until the driver
/// reports the [`PersistToken`] covering that state with [`Node::persisted`]. A leader sends
/// appends while its own write is in flight and counts itself toward a quorum only once the
/// write is durable. A driver may therefore persist asynchronously and still be safe.
///
/// ```
/// use raft::{Config, Instant, Membership, Node, Output};
///
/// // A single-voter cluster elects itself once its election timeout passes.
/// let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
/// let mut now = Instant::ZERO;
/// let mut committed = Vec::new();
/// for _ in 0..10 {
///     now = node.poll_timeout();
///     node.handle_timeout(now);
///     if node.is_leader() && committed.is_empty() {
///         node.propose(now, "hello".into()).unwrap();
///     }
///     while let Some(output) = node.poll_output() {
///         match output {
///             Output::Persist(p) => node.persisted(now, p.token()), // pretend it was fsynced
///             Output::Apply(entries) => {
///                 let last = entries.last().unwrap().index();
///                 committed.extend(entries.iter().filter_map(|e| e.command().cloned()));
///                 node.applied(now, last);
///             }
///             _ => {}
///         }
///     }
/// }
/// assert_eq!(committed, vec![bytes::Bytes::from("hello")]);
/// ```
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) rng: Rng,
    pub(crate) now: Instant,

    pub(crate) role: Role,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,

    pub(crate) log: RaftLog,
    pub(crate) commit: Index,
    /// Highest index the driver reported applied.
    pub(crate) applied: Index,
    /// Highest index handed out in an [`Output::Apply`] / [`Output::ApplySnapshot`].
    pub(crate) apply_emitted: Index,

    /// The configuration in force: the latest one in the log.
    pub(crate) membership: Membership,
    pub(crate) membership_index: Index,
    /// Configurations found in the log after the snapshot, oldest first, for rollback on
    /// truncation; the snapshot's own is `snapshot_membership`.
    pub(crate) membership_log: Vec<(Index, Membership)>,
    pub(crate) snapshot_membership: Membership,

    // Persistence bookkeeping.
    pub(crate) next_token: u64,
    pub(crate) durable_token: u64,
    /// Token of the latest persist that changed the term or vote.
    pub(crate) hard_state_token: u64,
    /// `(token, term)` of each persist in flight that changes the term or vote.
    pub(crate) hard_states_in_flight: VecDeque<(u64, Term)>,
    /// The term of the latest durable hard state.
    pub(crate) durable_term: Term,
    /// `(token, last index it makes durable)`, clamped when later writes truncate.
    pub(crate) persists_in_flight: VecDeque<(u64, Index)>,
    /// Highest index whose entry (and all before it) is durable and in the current log.
    pub(crate) stable_index: Index,
    pub(crate) emitted_hard_state: HardState,
    /// A snapshot received from the leader, to be handed to storage in the next persist.
    pub(crate) pending_snapshot: Option<Snapshot>,
    /// A snapshot handed to storage with `token`, to be applied once that is durable.
    pub(crate) snapshot_to_apply: Option<(u64, Snapshot)>,

    // Output.
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) outbox: Vec<(NodeId, Message)>,
    /// Messages waiting for a persist token to become durable: `(token, to, message)`.
    pub(crate) gated: VecDeque<(u64, NodeId, Message)>,
    pub(crate) dirty: bool,
    pub(crate) reported_role: Option<(Role, Term, Option<NodeId>)>,

    // Timers.
    pub(crate) election_deadline: Instant,
    pub(crate) heartbeat_deadline: Instant,
    pub(crate) check_quorum_deadline: Instant,
    /// When this node last heard from a leader of its current term.
    pub(crate) leader_contact: Option<Instant>,

    // Candidate.
    pub(crate) votes: BTreeMap<NodeId, bool>,

    // Leader.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) uncommitted_bytes: usize,
    pub(crate) transfer: Option<(NodeId, Instant)>,
    pub(crate) replicate_pending: bool,
    pub(crate) commit_broadcast: Index,
    /// The entries asked of storage for lagging followers, and when to ask again.
    pub(crate) fetch_in_flight: Option<(Index, Index, Instant)>,

    pub(crate) reads: ReadState,
    pub(crate) stats: Stats,
}

impl Node {
    /// Starts a brand-new node of a cluster whose initial configuration is `membership`.
    ///
    /// The first output is a [`Output::Persist`] carrying an empty snapshot at index 0 with
    /// this membership: storing it is what lets [`Node::restart`] find the membership again.
    /// A node joining an existing cluster passes an empty [`Membership`] and waits for the
    /// leader to contact it.
    pub fn new(config: Config, membership: Membership, now: Instant) -> Result<Self, Error> {
        let meta = SnapshotMeta::new(0, 0, membership);
        let mut node = Self::build(config, HardState::default(), meta.clone(), Vec::new(), now)?;
        node.pending_snapshot = Some(Snapshot::new(meta, Bytes::new()));
        node.dirty = true;
        Ok(node)
    }

    /// Restarts a node from what its storage holds. The driver restores its state machine
    /// from the snapshot; the node then re-applies committed entries after it.
    ///
    /// Storage that no correct run could have produced is refused with
    /// [`Error::InvalidConfig`] naming what is wrong: entries that do not follow the snapshot
    /// contiguously or whose terms decrease, a hard state whose term is below the last entry's
    /// or whose commit index is past the last index, a vote for node 0, or an index or term
    /// above 2^63 - 1. (A vote for a node outside the configuration is not refused: a node
    /// may vote for a candidate of a configuration it has not seen yet, or keep its vote after
    /// a change removed that candidate in the same term.)
    pub fn restart(config: Config, state: RestoreState, now: Instant) -> Result<Self, Error> {
        let RestoreState {
            hard_state,
            snapshot,
            entries,
        } = state;
        let bad = |why: String| Err(Error::InvalidConfig(format!("restored state: {why}")));
        let in_range = |x: u64| x <= crate::types::MAX_INDEX;
        if !in_range(snapshot.index()) || !in_range(snapshot.term()) {
            return bad(format!(
                "snapshot at index {} term {} is out of range",
                snapshot.index(),
                snapshot.term()
            ));
        }
        if snapshot.index() > 0 && snapshot.term() == 0 {
            return bad(format!("snapshot at index {} has term 0", snapshot.index()));
        }
        let mut last_term = snapshot.term();
        let mut expected = snapshot.index();
        for entry in &entries {
            expected += 1;
            if entry.index() != expected {
                return bad(format!(
                    "the log is not contiguous after the snapshot at {}: expected index \
                     {expected}, found {}",
                    snapshot.index(),
                    entry.index()
                ));
            }
            if entry.term() < last_term || !in_range(entry.term()) || !in_range(expected) {
                return bad(format!(
                    "entry {} has term {} after term {last_term}",
                    entry.index(),
                    entry.term()
                ));
            }
            last_term = entry.term();
        }
        if hard_state.term() < last_term {
            return bad(format!(
                "hard state term {} is below the last entry's term {last_term}",
                hard_state.term()
            ));
        }
        if hard_state.commit() > expected {
            return bad(format!(
                "commit index {} is past the last index {expected}",
                hard_state.commit()
            ));
        }
        if hard_state.vote() == Some(0) {
            return bad("a vote for node 0 (reserved for nobody)".to_string());
        }
        let mut node = Self::build(config, hard_state, snapshot, entries, now)?;
        node.dirty = true;
        Ok(node)
    }

    fn build(
        cfg: Config,
        hard_state: HardState,
        snapshot: SnapshotMeta,
        entries: Vec<Entry>,
        now: Instant,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let mut membership_log = Vec::new();
        for entry in &entries {
            if let EntryPayload::Membership(m) = entry.payload() {
                membership_log.push((entry.index(), (**m).clone()));
            }
        }
        let (membership_index, membership) = membership_log
            .last()
            .cloned()
            .unwrap_or_else(|| (snapshot.index(), snapshot.membership().clone()));
        let log = RaftLog::new(snapshot.index(), snapshot.term(), entries);
        let commit = hard_state
            .commit()
            .max(snapshot.index())
            .min(log.last_index());
        let mut node = Self {
            rng: Rng::new(cfg.seed),
            cfg,
            now,
            role: Role::Follower,
            term: hard_state.term(),
            vote: hard_state.vote(),
            leader: None,
            stable_index: log.last_index(),
            log,
            commit,
            applied: snapshot.index(),
            apply_emitted: snapshot.index(),
            membership,
            membership_index,
            membership_log,
            snapshot_membership: snapshot.membership().clone(),
            next_token: 0,
            durable_token: 0,
            hard_state_token: 0,
            hard_states_in_flight: VecDeque::new(),
            durable_term: hard_state.term(),
            persists_in_flight: VecDeque::new(),
            emitted_hard_state: hard_state,
            pending_snapshot: None,
            snapshot_to_apply: None,
            outputs: VecDeque::new(),
            outbox: Vec::new(),
            gated: VecDeque::new(),
            dirty: false,
            reported_role: None,
            election_deadline: now,
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            leader_contact: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            uncommitted_bytes: 0,
            transfer: None,
            replicate_pending: false,
            commit_broadcast: 0,
            fetch_in_flight: None,
            reads: ReadState::default(),
            stats: Stats::default(),
        };
        node.reset_election_timer();
        Ok(node)
    }

    // ----- Inputs -------------------------------------------------------------------------

    /// Handles a message from peer `from`. Stale, unknown or malformed messages are ignored
    /// and counted in [`Node::stats`]; no peer input can make the node panic.
    pub fn step(&mut self, now: Instant, from: NodeId, message: Message) {
        self.advance(now);
        self.handle_message(from, message);
    }

    /// Proposes a command. On the leader, returns the index the entry will have; the proposal
    /// succeeded if the entry applied at that index has the same term as [`Node::term`] had
    /// here. Fails fast when this node is not the leader or too much is uncommitted.
    pub fn propose(&mut self, now: Instant, command: Bytes) -> Result<Index, Error> {
        self.advance(now);
        self.check_can_propose(command.len())?;
        Ok(self.append_as_leader(EntryPayload::Command(command)))
    }

    /// Starts a linearizable read with the driver's `id`. [`Output::ReadReady`] follows once
    /// the local state machine may serve it (or [`Output::ReadFailed`]). Followers forward the
    /// request to the leader; reads arriving together share one leadership confirmation.
    pub fn read_index(&mut self, now: Instant, id: u64) -> Result<(), Error> {
        self.advance(now);
        self.start_read(id)
    }

    /// Asks the leader to hand leadership to `to` once `to` has caught up. Proposals are
    /// refused meanwhile; the transfer is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, now: Instant, to: NodeId) -> Result<(), Error> {
        self.advance(now);
        self.start_transfer(to)
    }

    /// Reports that the [`Output::Persist`] with `token`, and every one before it, is durable.
    pub fn persisted(&mut self, now: Instant, token: PersistToken) {
        self.advance(now);
        if token.0 <= self.durable_token || token.0 > self.next_token {
            return;
        }
        self.durable_token = token.0;
        while self
            .persists_in_flight
            .front()
            .is_some_and(|&(t, _)| t <= token.0)
        {
            let (_, last) = self
                .persists_in_flight
                .pop_front()
                .expect("checked non-empty");
            self.stable_index = self.stable_index.max(last);
        }
        self.stable_index = self.stable_index.min(self.log.last_index());
        while let Some(&(t, term)) = self.hard_states_in_flight.front()
            && t <= token.0
        {
            self.durable_term = term;
            self.hard_states_in_flight.pop_front();
        }
        while self
            .gated
            .front()
            .is_some_and(|&(t, _, _)| t <= self.durable_token)
        {
            let (_, to, message) = self.gated.pop_front().expect("checked non-empty");
            self.outputs.push_back(Output::Send { to, message });
        }
        match self.role {
            Role::Leader => self.maybe_commit(),
            Role::Candidate => self.tally_votes(),
            _ => {}
        }
    }

    /// Reports that the state machine has applied every entry up to `index`.
    pub fn applied(&mut self, now: Instant, index: Index) {
        self.advance(now);
        if index <= self.applied || index > self.apply_emitted {
            return;
        }
        self.applied = index;
        self.reads.release_applied(index, &mut self.outputs);
        self.trim_cache();
    }

    /// Tells a leader that `peer` could not be reached (the transport lost its connection):
    /// replication to it falls back to probing.
    pub fn report_unreachable(&mut self, now: Instant, peer: NodeId) {
        self.advance(now);
        if let Some(pr) = self.progress.get_mut(&peer)
            && pr.state == crate::progress::ProgressState::Replicate
        {
            pr.become_probe();
        }
    }

    /// Handles the deadline returned by [`Node::poll_timeout`] (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.on_tick();
    }

    // ----- Outputs ------------------------------------------------------------------------

    /// The next piece of work for the driver, in order; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.dirty {
            self.flush();
        }
        self.outputs.pop_front()
    }

    /// When the node next needs [`Node::handle_timeout`]; the last input's time if output is
    /// already waiting.
    pub fn poll_timeout(&self) -> Instant {
        if self.dirty || !self.outputs.is_empty() {
            return self.now;
        }
        let mut at = if self.role == Role::Leader {
            let mut at = self.heartbeat_deadline.min(self.check_quorum_deadline);
            if let Some((_, deadline)) = self.transfer {
                at = at.min(deadline);
            }
            if let Some((_, _, deadline)) = self.fetch_in_flight {
                at = at.min(deadline);
            }
            at
        } else {
            self.election_deadline
        };
        if let Some(deadline) = self.reads.next_deadline() {
            at = at.min(deadline);
        }
        at
    }

    // ----- Getters ------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The highest index known to be committed.
    pub fn commit_index(&self) -> Index {
        self.commit
    }

    /// The highest index the driver reported applied.
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// The index of the last entry in the log.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// The index of the last entry covered by the latest snapshot.
    pub fn snapshot_index(&self) -> Index {
        self.log.snapshot_index()
    }

    /// The term of the entry at `index`, if the log (or its snapshot point) holds it.
    pub fn log_term(&self, index: Index) -> Option<Term> {
        self.log.term_at(index)
    }

    /// The configuration in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// On the leader: the highest index known to be replicated on `peer`.
    pub fn match_index(&self, peer: NodeId) -> Option<Index> {
        if peer == self.cfg.id && self.role == Role::Leader {
            return Some(self.stable_index);
        }
        self.progress.get(&peer).map(|p| p.match_index)
    }

    /// Counters of what the node ignored or did.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- Internals shared by the handlers -------------------------------------------------

    pub(crate) fn advance(&mut self, now: Instant) {
        // Time never goes backwards for the core, whatever the driver passes.
        self.now = self.now.max(now);
        self.dirty = true;
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState::new(self.term, self.vote, self.commit)
    }

    /// Queues a message; [`Node::flush`] releases or gates it.
    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        self.outbox.push((to, message));
    }

    pub(crate) fn check_can_propose(&self, bytes: usize) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(Error::TransferInProgress);
        }
        if bytes > 0 && self.uncommitted_bytes + bytes > self.cfg.max_uncommitted_bytes {
            return Err(Error::Backpressure {
                uncommitted: self.uncommitted_bytes,
                limit: self.cfg.max_uncommitted_bytes,
            });
        }
        Ok(())
    }

    pub(crate) fn append_as_leader(&mut self, payload: EntryPayload) -> Index {
        let index = self.log.last_index() + 1;
        let entry = Entry::new(self.term, index, payload);
        self.uncommitted_bytes += entry.size();
        self.note_membership_entry(&entry);
        self.log.push(entry);
        self.replicate_pending = true;
        index
    }

    /// Tracks a membership entry entering the log: it takes effect at once.
    pub(crate) fn note_membership_entry(&mut self, entry: &Entry) {
        if let EntryPayload::Membership(m) = entry.payload() {
            self.membership_log.push((entry.index(), (**m).clone()));
            self.membership = (**m).clone();
            self.membership_index = entry.index();
            if self.role == Role::Leader {
                self.sync_progress();
            }
        }
    }

    /// After a truncation, falls back to the latest configuration still in the log.
    pub(crate) fn rollback_membership(&mut self, last_kept: Index) {
        if self.membership_index <= last_kept {
            return;
        }
        self.membership_log.retain(|(i, _)| *i <= last_kept);
        let (index, m) = self
            .membership_log
            .last()
            .cloned()
            .unwrap_or_else(|| (self.log.snapshot_index(), self.snapshot_membership.clone()));
        self.membership = m;
        self.membership_index = index;
    }

    /// The membership in force at `index` (after the snapshot).
    pub(crate) fn membership_at(&self, index: Index) -> Membership {
        self.membership_log
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or_else(|| self.snapshot_membership.clone(), |(_, m)| m.clone())
    }

    /// Keeps the newest `max_cached_entries` applied entries in memory for followers that
    /// lag a little (and for a future leadership); older ones are fetched from storage.
    fn trim_cache(&mut self) {
        self.log
            .trim_cache(self.applied.saturating_sub(self.cfg.max_cached_entries));
    }

    /// Turns accumulated state changes into outputs: one persist, role change, applies, the
    /// leader's appends, and messages (released or gated).
    fn flush(&mut self) {
        self.dirty = false;

        let role_now = (self.role, self.term, self.leader);
        if self.reported_role != Some(role_now) {
            self.reported_role = Some(role_now);
            self.outputs.push_back(Output::RoleChanged {
                role: self.role,
                term: self.term,
                leader: self.leader,
            });
        }

        if self.role == Role::Leader {
            self.flush_replication();
        }
        self.flush_read_rounds();

        // One persist for everything that changed.
        let entries = self.log.take_unflushed();
        let hard_state = self.hard_state();
        let vote_changed = (hard_state.term(), hard_state.vote())
            != (
                self.emitted_hard_state.term(),
                self.emitted_hard_state.vote(),
            );
        let snapshot = self.pending_snapshot.take();
        if entries.is_some() || vote_changed || snapshot.is_some() {
            self.next_token += 1;
            let token = self.next_token;
            if vote_changed {
                self.hard_state_token = token;
                self.hard_states_in_flight
                    .push_back((token, hard_state.term()));
            }
            let mut last_written = None;
            if let Some(s) = &snapshot {
                self.clamp_stable(s.meta().index());
                last_written = Some(s.meta().index());
            }
            if let Some(entries) = &entries {
                let first = entries
                    .first()
                    .map_or(self.log.last_index() + 1, Entry::index);
                self.clamp_stable(first - 1);
                last_written = entries.last().map(Entry::index).or(last_written);
            }
            if let Some(last) = last_written {
                self.persists_in_flight.push_back((token, last));
            }
            let hs_changed = hard_state != self.emitted_hard_state;
            self.emitted_hard_state = hard_state;
            self.outputs.push_back(Output::Persist(Persist {
                token: PersistToken(token),
                hard_state: hs_changed.then_some(hard_state),
                snapshot: snapshot.clone(),
                entries: entries.unwrap_or_default(),
            }));
            if let Some(s) = snapshot
                && s.meta().index() > 0
            {
                self.snapshot_to_apply = Some((token, s));
            }
        }

        self.emit_applies();

        // Messages: a leader waits only for its term and vote to be durable; anyone else waits
        // for everything it has asked to persist so far. A heartbeat answer states nothing
        // about the log, only the term it accepts: it waits for the term and vote alone, so a
        // follower whose disk is slow to sync still shows the leader it is there (otherwise a
        // long fsync at a majority makes the leader step down).
        let gate = if self.role == Role::Leader {
            self.hard_state_token
        } else {
            self.next_token
        };
        let mut outbox = std::mem::take(&mut self.outbox);
        for (to, message) in outbox.drain(..) {
            if matches!(message, Message::HeartbeatResponse { .. })
                && self.hard_state_token <= self.durable_token
            {
                self.outputs.push_back(Output::Send { to, message });
                continue;
            }
            // Everything else keeps its order behind what is already held back.
            let gate = self.gated.back().map_or(gate, |&(t, _, _)| t.max(gate));
            if gate <= self.durable_token {
                self.outputs.push_back(Output::Send { to, message });
            } else {
                self.gated.push_back((gate, to, message));
            }
        }
        self.outbox = outbox; // keep the allocation for the next flush
    }

    fn clamp_stable(&mut self, last_kept: Index) {
        self.stable_index = self.stable_index.min(last_kept);
        for (_, last) in &mut self.persists_in_flight {
            *last = (*last).min(last_kept);
        }
    }

    /// Hands committed entries (or an installed snapshot) to the driver. A leader applies
    /// up to its commit index: those entries are durable on a majority, and its term on it.
    /// Any other node applies only what is durable on it, so that a snapshot it takes of its
    /// state machine never covers an entry of a term its storage does not hold yet (it could
    /// not restart from such storage). An installed snapshot is applied once it is durable,
    /// and the entries after it only then.
    fn emit_applies(&mut self) {
        if let Some((token, _)) = &self.snapshot_to_apply {
            if *token > self.durable_token {
                return;
            }
            let (_, snapshot) = self.snapshot_to_apply.take().expect("checked");
            self.apply_emitted = self.apply_emitted.max(snapshot.meta().index());
            self.outputs.push_back(Output::ApplySnapshot(snapshot));
        }
        let limit = if self.role == Role::Leader {
            self.commit
        } else {
            self.commit.min(self.stable_index)
        };
        if limit <= self.apply_emitted {
            return;
        }
        let first = self.apply_emitted + 1;
        match self.log.slice(first, limit, usize::MAX) {
            Some(entries) if !entries.is_empty() => {
                self.apply_emitted = entries.last().map_or(self.apply_emitted, Entry::index);
                self.outputs.push_back(Output::Apply(entries));
            }
            _ => {
                // Committed entries not yet applied are always cached; reaching here means the
                // snapshot covers them (installed meanwhile).
                self.apply_emitted = self.apply_emitted.max(self.log.snapshot_index());
            }
        }
    }
}
