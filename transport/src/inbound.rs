//! The inbound side: serve one accepted connection (or QUIC stream).
//!
//! Checks the handshake, then turns frames into [`Event::Message`]s until the peer closes. An
//! oversized, truncated or undecodable frame closes this connection only, with a log line and
//! a counter; the node keeps serving everyone else.

use std::net::SocketAddr;

use raft::{Message, NodeId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::codec::{FrameCodec, FrameError};
use crate::counters::{Counter, Counters};
use crate::engine::Context;
use crate::event::Event;
use crate::handshake::{self, Channel, HandshakeError, Hello, Refusal, hello_codec};
use crate::reader::FrameReader;

/// Serves one inbound connection to its end. `verify` may refuse a node id the handshake
/// names (QUIC checks it against the peer's certificate).
pub(crate) async fn serve<R, W>(
    ctx: Context,
    reader: R,
    mut writer: W,
    remote: SocketAddr,
    verify: impl FnOnce(NodeId) -> Result<(), Refusal>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let config = &ctx.config;
    let mut reader = FrameReader::new(reader, hello_codec());
    let ours = Hello::new(
        config.cluster_id(),
        config.node_id(),
        Channel::Messages,
        config.metadata(),
    );
    let known = |id| {
        if config.is_peer(id) {
            verify(id)
        } else {
            Err(Refusal::UnknownNode(id))
        }
    };
    let accepted = handshake::accept(&mut reader, &mut writer, &ours, known);
    let theirs = match timeout(config.handshake_timeout(), accepted).await {
        Ok(Ok(theirs)) => theirs,
        Ok(Err(HandshakeError::Frame(e))) => {
            count_frame_error(&ctx.counters, &e);
            warn!(%remote, "closing inbound connection during the handshake: {e}");
            return;
        }
        Ok(Err(e)) => {
            ctx.counters.incr(Counter::HandshakesRefused);
            warn!(%remote, "refusing inbound connection: {e}");
            return;
        }
        Err(_) => {
            ctx.counters.incr(Counter::HandshakesRefused);
            warn!(%remote, "refusing inbound connection: handshake timed out");
            return;
        }
    };
    ctx.counters.incr(Counter::ConnectionsAccepted);
    let from = theirs.node_id();
    let channel = theirs.channel();
    debug!(peer = from, ?channel, %remote, "accepted connection");
    let limit = match channel {
        Channel::Messages => config.max_frame_bytes(),
        Channel::Snapshots => config.max_snapshot_bytes(),
    };
    reader.set_codec(FrameCodec::new(limit));
    if channel == Channel::Messages {
        let info = Event::PeerInfo {
            peer: from,
            metadata: theirs.metadata().to_owned(),
        };
        if ctx.events.send(info).await.is_err() {
            return;
        }
    }
    loop {
        match reader.next::<Message>().await {
            Ok(Some(message)) => {
                ctx.counters.incr(Counter::MessagesReceived);
                if ctx
                    .events
                    .send(Event::Message { from, message })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {
                debug!(peer = from, ?channel, %remote, "peer closed the connection");
                return;
            }
            Err(e) => {
                count_frame_error(&ctx.counters, &e);
                warn!(peer = from, ?channel, %remote, "closing connection: {e}");
                return;
            }
        }
    }
}

fn count_frame_error(counters: &Counters, error: &FrameError) {
    let counter = match error {
        FrameError::TooLarge { .. } => Counter::OversizedFrames,
        FrameError::Truncated { .. } => Counter::TruncatedFrames,
        FrameError::Decode(_) | FrameError::TrailingBytes(_) => Counter::UndecodableFrames,
        FrameError::Encode(_) | FrameError::Io(_) => return,
    };
    counters.incr(counter);
}
