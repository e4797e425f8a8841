//! What a transport reports to its driver: messages, unreachable peers and peer metadata.

use raft::{Message, NodeId};
use tokio::sync::mpsc;

/// One thing that happened on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message arrived from `from` (feed it to `Node::step`).
    Message {
        /// The sending peer, as established by the handshake.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// The connection to `peer` broke or could not be made; messages to it may be lost until
    /// it is back (tell the core with `Node::report_unreachable`). Reported once per outage.
    Unreachable {
        /// The peer.
        peer: NodeId,
    },
    /// A handshake with `peer` completed; `metadata` is what it announced.
    PeerInfo {
        /// The peer.
        peer: NodeId,
        /// The peer's metadata (kvd: its client address).
        metadata: String,
    },
}

/// The receiving end of a transport's events. It ends (`recv` returns `None`) after
/// [`crate::Transport::shutdown`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    pub(crate) fn new(rx: mpsc::Receiver<Event>) -> Self {
        Self { rx }
    }

    /// Waits for the next event; `None` once the transport has shut down.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Waits for at least one event and moves up to `limit` ready ones into `buffer`; returns
    /// how many were added (0 once the transport has shut down).
    pub async fn recv_many(&mut self, buffer: &mut Vec<Event>, limit: usize) -> usize {
        self.rx.recv_many(buffer, limit).await
    }
}
