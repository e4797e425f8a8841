//! Errors starting a QUIC transport.

use crate::certs::CertError;

/// Why a QUIC transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// Certificates or keys could not be loaded.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// rustls refused the configuration (bad key, bad CA, ...).
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration offers no cipher suite QUIC can use.
    #[error("quic crypto: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Binding the UDP socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The identity belongs to another node than the configuration.
    #[error("identity is for node {identity}, configuration for node {config}")]
    WrongIdentity {
        /// The identity's node.
        identity: raft::NodeId,
        /// The configuration's node.
        config: raft::NodeId,
    },
}
