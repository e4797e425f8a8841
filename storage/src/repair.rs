//! [`repair`]: an explicit, operator-run way past WAL corruption, saying exactly what it drops.
//!
//! Recovery never skips damaged data by itself. When a segment is corrupt, the only repair
//! that keeps the log a true prefix of what was written is to cut the log at the damaged record
//! and drop everything after it, including every later segment. Entries dropped this way may
//! have been acknowledged to a leader, so a repaired node can hold less than it promised: run
//! this only on a node that will be caught up by the cluster (or removed and re-added), never
//! to paper over damage on a majority.
//!
//! Damaged snapshots and missing segments are not repaired: no prefix of the log replaces them.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::options::Options;
use crate::recovery::TailCut;
use crate::segment;
use crate::storage::Storage;
use crate::vfs::{self, OpenMode, StdFs, Vfs, VfsFile};

/// One change [`repair`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairAction {
    /// A segment was cut at the damaged record.
    Cut {
        /// The segment.
        path: PathBuf,
        /// Where it now ends (the damaged record's offset).
        offset: u64,
        /// Bytes removed.
        dropped_bytes: u64,
        /// Why the record was rejected.
        reason: String,
    },
    /// A segment after the damage was deleted.
    Removed {
        /// The segment.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Opening afterwards also cut an unfinished persist off the new end of the log.
    TailCut(TailCut),
}

/// Everything [`repair`] dropped, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    actions: Vec<RepairAction>,
}

impl RepairReport {
    /// The changes made (empty if the store opened cleanly).
    pub fn actions(&self) -> &[RepairAction] {
        &self.actions
    }
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            return write!(f, "nothing to repair");
        }
        for action in &self.actions {
            match action {
                RepairAction::Cut {
                    path,
                    offset,
                    dropped_bytes,
                    reason,
                } => writeln!(
                    f,
                    "cut {} at byte offset {offset}, dropping {dropped_bytes} bytes ({reason})",
                    path.display()
                )?,
                RepairAction::Removed { path, bytes } => {
                    writeln!(f, "removed {} ({bytes} bytes)", path.display())?
                }
                RepairAction::TailCut(cut) => writeln!(
                    f,
                    "cut {} at byte offset {}, dropping {} bytes of an unfinished write",
                    cut.path().display(),
                    cut.offset(),
                    cut.dropped_bytes()
                )?,
            }
        }
        Ok(())
    }
}

/// Cuts the WAL in `dir` at its first corrupt record and deletes every later segment, until the
/// store opens. Returns what was dropped; fails (changing nothing more) on damage it cannot
/// repair: a corrupt snapshot, a missing segment, an I/O error.
pub fn repair(dir: impl AsRef<Path>, options: Options) -> Result<RepairReport> {
    repair_in(StdFs, dir, options)
}

/// [`repair`] on the file system `fs` instead of the real one.
pub fn repair_in<F: Vfs>(fs: F, dir: impl AsRef<Path>, options: Options) -> Result<RepairReport> {
    let dir = dir.as_ref();
    let wal_dir = dir.join("wal");
    let mut report = RepairReport::default();
    loop {
        match Storage::open_in(fs.clone(), dir, options.clone()) {
            Ok((_, recovered)) => {
                if let Some(cut) = recovered.report().cut() {
                    report.actions.push(RepairAction::TailCut(cut.clone()));
                }
                return Ok(report);
            }
            Err(StorageError::Corrupt {
                path,
                offset,
                reason,
            }) if path.parent() == Some(wal_dir.as_path()) => {
                let segments = segment::list(&fs, &wal_dir)?;
                let Some(position) = segments.iter().position(|(_, p)| *p == path) else {
                    return Err(StorageError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                };
                let len = fs.file_len(&path).map_err(|e| StorageError::io(&path, e))?;
                let file = vfs::open(&fs, &path, OpenMode::Write)?;
                file.set_len(offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| StorageError::io(&path, e))?;
                tracing::warn!(path = %path.display(), offset, reason, "repair: cutting the log");
                report.actions.push(RepairAction::Cut {
                    path,
                    offset,
                    dropped_bytes: len.saturating_sub(offset),
                    reason,
                });
                for (_, later) in &segments[position + 1..] {
                    let bytes = fs.file_len(later).map_err(|e| StorageError::io(later, e))?;
                    vfs::remove_file(&fs, later)?;
                    tracing::warn!(path = %later.display(), "repair: removing a later segment");
                    report.actions.push(RepairAction::Removed {
                        path: later.clone(),
                        bytes,
                    });
                }
                vfs::sync_dir(&fs, &wal_dir)?;
            }
            Err(other) => return Err(other),
        }
    }
}
