//! A hand-driven cluster for scenario tests: the test decides when time passes, which node
//! times out and which messages arrive. Storage is [`MemStorage`]; persists complete at once
//! unless a node's disk is "held", so tests can look at what a node says before its write is
//! durable.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use raft::{
    Config, Entry, Index, Instant, MemStorage, Membership, Message, Node, NodeId, Output, Persist,
};

pub struct Cluster {
    pub now: Instant,
    nodes: BTreeMap<NodeId, Node>,
    configs: BTreeMap<NodeId, Config>,
    storage: BTreeMap<NodeId, MemStorage>,
    held: BTreeMap<NodeId, VecDeque<Persist>>,
    hold_disk: BTreeSet<NodeId>,
    isolated: BTreeSet<NodeId>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    pub reads_ready: BTreeMap<NodeId, Vec<(u64, Index)>>,
    pub reads_failed: BTreeMap<NodeId, Vec<u64>>,
    pub mailbox: VecDeque<(NodeId, NodeId, Message)>,
    pub snapshots_needed: Vec<(NodeId, NodeId)>,
    pub fetches: Vec<(NodeId, Index, Index)>,
    /// Nodes whose [`Output::FetchEntries`] go unanswered (recorded in `fetches` only).
    pub ignore_fetches: BTreeSet<NodeId>,
}

pub fn config(id: NodeId) -> Config {
    Config::new(id).seed(id * 7919)
}

impl Cluster {
    /// A fresh cluster of voters `ids`.
    pub fn new(ids: &[NodeId]) -> Self {
        Self::with(ids, config)
    }

    pub fn with(ids: &[NodeId], make: impl Fn(NodeId) -> Config) -> Self {
        let mut c = Self::empty();
        let membership = Membership::new(ids.iter().copied());
        for &id in ids {
            let cfg = make(id);
            c.nodes.insert(
                id,
                Node::new(cfg.clone(), membership.clone(), c.now).unwrap(),
            );
            c.configs.insert(id, cfg);
            c.storage.insert(id, MemStorage::new());
            c.drain(id);
        }
        c
    }

