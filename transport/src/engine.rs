//! The machinery shared by every transport: what a backend plugs in ([`Connector`] for
//! dialing, [`Acceptor`] for serving accepted streams) and the [`Engine`] that starts the
//! per-peer links and returns the [`Transport`] handle.
//!
//! A backend (TCP, QUIC) only knows how to open and accept byte streams; handshakes, frames,
//! queues, back-off, events and shutdown live here, so both behave the same.
//!
//! ```no_run
//! # async fn example(config: transport::TransportConfig, connector: impl transport::Connector) {
//! let engine = transport::Engine::new(config);
//! let acceptor = engine.acceptor();
//! // spawn an accept loop with `acceptor.spawn(..)` that calls `acceptor.serve(..)`
//! let (transport, events) = engine.start(connector, "127.0.0.1:7001".parse().unwrap());
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use raft::NodeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TransportConfig;
use crate::counters::Counters;
use crate::event::{Event, Events, InboundBudget};
use crate::faults::FaultRules;
use crate::handle::Transport;
use crate::handshake::{Channel, Refusal};
use crate::outbox::peer_lanes;
use crate::{inbound, link};

/// How a backend opens outbound byte streams.
pub trait Connector: Send + Sync + 'static {
    /// The read half of a stream.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The write half of a stream.
    type Writer: AsyncWrite + Unpin + Send + 'static;

    /// Opens a new stream to `peer` at `addr` for `channel` (the handshake is done by the
    /// engine). Each call for [`Channel::Snapshots`] must yield a stream independent of the
    /// message stream, so that snapshots never delay other messages.
    fn connect(
        &self,
        peer: NodeId,
        addr: SocketAddr,
        channel: Channel,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send;

    /// Releases the backend's resources; called once by [`Transport::shutdown`] after every
    /// task has stopped.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// What the tasks of one transport share.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) config: Arc<TransportConfig>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) budget: Arc<InboundBudget>,
    /// Test-only fault rules; `None` in production.
    pub(crate) faults: Option<FaultRules>,
}

impl Context {
    /// Whether fault rules say messages to and from `peer` are lost right now.
    pub(crate) fn cut_off(&self, peer: NodeId) -> bool {
        self.faults.as_ref().is_some_and(|rules| rules.blocks(peer))
    }
}

/// A transport being assembled by a backend; [`Engine::start`] turns it into a [`Transport`].
#[derive(Debug)]
pub struct Engine {
    ctx: Context,
    events: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Engine {
    /// Prepares a transport for `config`.
    pub fn new(config: TransportConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.event_queue());
        let budget = Arc::new(InboundBudget::new(config.event_queue_bytes()));
        let faults = config.faults().cloned();
        Self {
            ctx: Context {
                config: Arc::new(config),
                counters: Arc::default(),
                events: tx,
                budget,
                faults,
            },
            events: rx,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.ctx.config
    }

    /// The handle a backend uses to serve accepted streams.
    pub fn acceptor(&self) -> Acceptor {
        Acceptor {
            ctx: self.ctx.clone(),
            cancel: self.cancel.clone(),
            tracker: self.tracker.clone(),
        }
    }

    /// Starts one message link and one snapshot link per peer and returns the handle and the
    /// event stream. `local_addr` is the address the backend actually listens on. Must be
    /// called inside a tokio runtime.
    pub fn start<C: Connector>(self, connector: C, local_addr: SocketAddr) -> (Transport, Events) {
        let connector = Arc::new(connector);
        let mut senders = HashMap::new();
        for (&peer, &addr) in self.ctx.config.peers() {
            let (sender, messages, snapshots) = peer_lanes(&self.ctx.config);
            senders.insert(peer, sender);
            for queues in [messages, snapshots] {
                let task = link::run(self.ctx.clone(), connector.clone(), peer, addr, queues);
                spawn_cancellable(&self.tracker, &self.cancel, task);
            }
        }
        let closer = connector.clone();
        let close: CloseFuture = Box::pin(async move { closer.close().await });
        let transport = Transport::new(
            &self.ctx,
            local_addr,
            senders,
            self.cancel,
            self.tracker,
            Mutex::new(Some(close)),
        );
        let events = Events::new(self.events, self.ctx.budget.clone());
        (transport, events)
    }
}

/// The backend's closing step, run once at shutdown.
pub(crate) type CloseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Lets a backend serve accepted streams and run its own tasks under the transport's
/// shutdown. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Acceptor {
    ctx: Context,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Acceptor {
    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.ctx.config
    }

    /// The transport's counters.
    pub fn counters(&self) -> &Counters {
        &self.ctx.counters
    }

    /// Serves an accepted stream in a task of its own: handshake, then messages into the event
    /// queue. `verify` may refuse the node id named by the handshake (QUIC: it must match the
    /// certificate).
    pub fn serve<R, W, F>(&self, reader: R, writer: W, remote: SocketAddr, verify: F)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        F: FnOnce(NodeId) -> Result<(), Refusal> + Send + 'static,
    {
        let task = inbound::serve(self.ctx.clone(), reader, writer, remote, verify);
        spawn_cancellable(&self.tracker, &self.cancel, task);
    }

    /// Runs `task` until it ends or the transport shuts down (whichever comes first);
    /// shutdown waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        spawn_cancellable(&self.tracker, &self.cancel, task);
    }

    /// Completes when the transport is shutting down.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

fn spawn_cancellable<F>(tracker: &TaskTracker, cancel: &CancellationToken, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let cancel = cancel.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = task => {}
        }
    });
}
