//! [`Transport`]: the cloneable handle the Raft driver sends through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use raft::{Message, NodeId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::counters::{Counter, Counters};
use crate::engine::CloseFuture;
use crate::error::SendError;
use crate::outbox::PeerSender;

/// A running transport. Clone it freely; every clone talks to the same tasks.
///
/// Call [`Transport::send`] from the Raft event loop (it never waits), read
/// [`crate::Events`] for incoming messages, unreachable peers and peer metadata, and call
/// [`Transport::shutdown`] once at the end.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    local_addr: SocketAddr,
    peers: HashMap<NodeId, PeerSender>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    close: Mutex<Option<CloseFuture>>,
}

impl Drop for Inner {
    /// Dropping the last handle without [`Transport::shutdown`] still stops every task, only
    /// without waiting for them.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.inner.node_id)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(
        node_id: NodeId,
        local_addr: SocketAddr,
        peers: HashMap<NodeId, PeerSender>,
        counters: Arc<Counters>,
        cancel: CancellationToken,
        tracker: TaskTracker,
        close: Mutex<Option<CloseFuture>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id,
                local_addr,
                peers,
                counters,
                cancel,
                tracker,
                close,
            }),
        }
    }

    /// Queues `message` for `to` without waiting. Messages to one peer keep their order within
    /// a lane (see [`crate::Lane`]). A full lane drops the message and says so; the Raft core
    /// recovers by probing again.
    pub fn send(&self, to: NodeId, message: Message) -> Result<(), SendError> {
        if self.inner.cancel.is_cancelled() {
            return Err(SendError::Shutdown);
        }
        let peer = self
            .inner
            .peers
            .get(&to)
            .ok_or(SendError::UnknownPeer(to))?;
        peer.try_send(message).map_err(|lane| {
            self.inner.counters.incr(Counter::QueueFull);
            SendError::QueueFull { peer: to, lane }
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The address this transport listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The transport's counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Stops every task, closes every connection and waits until all is done. Messages still
    /// queued are dropped. Afterwards [`Transport::send`] fails with [`SendError::Shutdown`]
    /// and the event stream ends. Calling it again does nothing.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        let close = self
            .inner
            .close
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(close) = close {
            close.await;
        }
    }
}
