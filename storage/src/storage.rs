//! [`Storage`]: the durable log store, and its write path.
//!
//! Writes are buffered; [`Storage::sync`] hands them to the OS and fsyncs the active segment
//! once, whatever number of persists came before it (group commit). Recovery lives in
//! `recovery.rs`; this file holds the state of an open store and the operations on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::{Entry, HardState, Index, Persist, Snapshot, SnapshotMeta, Term};

use crate::error::{Result, StorageError};
use crate::faults::Faults;
use crate::index::{EntryIndex, RecordLoc};
use crate::options::Options;
use crate::prealloc::{Preallocator, Spare};
use crate::record::{self, Frame, Kind, Record, SegmentHeader};
use crate::segment;
use crate::snapshot_file;
use crate::stats::{Counters, StorageStats};
use crate::vfs::{self, OpenMode, StdFs, Vfs, VfsFile};

/// What the store knows about one segment file.
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub(crate) path: PathBuf,
    /// The highest entry index ever written to it (or the index before its first entry).
    pub(crate) max_index: Index,
}

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active<F: Vfs> {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: F::File,
    /// Bytes in the file plus bytes still in the buffer.
    pub(crate) len: u64,
    /// Bytes handed to the OS (the file may be longer: a preallocated spare).
    pub(crate) written: u64,
    /// Set when bytes were handed to the OS since the last fsync.
    pub(crate) dirty: bool,
}

/// A durable Raft log store: WAL segments for entries and hard state, files for snapshots.
///
/// # Call order
///
/// 1. [`Storage::open`] recovers what is on disk; give [`crate::Recovered::restore_state`] to
///    [`raft::Node::restart`] (or, on a fresh directory, start with [`raft::Node::new`]) and
///    restore the state machine from [`crate::Recovered::snapshot`].
/// 2. For every [`raft::Output::Persist`], in order: [`Storage::persist`]. Several persists
///    may be written before one [`Storage::sync`]; once `sync` returns, report the highest
///    token written before it to [`raft::Node::persisted`] — never earlier.
/// 3. For [`raft::Output::FetchEntries`]: [`Storage::entries`].
/// 4. After the driver snapshots its state machine: [`Storage::save_snapshot`], then
///    [`raft::Node::compact`]; the next `sync` removes the files the snapshot covers.
///
/// After any error from a write or a sync the store is poisoned (the state of the disk is
/// unknown); restart and recover. [`crate::Persister`] runs this loop on a thread of its own.
///
/// Every file operation goes through the file system `F` ([`crate::Vfs`]): the real one,
/// [`StdFs`], unless [`Storage::open_in`] is given another (a test's simulated disk).
///
/// ```
/// use raft::{Config, Instant, Membership, Node, Output};
/// use storage::{Options, Storage};
///
/// let dir = tempfile::tempdir().unwrap();
/// let (mut storage, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
/// assert!(recovered.is_fresh());
/// let mut node = Node::new(Config::new(1), Membership::new([1]), Instant::ZERO).unwrap();
/// while let Some(output) = node.poll_output() {
///     if let Output::Persist(persist) = output {
///         storage.persist(&persist).unwrap();
///         storage.sync().unwrap();
///         node.persisted(Instant::ZERO, persist.token());
///     }
/// }
/// drop(storage);
/// let (_, recovered) = Storage::open(dir.path(), Options::new()).unwrap();
/// assert_eq!(recovered.snapshot().meta().membership(), &Membership::new([1]));
/// ```
#[derive(Debug)]
pub struct Storage<F: Vfs = StdFs> {
    pub(crate) fs: F,
    pub(crate) faults: Faults,
    pub(crate) wal_dir: PathBuf,
    pub(crate) snap_dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) segments: BTreeMap<u64, SegmentInfo>,
    pub(crate) active: Active<F>,
    pub(crate) buffer: Vec<u8>,
    pub(crate) index: EntryIndex,
    pub(crate) hard_state: HardState,
    /// The latest snapshot's metadata; its data stays on disk until a follower needs it.
    pub(crate) snapshot: SnapshotMeta,
    pub(crate) compaction_due: bool,
    pub(crate) poisoned: bool,
    pub(crate) unsynced_entries: u64,
    pub(crate) counters: Arc<Counters>,
    pub(crate) preallocator: Option<Preallocator<F>>,
    /// Persists written since open, for the torn-write failpoint.
    pub(crate) persists: u64,
    /// Set while the failpoint assembles the group it tears: nothing is flushed early.
    pub(crate) holding_writes: bool,
}

