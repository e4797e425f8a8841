//! Injected durability bugs for negative controls, test-only.
//!
//! The power-cut test (`tests/power_cut.rs`) must be shown to catch a storage that forgets an
//! fsync. `STORAGE_INJECT` names the bug to inject:
//!
//! - `skip-fsync`: [`crate::Storage::sync`] reports success without syncing the WAL, so a
//!   persist is acknowledged before it is durable;
//! - `skip-dir-fsync`: the directory is not synced after a file (a segment, a snapshot, a
//!   directory) is created or renamed in it.
//!
//! The variable is read only when the crate is built with the `test-util` feature, which no
//! production build enables; without it [`Faults`] is always empty and every check below is a
//! constant `false`. A value that names no bug is an error, not a silent default.

use crate::error::{Result, StorageError};

/// The environment variable that injects a bug (only with the `test-util` feature).
#[cfg_attr(not(feature = "test-util"), allow(dead_code))]
pub(crate) const VARIABLE: &str = "STORAGE_INJECT";

/// The injected bugs in effect (none unless built with `test-util` and asked to).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    skip_fsync: bool,
    skip_dir_fsync: bool,
}

impl Faults {
    /// Reads `STORAGE_INJECT` (with the `test-util` feature; otherwise no faults).
    pub(crate) fn from_env() -> Result<Self> {
        #[cfg(feature = "test-util")]
        if let Some(value) = std::env::var_os(VARIABLE) {
            return Self::parse(&value.to_string_lossy());
        }
        Ok(Self::default())
    }

    /// Parses a `STORAGE_INJECT` value; empty means none.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn parse(value: &str) -> Result<Self> {
        match value.trim() {
            "" => Ok(Self::default()),
            "skip-fsync" => Ok(Self {
                skip_fsync: true,
                ..Self::default()
            }),
            "skip-dir-fsync" => Ok(Self {
                skip_dir_fsync: true,
                ..Self::default()
            }),
            other => Err(StorageError::InvalidSetting {
                name: VARIABLE,
                reason: format!(
                    "unknown value {other:?}; expected `skip-fsync` or `skip-dir-fsync` \
                     (or unset)"
                ),
            }),
        }
    }

    /// Whether the WAL fsync of a sync is skipped.
    pub(crate) fn skip_fsync(self) -> bool {
        cfg!(feature = "test-util") && self.skip_fsync
    }

    /// Whether the directory fsync after a create or rename is skipped.
    pub(crate) fn skip_dir_fsync(self) -> bool {
        cfg!(feature = "test-util") && self.skip_dir_fsync
    }

    /// The value naming these faults, if any.
    #[cfg(feature = "test-util")]
    pub(crate) fn name(self) -> Option<&'static str> {
        if self.skip_fsync {
            Some("skip-fsync")
        } else if self.skip_dir_fsync {
            Some("skip-dir-fsync")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_a_bad_one_names_the_variable() {
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        let skip_fsync = Faults::parse("skip-fsync").unwrap();
        assert!(skip_fsync.skip_fsync && !skip_fsync.skip_dir_fsync);
        let skip_dir_fsync = Faults::parse(" skip-dir-fsync ").unwrap();
        assert!(skip_dir_fsync.skip_dir_fsync && !skip_dir_fsync.skip_fsync);
        let err = Faults::parse("skip-fsyncs").unwrap_err().to_string();
        assert!(err.contains("STORAGE_INJECT"), "{err}");
        assert!(err.contains("skip-fsyncs"), "{err}");
    }
}
