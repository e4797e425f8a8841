//! [`Transport`]: the cloneable handle the Raft driver sends through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use raft::{Message, NodeId};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::counters::{Counter, Counters};
use crate::engine::{CloseFuture, Context};
use crate::error::SendError;
use crate::faults::{Fate, FaultRules};
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
    faults: Option<Faults>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    close: Mutex<Option<CloseFuture>>,
}

/// Fault rules and the runtime that runs delayed sends.
struct Faults {
    rules: FaultRules,
    runtime: Handle,
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
        ctx: &Context,
        local_addr: SocketAddr,
        peers: HashMap<NodeId, PeerSender>,
        cancel: CancellationToken,
        tracker: TaskTracker,
        close: Mutex<Option<CloseFuture>>,
    ) -> Self {
        // `Engine::start` runs inside a runtime; delayed sends are spawned on it.
        let faults = ctx.faults.clone().map(|rules| Faults {
            rules,
            runtime: Handle::current(),
        });
        Self {
            inner: Arc::new(Inner {
                node_id: ctx.config.node_id(),
                local_addr,
                peers,
                counters: ctx.counters.clone(),
                faults,
                cancel,
                tracker,
                close,
            }),
        }
    }

    /// Queues `message` for `to` without waiting. Messages to one peer keep their order within
    /// a lane (see [`crate::Lane`]). A full lane drops the message and says so; the Raft core
    /// recovers by probing again.
    ///
    /// With fault rules ([`crate::faults`]), a message to a blocked peer is dropped (and this
    /// returns `Ok`), and a message to a delayed peer is queued once its delay has passed.
    pub fn send(&self, to: NodeId, message: Message) -> Result<(), SendError> {
        if self.inner.cancel.is_cancelled() {
            return Err(SendError::Shutdown);
        }
        let peer = self
            .inner
            .peers
            .get(&to)
            .ok_or(SendError::UnknownPeer(to))?;
        if let Some(faults) = &self.inner.faults {
            match faults.rules.fate(to) {
                Fate::Deliver => {}
                Fate::Drop => {
                    self.inner.counters.incr(Counter::FaultDropped);
                    return Ok(());
                }
                Fate::Delay(delay) => {
                    self.inner.counters.incr(Counter::FaultDelayed);
                    self.send_later(faults, to, message, delay);
                    return Ok(());
                }
            }
        }
        peer.try_send(message).map_err(|lane| {
            self.inner.counters.incr(Counter::QueueFull);
            SendError::QueueFull { peer: to, lane }
        })
    }

    /// Queues `message` for `to` after `delay`, unless the transport is gone or `to` is
    /// blocked by then. The task holds no strong handle: dropping every [`Transport`] still
    /// stops the transport.
    fn send_later(&self, faults: &Faults, to: NodeId, message: Message, delay: Duration) {
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        let delayed = async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let Some(inner) = inner.upgrade() else { return };
                    let Some(faults) = &inner.faults else { return };
                    if faults.rules.blocks(to) {
                        inner.counters.incr(Counter::FaultDropped);
                    } else if let Some(peer) = inner.peers.get(&to)
                        && peer.try_send(message).is_err()
                    {
                        inner.counters.incr(Counter::QueueFull);
                    }
                }
            }
        };
        faults
            .runtime
            .spawn(self.inner.tracker.track_future(delayed));
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
