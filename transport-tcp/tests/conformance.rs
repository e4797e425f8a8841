//! The shared conformance suite run against the TCP transport.

use std::io;
use std::net::{SocketAddr, TcpListener};

use raft::NodeId;
use tokio::net::TcpStream;
use transport::conformance::{Harness, RawStream};
use transport::{Events, Transport, TransportConfig};

struct TcpHarness;

impl Harness for TcpHarness {
    async fn start(&self, config: TransportConfig) -> io::Result<(Transport, Events)> {
        transport_tcp::start(config).await
    }

    fn free_addr(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address")
    }

    async fn raw_stream(
        &self,
        addr: SocketAddr,
        _node: NodeId,
        _as: NodeId,
    ) -> io::Result<RawStream> {
        let (reader, writer) = TcpStream::connect(addr).await?.into_split();
        Ok(RawStream::new(reader, writer, ()))
    }
}

transport::conformance_tests!(TcpHarness);
