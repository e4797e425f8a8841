//! Accepting QUIC connections: TLS (mutual, against the cluster CA) first, then every
//! bidirectional stream the peer opens is served by the shared engine, with the handshake's
//! node id checked against the peer's certificate.

use std::sync::Arc;

use quinn::{Connection, Endpoint, Incoming};
use rustls::pki_types::CertificateDer;
use tracing::{debug, warn};
use transport::{Acceptor, Counter};

use crate::tls::check_certificate_names;

/// Accepts connections until the endpoint closes or the transport shuts down.
pub(crate) async fn accept_loop(endpoint: Endpoint, acceptor: Acceptor) {
    while let Some(incoming) = endpoint.accept().await {
        acceptor.spawn(serve_connection(incoming, acceptor.clone()));
    }
}

async fn serve_connection(incoming: Incoming, acceptor: Acceptor) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            acceptor.counters().incr(Counter::TlsRefused);
            warn!(%remote, "refusing QUIC connection: {e}");
            return;
        }
    };
    let Some(leaf) = peer_certificate(&connection) else {
        acceptor.counters().incr(Counter::TlsRefused);
        warn!(%remote, "refusing QUIC connection without a client certificate");
        connection.close(1u32.into(), b"client certificate required");
        return;
    };
    let leaf = Arc::new(leaf);
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let leaf = leaf.clone();
                acceptor.serve(recv, send, remote, move |id| {
                    check_certificate_names(&leaf, id)
                });
            }
            Err(e) => {
                debug!(%remote, "QUIC connection ended: {e}");
                return;
            }
        }
    }
}

fn peer_certificate(connection: &Connection) -> Option<CertificateDer<'static>> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.into_iter().next()
}
