//! Counters of what a node ignored and did, for metrics and debugging.

/// Counters kept by a [`crate::Node`]. They only grow.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub(crate) stale_term: u64,
    pub(crate) unknown_peer: u64,
    pub(crate) invalid: u64,
    pub(crate) elections: u64,
    pub(crate) pre_elections: u64,
    pub(crate) leader_terms: u64,
    pub(crate) append_rejections: u64,
    pub(crate) snapshots_sent: u64,
    pub(crate) snapshots_installed: u64,
    pub(crate) out_of_range: u64,
    pub(crate) reads_timed_out: u64,
    pub(crate) fetches_timed_out: u64,
}

impl Stats {
    /// Messages ignored because they carried an older term.
    pub fn stale_term(&self) -> u64 {
        self.stale_term
    }

    /// Messages ignored because the sender is not a member the message makes sense from.
    pub fn unknown_peer(&self) -> u64 {
        self.unknown_peer
    }

    /// Messages ignored because they were inconsistent (out-of-range indexes, a response
    /// nobody asked for, a sender claiming to be this node, ...).
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Elections this node started (real, not pre-vote).
    pub fn elections(&self) -> u64 {
        self.elections
    }

    /// Pre-vote rounds this node started.
    pub fn pre_elections(&self) -> u64 {
        self.pre_elections
    }

    /// Terms in which this node became leader.
    pub fn leader_terms(&self) -> u64 {
        self.leader_terms
    }

    /// Appends this node rejected as a follower (log mismatch).
    pub fn append_rejections(&self) -> u64 {
        self.append_rejections
    }

    /// Snapshots sent to followers as leader.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent
    }

    /// Snapshots received and installed as follower.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// Messages ignored because an index or term in them is beyond what any real log
    /// reaches (above 2^63 - 1), or would overflow when added to; refused rather than
    /// allowed to wrap.
    pub fn out_of_range(&self) -> u64 {
        self.out_of_range
    }

    /// Reads failed because they were not confirmed within the read timeout.
    pub fn reads_timed_out(&self) -> u64 {
        self.reads_timed_out
    }

    /// [`crate::Output::FetchEntries`] requests the driver did not answer in time (they are
    /// asked again).
    pub fn fetches_timed_out(&self) -> u64 {
        self.fetches_timed_out
    }
}