impl<F: Vfs> Storage<F> {
    /// Carries out one [`raft::Output::Persist`] (buffered: call [`Storage::sync`] before
    /// reporting its token).
    pub fn persist(&mut self, persist: &Persist) -> Result<()> {
        self.persist_parts(persist.snapshot(), persist.entries(), persist.hard_state())
    }

    /// [`Storage::persist`] from its parts: store `snapshot` (the log is then empty after it),
    /// replace the stored entries from `entries[0]` on by `entries`, then store `hard_state`.
    ///
    /// The parts of one call become durable together or not at all: recovery never yields new
    /// entries without the hard state written with them.
    pub fn persist_parts(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        self.check()?;
        let base = snapshot.map_or(self.snapshot.index(), |s| s.meta().index());
        let skip = entries.iter().take_while(|e| e.index() <= base).count();
        let entries = &entries[skip..];
        if let Some(first) = entries.first() {
            let last = if snapshot.is_some() {
                base
            } else {
                self.index.last_index()
            };
            if first.index() > last + 1 {
                return Err(StorageError::Gap {
                    first: first.index(),
                    last,
                });
            }
            if let Some(pair) = entries
                .windows(2)
                .find(|w| w[1].index() != w[0].index() + 1)
            {
                return Err(StorageError::Gap {
                    first: pair[1].index(),
                    last: pair[0].index(),
                });
            }
        }
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        self.persists += 1;
        if self.options.get_torn_write_at() == Some(self.persists) {
            self.tear(snapshot, entries, hard_state);
        }
        let result = self.write_persist(snapshot, entries, hard_state);
        self.poison_on_error(result)
    }

    /// The torn-write failpoint ([`Options::torn_write_at`]): earlier writes reach the file,
    /// then the first half of this persist's records, then the process aborts.
    fn tear(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> ! {
        let flushed = self.flush();
        self.holding_writes = true;
        let written = flushed.and_then(|()| self.write_persist(snapshot, entries, hard_state));
        let group = self.buffer.len();
        let kept = group / 2;
        let offset = self.active.written;
        let torn = written.and_then(|()| {
            self.active
                .file
                .write_all_at(&self.buffer[..kept], offset)
                .map_err(|e| StorageError::io(&self.active.path, e))
        });
        tracing::error!(
            persist = self.persists,
            path = %self.active.path.display(),
            offset,
            kept,
            group,
            result = ?torn,
            "torn-write failpoint: wrote part of a persist; aborting"
        );
        std::process::abort()
    }

    fn write_persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        if self.active.len >= self.options.get_segment_size() {
            self.roll()?;
        }
        if let Some(snapshot) = snapshot {
            if let Some(new) = hard_state
                && (new.term(), new.vote()) != (self.hard_state.term(), self.hard_state.vote())
            {
                // The snapshot file becomes durable before the WAL records after it; make the
                // new term durable first, so that a crash in between never leaves a snapshot
                // from a term newer than the stored hard state. The commit index stays: it
                // must not run ahead of the log that backs it.
                self.hard_state = HardState::new(new.term(), new.vote(), self.hard_state.commit());
                self.write_record(&Record::HardState(self.hard_state))?;
                self.sync_wal()?;
            }
            snapshot_file::write(
                &self.fs,
                self.faults,
                &self.snap_dir,
                snapshot,
                self.active.seq,
            )?;
            Counters::add(&self.counters.fsyncs, 2);
            let meta = snapshot.meta();
            self.write_record(&Record::SnapshotReset {
                index: meta.index(),
                term: meta.term(),
            })?;
            self.index.reset(meta.index(), meta.term());
            self.snapshot = snapshot.meta().clone();
            self.compaction_due = true;
        }
        if let Some(first) = entries.first()
            && first.index() <= self.index.last_index()
        {
            let prev_term = self
                .index
                .term_at(first.index() - 1)
                .expect("the entry before a kept suffix is in the log");
            self.write_record(&Record::Truncate {
                from: first.index(),
                prev_term,
            })?;
            self.index.truncate(first.index());
        }
        for chunk in chunks(entries) {
            self.write_entries(chunk)?;
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = *hard_state;
        }
        // Every persist ends with its hard state: the record is the commit point of the
        // group, and recovery discards records after the last one.
        self.write_record(&Record::HardState(self.hard_state))?;
        Counters::add(&self.counters.persists, 1);
        Ok(())
    }

