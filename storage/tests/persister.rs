//! The group-commit thread driven by a real Raft node, with `raft::MemStorage` as the model.

mod common;

use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use common::scratch;
use raft::{
    Config, Instant, MemStorage, Membership, Node, Output, Persist, PersistToken, Snapshot,
    SnapshotMeta,
};
use storage::{Event, Job, Options, Persister, Storage};

/// A single-voter node whose storage work goes through a [`Persister`].
struct Driver {
    node: Node,
    now: Instant,
    persister: Persister,
    events: Receiver<Event>,
    mem: MemStorage,
    submitted: Option<PersistToken>,
    durable: Option<PersistToken>,
    applied: Vec<bytes::Bytes>,
}

impl Driver {
    fn new(node: Node, storage: Storage, mem: MemStorage) -> Self {
        let (sender, events) = mpsc::channel();
        let persister = Persister::spawn(storage, move |event| drop(sender.send(event)));
        Self {
            node,
            now: Instant::ZERO,
            persister,
            events,
            mem,
            submitted: None,
            durable: None,
            applied: Vec::new(),
        }
    }

    /// Drains the node's outputs, handing storage work to the persister.
    fn pump(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Persist(persist) => self.submit(persist),
                Output::Apply(entries) => {
                    let last = entries.last().unwrap().index();
                    self.applied
                        .extend(entries.iter().filter_map(|e| e.command().cloned()));
                    self.node.applied(self.now, last);
                }
                Output::FetchEntries { first, last } => {
                    self.persister.submit(Job::Fetch { first, last }).unwrap();
                }
                _ => {}
            }
        }
    }

    fn submit(&mut self, persist: Persist) {
        self.mem.persist(&persist);
        self.submitted = Some(persist.token());
        self.persister.submit(Job::Persist(persist)).unwrap();
    }

    /// Feeds completions back until everything submitted is durable.
    fn settle(&mut self) {
        self.pump();
        while self.durable < self.submitted {
            match self.events.recv().unwrap() {
                Event::Durable(token) => {
                    assert!(Some(token) > self.durable, "tokens only grow");
                    self.durable = Some(token);
                    self.node.persisted(self.now, token);
                }
                Event::Fetched { entries, .. } => self.node.entries_fetched(self.now, entries),
                Event::SnapshotSaved(meta) => self.node.compact(self.now, meta.index()).unwrap(),
                Event::LatestSnapshot { to, snapshot } => {
                    let _ = self.node.send_snapshot(self.now, to, snapshot);
                }
                Event::Failed(error) => panic!("{error}"),
            }
            self.pump();
        }
    }

    fn elect(&mut self) {
        while !self.node.is_leader() {
            self.now = self.node.poll_timeout();
            self.node.handle_timeout(self.now);
            self.settle();
        }
    }

    fn snapshot_now(&mut self) -> Snapshot {
        let index = self.node.applied_index();
        let meta = SnapshotMeta::new(
            index,
            self.node.log_term(index).unwrap(),
            self.node.membership().clone(),
        );
        let data = bytes::Bytes::from(format!("{} commands", self.applied.len()));
        Snapshot::new(meta, data)
    }
}

#[test]
fn a_node_driven_through_the_persister_restarts_from_what_it_reported_durable() {
    let dir = scratch();
    let options = || Options::new().segment_size(64 << 10);
    let (storage, recovered) = Storage::open(dir.path(), options()).unwrap();
    assert!(recovered.is_fresh());
    let node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
    let mut driver = Driver::new(node, storage, MemStorage::new());
    driver.elect();

    for round in 0..40u32 {
        for i in 0..(round % 7 + 1) {
            let command = format!("set k{round} {i}").into_bytes();
            driver.node.propose(driver.now, command.into()).unwrap();
        }
        driver.settle();
        if round == 25 {
            let snapshot = driver.snapshot_now();
            driver.mem.save_snapshot(snapshot.clone());
            driver
                .persister
                .submit(Job::SaveSnapshot(snapshot))
                .unwrap();
            driver.settle();
        }
    }
    let total: u32 = (0..40).map(|round| round % 7 + 1).sum();
    assert_eq!(driver.applied.len() as u32, total);
    let stats = driver.persister.stats();
    assert!(stats.group_commits() <= stats.persists());
    assert!(stats.entries_written() >= u64::from(total));

    let Driver { persister, mem, .. } = driver;
    drop(persister.shutdown().unwrap());
    let (_, recovered) = Storage::open(dir.path(), options()).unwrap();
    let expected = mem.restore_state();
    let restore = recovered.restore_state();
    assert_eq!(restore.hard_state, expected.hard_state);
    assert_eq!(restore.snapshot, expected.snapshot);
    assert_eq!(restore.entries, expected.entries);
    assert_eq!(recovered.snapshot(), mem.snapshot());
    assert!(restore.snapshot.index() > 0, "the snapshot was saved");

    let node = Node::restart(
        Config::new(1),
        recovered.into_restore_state(),
        Instant::ZERO,
    )
    .unwrap();
    assert_eq!(node.last_index(), mem.last_index());
}

