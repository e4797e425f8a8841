//! A node's TLS identity and the rustls/quinn configurations built from it.
//!
//! Both directions use TLS 1.3 only (QUIC requires it) with the ring provider, and mutual
//! authentication: the server verifies client certificates against the cluster CA
//! (`WebPkiClientVerifier`), the client verifies the server against the same CA and the name
//! `node-<id>` of the peer it dials. The acceptor then checks that the node id announced in the
//! handshake is the one the client's certificate names ([`check_certificate_names`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use raft::NodeId;
use ring::hmac;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use transport::handshake::Refusal;

use crate::certs::{self, CertError};
use crate::error::QuicError;
use crate::liveness::Liveness;

/// ALPN protocol name of the peer transport.
const ALPN: &[u8] = b"kv-raft/1";
/// Per-stream receive window: large enough for 1 MiB messages in flight on loopback.
const STREAM_WINDOW: u32 = 16 << 20;
/// Per-connection receive and send windows.
const CONNECTION_WINDOW: u32 = 64 << 20;
/// Upper bound of path MTU discovery. Probing stops at the real path MTU, so this only lets
/// links with large MTUs (loopback, jumbo frames) use fewer, larger datagrams.
const MAX_UDP_PAYLOAD: u16 = 65_000;
/// First round-trip estimate, before any sample: cluster peers sit in one data centre, and
/// the 333 ms default makes connecting to (and closing connections with) a dead peer slow.
const INITIAL_RTT: Duration = Duration::from_millis(50);

/// A node's certificate, key and the cluster CA it trusts.
pub struct NodeIdentity {
    node_id: NodeId,
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Loads node `id`'s identity from a directory laid out by [`crate::certs`].
    pub fn from_dir(dir: &Path, id: NodeId) -> Result<Self, CertError> {
        Self::from_files(
            id,
            &certs::ca_cert_path(dir),
            &certs::node_cert_path(dir, id),
            &certs::node_key_path(dir, id),
        )
    }

    /// Loads an identity from PEM files: the CA to trust, this node's certificate (chain) and
    /// its private key.
    pub fn from_files(
        id: NodeId,
        ca_pem: &Path,
        cert_pem: &Path,
        key_pem: &Path,
    ) -> Result<Self, CertError> {
        let pem_error = |path: &Path, reason: String| CertError::Pem {
            path: path.to_owned(),
            reason,
        };
        let ca =
            CertificateDer::from_pem_file(ca_pem).map_err(|e| pem_error(ca_pem, e.to_string()))?;
        let chain = CertificateDer::pem_file_iter(cert_pem)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(cert_pem, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_error(cert_pem, "no certificate".into()));
        }
        let key =
            PrivateKeyDer::from_pem_file(key_pem).map_err(|e| pem_error(key_pem, e.to_string()))?;
        Ok(Self {
            node_id: id,
            ca,
            chain,
            key,
        })
    }

    /// The node this identity belongs to.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The quinn server configuration: TLS 1.3, client certificates required and verified
    /// against the cluster CA, default [`Liveness`].
    pub fn server_config(&self) -> Result<quinn::ServerConfig, QuicError> {
        self.server_config_with(Liveness::default())
    }

    /// The quinn client configuration: TLS 1.3, the server verified against the cluster CA,
    /// this node's certificate presented, default [`Liveness`].
    pub fn client_config(&self) -> Result<quinn::ClientConfig, QuicError> {
        self.client_config_with(Liveness::default())
    }

    pub(crate) fn server_config_with(
        &self,
        liveness: Liveness,
    ) -> Result<quinn::ServerConfig, QuicError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport_config(liveness));
        Ok(config)
    }

    pub(crate) fn client_config_with(
        &self,
        liveness: Liveness,
    ) -> Result<quinn::ClientConfig, QuicError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config(liveness));
        Ok(config)
    }

    /// The QUIC endpoint configuration: keys that survive a restart.
    ///
    /// quinn's defaults draw the stateless-reset key and the key that signs connection ids
    /// at random in each process. A node killed and restarted then neither recognises the
    /// connection ids its peers still use (it drops their packets) nor could it sign a reset
    /// they would accept, so each peer writes into its dead connection until the idle timeout
    /// (10 s by default) before reconnecting. Both keys are therefore derived from the node's private
    /// key: the same after a restart, and secret, so nobody else can forge a reset.
    pub(crate) fn endpoint_config(&self) -> quinn::EndpointConfig {
        let master = hmac::Key::new(hmac::HMAC_SHA256, self.key.secret_der());
        let derive = |purpose: &[u8]| hmac::sign(&master, purpose);
        let reset = derive(b"kv-raft/1 QUIC stateless reset key");
        let cid = derive(b"kv-raft/1 QUIC connection id key");
        let mut cid_key = [0; 8];
        cid_key.copy_from_slice(&cid.as_ref()[..8]);
        let cid_key = u64::from_le_bytes(cid_key);
        let mut config =
            quinn::EndpointConfig::new(Arc::new(hmac::Key::new(hmac::HMAC_SHA256, reset.as_ref())));
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        config
    }

    fn roots(&self) -> Result<RootCertStore, QuicError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config(liveness: Liveness) -> Arc<quinn::TransportConfig> {
    let mut mtu_discovery = quinn::MtuDiscoveryConfig::default();
    mtu_discovery.upper_bound(MAX_UDP_PAYLOAD);
    let mut config = quinn::TransportConfig::default();
    config
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .send_window(u64::from(CONNECTION_WINDOW))
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(liveness.keep_alive()))
        .initial_rtt(INITIAL_RTT)
        .mtu_discovery_config(Some(mtu_discovery))
        // `Liveness` caps the timeout at what QUIC can carry; the fallback is never taken.
        .max_idle_timeout(Some(
            liveness
                .idle_timeout()
                .try_into()
                .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::MAX)),
        ));
    Arc::new(config)
}

/// Checks that `certificate` (already verified against the CA by rustls) names node
/// `claimed` (`node-<id>`), as the handshake says.
pub(crate) fn check_certificate_names(
    certificate: &CertificateDer<'_>,
    claimed: NodeId,
) -> Result<(), Refusal> {
    let mismatch = || Refusal::IdentityMismatch { claimed };
    let cert = webpki::EndEntityCert::try_from(certificate).map_err(|_| mismatch())?;
    let name = ServerName::try_from(certs::node_name(claimed)).map_err(|_| mismatch())?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| mismatch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_its_node_only() {
        let dir = tempfile::tempdir().unwrap();
        certs::ensure_dev_certs(dir.path(), [3]).unwrap();
        let identity = NodeIdentity::from_dir(dir.path(), 3).unwrap();
        assert_eq!(check_certificate_names(&identity.chain[0], 3), Ok(()));
        assert_eq!(
            check_certificate_names(&identity.chain[0], 4),
            Err(Refusal::IdentityMismatch { claimed: 4 })
        );
        identity.server_config().unwrap();
        identity.client_config().unwrap();
    }
}