    fn write_entries(&mut self, chunk: &[Entry]) -> Result<()> {
        let offset = self.active.len;
        let start = self.buffer.len();
        record::encode(&mut self.buffer, Kind::Entries, &chunk);
        let len = self.buffer.len() - start;
        self.active.len += len as u64;
        let too_big = || StorageError::corrupt(&self.active.path, offset, "segment past 4 GiB");
        let loc = RecordLoc {
            first: chunk[0].index(),
            seq: u32::try_from(self.active.seq).map_err(|_| too_big())?,
            offset: u32::try_from(offset).map_err(|_| too_big())?,
        };
        self.index.append(loc, chunk.iter().map(Entry::term));
        let last = self.index.last_index();
        if let Some(info) = self.segments.get_mut(&self.active.seq) {
            info.max_index = info.max_index.max(last);
        }
        self.unsynced_entries += chunk.len() as u64;
        Counters::add(&self.counters.entries_written, chunk.len() as u64);
        self.flush_if_full()
    }

    pub(crate) fn write_record(&mut self, record: &Record) -> Result<()> {
        let start = self.buffer.len();
        record::encode_record(&mut self.buffer, record);
        self.active.len += (self.buffer.len() - start) as u64;
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.buffer.len() >= self.options.get_write_buffer() && !self.holding_writes {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands buffered bytes to the OS (no fsync).
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.active
            .file
            .write_all_at(&self.buffer, self.active.written)
            .map_err(|e| StorageError::io(&self.active.path, e))?;
        self.active.written += self.buffer.len() as u64;
        Counters::add(&self.counters.bytes_written, self.buffer.len() as u64);
        self.buffer.clear();
        self.active.dirty = true;
        Ok(())
    }

    fn sync_wal(&mut self) -> Result<()> {
        self.flush()?;
        if self.active.dirty {
            if !self.faults.skip_fsync() {
                self.active
                    .file
                    .sync_data()
                    .map_err(|e| StorageError::io(&self.active.path, e))?;
            }
            self.active.dirty = false;
            Counters::add(&self.counters.fsyncs, 1);
            Counters::add(&self.counters.group_commits, 1);
        }
        Ok(())
    }

    /// Makes everything written so far durable with one fsync of the active segment, then
    /// removes the files a newer snapshot made obsolete. Report persist tokens only after this
    /// returns `Ok`.
    pub fn sync(&mut self) -> Result<()> {
        self.check()?;
        let result = self.sync_wal();
        self.poison_on_error(result)?;
        self.unsynced_entries = 0;
        if self.compaction_due {
            let result = self.remove_obsolete_files();
            self.poison_on_error(result)?;
        }
        Ok(())
    }

    /// Starts a new segment (the current one is synced first: segments are durable in order).
    fn roll(&mut self) -> Result<()> {
        self.sync_wal()?;
        let seq = self.active.seq + 1;
        let spare = self.preallocator.as_mut().and_then(Preallocator::take);
        let active = create_segment(
            &self.fs,
            self.faults,
            &self.wal_dir,
            spare,
            seq,
            SegmentHeader {
                seq,
                prev_index: self.index.last_index(),
                prev_term: self.index.last_term(),
                hard_state: self.hard_state,
            },
            &self.counters,
        )?;
        self.segments.insert(
            seq,
            SegmentInfo {
                path: active.path.clone(),
                max_index: self.index.last_index(),
            },
        );
        self.active = active;
        Ok(())
    }

    /// Entries `first..=last` (fewer if the log ends earlier; none if `first` is covered by
    /// the snapshot), read back from the WAL, for [`raft::Output::FetchEntries`].
    pub fn entries(&mut self, first: Index, last: Index) -> Result<Vec<Entry>> {
        self.check()?;
        let last = last.min(self.index.last_index());
        if first <= self.index.base_index() || last < first {
            return Ok(Vec::new());
        }
        let result = self.flush();
        self.poison_on_error(result)?;
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        let mut open: Option<(u64, F::File)> = None;
        let locs: Vec<_> = self.index.locate(first, last).collect();
        for (loc, live_from, live_to) in locs {
            let seq = u64::from(loc.seq);
            let path = &self.segment_path(seq)?;
            if open.as_ref().is_none_or(|(open_seq, _)| *open_seq != seq) {
                let file = vfs::open(&self.fs, path, OpenMode::Read)?;
                open = Some((seq, file));
            }
            let file = &open.as_ref().expect("opened above").1;
            let offset = u64::from(loc.offset);
            let mut bytes = vec![0; record::HEADER_LEN];
            file.read_exact_at(&mut bytes, offset)
                .map_err(|e| StorageError::io(path, e))?;
            if let Frame::PastEnd { missing } = record::decode_frame(&bytes) {
                bytes.resize(record::HEADER_LEN + missing, 0);
                file.read_exact_at(
                    &mut bytes[record::HEADER_LEN..],
                    offset + record::HEADER_LEN as u64,
                )
                .map_err(|e| StorageError::io(path, e))?;
            }
            let Frame::Valid { kind, payload, .. } = record::decode_frame(&bytes) else {
                return Err(StorageError::corrupt(
                    path,
                    offset,
                    "record checksum mismatch on read",
                ));
            };
            let Ok(Record::Entries(entries)) = record::decode_record(kind, payload) else {
                return Err(StorageError::corrupt(
                    path,
                    offset,
                    "expected an entries record",
                ));
            };
            let (from, to) = (first.max(live_from), last.min(live_to));
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.index() >= from && e.index() <= to),
            );
        }
        if out.len() as u64 != last - first + 1 {
            return Err(StorageError::corrupt(
                &self.active.path,
                0,
                format!("index and WAL disagree reading entries {first}..={last}"),
            ));
        }
        Ok(out)
    }

    fn segment_path(&self, seq: u64) -> Result<PathBuf> {
        self.segments
            .get(&seq)
            .map(|info| info.path.clone())
            .ok_or_else(|| StorageError::MissingSegment {
                path: self.wal_dir.clone(),
                reason: format!("segment {seq} is in the index but not on disk"),
            })
    }

    /// Stores a snapshot the driver made of its state machine (ignored unless newer than the
    /// stored one): the file is durable when this returns; the entries it covers are dropped,
    /// and the next [`Storage::sync`] removes older snapshots and covered segments. Call
    /// [`raft::Node::compact`] afterwards.
    ///
    /// This is [`Storage::snapshot_writer`], [`SnapshotWriter::write`] and
    /// [`Storage::snapshot_written`] in a row; [`crate::Persister`] runs the middle step on a
    /// thread of its own so that log writes go on while a large snapshot is written.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.check()?;
        let Some(writer) = self.snapshot_writer(snapshot.meta()) else {
            return Ok(());
        };
        let result = writer.write(snapshot);
        self.poison_on_error(result)?;
        self.snapshot_written(snapshot.meta())
    }

    /// What writing the snapshot described by `meta` to its file needs, or `None` when the
    /// stored snapshot is already as new.
    pub fn snapshot_writer(&self, meta: &SnapshotMeta) -> Option<SnapshotWriter<F>> {
        (meta.index() > self.snapshot.index()).then(|| SnapshotWriter {
            fs: self.fs.clone(),
            faults: self.faults,
            snap_dir: self.snap_dir.clone(),
            wal_seq: self.active.seq,
        })
    }

    /// Adopts a snapshot whose file [`SnapshotWriter::write`] made durable: drops the entries
    /// it covers (a snapshot that is not newer than the stored one is left for removal).
    pub fn snapshot_written(&mut self, meta: &SnapshotMeta) -> Result<()> {
        self.check()?;
        if meta.index() <= self.snapshot.index() {
            self.compaction_due = true;
            return Ok(());
        }
        let result = self.adopt_snapshot(meta);
        self.poison_on_error(result)
    }

    fn adopt_snapshot(&mut self, meta: &SnapshotMeta) -> Result<()> {
        Counters::add(&self.counters.fsyncs, 2);
        if self.index.term_at(meta.index()) == Some(meta.term()) {
            self.index.compact(meta.index());
        } else {
            // Not a prefix of our log: it replaces the log, as an installed snapshot does.
            self.write_record(&Record::SnapshotReset {
                index: meta.index(),
                term: meta.term(),
            })?;
            self.write_record(&Record::HardState(self.hard_state))?;
            self.index.reset(meta.index(), meta.term());
        }
        self.snapshot = meta.clone();
        self.compaction_due = true;
        Ok(())
    }

    /// Removes snapshots older than the current one and the oldest segments whose entries it
    /// wholly covers (never the active segment, never one after a segment that is kept).
    fn remove_obsolete_files(&mut self) -> Result<()> {
        let meta = &self.snapshot;
        let current = snapshot_file::file_name(meta.term(), meta.index());
        let mut removed_snapshot = false;
        for ((index, _), path) in snapshot_file::list(&self.fs, &self.snap_dir)? {
            // Only older ones: a newer file may be a snapshot still being adopted.
            if index <= meta.index()
                && path.file_name().and_then(|n| n.to_str()) != Some(current.as_str())
            {
                vfs::remove_file(&self.fs, &path)?;
                removed_snapshot = true;
            }
        }
        if removed_snapshot {
            vfs::sync_dir(&self.fs, &self.snap_dir)?;
            Counters::add(&self.counters.fsyncs, 1);
        }
        let keep_from = self.index.oldest_seq().unwrap_or(self.active.seq);
        let covered: Vec<u64> = self
            .segments
            .iter()
            .take_while(|(seq, info)| {
                **seq < keep_from && **seq < self.active.seq && info.max_index <= meta.index()
            })
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &covered {
            let info = self.segments.remove(seq).expect("listed above");
            vfs::remove_file(&self.fs, &info.path)?;
        }
        if !covered.is_empty() {
            vfs::sync_dir(&self.fs, &self.wal_dir)?;
            Counters::add(&self.counters.fsyncs, 1);
        }
        self.compaction_due = false;
        Ok(())
    }

    /// The latest snapshot's metadata (index 0 before any).
    pub fn latest_snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The latest snapshot (index 0 and empty data before any), read back from its file: the
    /// data is not kept in memory between uses, as it can be as large as the whole state.
    pub fn latest_snapshot(&self) -> Result<Snapshot> {
        let meta = &self.snapshot;
        if meta.index() == 0 {
            return Ok(Snapshot::new(meta.clone(), bytes::Bytes::new()));
        }
        let path = self
            .snap_dir
            .join(snapshot_file::file_name(meta.term(), meta.index()));
        let (snapshot, _) = snapshot_file::read(&self.fs, &path)?;
        if snapshot.meta() != meta {
            return Err(StorageError::Corrupt {
                path,
                offset: 0,
                reason: format!(
                    "holds the snapshot at index {} (term {}), expected index {} (term {})",
                    snapshot.meta().index(),
                    snapshot.meta().term(),
                    meta.index(),
                    meta.term()
                ),
            });
        }
        Ok(snapshot)
    }

    /// The stored hard state (including writes not yet synced).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Index of the last stored entry (or of the snapshot when the log after it is empty).
    pub fn last_index(&self) -> Index {
        self.index.last_index()
    }

    /// Term of the entry at `index` (or of the snapshot at its index), if stored.
    pub fn term(&self, index: Index) -> Option<Term> {
        self.index.term_at(index)
    }

    /// Counters: fsyncs, group commits, entries and bytes written.
    pub fn stats(&self) -> StorageStats {
        self.counters.snapshot()
    }

    /// Heap bytes of the in-memory entry index (at most 32 per live entry).
    pub fn index_bytes(&self) -> usize {
        self.index.heap_bytes()
    }

    /// Number of WAL segment files (including the active one).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            Err(StorageError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }
}

