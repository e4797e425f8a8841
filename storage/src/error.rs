//! [`StorageError`]: everything that can go wrong in the storage, as one enum.
//!
//! Corruption always names the file and the byte offset where the damaged data starts, so an
//! operator can look at it (or run [`crate::repair`], which lists what it drops). Nothing is
//! ever skipped silently: the only damage recovery repairs by itself is a torn final record,
//! and it reports that in [`crate::RecoveryReport`].

use std::io;
use std::path::PathBuf;

use raft::Index;

/// An error from the storage. After any error from a write or a sync the [`crate::Storage`]
/// refuses further work ([`StorageError::Poisoned`]): the node must stop and restart.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call on `path` failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Stored data is damaged: a checksum mismatch, an impossible record, a truncated file.
    #[error("corrupt data in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged record (or field) in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Part of the log is missing: a segment file was deleted or never made it to disk.
    #[error("missing write-ahead log data near {path}: {reason}")]
    MissingSegment {
        /// The file where the gap was noticed (or the directory).
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The caller asked for a write that would leave a gap in the log (a driver bug: persists
    /// were skipped or reordered).
    #[error("entries starting at index {first} would leave a gap after the last index {last}")]
    Gap {
        /// The first index of the write.
        first: Index,
        /// The last stored index.
        last: Index,
    },
    /// An earlier write or sync failed; the on-disk state is unknown, so nothing more is done.
    #[error("storage refused work after an earlier failure")]
    Poisoned,
    /// The [`crate::Persister`] thread has stopped (after a failure or a shutdown).
    #[error("the persister thread has stopped")]
    Stopped,
    /// A setting read from the environment is malformed.
    #[error("invalid {name}: {reason}")]
    InvalidSetting {
        /// The environment variable.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
