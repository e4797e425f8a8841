//! Errors a transport's user can act on.

use raft::NodeId;

use crate::outbox::Lane;

/// Why [`crate::Transport::send`] dropped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The destination is not in the peer map.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// The peer's lane is full (it is slow or unreachable); the message was dropped.
    #[error("outbound {lane:?} queue to peer {peer} is full")]
    QueueFull {
        /// The destination.
        peer: NodeId,
        /// The lane that was full.
        lane: Lane,
    },
    /// The transport has shut down.
    #[error("transport is shut down")]
    Shutdown,
}