/// Writes one snapshot file; made by [`Storage::snapshot_writer`], runs on any thread.
#[derive(Debug)]
pub struct SnapshotWriter<F: Vfs = StdFs> {
    fs: F,
    faults: Faults,
    snap_dir: PathBuf,
    wal_seq: u64,
}

impl<F: Vfs> SnapshotWriter<F> {
    /// Writes `snapshot`'s file durably (temporary file, fsync, rename, directory fsync).
    pub fn write(&self, snapshot: &Snapshot) -> Result<()> {
        snapshot_file::write(
            &self.fs,
            self.faults,
            &self.snap_dir,
            snapshot,
            self.wal_seq,
        )
        .map(drop)
    }

    /// Writes the file of the snapshot `meta` describes, its data streamed by `source`.
    pub fn write_with(
        &self,
        meta: &SnapshotMeta,
        source: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        snapshot_file::write_with(
            &self.fs,
            self.faults,
            &self.snap_dir,
            meta,
            self.wal_seq,
            source,
        )
        .map(drop)
    }
}

/// Splits entries into records of about [`record::TARGET_RECORD_BYTES`].
fn chunks(entries: &[Entry]) -> impl Iterator<Item = &[Entry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|e| {
                bytes += e.size();
                bytes <= record::TARGET_RECORD_BYTES
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Creates segment `seq` holding just its header, durably (file and directory fsynced), from a
/// zero-filled spare if one is given.
pub(crate) fn create_segment<F: Vfs>(
    fs: &F,
    faults: Faults,
    wal_dir: &Path,
    spare: Option<Spare<F>>,
    seq: u64,
    header: SegmentHeader,
    counters: &Counters,
) -> Result<Active<F>> {
    let path = wal_dir.join(segment::file_name(seq, header.prev_index + 1));
    let mut bytes = Vec::new();
    record::encode_record(&mut bytes, &Record::SegmentHeader(header));
    let file = match spare {
        Some(spare) => {
            fs.rename(&spare.path, &path)
                .map_err(|e| StorageError::io(&path, e))?;
            spare.file
        }
        None => vfs::open(fs, &path, OpenMode::CreateNew)?,
    };
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| StorageError::io(&path, e))?;
    vfs::sync_dir_after_create(fs, wal_dir, faults)?;
    Counters::add(&counters.fsyncs, 2);
    Counters::add(&counters.bytes_written, bytes.len() as u64);
    Ok(Active {
        seq,
        path,
        file,
        len: bytes.len() as u64,
        written: bytes.len() as u64,
        dirty: false,
    })
}
