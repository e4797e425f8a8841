//! Cluster certificates: a cluster CA and node certificates signed by it (rcgen).
//!
//! Layout of a certificate directory:
//!
//! | file | content |
//! |---|---|
//! | `ca.pem` | the cluster CA certificate |
//! | `ca.key` | the CA private key (mode 0600) |
//! | `node-<id>.pem` | node `<id>`'s certificate, signed by the CA |
//! | `node-<id>.key` | node `<id>`'s private key (mode 0600) |
//!
//! A node certificate names the node as the DNS SAN `node-<id>` (also its common name) and
//! additionally `localhost` and `127.0.0.1`; it carries both the ServerAuth and ClientAuth
//! usages so one certificate serves both directions of mutual TLS. These functions back the
//! `kvd certs init` and `kvd certs issue --node ID` commands and the dev mode
//! ([`ensure_dev_certs`]).

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use raft::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Common name of every cluster CA. Node certificates are signed with an issuer rebuilt from
/// these fixed parameters and the CA key, so `ca.pem` never needs to be parsed back.
const CA_COMMON_NAME: &str = "kvd cluster CA";

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Generating or parsing keys or certificates failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM file held no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Refusing to overwrite an existing file.
    #[error("{0} already exists")]
    Exists(PathBuf),
}

/// The name node `id` carries in its certificate (DNS SAN and common name): `node-<id>`.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}")
}

/// Path of the CA certificate in `dir`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// Path of the CA key in `dir`.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// Path of node `id`'s certificate in `dir`.
pub fn node_cert_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("{}.pem", node_name(id)))
}

/// Path of node `id`'s key in `dir`.
pub fn node_key_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("{}.key", node_name(id)))
}

/// Creates a new cluster CA in `dir` (`ca.pem`, `ca.key` with mode 0600), creating `dir` if
/// needed. Refuses to overwrite an existing CA.
pub fn init_ca(dir: &Path) -> Result<(), CertError> {
    let (cert_path, key_path) = (ca_cert_path(dir), ca_key_path(dir));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(CertError::Exists(path.clone()));
        }
    }
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write_secret(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    Ok(())
}

/// Issues a certificate for node `id`, signed by the CA in `dir`, into `dir`
/// (`node-<id>.pem`, `node-<id>.key` with mode 0600). Replaces an existing one.
pub fn issue_node_cert(dir: &Path, id: NodeId) -> Result<(), CertError> {
    let ca_key_file = ca_key_path(dir);
    let ca_key_pem = fs::read_to_string(&ca_key_file).map_err(|e| io_error(&ca_key_file, e))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let name = node_name(id);
    let mut params = CertificateParams::new(vec![name.clone(), "localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_secret(&node_key_path(dir, id), key.serialize_pem().as_bytes())?;
    write_public(&node_cert_path(dir, id), cert.pem().as_bytes())?;
    Ok(())
}

/// Dev mode: makes sure `dir` holds a CA and a certificate for each of `ids`, creating only
/// what is missing. Several nodes sharing one data directory get certificates from one CA.
pub fn ensure_dev_certs(
    dir: &Path,
    ids: impl IntoIterator<Item = NodeId>,
) -> Result<(), CertError> {
    if !ca_cert_path(dir).exists() || !ca_key_path(dir).exists() {
        init_ca(dir)?;
    }
    for id in ids {
        if !node_cert_path(dir, id).exists() || !node_key_path(dir, id).exists() {
            issue_node_cert(dir, id)?;
        }
    }
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn io_error(path: &Path, source: io::Error) -> CertError {
    CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a private key readable by its owner only.
fn write_secret(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path).map_err(|e| io_error(path, e))?;
        // The mode above applies only to new files; tighten an existing one too.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(path, e))?;
        file.write_all(contents).map_err(|e| io_error(path, e))?;
        file.sync_all().map_err(|e| io_error(path, e))
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path).map_err(|e| io_error(path, e))?;
        file.write_all(contents).map_err(|e| io_error(path, e))?;
        file.sync_all().map_err(|e| io_error(path, e))
    }
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    fs::write(path, contents).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_and_dev_mode_create_the_expected_files() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path()).unwrap();
        assert!(matches!(init_ca(dir.path()), Err(CertError::Exists(_))));
        issue_node_cert(dir.path(), 3).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [ca_key_path(dir.path()), node_key_path(dir.path(), 3)] {
                let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        let before = fs::read(node_cert_path(dir.path(), 3)).unwrap();
        ensure_dev_certs(dir.path(), [3, 4]).unwrap();
        assert_eq!(fs::read(node_cert_path(dir.path(), 3)).unwrap(), before);
        assert!(node_cert_path(dir.path(), 4).exists());
    }

    #[test]
    fn issuing_without_a_ca_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            issue_node_cert(dir.path(), 1),
            Err(CertError::Io { .. })
        ));
    }
}
