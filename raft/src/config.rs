//! Tunables of the core, with defaults suited to a LAN.

use core::time::Duration;

use crate::error::Error;
use crate::types::NodeId;

/// Configuration of one [`crate::Node`].
///
/// Build with [`Config::new`] and adjust with the chained setters; [`crate::Node`] validates it.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) id: NodeId,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) election_timeout_min: Duration,
    pub(crate) election_timeout_max: Duration,
    pub(crate) pre_vote: bool,
    pub(crate) check_quorum: bool,
    pub(crate) max_inflight_appends: usize,
    pub(crate) max_append_bytes: usize,
    pub(crate) max_uncommitted_bytes: usize,
    pub(crate) max_cached_entries: u64,
    pub(crate) snapshot_timeout: Duration,
    pub(crate) catch_up_entries: u64,
    pub(crate) read_timeout_elections: u32,
    pub(crate) max_pending_reads: usize,
    pub(crate) seed: u64,
}

impl Config {
    /// Defaults for node `id`: heartbeat every 50 ms, election timeout drawn from
    /// [500 ms, 1000 ms), PreVote and CheckQuorum on, seed = `id`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            pre_vote: true,
            check_quorum: true,
            max_inflight_appends: 256,
            max_append_bytes: 1 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_cached_entries: 10_000,
            snapshot_timeout: Duration::from_secs(10),
            catch_up_entries: 1000,
            read_timeout_elections: 2,
            max_pending_reads: 4096,
            seed: id,
        }
    }

    /// This node's id (never 0).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// How often a leader sends heartbeats. Must be well below the election timeout.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// The election timeout is drawn uniformly from `[min, max)` after every reset.
    pub fn election_timeout(mut self, min: Duration, max: Duration) -> Self {
        self.election_timeout_min = min;
        self.election_timeout_max = max;
        self
    }

    /// PreVote: a node first checks that it could win before bumping its term, so a node
    /// rejoining from a partition does not depose a healthy leader.
    pub fn pre_vote(mut self, on: bool) -> Self {
        self.pre_vote = on;
        self
    }

    /// CheckQuorum: a leader that has not heard from a quorum within an election timeout steps
    /// down, and followers that heard from a leader recently ignore vote requests.
    pub fn check_quorum(mut self, on: bool) -> Self {
        self.check_quorum = on;
        self
    }

    /// Appends in flight to one follower before the leader waits for acknowledgements.
    pub fn max_inflight_appends(mut self, n: usize) -> Self {
        self.max_inflight_appends = n;
        self
    }

    /// Upper bound on the entry bytes in one append message (at least one entry is sent).
    pub fn max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes;
        self
    }

    /// Proposals fail with [`Error::Backpressure`] while this many bytes await commitment.
    pub fn max_uncommitted_bytes(mut self, bytes: usize) -> Self {
        self.max_uncommitted_bytes = bytes;
        self
    }

    /// Applied entries kept in memory for followers that lag a little; older ones are fetched
    /// from storage through [`crate::Output::FetchEntries`].
    pub fn max_cached_entries(mut self, n: u64) -> Self {
        self.max_cached_entries = n;
        self
    }

    /// How long a leader waits for a follower to acknowledge a snapshot before trying again.
    pub fn snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// A node becomes a voter (a learner promoted, or a new voter added) only once its log is
    /// within `entries` of the leader's last index; until then the change is refused with
    /// [`Error::NotCaughtUp`]. A voter that must first fetch a long log would otherwise leave
    /// the cluster unable to commit while it catches up (Raft dissertation §4.2.1).
    pub fn catch_up_entries(mut self, entries: u64) -> Self {
        self.catch_up_entries = entries;
        self
    }

    /// A linearizable read not confirmed within this many (maximum) election timeouts fails
    /// with [`Error::ReadTimedOut`]: a lost forwarded request or answer, or a leader that
    /// cannot reach a quorum, never leaves a read waiting forever.
    pub fn read_timeout(mut self, election_timeouts: u32) -> Self {
        self.read_timeout_elections = election_timeouts;
        self
    }

    /// Reads waiting for a leadership confirmation (this node's and those forwarded by
    /// followers) before more are refused with [`Error::TooManyReads`].
    pub fn max_pending_reads(mut self, reads: usize) -> Self {
        self.max_pending_reads = reads;
        self
    }

    /// Seed of the generator that jitters election timeouts. Give each node its own seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How long a read may wait for its confirmation.
    pub(crate) fn read_timeout_duration(&self) -> Duration {
        self.election_timeout_max
            .saturating_mul(self.read_timeout_elections)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::InvalidConfig(why.to_string()));
        if self.id == 0 {
            return bad("node id 0 is reserved");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat interval must be positive");
        }
        if self.election_timeout_min <= self.heartbeat_interval {
            return bad("election timeout must exceed the heartbeat interval");
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return bad("election timeout max must exceed min");
        }
        if self.max_inflight_appends == 0 {
            return bad("max inflight appends must be at least 1");
        }
        if self.read_timeout_elections == 0 {
            return bad("the read timeout must be at least one election timeout");
        }
        if self.max_pending_reads == 0 {
            return bad("max pending reads must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_setting_is_refused_by_name() {
        assert!(Config::new(7).validate().is_ok());
        assert_eq!(Config::new(7).id(), 7);
        let ms = Duration::from_millis;
        let cases = [
            (Config::new(0), "node id 0"),
            (
                Config::new(1).heartbeat_interval(Duration::ZERO),
                "heartbeat interval",
            ),
            (
                Config::new(1).heartbeat_interval(ms(500)),
                "exceed the heartbeat interval",
            ),
            (
                Config::new(1).election_timeout(ms(500), ms(500)),
                "max must exceed min",
            ),
            (Config::new(1).max_inflight_appends(0), "inflight"),
            (Config::new(1).read_timeout(0), "read timeout"),
            (Config::new(1).max_pending_reads(0), "pending reads"),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(Error::InvalidConfig(why)) => assert!(why.contains(expected), "{why}"),
                other => panic!("{expected}: {other:?}"),
            }
        }
        // Just inside each bound is fine.
        let edge = Config::new(1)
            .heartbeat_interval(ms(1))
            .election_timeout(ms(2), ms(3))
            .max_inflight_appends(1)
            .read_timeout(1)
            .max_pending_reads(1);
        assert!(edge.validate().is_ok());
        assert_eq!(edge.read_timeout_duration(), ms(3));
        assert_eq!(Config::new(1).read_timeout_duration(), ms(2000));
    }
}
