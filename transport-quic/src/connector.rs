//! Dialing peers over QUIC: one connection per peer, one stream per channel.
//!
//! The message channel and each snapshot session open their own bidirectional stream on the
//! peer's connection, so flow control and retransmission of a snapshot never hold heartbeats
//! back; the message stream also gets a higher send priority than snapshot streams.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use raft::NodeId;
use tokio::sync::Mutex;
use transport::{Channel, Connector};

use crate::certs::node_name;
use crate::socket::SocketReleased;

/// How long shutdown waits for connections to close gracefully.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Opens streams to peers, reusing one QUIC connection per peer while it lives.
#[derive(Debug)]
pub(crate) struct QuicConnector {
    endpoint: std::sync::Mutex<Option<Endpoint>>,
    released: Mutex<Option<SocketReleased>>,
    connections: HashMap<NodeId, Mutex<Option<Connection>>>,
}

impl QuicConnector {
    pub(crate) fn new(
        endpoint: Endpoint,
        released: SocketReleased,
        peers: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Self {
            endpoint: std::sync::Mutex::new(Some(endpoint)),
            released: Mutex::new(Some(released)),
            connections: peers.into_iter().map(|id| (id, Mutex::new(None))).collect(),
        }
    }

    async fn connection(&self, peer: NodeId, addr: SocketAddr) -> io::Result<Connection> {
        let slot = self
            .connections
            .get(&peer)
            .ok_or_else(|| io::Error::other(format!("unknown peer {peer}")))?;
        // One connect at a time per peer; the lock is per peer so a dead peer delays no other.
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let endpoint = self
            .endpoint()
            .ok_or_else(|| io::Error::other("shut down"))?;
        let connecting = endpoint
            .connect(addr, &node_name(peer))
            .map_err(io::Error::other)?;
        let connection = connecting.await.map_err(io::Error::other)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn endpoint(&self) -> Option<Endpoint> {
        self.endpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Connector for QuicConnector {
    type Reader = RecvStream;
    type Writer = SendStream;

    async fn connect(
        &self,
        peer: NodeId,
        addr: SocketAddr,
        channel: Channel,
    ) -> io::Result<(RecvStream, SendStream)> {
        let connection = self.connection(peer, addr).await?;
        let (send, recv) = connection.open_bi().await.map_err(io::Error::other)?;
        let priority = match channel {
            Channel::Messages => 1,
            Channel::Snapshots => 0,
        };
        send.set_priority(priority).map_err(io::Error::other)?;
        Ok((recv, send))
    }

    async fn close(&self) {
        let endpoint = self
            .endpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        for slot in self.connections.values() {
            slot.lock().await.take();
        }
        if let Some(endpoint) = endpoint {
            endpoint.close(VarInt::from_u32(0), b"shutdown");
            let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
        }
        // Every handle is gone now; wait until quinn's driver has closed the socket.
        if let Some(released) = self.released.lock().await.take() {
            let _ = tokio::time::timeout(CLOSE_GRACE, released).await;
        }
    }
}
