//! [`Storage::open`]: recovery of the newest snapshot plus the WAL after it.
//!
//! # Rules
//!
//! 1. Snapshots: stale `.tmp` files are removed; the snapshot with the highest index is
//!    loaded and verified. If it fails its checksum, opening fails naming the file: an older
//!    snapshot is never used instead (the WAL it needs may be gone).
//! 2. Segments are read in sequence order. A gap in the sequence numbers, or a segment whose
//!    header does not continue the log where the previous one ended, is a missing segment.
//!    So is a WAL that ends before the segment the snapshot was saved in.
//! 3. Within a segment, the reader in `segment.rs` separates a torn tail from corruption.
//!    Corruption stops the open with the file and offset.
//! 4. A persist is a group of records ending with a hard-state record. Records after the
//!    last hard-state record of the last segment are an incomplete persist (never reported
//!    durable): they are dropped together with a torn tail, the file is cut there, and the
//!    cut is logged and returned in [`RecoveryReport`].
//! 5. The log is then laid over the snapshot. If it holds the snapshot's position (index and
//!    term), the entries after it are kept. If it ends before or disagrees there, the crash
//!    came between writing an installed snapshot and the WAL records after it: the log is
//!    empty after the snapshot (reported). A log that *starts* after the snapshot means lost
//!    segments: an error.
//! 6. A fresh segment is started for new writes; obsolete snapshots and segments are removed.
//! 7. What is recovered is made durable before it is returned: a process that died before its
//!    fsync leaves data the OS holds but the disk may not, and the restarted node relies on
//!    it (it may acknowledge those entries to a leader). So the store's directories and the
//!    last segment are synced, whatever the last run did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::{Entry, HardState, RestoreState, Snapshot};

use crate::error::{Result, StorageError};
use crate::faults::Faults;
use crate::index::{EntryIndex, RecordLoc};
use crate::options::Options;
use crate::prealloc::Preallocator;
use crate::record::{Record, SegmentHeader};
use crate::segment::{self, Located};
use crate::snapshot_file;
use crate::stats::Counters;
use crate::storage::{SegmentInfo, Storage, create_segment};
use crate::vfs::{self, OpenMode, StdFs, Vfs, VfsFile};

/// What [`Storage::open`] recovered.
#[derive(Debug)]
pub struct Recovered {
    restore: RestoreState,
    snapshot: Snapshot,
    report: RecoveryReport,
    fresh: bool,
}

impl Recovered {
    /// Everything [`raft::Node::restart`] needs.
    pub fn restore_state(&self) -> &RestoreState {
        &self.restore
    }

    /// Takes the restore state by value.
    pub fn into_restore_state(self) -> RestoreState {
        self.restore
    }

    /// The snapshot to restore the state machine from (index 0 and empty if none).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// What recovery repaired or noticed.
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// True if no snapshot was ever stored here: start with [`raft::Node::new`] (whose first
    /// persist stores one), otherwise with [`raft::Node::restart`].
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Takes everything by value: `(restore state, snapshot, report)`.
    pub fn into_parts(self) -> (RestoreState, Snapshot, RecoveryReport) {
        (self.restore, self.snapshot, self.report)
    }
}

/// Everything recovery changed on disk or noticed, for the log and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    cut: Option<TailCut>,
    removed_empty_segment: Option<PathBuf>,
    snapshot_ahead_of_log: bool,
}

impl RecoveryReport {
    /// The torn or incomplete tail that was cut off the last segment, if any.
    pub fn cut(&self) -> Option<&TailCut> {
        self.cut.as_ref()
    }

    /// A last segment that held not even a complete header and was removed.
    pub fn removed_empty_segment(&self) -> Option<&Path> {
        self.removed_empty_segment.as_deref()
    }

    /// Set when the newest snapshot was ahead of the WAL (a crash while installing it): the
    /// log after the snapshot was dropped.
    pub fn snapshot_ahead_of_log(&self) -> bool {
        self.snapshot_ahead_of_log
    }
}

/// A tail cut off the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCut {
    path: PathBuf,
    offset: u64,
    dropped_bytes: u64,
    torn: bool,
}

