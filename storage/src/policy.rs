//! [`SnapshotPolicy`]: when the driver should snapshot its state machine.
//!
//! The decision needs a clock, which stays out of the Raft core; the driver asks this helper
//! after applying entries and on a timer, passing what it measured.

use std::time::Duration;

/// Snapshot every `every_entries` applied entries, and/or every `every` (the seed's
/// `-snap_every`), whichever comes first. Nothing is due while no entry was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    every_entries: u64,
    every: Option<Duration>,
}

impl Default for SnapshotPolicy {
    /// Every 10,000 entries, no time trigger.
    fn default() -> Self {
        Self {
            every_entries: 10_000,
            every: None,
        }
    }
}

impl SnapshotPolicy {
    /// A policy with both triggers; `every_entries == 0` turns the entry-count trigger off.
    pub fn new(every_entries: u64, every: Option<Duration>) -> Self {
        Self {
            every_entries,
            every,
        }
    }

    /// The entry-count trigger (0 = off).
    pub fn every_entries(&self) -> u64 {
        self.every_entries
    }

    /// The time trigger.
    pub fn every(&self) -> Option<Duration> {
        self.every
    }

    /// Whether a snapshot is due, given the entries applied since the last snapshot and the
    /// time elapsed since it (or since start).
    pub fn due(&self, applied_since_last: u64, elapsed: Duration) -> bool {
        applied_since_last > 0
            && ((self.every_entries > 0 && applied_since_last >= self.every_entries)
                || self.every.is_some_and(|every| elapsed >= every))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers() {
        let policy = SnapshotPolicy::default();
        assert!(!policy.due(9_999, Duration::from_secs(3600)));
        assert!(policy.due(10_000, Duration::ZERO));
        let timed = SnapshotPolicy::new(0, Some(Duration::from_secs(60)));
        assert!(!timed.due(1_000_000, Duration::from_secs(59)));
        assert!(timed.due(1, Duration::from_secs(60)));
        assert!(
            !timed.due(0, Duration::from_secs(600)),
            "nothing new to snapshot"
        );
    }
}
