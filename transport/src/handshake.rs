//! The handshake that opens every connection (or QUIC stream).
//!
//! The dialer sends a [`Hello`] naming magic/version, cluster id, its node id, the lane the
//! connection carries and its metadata. The acceptor checks it and answers with
//! [`HelloReply::Accepted`] carrying its own `Hello` (so the dialer learns the acceptor's
//! metadata and confirms it reached the node it meant to), or [`HelloReply::Refused`] and closes.
//! A wrong cluster id, an unknown node id, or (QUIC) a node id that differs from the one in the
//! peer's certificate is refused.

use raft::NodeId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::codec::{FrameCodec, FrameError};
use crate::reader::FrameReader;

/// First bytes of every hello.
pub const MAGIC: [u8; 4] = *b"KVRT";
/// Version of this protocol.
pub const PROTOCOL_VERSION: u16 = 1;
/// Limit on handshake frames.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// The codec used for handshake frames.
pub fn hello_codec() -> FrameCodec {
    FrameCodec::new(MAX_HELLO_BYTES)
}

/// What a connection (or QUIC stream) carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// Every message but snapshots, with the normal frame limit.
    Messages,
    /// Snapshot messages only, with the snapshot frame limit.
    Snapshots,
}

/// What each side announces when a connection starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    magic: [u8; 4],
    version: u16,
    cluster_id: String,
    node_id: NodeId,
    channel: Channel,
    metadata: String,
}

impl Hello {
    /// A hello of the current protocol version.
    pub fn new(
        cluster_id: impl Into<String>,
        node_id: NodeId,
        channel: Channel,
        metadata: impl Into<String>,
    ) -> Self {
        Self {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            cluster_id: cluster_id.into(),
            node_id,
            channel,
            metadata: metadata.into(),
        }
    }

    /// The sender's cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The sender's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// What the connection carries.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The sender's metadata.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// Checks magic, version and cluster id, then asks `known` whether the node id is
    /// acceptable.
    pub fn check(
        &self,
        cluster_id: &str,
        known: impl FnOnce(NodeId) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        if self.magic != MAGIC {
            return Err(Refusal::BadMagic);
        }
        if self.version != PROTOCOL_VERSION {
            return Err(Refusal::UnsupportedVersion(self.version));
        }
        if self.cluster_id != cluster_id {
            return Err(Refusal::WrongCluster(self.cluster_id.clone()));
        }
        known(self.node_id)
    }
}

/// The acceptor's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted; the acceptor's own hello.
    Accepted(Hello),
    /// Refused; the connection is closed after this frame.
    Refused(Refusal),
}

/// Why a handshake was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The hello did not start with [`MAGIC`].
    #[error("bad magic")]
    BadMagic,
    /// Another protocol version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// Another cluster.
    #[error("wrong cluster id {0:?}")]
    WrongCluster(String),
    /// A node id not in the peer map.
    #[error("unknown node id {0}")]
    UnknownNode(NodeId),
    /// The node id differs from the one the peer's certificate names.
    #[error("node id {claimed} does not match the peer's certificate")]
    IdentityMismatch {
        /// The node id in the hello.
        claimed: NodeId,
    },
    /// The acceptor is not the node the dialer meant to reach.
    #[error("expected node {expected}, reached node {reached}")]
    WrongNode {
        /// The node the dialer wanted.
        expected: NodeId,
        /// The node that answered.
        reached: NodeId,
    },
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The frame layer failed (i/o, oversized, undecodable).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream closed before the handshake completed.
    #[error("connection closed during the handshake")]
    Closed,
    /// The remote side refused us.
    #[error("refused by the peer: {0}")]
    RefusedByPeer(Refusal),
    /// We refused the remote side.
    #[error("refused: {0}")]
    Refused(Refusal),
}