impl TailCut {
    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file now ends.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes were removed.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    /// True if a torn record was found; false if only complete records of an unfinished
    /// persist were dropped.
    pub fn torn(&self) -> bool {
        self.torn
    }
}

/// The log rebuilt from the WAL, before it meets the snapshot.
struct Replay {
    index: EntryIndex,
    entries: Vec<Entry>,
    hard_state: HardState,
    segments: BTreeMap<u64, SegmentInfo>,
    last_seq: Option<u64>,
    first_path: Option<PathBuf>,
    /// True while the log's base is the first segment's header position (entries before it
    /// may have been compacted away), false once an installed snapshot reset it.
    base_is_segment_start: bool,
}

impl Replay {
    fn new() -> Self {
        Self {
            index: EntryIndex::new(0, 0),
            entries: Vec::new(),
            hard_state: HardState::default(),
            segments: BTreeMap::new(),
            last_seq: None,
            first_path: None,
            base_is_segment_start: true,
        }
    }

    fn start_segment(&mut self, seq: u64, path: &Path, header: &SegmentHeader) -> Result<()> {
        if header.seq != seq {
            return Err(StorageError::corrupt(
                path,
                0,
                format!(
                    "segment header says sequence {} but the name says {seq}",
                    header.seq
                ),
            ));
        }
        match self.last_seq {
            None => {
                self.index = EntryIndex::new(header.prev_index, header.prev_term);
                self.hard_state = header.hard_state;
                self.first_path = Some(path.to_path_buf());
            }
            Some(prev) if seq != prev + 1 => {
                return Err(StorageError::MissingSegment {
                    path: path.to_path_buf(),
                    reason: format!("segments {} to {} are missing", prev + 1, seq - 1),
                });
            }
            Some(_) => {
                let (index, term) = (self.index.last_index(), self.index.last_term());
                if (header.prev_index, header.prev_term) != (index, term) {
                    return Err(StorageError::MissingSegment {
                        path: path.to_path_buf(),
                        reason: format!(
                            "segment continues after index {} term {}, but the log before it \
                             ends at index {index} term {term}",
                            header.prev_index, header.prev_term
                        ),
                    });
                }
            }
        }
        self.last_seq = Some(seq);
        self.segments.insert(
            seq,
            SegmentInfo {
                path: path.to_path_buf(),
                max_index: header.prev_index,
            },
        );
        Ok(())
    }

    /// Applies one complete group (a persist) of records.
    fn apply(&mut self, seq: u64, path: &Path, group: Vec<Located>) -> Result<()> {
        for located in group {
            let offset = located.offset;
            match located.record {
                Record::Entries(entries) => {
                    let first = entries[0].index();
                    let expected = self.index.last_index() + 1;
                    if first != expected {
                        return Err(StorageError::corrupt(
                            path,
                            offset,
                            format!("entries start at index {first}, expected {expected}"),
                        ));
                    }
                    let too_big = || StorageError::corrupt(path, offset, "segment past 4 GiB");
                    let loc = RecordLoc {
                        first,
                        seq: u32::try_from(seq).map_err(|_| too_big())?,
                        offset: u32::try_from(offset).map_err(|_| too_big())?,
                    };
                    self.index.append(loc, entries.iter().map(Entry::term));
                    self.entries.extend(entries);
                    let info = self.segments.get_mut(&seq).expect("segment started");
                    info.max_index = info.max_index.max(self.index.last_index());
                }
                Record::Truncate { from, prev_term } => {
                    let (base, last) = (self.index.base_index(), self.index.last_index());
                    if from > last + 1 || (from <= base && !self.base_is_segment_start) {
                        return Err(StorageError::corrupt(
                            path,
                            offset,
                            format!("truncation from index {from} outside the log {base}..={last}"),
                        ));
                    }
                    if from <= base {
                        // The cut falls into segments removed by compaction (a snapshot covers
                        // them); the log continues after (from - 1, prev_term).
                        self.index.reset(from - 1, prev_term);
                        self.entries.clear();
                    } else {
                        if self.index.term_at(from - 1) != Some(prev_term) {
                            return Err(StorageError::corrupt(
                                path,
                                offset,
                                format!(
                                    "truncation from index {from} expects term {prev_term} before it"
                                ),
                            ));
                        }
                        self.index.truncate(from);
                        self.entries.truncate((from - base - 1) as usize);
                    }
                }
                Record::SnapshotReset { index, term } => {
                    self.index.reset(index, term);
                    self.entries.clear();
                    self.base_is_segment_start = false;
                }
                Record::HardState(hard_state) => self.hard_state = hard_state,
                Record::SegmentHeader(_) => unreachable!("rejected by the segment reader"),
            }
        }
        Ok(())
    }
}

