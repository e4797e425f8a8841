//! Raft peer transport over plain TCP: length-prefixed postcard frames, for trusted networks
//! and development.
//!
//! Each node listens on its configured address and dials every peer twice: one long-lived
//! connection for votes, heartbeats, appends and responses, and one opened on demand for
//! snapshots, so that a large snapshot never delays heartbeats. Sockets use `TCP_NODELAY`;
//! queued messages are gathered into one write. Handshake, frames, queues, reconnection
//! back-off and shutdown come from the shared [`transport`] crate.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::collections::BTreeMap;
//! use transport::TransportConfig;
//!
//! let peers = BTreeMap::from([(2, "127.0.0.1:7002".parse().unwrap())]);
//! let config = TransportConfig::new("cluster", 1, "127.0.0.1:7001".parse().unwrap(), peers);
//! let (transport, mut events) = transport_tcp::start(config).await?;
//! // transport.send(2, message)?; events.recv().await; ...
//! transport.shutdown().await;
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use raft::NodeId;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;
use transport::{Acceptor, Channel, Connector, Engine, Events, Transport, TransportConfig};

/// Starts a TCP transport: binds the listen address (port 0 picks a free port, see
/// [`Transport::local_addr`]) and starts dialing the peers. Must run inside a tokio runtime.
pub async fn start(config: TransportConfig) -> io::Result<(Transport, Events)> {
    let engine = Engine::new(config);
    let listener = TcpListener::bind(engine.config().listen_addr()).await?;
    let local_addr = listener.local_addr()?;
    let acceptor = engine.acceptor();
    acceptor.spawn(accept_loop(listener, acceptor.clone()));
    Ok(engine.start(TcpConnector, local_addr))
}

async fn accept_loop(listener: TcpListener, acceptor: Acceptor) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    warn!(%remote, "cannot set TCP_NODELAY: {e}");
                }
                let (reader, writer) = stream.into_split();
                // Plain TCP has no identity beyond the handshake.
                acceptor.serve(reader, writer, remote, |_| Ok(()));
            }
            Err(e) => {
                // Typically out of file descriptors: pause rather than spin.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Dials a new TCP connection per call, so the snapshot channel gets a connection of its own.
#[derive(Debug, Clone, Copy)]
struct TcpConnector;

impl Connector for TcpConnector {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    async fn connect(
        &self,
        _peer: NodeId,
        addr: SocketAddr,
        _channel: Channel,
    ) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }

    async fn close(&self) {}
}
