//! The inbound side: serve one accepted connection (or QUIC stream).
//!
//! Checks the handshake, then turns frames into [`Event::Message`]s until the peer closes
//! (dropping those from a peer that fault rules cut off, see [`crate::faults`]). An
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

/// Most messages handed to the event queue at once.
const EVENT_BATCH: usize = 256;

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
    // `reserve_many` refuses more than the queue's capacity.
    let batch_limit = EVENT_BATCH.min(config.event_queue());
    let mut batch = Vec::with_capacity(batch_limit);
    loop {
        let end = match reader.next::<Message>().await {
            Ok(Some(message)) => {
                batch.push(message);
                // Frames that arrived together are handed over together: one reservation in
                // the event queue instead of one per message.
                loop {
                    if batch.len() == batch_limit {
                        break None;
                    }
                    match reader.try_next::<Message>() {
                        Ok(Some(message)) => batch.push(message),
                        Ok(None) => break None,
                        Err(e) => break Some(Err(e)),
                    }
                }
            }
            Ok(None) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        };
        if !batch.is_empty() {
            ctx.counters
                .add(Counter::MessagesReceived, batch.len() as u64);
            if ctx.cut_off(from) {
                // A fault rule cut this peer off: what it sends is lost, even if its own
                // rules still let it send to us.
                ctx.counters.add(Counter::FaultDropped, batch.len() as u64);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            let Ok(permits) = ctx.events.reserve_many(batch.len()).await else {
                return;
            };
            for (permit, message) in permits.zip(batch.drain(..)) {
                if !ctx.budget.acquire(&message).await {
                    return;
                }
                permit.send(Event::Message { from, message });
            }
        }
        match end {
            None => {}
            Some(Ok(())) => {
                debug!(peer = from, ?channel, %remote, "peer closed the connection");
                return;
            }
            Some(Err(e)) => {
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
