//! Raft peer transport over QUIC: quinn + rustls, TLS 1.3 always on, mutual authentication
//! against the cluster CA.
//!
//! Each node runs one QUIC endpoint (server and client). To a peer it keeps one connection,
//! with one long-lived stream for votes, heartbeats, appends and responses and a stream of its
//! own for each snapshot session, so snapshots never hold heartbeats back. The dialer checks
//! the server's certificate names `node-<peer>`; the acceptor checks the client's certificate
//! against the CA and that it names the node id announced in the handshake. A node that
//! crashed and restarted is reached again at once: its connection-id and stateless-reset keys
//! are derived from its private key, so it answers its peers' packets on their dead
//! connections with a reset they accept, and they reconnect. Handshake, frames, queues,
//! back-off and shutdown come from the shared [`transport`] crate.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use transport::TransportConfig;
//! use transport_quic::{NodeIdentity, certs};
//!
//! let dir = Path::new("/var/lib/kvd/certs");
//! certs::ensure_dev_certs(dir, [1, 2])?; // dev mode; production uses `kvd certs ...`
//! let peers = BTreeMap::from([(2, "127.0.0.1:7002".parse()?)]);
//! let config = TransportConfig::new("cluster", 1, "127.0.0.1:7001".parse()?, peers);
//! let (transport, mut events) =
//!     transport_quic::start(config, NodeIdentity::from_dir(dir, 1)?).await?;
//! transport.shutdown().await;
//! # Ok(()) }
//! ```

mod accept;
pub mod certs;
mod connector;
mod error;
mod liveness;
mod socket;
mod tls;

use std::sync::Arc;

use quinn::{Endpoint, TokioRuntime};
use transport::{Engine, Events, Transport, TransportConfig};

pub use error::QuicError;
pub use liveness::Liveness;
pub use tls::NodeIdentity;

use crate::connector::QuicConnector;

/// Starts a QUIC transport: binds the UDP listen address (port 0 picks a free port, see
/// [`Transport::local_addr`]) and starts dialing the peers. `identity` must belong to
/// `config.node_id()`. Must run inside a tokio runtime.
pub async fn start(
    config: TransportConfig,
    identity: NodeIdentity,
) -> Result<(Transport, Events), QuicError> {
    start_with_liveness(config, identity, Liveness::default()).await
}

/// [`start`] with other keep-alive and idle timers than the defaults.
pub async fn start_with_liveness(
    config: TransportConfig,
    identity: NodeIdentity,
    liveness: Liveness,
) -> Result<(Transport, Events), QuicError> {
    if identity.node_id() != config.node_id() {
        return Err(QuicError::WrongIdentity {
            identity: identity.node_id(),
            config: config.node_id(),
        });
    }
    let (socket, released) = socket::bind(config.listen_addr())?;
    let mut endpoint = Endpoint::new_with_abstract_socket(
        identity.endpoint_config(),
        Some(identity.server_config_with(liveness)?),
        socket,
        Arc::new(TokioRuntime),
    )?;
    endpoint.set_default_client_config(identity.client_config_with(liveness)?);
    let local_addr = endpoint.local_addr()?;
    let engine = Engine::new(config);
    let acceptor = engine.acceptor();
    acceptor.spawn(accept::accept_loop(endpoint.clone(), acceptor.clone()));
    let connector = QuicConnector::new(endpoint, released, engine.config().peers().keys().copied());
    Ok(engine.start(connector, local_addr))
}
