//! [`Persister`]: a thread that owns the [`Storage`] and commits in groups.
//!
//! The node loop sends [`Job`]s; the thread takes everything queued, writes it in order,
//! fsyncs once, and only then reports [`Event`]s: the highest durable [`PersistToken`] first,
//! then fetched entries and saved snapshots in job order. Reporting one token reports all
//! before it, which is what [`raft::Node::persisted`] expects. A failure is reported once as
//! [`Event::Failed`] and stops the thread (the node must restart and recover).

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use raft::{Entry, Index, Persist, PersistToken, Snapshot, SnapshotMeta};

use crate::error::{Result, StorageError};
use crate::stats::{Counters, StorageStats};
use crate::storage::Storage;

/// Work for the [`Persister`].
#[derive(Debug)]
pub enum Job {
    /// A [`raft::Output::Persist`]; answered by [`Event::Durable`].
    Persist(Persist),
    /// A [`raft::Output::FetchEntries`]; answered by [`Event::Fetched`].
    Fetch {
        /// First index wanted.
        first: Index,
        /// Last index wanted.
        last: Index,
    },
    /// A snapshot of the state machine to store; answered by [`Event::SnapshotSaved`], after
    /// which the driver calls [`raft::Node::compact`].
    SaveSnapshot(Snapshot),
    /// The latest stored snapshot, for a follower that needs it
    /// ([`raft::Output::SnapshotNeeded`]); answered by [`Event::LatestSnapshot`].
    LatestSnapshot {
        /// The follower that needs it, echoed back.
        to: raft::NodeId,
    },
}

/// What the [`Persister`] reports.
#[derive(Debug)]
pub enum Event {
    /// Every persist up to this token is durable: pass it to [`raft::Node::persisted`].
    Durable(PersistToken),
    /// Entries read for a [`Job::Fetch`]: pass them to [`raft::Node::entries_fetched`].
    Fetched {
        /// First index asked for.
        first: Index,
        /// Last index asked for.
        last: Index,
        /// The entries found (fewer if the log ends earlier or was compacted).
        entries: Vec<Entry>,
    },
    /// The snapshot is durable and the WAL it covers will be removed.
    SnapshotSaved(SnapshotMeta),
    /// The latest stored snapshot: pass it to [`raft::Node::send_snapshot`].
    LatestSnapshot {
        /// The follower named in the job.
        to: raft::NodeId,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// The storage failed; the thread has stopped. Nothing queued after the failure was done.
    Failed(StorageError),
}

/// Runs a [`Storage`] on a dedicated thread with group commit. Dropping it finishes the
/// queued jobs and joins the thread.
///
/// ```
/// use std::sync::mpsc;
/// use raft::{Config, Instant, Membership, Node, Output};
/// use storage::{Event, Job, Options, Persister, Storage};
///
/// let dir = tempfile::tempdir().unwrap();
/// let (storage, _) = Storage::open(dir.path(), Options::new()).unwrap();
/// let (events, completions) = mpsc::channel();
/// let persister = Persister::spawn(storage, move |event| drop(events.send(event)));
///
/// let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
/// while let Some(output) = node.poll_output() {
///     if let Output::Persist(persist) = output {
///         persister.submit(Job::Persist(persist)).unwrap();
///     }
/// }
/// match completions.recv().unwrap() {
///     Event::Durable(token) => node.persisted(Instant::ZERO, token),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(persister.stats().group_commits(), 1);
/// ```
#[derive(Debug)]
pub struct Persister {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<Option<Storage>>>,
    counters: Arc<Counters>,
}

impl Persister {
    /// Starts the thread. `on_event` runs on it, after each group commit; it should hand the
    /// event to the node loop (a channel send) and return.
    pub fn spawn(storage: Storage, on_event: impl FnMut(Event) + Send + 'static) -> Self {
        let counters = storage.counters();
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("storage-persister".into())
            .spawn(move || run(storage, queue, on_event))
            .expect("spawning the persister thread");
        Self {
            jobs: Some(jobs),
            thread: Some(thread),
            counters,
        }
    }

    /// Queues a job. Fails with [`StorageError::Stopped`] once the thread has stopped.
    pub fn submit(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or(StorageError::Stopped)?;
        jobs.send(job).map_err(|_| StorageError::Stopped)
    }

    /// The storage's counters, including group commits and entries per group commit.
    pub fn stats(&self) -> StorageStats {
        self.counters.snapshot()
    }

    /// Finishes the queued jobs, stops the thread and gives the storage back (`Err` if the
    /// thread stopped after a failure, which it has already reported).
    pub fn shutdown(mut self) -> Result<Storage> {
        self.stop().ok_or(StorageError::Stopped)
    }

    fn stop(&mut self) -> Option<Storage> {
        drop(self.jobs.take());
        self.thread.take()?.join().ok().flatten()
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut storage: Storage,
    queue: Receiver<Job>,
    mut on_event: impl FnMut(Event),
) -> Option<Storage> {
    let counters = storage.counters();
    while let Ok(job) = queue.recv() {
        let mut batch = vec![job];
        batch.extend(queue.try_iter());
        Counters::add(&counters.batches, 1);
        Counters::add(&counters.jobs, batch.len() as u64);
        match carry_out(&mut storage, batch) {
            Ok(events) => events.into_iter().for_each(&mut on_event),
            Err(error) => {
                // Close the queue first: once the failure is seen, submitting fails.
                drop(queue);
                on_event(Event::Failed(error));
                return None;
            }
        }
    }
    Some(storage)
}

/// Writes a batch, syncs once, and returns the events to report.
fn carry_out(storage: &mut Storage, batch: Vec<Job>) -> Result<Vec<Event>> {
    let mut durable = None;
    let mut events = Vec::new();
    for job in batch {
        match job {
            Job::Persist(persist) => {
                storage.persist(&persist)?;
                durable = Some(persist.token());
            }
            Job::Fetch { first, last } => {
                let entries = storage.entries(first, last)?;
                events.push(Event::Fetched {
                    first,
                    last,
                    entries,
                });
            }
            Job::SaveSnapshot(snapshot) => {
                storage.save_snapshot(&snapshot)?;
                events.push(Event::SnapshotSaved(snapshot.meta().clone()));
            }
            Job::LatestSnapshot { to } => {
                let snapshot = storage.latest_snapshot()?;
                events.push(Event::LatestSnapshot { to, snapshot });
            }
        }
    }
    storage.sync()?;
    events.splice(0..0, durable.map(Event::Durable));
    Ok(events)
}
