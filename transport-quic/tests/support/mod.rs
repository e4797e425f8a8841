//! The QUIC test harness: certificates in a temporary directory, raw streams over a client
//! endpoint of their own.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

use quinn::Endpoint;
use raft::NodeId;
use transport::conformance::{Harness, RawStream};
use transport::{Events, Transport, TransportConfig};
use transport_quic::{Liveness, NodeIdentity, certs};

/// Starts QUIC nodes with certificates from one cluster CA kept in a temporary directory.
pub(crate) struct QuicHarness {
    dir: tempfile::TempDir,
    liveness: Liveness,
}

impl QuicHarness {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        certs::init_ca(dir.path()).expect("cluster CA");
        Self {
            dir,
            liveness: Liveness::default(),
        }
    }

    /// Nodes started from now on use `liveness` instead of the default timers.
    pub(crate) fn with_liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `id`'s identity, issuing its certificate on first use.
    pub(crate) fn identity(&self, id: NodeId) -> NodeIdentity {
        certs::ensure_dev_certs(self.dir(), [id]).expect("node certificate");
        NodeIdentity::from_dir(self.dir(), id).expect("load identity")
    }
}

/// Opens a bidirectional stream to `node` at `addr` with `identity`'s client configuration.
pub(crate) async fn raw_stream_with(
    identity: &NodeIdentity,
    addr: SocketAddr,
    node: NodeId,
) -> io::Result<RawStream> {
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().expect("literal address"))?;
    endpoint.set_default_client_config(identity.client_config().map_err(io::Error::other)?);
    let connection = endpoint
        .connect(addr, &certs::node_name(node))
        .map_err(io::Error::other)?
        .await
        .map_err(io::Error::other)?;
    let (send, recv) = connection.open_bi().await.map_err(io::Error::other)?;
    Ok(RawStream::new(recv, send, (endpoint, connection)))
}

impl Harness for QuicHarness {
    async fn start(&self, config: TransportConfig) -> io::Result<(Transport, Events)> {
        let identity = self.identity(config.node_id());
        transport_quic::start_with_liveness(config, identity, self.liveness)
            .await
            .map_err(io::Error::other)
    }

    fn free_addr(&self) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a free port");
        socket.local_addr().expect("local address")
    }

    async fn raw_stream(
        &self,
        addr: SocketAddr,
        node: NodeId,
        as_node: NodeId,
    ) -> io::Result<RawStream> {
        raw_stream_with(&self.identity(as_node), addr, node).await
    }
}