/// Dialer side: sends `ours`, waits for the reply and checks that it comes from `expected`
/// in our cluster. Returns the acceptor's hello.
pub async fn initiate<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    ours: &Hello,
    expected: NodeId,
) -> Result<Hello, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    write_frame(writer, ours).await?;
    match reader.next::<HelloReply>().await? {
        None => Err(HandshakeError::Closed),
        Some(HelloReply::Refused(refusal)) => Err(HandshakeError::RefusedByPeer(refusal)),
        Some(HelloReply::Accepted(theirs)) => {
            theirs
                .check(ours.cluster_id(), |id| {
                    if id == expected {
                        Ok(())
                    } else {
                        Err(Refusal::WrongNode {
                            expected,
                            reached: id,
                        })
                    }
                })
                .map_err(HandshakeError::Refused)?;
            Ok(theirs)
        }
    }
}

/// Acceptor side: reads the dialer's hello, checks it against `ours` (cluster id) and `known`
/// (node id), and answers with `ours` (its channel set to the dialer's) or a refusal. Returns
/// the dialer's hello.
pub async fn accept<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    ours: &Hello,
    known: impl FnOnce(NodeId) -> Result<(), Refusal>,
) -> Result<Hello, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let theirs = reader
        .next::<Hello>()
        .await?
        .ok_or(HandshakeError::Closed)?;
    if let Err(refusal) = theirs.check(ours.cluster_id(), known) {
        // Best effort: the dialer learns why; the connection closes either way.
        let _ = write_frame(writer, &HelloReply::Refused(refusal.clone())).await;
        return Err(HandshakeError::Refused(refusal));
    }
    let reply = Hello {
        channel: theirs.channel,
        ..ours.clone()
    };
    write_frame(writer, &HelloReply::Accepted(reply)).await?;
    Ok(theirs)
}

async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> Result<(), FrameError> {
    let mut buf = bytes::BytesMut::new();
    hello_codec().encode(value, &mut buf)?;
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        dialer: Hello,
        acceptor: Hello,
        expected: NodeId,
        known: &[NodeId],
    ) -> (Result<Hello, HandshakeError>, Result<Hello, HandshakeError>) {
        let (a, b) = tokio::io::duplex(1024);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let mut ar = FrameReader::new(ar, hello_codec());
        let mut br = FrameReader::new(br, hello_codec());
        let known = known.to_vec();
        tokio::join!(initiate(&mut ar, &mut aw, &dialer, expected), async {
            let r = accept(&mut br, &mut bw, &acceptor, |id| {
                if known.contains(&id) {
                    Ok(())
                } else {
                    Err(Refusal::UnknownNode(id))
                }
            })
            .await;
            drop(bw);
            r
        })
    }

    #[tokio::test]
    async fn matching_hellos_are_exchanged() {
        let a = Hello::new("c", 1, Channel::Messages, "meta-1");
        let b = Hello::new("c", 2, Channel::Messages, "meta-2");
        let (dialed, accepted) = run(a.clone(), b.clone(), 2, &[1]).await;
        assert_eq!(dialed.unwrap(), b);
        assert_eq!(accepted.unwrap(), a);
    }

    #[tokio::test]
    async fn wrong_cluster_and_unknown_node_are_refused() {
        let b = Hello::new("c", 2, Channel::Messages, "");
        let (dialed, accepted) = run(
            Hello::new("x", 1, Channel::Messages, ""),
            b.clone(),
            2,
            &[1],
        )
        .await;
        assert!(matches!(
            dialed,
            Err(HandshakeError::RefusedByPeer(Refusal::WrongCluster(_)))
        ));
        assert!(matches!(
            accepted,
            Err(HandshakeError::Refused(Refusal::WrongCluster(_)))
        ));
        let (dialed, _) = run(
            Hello::new("c", 9, Channel::Messages, ""),
            b.clone(),
            2,
            &[1],
        )
        .await;
        assert!(matches!(
            dialed,
            Err(HandshakeError::RefusedByPeer(Refusal::UnknownNode(9)))
        ));
    }

    #[tokio::test]
    async fn dialer_refuses_a_node_it_did_not_mean_to_reach() {
        let a = Hello::new("c", 1, Channel::Messages, "");
        let b = Hello::new("c", 3, Channel::Messages, "");
        let (dialed, _) = run(a, b, 2, &[1]).await;
        assert!(matches!(
            dialed,
            Err(HandshakeError::Refused(Refusal::WrongNode {
                expected: 2,
                reached: 3
            }))
        ));
    }
}