    fn empty() -> Self {
        Self {
            now: Instant::ZERO,
            nodes: BTreeMap::new(),
            configs: BTreeMap::new(),
            storage: BTreeMap::new(),
            held: BTreeMap::new(),
            hold_disk: BTreeSet::new(),
            isolated: BTreeSet::new(),
            applied: BTreeMap::new(),
            reads_ready: BTreeMap::new(),
            reads_failed: BTreeMap::new(),
            mailbox: VecDeque::new(),
            snapshots_needed: Vec::new(),
            fetches: Vec::new(),
            ignore_fetches: BTreeSet::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn storage(&self, id: NodeId) -> &MemStorage {
        &self.storage[&id]
    }

    pub fn storage_mut(&mut self, id: NodeId) -> &mut MemStorage {
        self.storage.get_mut(&id).unwrap()
    }

    /// Replaces node `id` with one restarted from what its storage holds.
    pub fn restart(&mut self, id: NodeId) {
        self.held.remove(&id);
        let state = self.storage[&id].restore_state();
        let node = Node::restart(self.configs[&id].clone(), state, self.now).unwrap();
        self.nodes.insert(id, node);
        self.applied.insert(id, Vec::new());
        self.drain(id);
    }

    /// Replaces node `id` with one whose log is `entries` (after an empty snapshot at 0 with
    /// the cluster's voters) in term `term`, in memory and in storage.
    pub fn set_log(&mut self, id: NodeId, term: u64, entries: Vec<Entry>) {
        let voters: Vec<NodeId> = self.nodes.keys().copied().collect();
        let state = raft::RestoreState {
            hard_state: raft::HardState::new(term, None, 0),
            snapshot: raft::SnapshotMeta::new(0, 0, Membership::new(voters)),
            entries,
        };
        let node = Node::restart(self.configs[&id].clone(), state.clone(), self.now).unwrap();
        self.nodes.insert(id, node);
        self.storage
            .insert(id, MemStorage::from_state(state, Bytes::new()));
        self.drain(id);
    }

    /// Adds node `id` that starts knowing no membership (it joins when the leader contacts it).
    pub fn add_node(&mut self, id: NodeId) {
        let cfg = config(id);
        self.nodes.insert(
            id,
            Node::new(cfg.clone(), Membership::default(), self.now).unwrap(),
        );
        self.configs.insert(id, cfg);
        self.storage.insert(id, MemStorage::new());
        self.drain(id);
    }

    /// Node `id`'s writes stay pending until [`Cluster::release_disk`].
    pub fn hold_disk(&mut self, id: NodeId) {
        self.hold_disk.insert(id);
    }

    /// Completes node `id`'s pending writes and lets later ones complete at once.
    pub fn release_disk(&mut self, id: NodeId) {
        self.hold_disk.remove(&id);
        while let Some(p) = self.held.get_mut(&id).and_then(VecDeque::pop_front) {
            self.storage.get_mut(&id).unwrap().persist(&p);
            let now = self.now;
            self.node_mut(id).persisted(now, p.token());
        }
        self.drain(id);
    }

    /// Carries out node `id`'s outputs.
    pub fn drain(&mut self, id: NodeId) {
        let now = self.now;
        loop {
            let Some(out) = self.nodes.get_mut(&id).unwrap().poll_output() else {
                break;
            };
            match out {
                Output::Persist(p) => {
                    if self.hold_disk.contains(&id) {
                        self.held.entry(id).or_default().push_back(p);
                    } else {
                        self.storage.get_mut(&id).unwrap().persist(&p);
                        self.node_mut(id).persisted(now, p.token());
                    }
                }
                Output::Send { to, message } => self.mailbox.push_back((id, to, message)),
                Output::Apply(entries) => {
                    let last = entries.last().unwrap().index();
                    self.applied.entry(id).or_default().extend(entries);
                    self.node_mut(id).applied(now, last);
                }
                Output::ApplySnapshot(s) => {
                    self.applied.entry(id).or_default().clear();
                    self.node_mut(id).applied(now, s.meta().index());
                }
                Output::ReadReady { id: read, index } => {
                    self.reads_ready.entry(id).or_default().push((read, index));
                }
                Output::ReadFailed { id: read, .. } => {
                    self.reads_failed.entry(id).or_default().push(read)
                }
                Output::FetchEntries { first, last } => {
                    self.fetches.push((id, first, last));
                    if self.ignore_fetches.contains(&id) {
                        continue;
                    }
                    let entries = self.storage[&id].entries(first, last);
                    self.node_mut(id).entries_fetched(now, entries);
                }
                Output::SnapshotNeeded { to } => self.snapshots_needed.push((id, to)),
                Output::RoleChanged { .. } => {}
            }
        }
    }

    /// Lets `d` pass and fires every node's due timers.
    pub fn elapse(&mut self, d: Duration) {
        self.now += d;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.now;
            if self.node(id).poll_timeout() <= now {
                self.node_mut(id).handle_timeout(now);
            }
            self.drain(id);
        }
        let isolated = self.isolated.clone();
        self.mailbox
            .retain(|(from, to, _)| !isolated.contains(from) && !isolated.contains(to));
    }

    /// Moves time to node `id`'s election deadline and fires only its timer.
    pub fn timeout(&mut self, id: NodeId) {
        self.now = self.now.max(self.node(id).poll_timeout());
        let now = self.now;
        self.node_mut(id).handle_timeout(now);
        self.drain(id);
    }

    /// Delivers queued messages (and those they cause) while `keep(from, to, message)` holds;
    /// the rest are dropped. Returns how many were delivered.
    pub fn deliver(&mut self, mut keep: impl FnMut(NodeId, NodeId, &Message) -> bool) -> usize {
        let mut delivered = 0;
        while let Some((from, to, message)) = self.mailbox.pop_front() {
            assert!(
                delivered < 100_000,
                "messages keep flowing: last {from}->{to} {message:?}"
            );
            let cut = self.isolated.contains(&from) || self.isolated.contains(&to);
            if cut || !keep(from, to, &message) || !self.nodes.contains_key(&to) {
                continue;
            }
            delivered += 1;
            let now = self.now;
            self.node_mut(to).step(now, from, message);
            self.drain(to);
        }
        delivered
    }

    /// Drops every message queued from or to `id` (one-off isolation of what is in flight),
    /// and keeps dropping them while further time passes in [`Cluster::elapse`].
    pub fn hold_messages_of(&mut self, id: NodeId) {
        self.isolated.insert(id);
        self.mailbox
            .retain(|(from, to, _)| *from != id && *to != id);
    }

    /// Reconnects every isolated node.
    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// Delivers everything until the network is quiet.
    pub fn stabilize(&mut self) -> usize {
        self.deliver(|_, _, _| true)
    }

    /// Elects `id`: times it out and delivers everything.
    pub fn elect(&mut self, id: NodeId) {
        self.timeout(id);
        self.stabilize();
        assert!(
            self.node(id).is_leader(),
            "node {id} failed to become leader"
        );
    }

    pub fn propose(&mut self, id: NodeId, data: &str) -> Index {
        let now = self.now;
        let index = self
            .node_mut(id)
            .propose(now, Bytes::copy_from_slice(data.as_bytes()))
            .unwrap();
        self.drain(id);
        index
    }

    /// Commands applied on `id`, as strings.
    pub fn commands(&self, id: NodeId) -> Vec<String> {
        self.applied
            .get(&id)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.command().map(|c| String::from_utf8_lossy(c).into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The terms of node `id`'s log from index 1 to its last index.
    pub fn log_terms(&self, id: NodeId) -> Vec<u64> {
        let node = self.node(id);
        (1..=node.last_index())
            .map(|i| node.log_term(i).unwrap_or(0))
            .collect()
    }
}

/// Entries `first..=last` as node `id`'s storage holds them.
pub fn entries_of(c: &Cluster, id: NodeId, first: Index, last: Index) -> Vec<Entry> {
    c.storage(id).entries(first, last)
}

/// An entry with a command, for building logs.
pub fn entry(term: u64, index: Index, data: &str) -> Entry {
    Entry::new(
        term,
        index,
        raft::EntryPayload::Command(Bytes::copy_from_slice(data.as_bytes())),
    )
}
