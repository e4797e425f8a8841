//! [`Persister`]: a thread that owns the [`Storage`] and commits in groups.
//!
//! The node loop sends [`Job`]s; the thread takes everything queued, writes it in order,
//! fsyncs once, and only then reports [`Event`]s: the highest durable [`PersistToken`] first,
//! then fetched entries and saved snapshots in job order. Reporting one token reports all
//! before it, which is what [`raft::Node::persisted`] expects. A failure is reported once as
//! [`Event::Failed`] and stops the thread (the node must restart and recover).
//!
//! Snapshot files are written by a second thread: a large state takes a while to write and
//! fsync, and log writes (and so the node's acknowledgements and heartbeat answers) must not
//! wait behind it. The persister adopts the snapshot once its file is durable, then reports
//! [`Event::SnapshotSaved`].

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use raft::{Entry, Index, Persist, PersistToken, Snapshot, SnapshotMeta};

use crate::error::{Result, StorageError};
use crate::stats::{Counters, StorageStats};
use crate::storage::{SnapshotWriter, Storage};
use crate::vfs::{StdFs, Vfs};

/// Work for the [`Persister`].
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
    /// Like [`Job::SaveSnapshot`], with the data streamed into the file by `source` on the
    /// snapshot thread, so a large state is never copied whole into memory. `source` gets a
    /// buffered writer; typically it serialises a cheap clone (copy-on-write) of the state.
    WriteSnapshot {
        /// The snapshot's index, term and membership.
        meta: SnapshotMeta,
        /// Writes the data.
        source: SnapshotSource,
    },
    /// The latest stored snapshot, for a follower that needs it
    /// ([`raft::Output::SnapshotNeeded`]); answered by [`Event::LatestSnapshot`].
    LatestSnapshot {
        /// The follower that needs it, echoed back.
        to: raft::NodeId,
    },
}

/// Streams a snapshot's data into its file (see [`Job::WriteSnapshot`]).
pub type SnapshotSource =
    Box<dyn FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Persist(p) => f.debug_tuple("Persist").field(p).finish(),
            Self::Fetch { first, last } => f
                .debug_struct("Fetch")
                .field("first", first)
                .field("last", last)
                .finish(),
            Self::SaveSnapshot(s) => f.debug_tuple("SaveSnapshot").field(s.meta()).finish(),
            Self::WriteSnapshot { meta, .. } => {
                f.debug_struct("WriteSnapshot").field("meta", meta).finish()
            }
            Self::LatestSnapshot { to } => {
                f.debug_struct("LatestSnapshot").field("to", to).finish()
            }
        }
    }
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

/// What the persister thread receives: jobs, the snapshot writer's results, and the order to
/// stop.
#[derive(Debug)]
enum Msg {
    Job(Job),
    SnapshotWritten {
        meta: SnapshotMeta,
        result: Result<()>,
    },
    Stop,
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
pub struct Persister<F: Vfs = StdFs> {
    jobs: Option<Sender<Msg>>,
    thread: Option<JoinHandle<Option<Storage<F>>>>,
    counters: Arc<Counters>,
}

impl<F: Vfs> Persister<F> {
    /// Starts the thread. `on_event` runs on it, after each group commit; it should hand the
    /// event to the node loop (a channel send) and return.
    pub fn spawn(storage: Storage<F>, on_event: impl FnMut(Event) + Send + 'static) -> Self {
        let counters = storage.counters();
        let (jobs, queue) = mpsc::channel();
        let to_self = jobs.clone();
        let thread = std::thread::Builder::new()
            .name("storage-persister".into())
            .spawn(move || run(storage, queue, to_self, on_event))
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
        jobs.send(Msg::Job(job)).map_err(|_| StorageError::Stopped)
    }

    /// The storage's counters, including group commits and entries per group commit.
    pub fn stats(&self) -> StorageStats {
        self.counters.snapshot()
    }

    /// Finishes the queued jobs, stops the thread and gives the storage back (`Err` if the
    /// thread stopped after a failure, which it has already reported).
    pub fn shutdown(mut self) -> Result<Storage<F>> {
        self.stop().ok_or(StorageError::Stopped)
    }

    fn stop(&mut self) -> Option<Storage<F>> {
        if let Some(jobs) = self.jobs.take() {
            let _ = jobs.send(Msg::Stop);
        }
        self.thread.take()?.join().ok().flatten()
    }
}

impl<F: Vfs> Drop for Persister<F> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A snapshot file to write: its data in memory or streamed by a source.
enum SnapshotData {
    Bytes(Snapshot),
    Source(SnapshotMeta, SnapshotSource),
}

impl SnapshotData {
    fn meta(&self) -> &SnapshotMeta {
        match self {
            Self::Bytes(snapshot) => snapshot.meta(),
            Self::Source(meta, _) => meta,
        }
    }