impl Storage {
    /// Opens (or creates) the store in `dir` and recovers its contents; see the module rules.
    /// Fails, naming the file and offset, on any damage other than a torn tail.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Self, Recovered)> {
        Self::open_in(StdFs, dir, options)
    }
}

impl<F: Vfs> Storage<F> {
    /// [`Storage::open`] on the file system `fs` instead of the real one.
    pub fn open_in(fs: F, dir: impl AsRef<Path>, options: Options) -> Result<(Self, Recovered)> {
        let faults = Faults::from_env()?;
        let dir = dir.as_ref();
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        for d in [dir, &wal_dir, &snap_dir] {
            vfs::create_dir_all(&fs, d, faults)?;
        }
        let counters = Arc::new(Counters::default());
        // What this open recovers is what the node relies on from now on, but an earlier run
        // may have stopped (a process crash, not a power cut) after the OS had it and before
        // it was synced: a directory created, a snapshot renamed into place, records written.
        // Sync all of it before it is used: the store's directory and its entry in the
        // parent, the snapshots, the last segment (below; the WAL directory is synced when
        // the new segment is created).
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        for d in parent.into_iter().chain([dir, snap_dir.as_path()]) {
            vfs::sync_dir(&fs, d)?;
            Counters::add(&counters.fsyncs, 1);
        }
        snapshot_file::remove_temporaries(&fs, &snap_dir)?;
        snapshot_file::remove_temporaries(&fs, &wal_dir)?;
        let mut report = RecoveryReport::default();

        let snapshots = snapshot_file::list(&fs, &snap_dir)?;
        let (snapshot, snapshot_wal_seq) = match snapshots.last() {
            Some((_, path)) => snapshot_file::read(&fs, path)?,
            None => (Snapshot::default(), 0),
        };

        let segments = segment::list(&fs, &wal_dir)?;
        let mut replay = Replay::new();
        let count = segments.len();
        for (position, (seq, path)) in segments.into_iter().enumerate() {
            let is_last = position + 1 == count;
            let bytes = vfs::read(&fs, &path)?;
            let Some(scanned) = segment::scan(&path, &bytes, is_last)? else {
                tracing::warn!(path = %path.display(), "removing a segment left without a complete header");
                vfs::remove_file(&fs, &path)?;
                vfs::sync_dir(&fs, &wal_dir)?;
                report.removed_empty_segment = Some(path);
                continue;
            };
            replay.start_segment(seq, &path, &scanned.header)?;
            let mut group = Vec::new();
            for located in scanned.records {
                let commits = matches!(located.record, Record::HardState(_));
                group.push(located);
                if commits {
                    replay.apply(seq, &path, std::mem::take(&mut group))?;
                }
            }
            let mut end = scanned.valid_len;
            if let Some(first_uncommitted) = group.first() {
                if !is_last {
                    return Err(StorageError::corrupt(
                        &path,
                        first_uncommitted.offset,
                        "unfinished persist at the end of a segment that is not the last",
                    ));
                }
                end = first_uncommitted.offset;
            }
            if end < bytes.len() as u64 && bytes[end as usize..].iter().any(|b| *b != 0) {
                let cut = TailCut {
                    path: path.clone(),
                    offset: end,
                    dropped_bytes: bytes.len() as u64 - end,
                    torn: scanned.torn,
                };
                tracing::warn!(
                    path = %path.display(),
                    offset = end,
                    dropped_bytes = cut.dropped_bytes,
                    torn = cut.torn,
                    "cutting an unfinished write off the end of the log"
                );
                let file = vfs::open(&fs, &path, OpenMode::Write)?;
                file.set_len(end)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| StorageError::io(&path, e))?;
                Counters::add(&counters.fsyncs, 1);
                report.cut = Some(cut);
            } else if is_last {
                // Records the last run wrote but never synced are recovered like the rest:
                // make them durable before the node acts on them (every earlier segment was
                // synced when the next one was started).
                vfs::open(&fs, &path, OpenMode::Read)?
                    .sync_data()
                    .map_err(|e| StorageError::io(&path, e))?;
                Counters::add(&counters.fsyncs, 1);
            }
        }

