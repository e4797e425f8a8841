//! Counters of the work the storage did: fsyncs, records, entries, bytes.
//!
//! The [`crate::Storage`] and its [`crate::Persister`] share one set of atomic counters, so a
//! metrics endpoint can read them from any thread while the writer runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fsyncs: AtomicU64,
    pub(crate) group_commits: AtomicU64,
    pub(crate) persists: AtomicU64,
    pub(crate) entries_written: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) jobs: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(self: &Arc<Self>) -> StorageStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StorageStats {
            fsyncs: get(&self.fsyncs),
            group_commits: get(&self.group_commits),
            persists: get(&self.persists),
            entries_written: get(&self.entries_written),
            bytes_written: get(&self.bytes_written),
            batches: get(&self.batches),
            jobs: get(&self.jobs),
        }
    }
}

/// A reading of the storage's counters (all totals since [`crate::Storage::open`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    fsyncs: u64,
    group_commits: u64,
    persists: u64,
    entries_written: u64,
    bytes_written: u64,
    batches: u64,
    jobs: u64,
}

impl StorageStats {
    /// Every fsync of a file or directory (WAL syncs, segment rolls, snapshot writes).
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// Calls to [`crate::Storage::sync`] that had data to make durable (one WAL fsync each).
    pub fn group_commits(&self) -> u64 {
        self.group_commits
    }

    /// Persists written ([`crate::Storage::persist`] calls that wrote something).
    pub fn persists(&self) -> u64 {
        self.persists
    }

    /// Log entries written to the WAL.
    pub fn entries_written(&self) -> u64 {
        self.entries_written
    }

    /// Bytes written to the WAL.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Rounds of the [`crate::Persister`]: each drains the queue and ends in one sync.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Jobs the [`crate::Persister`] carried out.
    pub fn jobs(&self) -> u64 {
        self.jobs
    }

    /// Mean log entries made durable per group commit (0 before the first).
    pub fn entries_per_group_commit(&self) -> f64 {
        if self.group_commits == 0 {
            0.0
        } else {
            self.entries_written as f64 / self.group_commits as f64
        }
    }
}
