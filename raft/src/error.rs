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
    /// A previous membership change has not committed yet.
    #[error("a membership change is already in progress")]
    MembershipChangeInProgress,
    /// The requested membership change is not allowed.
    #[error("invalid membership change: {0}")]
    InvalidMembership(&'static str),
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