        // `raft::Node::new` stores a snapshot before anything else: without one, no node ever
        // ran here (even if a segment was created before a crash).
        let fresh = snapshots.is_empty();
        if replay.last_seq.unwrap_or(0) < snapshot_wal_seq {
            return Err(StorageError::MissingSegment {
                path: wal_dir.clone(),
                reason: format!(
                    "the newest snapshot was saved while segment {snapshot_wal_seq} was being \
                     written, but the log ends at segment {}",
                    replay.last_seq.unwrap_or(0)
                ),
            });
        }
        if replay.last_seq.is_none() {
            let meta = snapshot.meta();
            replay.index = EntryIndex::new(meta.index(), meta.term());
        }

        // The new segment continues the WAL exactly as replayed; laying the log over the
        // snapshot happens after, and is recorded in it when it changes the log.
        let seq = replay.last_seq.map_or(1, |s| s + 1);
        let active = create_segment(
            &fs,
            faults,
            &wal_dir,
            None,
            seq,
            SegmentHeader {
                seq,
                prev_index: replay.index.last_index(),
                prev_term: replay.index.last_term(),
                hard_state: replay.hard_state,
            },
            &counters,
        )?;
        replay.segments.insert(
            seq,
            SegmentInfo {
                path: active.path.clone(),
                max_index: replay.index.last_index(),
            },
        );

        let meta = snapshot.meta().clone();
        let preallocator = options.get_preallocate().then(|| {
            if options.get_spares_inline() {
                Preallocator::start_inline(&fs, &wal_dir, options.get_segment_size())
            } else {
                Preallocator::start(&fs, &wal_dir, options.get_segment_size())
            }
        });
        let mut storage = Self {
            fs,
            faults,
            wal_dir,
            snap_dir,
            options,
            segments: replay.segments,
            active,
            buffer: Vec::new(),
            index: replay.index,
            hard_state: replay.hard_state,
            snapshot: meta.clone(),
            compaction_due: true,
            poisoned: false,
            unsynced_entries: 0,
            preallocator,
            counters,
            persists: 0,
            holding_writes: false,
        };
        let mut entries = replay.entries;
        if storage.index.term_at(meta.index()) == Some(meta.term()) {
            let covered = meta.index().saturating_sub(storage.index.base_index());
            entries.drain(..covered as usize);
            storage.index.compact(meta.index());
        } else if storage.index.base_index() > meta.index() {
            return Err(StorageError::MissingSegment {
                path: replay.first_path.unwrap_or(storage.wal_dir),
                reason: format!(
                    "the log starts after index {} but the newest snapshot covers only up to \
                     index {}",
                    storage.index.base_index(),
                    meta.index()
                ),
            });
        } else {
            tracing::warn!(
                snapshot_index = meta.index(),
                log_last_index = storage.index.last_index(),
                "the newest snapshot is ahead of the log (crash while installing it): the log \
                 after it is empty"
            );
            report.snapshot_ahead_of_log = true;
            entries.clear();
            storage.write_record(&Record::SnapshotReset {
                index: meta.index(),
                term: meta.term(),
            })?;
            storage.write_record(&Record::HardState(storage.hard_state))?;
            storage.index.reset(meta.index(), meta.term());
        }
        storage.index.shrink();
        storage.sync()?;

        let restore = RestoreState {
            hard_state: storage.hard_state,
            snapshot: meta,
            entries,
        };
        let recovered = Recovered {
            restore,
            snapshot,
            report,
            fresh,
        };
        Ok((storage, recovered))
    }
}