#[test]
fn persists_queued_during_a_sync_share_the_next_fsync() {
    let dir = scratch();
    let (storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
    // After reporting the token in `park_after`, the callback waits for a permit: the thread is
    // then parked and everything submitted meanwhile queues up behind it.
    let park_after: Arc<Mutex<Option<PersistToken>>> = Arc::new(Mutex::new(None));
    let (permit, permits) = mpsc::channel::<()>();
    let (sender, events) = mpsc::channel();
    let park = Arc::clone(&park_after);
    let persister = Persister::spawn(storage, move |event| {
        let parks = matches!(event, Event::Durable(t) if Some(t) == *park.lock().unwrap());
        drop(sender.send(event));
        if parks {
            permits.recv().unwrap();
        }
    });

    let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
    let mut now = Instant::ZERO;
    // Election, one persist at a time.
    while !node.is_leader() {
        now = node.poll_timeout();
        node.handle_timeout(now);
        while let Some(output) = node.poll_output() {
            if let Output::Persist(persist) = output {
                let token = persist.token();
                persister.submit(Job::Persist(persist)).unwrap();
                let Event::Durable(durable) = events.recv().unwrap() else {
                    panic!()
                };
                assert_eq!(durable, token);
                node.persisted(now, token);
            }
        }
    }
    // 50 proposals, each its own persist, none reported yet.
    let mut persists = Vec::new();
    for i in 0..50 {
        node.propose(now, format!("c{i}").into_bytes().into())
            .unwrap();
        while let Some(output) = node.poll_output() {
            if let Output::Persist(persist) = output {
                persists.push(persist);
            }
        }
    }
    assert_eq!(persists.len(), 50);
    let last_token = persists.last().unwrap().token();
    let before = persister.stats();

    let mut persists = persists.into_iter();
    let first = persists.next().unwrap();
    *park_after.lock().unwrap() = Some(first.token());
    persister.submit(Job::Persist(first)).unwrap();
    let Event::Durable(_) = events.recv().unwrap() else {
        panic!()
    };
    // The thread is parked in the callback: these 49 queue behind it.
    for persist in persists {
        persister.submit(Job::Persist(persist)).unwrap();
    }
    permit.send(()).unwrap();
    let Event::Durable(token) = events.recv().unwrap() else {
        panic!()
    };
    assert_eq!(token, last_token, "one report covers the whole batch");

    let after = persister.stats();
    assert_eq!(after.batches() - before.batches(), 2);
    assert_eq!(after.group_commits() - before.group_commits(), 2);
    assert_eq!(after.entries_written() - before.entries_written(), 50);
    assert_eq!(after.persists() - before.persists(), 50);
}

#[test]
fn a_failure_is_reported_once_and_stops_the_thread() {
    let dir = scratch();
    let (storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
    let (sender, events) = mpsc::channel();
    let persister = Persister::spawn(storage, move |event| drop(sender.send(event)));
    // A fetch is fine; a persist that leaves a gap is a driver bug and fails the storage.
    let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
    let mut now = Instant::ZERO;
    let mut persists = Vec::new();
    while !node.is_leader() {
        now = node.poll_timeout();
        node.handle_timeout(now);
        while let Some(output) = node.poll_output() {
            if let Output::Persist(persist) = output {
                node.persisted(now, persist.token());
                persists.push(persist);
            }
        }
    }
    node.propose(now, "x".into()).unwrap();
    while let Some(output) = node.poll_output() {
        if let Output::Persist(persist) = output {
            persists.push(persist);
        }
    }
    // Skip the election's persists: the proposal's entries now leave a gap.
    let last = persists.pop().unwrap();
    persister.submit(Job::Persist(last)).unwrap();
    match events.recv().unwrap() {
        Event::Failed(storage::StorageError::Gap { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(events.recv().is_err(), "nothing after the failure");
    assert!(persister.submit(Job::Fetch { first: 1, last: 1 }).is_err());
    assert!(persister.shutdown().is_err());
}

#[test]
fn a_snapshot_still_being_written_at_shutdown_is_finished_and_adopted() {
    let dir = scratch();
    let options = || Options::new().segment_size(64 << 10);
    let (storage, _) = Storage::open(dir.path(), options()).unwrap();
    let node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
    let mut driver = Driver::new(node, storage, MemStorage::new());
    driver.elect();
    for i in 0..50u32 {
        driver
            .node
            .propose(driver.now, format!("set k {i}").into_bytes().into())
            .unwrap();
    }
    driver.settle();
    // A snapshot large enough that its write is still going on when the stop arrives.
    let small = driver.snapshot_now();
    let snapshot = Snapshot::new(
        small.meta().clone(),
        bytes::Bytes::from(vec![5u8; 32 << 20]),
    );
    let index = snapshot.meta().index();
    let Driver {
        persister, events, ..
    } = driver;
    persister.submit(Job::SaveSnapshot(snapshot)).unwrap();
    let storage = persister.shutdown().unwrap();
    assert_eq!(storage.latest_snapshot_meta().index(), index);
    let saved = events
        .try_iter()
        .any(|e| matches!(e, Event::SnapshotSaved(meta) if meta.index() == index));
    assert!(saved, "SnapshotSaved reported before the thread stopped");
    drop(storage);
    let (_, recovered) = Storage::open(dir.path(), options()).unwrap();
    assert_eq!(recovered.snapshot().meta().index(), index);
    assert_eq!(recovered.snapshot().data().len(), 32 << 20);
}
