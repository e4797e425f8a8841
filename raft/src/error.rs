//! Errors a caller of the core can act on.

use crate::types::{Index, NodeId};

/// Why the core refused or dropped a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Only the leader accepts this request; retry at the leader if one is known.
    #[error("not the leader (leader: {})", leader.map_or_else(|| "unknown".to_string(), |id| id.to_string()))]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// Too many proposed bytes are waiting to commit; retry after some commit.
    #[error("too many uncommitted bytes ({uncommitted} of {limit}); retry later")]
    Backpressure {
        /// Bytes proposed but not yet committed.
        uncommitted: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The leader is handing leadership over and accepts no proposals meanwhile.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// A previous membership change has not committed yet (or the joint configuration it
    /// entered has not been left yet); retry once it has.
    #[error("a membership change is already in progress")]
    MembershipChangeInProgress,
    /// A new leader changes the membership only once it has committed an entry of its own
    /// term (before that, its view of the committed configuration may be stale); retry shortly.
    #[error("the leader has not committed an entry of its term yet; retry shortly")]
    LeaderNotReady,
    /// The requested membership change is not allowed.
    #[error("invalid membership change: {0}")]
    InvalidMembership(&'static str),
    /// A node would become a voter before its log caught up with the leader's: promote it once
    /// its match index is within [`crate::Config::catch_up_entries`] of the leader's last index.
    #[error(
        "node {id} has not caught up (it has index {match_index} of {last_index}); promote it once it has"
    )]
    NotCaughtUp {
        /// The node that would become a voter.
        id: NodeId,
        /// The highest index known to be replicated on it.
        match_index: Index,
        /// The leader's last index.
        last_index: Index,
    },
    /// Leadership cannot be handed to this node.
    #[error("cannot transfer leadership to node {to}: {reason}")]
    InvalidTransfer {
        /// The requested target.
        to: NodeId,
        /// Why not.
        reason: &'static str,
    },
    /// Too many reads are waiting for a leadership confirmation; retry later.
    #[error("too many reads in flight ({limit}); retry later")]
    TooManyReads {
        /// The configured limit.
        limit: usize,
    },
    /// The read was not confirmed within [`crate::Config::read_timeout`] (a lost message, a
    /// leader that cannot reach a quorum); retry.
    #[error("read timed out before leadership was confirmed")]
    ReadTimedOut,
    /// A read could not be confirmed because leadership was lost or the leader changed.
    #[error("read dropped: leadership changed before it was confirmed")]
    ReadDropped,
    /// An index outside what the node holds.
    #[error("index {index} is out of range (have {first}..={last})")]
    IndexOutOfRange {
        /// The index asked for.
        index: Index,
        /// The first index available.
        first: Index,
        /// The last index available.
        last: Index,
    },
    /// The configuration or the restored state is inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}
