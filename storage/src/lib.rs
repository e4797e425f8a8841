//! Durable storage for a Raft node: a segmented, checksummed write-ahead log for log entries
//! and the hard state, plus snapshot files.
//!
//! # Why a crate of its own
//!
//! kvd's node loop is its only user today, but the storage has no business with gRPC, the
//! state machine or the transport, and its tests (crash cuts at every byte, corruption, a
//! model-based property test) are heavy enough to deserve their own `cargo test -p storage`.
//! Keeping it apart also keeps the dependency direction obvious: `storage` depends on `raft`
//! for the types it stores ([`raft::Persist`], [`raft::Entry`], [`raft::HardState`],
//! [`raft::Snapshot`]) and on nothing async. All IO is synchronous, through one seam, [`Vfs`]:
//! `std::fs` in production ([`StdFs`]), a simulated disk that loses unsynced data at a power
//! cut in tests. kvd runs it on a dedicated thread through [`Persister`].
//!
//! # Layout on disk
//!
//! ```text
//! <dir>/wal/<seq>-<first-index>.seg   append-only segments (default 64 MiB), see `segment.rs`
//! <dir>/snap/<term>-<index>.snap      snapshots with a checksum, see `snapshot_file.rs`
//! ```
//!
//! DESIGN.md names segments `<first-index>.seg`; the sequence number in front is ours: after a
//! truncation two segments can start at the same index, and a gap in the sequence is how a
//! missing segment is noticed. Segments are preallocated with zeros (`prealloc.rs`); zeros past
//! the last record are the end of the log.
//!
//! Each WAL record is `[u32 length][u32 crc32c][u8 kind][u32 header crc32c][postcard payload]`
//! (`record.rs`): the record checksum covers length, kind and payload, and the header carries
//! a checksum of its own, so a damaged length is recognised before it is trusted. Record kinds:
//! segment header, entries, hard state, truncation, snapshot reset. One [`Storage::persist`]
//! writes a group of records that always ends with a hard-state record — the group's commit
//! point — so a persist is recovered whole or not at all.
//!
//! # Recovery
//!
//! [`Storage::open`] loads the newest snapshot and replays the WAL after it. A torn final
//! record is cut off and reported ([`RecoveryReport`]); any other damage — a checksum mismatch
//! in the middle of the log (the length field included), a missing segment, a snapshot that
//! fails its checksum — fails with a [`StorageError`] naming the file and byte offset. The
//! rules are spelled out in `recovery.rs` and `segment.rs`. [`repair`] is the explicit,
//! operator-run way past a corrupt segment; it reports every byte it drops.
//!
//! # Limits
//!
//! - Damage to the very last record of the log cannot be told from a torn write: it is cut and
//!   reported, like a torn write.
//! - A crash whose out-of-order page writeback kept a later unsynced record but not an earlier
//!   one is reported as corruption (valid data follows the damage): a false alarm that stops
//!   the node instead of a silent cut. [`repair`] resolves it, dropping only unsynced data.
//! - A lost final segment is detected only if a snapshot was saved while it (or a later one)
//!   was being written; each snapshot records the segment then active.
//!
//! # Modules
//!
//! - `record`: record framing and payloads; `segment`: segment files and torn-tail rules;
//! - `snapshot_file`: snapshot files; `index`: the in-memory entry index (≤ 32 bytes/entry);
//! - `storage`: [`Storage`] and its write path; `recovery`: [`Storage::open`];
//! - `persister`: [`Persister`], the group-commit thread; `policy`: [`SnapshotPolicy`];
//! - `repair`: [`repair`], the explicit way past a corrupt segment (it lists what it drops);
//! - `prealloc`: zero-filled spare segments prepared off the write path;
//! - `vfs`: [`Vfs`], the file system every file operation goes through;
//! - `faults`: test-only injected durability bugs (`STORAGE_INJECT`, `test-util` feature);
//! - `test_util` (`test-util` feature): `SimFs`, a simulated disk for power-cut tests;
//! - `options`, `stats`, `error`.

mod error;
mod faults;
mod index;
mod options;
mod persister;
mod policy;
mod prealloc;
mod record;
mod recovery;
mod repair;
mod segment;
mod snapshot_file;
mod stats;
mod storage;
#[cfg(feature = "test-util")]
pub mod test_util;
mod vfs;

pub use error::{Result, StorageError};
pub use options::Options;
pub use persister::{Event, Job, Persister, SnapshotSource};
pub use policy::SnapshotPolicy;
pub use recovery::{Recovered, RecoveryReport, TailCut};
pub use repair::{RepairAction, RepairReport, repair, repair_in};
pub use stats::StorageStats;
pub use storage::{SnapshotWriter, Storage};
pub use vfs::{OpenMode, StdFs, Vfs, VfsFile};