    fn write<F: Vfs>(self, writer: &SnapshotWriter<F>) -> (SnapshotMeta, Result<()>) {
        match self {
            Self::Bytes(snapshot) => {
                let result = writer.write(&snapshot);
                (snapshot.meta().clone(), result)
            }
            Self::Source(meta, source) => {
                let result = writer.write_with(&meta, source);
                (meta, result)
            }
        }
    }
}

/// The snapshot writer thread, started on first use.
struct SnapshotThread<F: Vfs> {
    jobs: Sender<(SnapshotWriter<F>, SnapshotData)>,
    thread: JoinHandle<()>,
}

impl<F: Vfs> SnapshotThread<F> {
    fn start(to_persister: Sender<Msg>) -> Self {
        let (jobs, queue) = mpsc::channel::<(SnapshotWriter<F>, SnapshotData)>();
        let thread = std::thread::Builder::new()
            .name("storage-snapshot".into())
            .spawn(move || {
                for (writer, data) in queue {
                    let (meta, result) = data.write(&writer);
                    if to_persister
                        .send(Msg::SnapshotWritten { meta, result })
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .expect("spawning the snapshot writer thread");
        Self { jobs, thread }
    }

    /// Closes the queue and waits for a write in progress to end.
    fn stop(self) {
        drop(self.jobs);
        let _ = self.thread.join();
    }
}

fn run<F: Vfs>(
    mut storage: Storage<F>,
    queue: Receiver<Msg>,
    to_self: Sender<Msg>,
    mut on_event: impl FnMut(Event),
) -> Option<Storage<F>> {
    let counters = storage.counters();
    let mut snapshots: Option<SnapshotThread<F>> = None;
    let mut writing = 0usize;
    let mut stopping = false;
    loop {
        // Once stopping, only the snapshot writer's answers are awaited.
        if stopping && writing == 0 {
            break;
        }
        let Ok(first) = queue.recv() else { break };
        let mut batch = Vec::new();
        for msg in std::iter::once(first).chain(queue.try_iter()) {
            match msg {
                Msg::Stop => stopping = true,
                Msg::SnapshotWritten { .. } => {
                    writing -= 1;
                    batch.push(msg);
                }
                Msg::Job(Job::SaveSnapshot(snapshot)) => write_snapshot(
                    &storage,
                    &mut snapshots,
                    &to_self,
                    &mut writing,
                    SnapshotData::Bytes(snapshot),
                    &mut batch,
                ),
                Msg::Job(Job::WriteSnapshot { meta, source }) => write_snapshot(
                    &storage,
                    &mut snapshots,
                    &to_self,
                    &mut writing,
                    SnapshotData::Source(meta, source),
                    &mut batch,
                ),
                Msg::Job(_) => batch.push(msg),
            }
        }
        if batch.is_empty() {
            continue;
        }
        Counters::add(&counters.batches, 1);
        Counters::add(&counters.jobs, batch.len() as u64);
        match carry_out(&mut storage, batch) {
            Ok(events) => events.into_iter().for_each(&mut on_event),
            Err(error) => {
                // Close the queue first: once the failure is seen, submitting fails.
                drop(queue);
                on_event(Event::Failed(error));
                if let Some(thread) = snapshots {
                    thread.stop();
                }
                return None;
            }
        }
    }
    if let Some(thread) = snapshots {
        thread.stop();
    }
    Some(storage)
}

/// Hands a snapshot to the writer thread (started on first use); one that is not newer than
/// the stored snapshot is answered at once.
fn write_snapshot<F: Vfs>(
    storage: &Storage<F>,
    snapshots: &mut Option<SnapshotThread<F>>,
    to_self: &Sender<Msg>,
    writing: &mut usize,
    data: SnapshotData,
    batch: &mut Vec<Msg>,
) {
    let Some(writer) = storage.snapshot_writer(data.meta()) else {
        batch.push(Msg::SnapshotWritten {
            meta: data.meta().clone(),
            result: Ok(()),
        });
        return;
    };
    let thread = snapshots.get_or_insert_with(|| SnapshotThread::start(to_self.clone()));
    *writing += 1;
    if let Err(mpsc::SendError((_, data))) = thread.jobs.send((writer, data)) {
        *writing -= 1;
        batch.push(Msg::SnapshotWritten {
            meta: data.meta().clone(),
            result: Err(StorageError::Stopped),
        });
    }
}

/// Writes a batch, syncs once, and returns the events to report.
fn carry_out<F: Vfs>(storage: &mut Storage<F>, batch: Vec<Msg>) -> Result<Vec<Event>> {
    let mut durable = None;
    let mut events = Vec::new();
    for msg in batch {
        let job = match msg {
            Msg::Job(job) => job,
            Msg::SnapshotWritten { meta, result } => {
                result?;
                storage.snapshot_written(&meta)?;
                events.push(Event::SnapshotSaved(meta));
                continue;
            }
            Msg::Stop => continue,
        };
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
            Job::SaveSnapshot(_) | Job::WriteSnapshot { .. } => {
                unreachable!("snapshot jobs go to the writer thread in `run`")
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
