//! Identifiers and the crate's own notion of time.
//!
//! The core never reads a clock. Every input carries an [`Instant`] chosen by the driver, and the
//! core answers with the next [`Instant`] at which it wants to be woken. Tests and the simulator
//! can therefore build any instant they like and jump straight to the next deadline.

use core::fmt;
use core::ops::{Add, AddAssign};
use core::time::Duration;

/// Identifies a member of the cluster. Chosen by the driver; `0` is reserved as "nobody".
pub type NodeId = u64;
/// A Raft term: a logical clock that increases with every election.
pub type Term = u64;
/// A position in the replicated log. The first entry has index 1; index 0 is the empty log.
pub type Index = u64;

/// The highest index or term the core accepts from a peer or from storage: 2^63 - 1, far
/// beyond any real log, and low enough that the core's `index + n` never overflows. A
/// message carrying more is refused and counted in [`crate::Stats::out_of_range`].
pub(crate) const MAX_INDEX: Index = i64::MAX as Index;

/// A point in time, in nanoseconds since an epoch chosen by the driver.
///
/// Only differences between instants matter to the core, so a driver typically maps
/// `std::time::Instant` to this type by measuring from its own start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(0);

    /// Builds an instant from nanoseconds since the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Builds an instant from milliseconds since the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Self;

    fn add(self, rhs: Duration) -> Self {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(nanos))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}ms", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one); the role every node starts in.
    Follower,
    /// Asks whether it could win an election before disturbing anyone (PreVote).
    PreCandidate,
    /// Runs for leader in a new term.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Follower => "follower",
            Self::PreCandidate => "pre-candidate",
            Self::Candidate => "candidate",
            Self::Leader => "leader",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!((t + Duration::from_millis(3)).as_nanos(), 8_000_000);
        assert_eq!(
            t.saturating_duration_since(Instant::from_millis(9)),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_nanos(u64::MAX - 1) + Duration::from_secs(1),
            Instant::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn instants_and_roles_print_for_people() {
        assert_eq!(Instant::from_nanos(1_500_250).to_string(), "1.500250ms");
        assert_eq!(Role::PreCandidate.to_string(), "pre-candidate");
        assert_eq!(Role::Leader.to_string(), "leader");
        assert_eq!(Role::Follower.to_string(), "follower");
        assert_eq!(Role::Candidate.to_string(), "candidate");
    }
}
