//! The outbound side of one peer: connect, handshake, write batches, reconnect with back-off.
//!
//! Each peer gets two links. The message link connects eagerly, keeps one connection and
//! writes whatever its control and bulk lanes hold, gathering queued messages into one buffer
//! so that many small messages leave in one write. The snapshot link connects only when a
//! snapshot is queued, writes the queued snapshots, then finishes its side and waits for the
//! peer to close, which proves everything was read. A broken link reports
//! [`Event::Unreachable`] once per outage and retries with exponential back-off and jitter.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use raft::{Message, NodeId};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::codec::{FrameCodec, FrameError};
use crate::counters::Counter;
use crate::engine::{Connector, Context};
use crate::event::Event;
use crate::handshake::{self, Channel, Hello, hello_codec};
use crate::outbox::{Queues, message_size};
use crate::reader::FrameReader;

/// Write buffers up to this size are kept between batches (fresh large allocations cost page
/// faults on every message).
const RETAINED_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// How one connection of a link ended.
enum SessionEnd {
    /// Connecting or the handshake failed.
    ConnectFailed(String),
    /// An established connection broke.
    Lost(String),
    /// The snapshot link delivered everything queued.
    Drained,
    /// Nothing left to do: every handle is gone, or nobody reads the events.
    Finished,
}

/// Runs the link to `peer` until the task is cancelled.
pub(crate) async fn run<C: Connector>(
    ctx: Context,
    connector: Arc<C>,
    peer: NodeId,
    addr: SocketAddr,
    mut queues: Queues,
) {
    let channel = queues.channel();
    let config = ctx.config.clone();
    let seed = config.jitter_seed() ^ peer.rotate_left(32) ^ (channel as u64);
    let mut backoff = Backoff::new(config.backoff_initial(), config.backoff_max(), seed);
    let mut reachable: Option<bool> = None;
    loop {
        let first = match channel {
            Channel::Messages => None,
            Channel::Snapshots => match queues.next().await {
                Some(message) => Some(message),
                None => return,
            },
        };
        let had_snapshot = first.is_some();
        let end = session(
            &ctx,
            &*connector,
            peer,
            addr,
            &mut queues,
            first,
            &mut backoff,
        )
        .await;
        let lost = match end {
            SessionEnd::Finished => return,
            SessionEnd::Drained => {
                reachable = Some(true);
                continue;
            }
            SessionEnd::ConnectFailed(why) => {
                ctx.counters.incr(Counter::ConnectFailures);
                if reachable != Some(false) {
                    warn!(peer, ?channel, %addr, "cannot connect: {why}");
                } else {
                    debug!(peer, ?channel, %addr, "cannot connect: {why}");
                }
                false
            }
            SessionEnd::Lost(why) => {
                ctx.counters.incr(Counter::ConnectionsLost);
                warn!(peer, ?channel, %addr, "connection lost: {why}");
                true
            }
        };
        // The message link reports each outage once; the snapshot link only when a snapshot
        // was lost, so that the core sends it again.
        let report = match channel {
            Channel::Messages => lost || reachable != Some(false),
            Channel::Snapshots => had_snapshot,
        };
        reachable = Some(false);
        if report && ctx.events.send(Event::Unreachable { peer }).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn session<C: Connector>(
    ctx: &Context,
    connector: &C,
    peer: NodeId,
    addr: SocketAddr,
    queues: &mut Queues,
    first: Option<Message>,
    backoff: &mut Backoff,
) -> SessionEnd {
    let config = &ctx.config;
    let channel = queues.channel();
    let (reader, mut writer) = match timeout(
        config.connect_timeout(),
        connector.connect(peer, addr, channel),
    )
    .await
    {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => return SessionEnd::ConnectFailed(e.to_string()),
        Err(_) => return SessionEnd::ConnectFailed("connect timed out".into()),
    };
    let mut reader = FrameReader::new(reader, hello_codec());
    let ours = Hello::new(
        config.cluster_id(),
        config.node_id(),
        channel,
        config.metadata(),
    );
    let handshake = handshake::initiate(&mut reader, &mut writer, &ours, peer);
    let theirs = match timeout(config.handshake_timeout(), handshake).await {
        Ok(Ok(theirs)) => theirs,
        Ok(Err(e)) => return SessionEnd::ConnectFailed(format!("handshake: {e}")),
        Err(_) => return SessionEnd::ConnectFailed("handshake timed out".into()),
    };
    ctx.counters.incr(Counter::ConnectionsEstablished);
    backoff.reset();
    debug!(peer, ?channel, %addr, "connected");
    let limit = match channel {
        Channel::Messages => config.max_frame_bytes(),
        Channel::Snapshots => config.max_snapshot_bytes(),
    };
    let mut writer_state = Writer {
        ctx,
        peer,
        codec: FrameCodec::new(limit),
        buffer: BytesMut::new(),
    };
    match channel {
        Channel::Messages => {
            let info = Event::PeerInfo {
                peer,
                metadata: theirs.metadata().to_owned(),
            };
            if ctx.events.send(info).await.is_err() {
                return SessionEnd::Finished;
            }
            // The peer never writes after its handshake reply: a completed read means the
            // connection is gone.
            tokio::select! {
                result = writer_state.write_all_queued(&mut writer, queues, None, false) => {
                    match result {
                        // The queues only close when every `Transport` handle is dropped.
                        Ok(()) => SessionEnd::Finished,
                        Err(e) => SessionEnd::Lost(e.to_string()),
                    }
                }
                closed = wait_closed(&mut reader) => SessionEnd::Lost(closed),
            }
        }
        Channel::Snapshots => {
            let written = writer_state
                .write_all_queued(&mut writer, queues, first, true)
                .await;
            if let Err(e) = written {
                return SessionEnd::Lost(e.to_string());
            }
            if let Err(e) = writer.shutdown().await {
                return SessionEnd::Lost(e.to_string());
            }
            // Wait until the peer has read everything and closed its side.
            let _ = wait_closed(&mut reader).await;
            SessionEnd::Drained
        }
    }
}

async fn wait_closed<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> String {
    match reader.next::<Message>().await {
        Ok(None) => "closed by the peer".into(),
        Ok(Some(_)) => "unexpected frame from the peer".into(),
        Err(e) => e.to_string(),
    }
}

/// Encodes queued messages into batches and writes them.
struct Writer<'a> {
    ctx: &'a Context,
    peer: NodeId,
    codec: FrameCodec,
    buffer: BytesMut,
}

impl Writer<'_> {
    /// Writes `first` and then queued messages. With `until_empty` it returns once the queues
    /// are empty; otherwise it waits for more, forever.
    async fn write_all_queued<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        queues: &mut Queues,
        mut first: Option<Message>,
        until_empty: bool,
    ) -> io::Result<()> {
        let batch_bytes = self.ctx.config.batch_bytes();
        loop {
            let message = match first.take() {
                Some(message) => message,
                None if until_empty => match queues.try_next() {
                    Some(message) => message,
                    None => return Ok(()),
                },
                None => match queues.next().await {
                    Some(message) => message,
                    None => return Ok(()),
                },
            };
            let mut count = u64::from(self.encode(&message));
            while self.buffer.len() < batch_bytes {
                match queues.try_next() {
                    Some(message) => count += u64::from(self.encode(&message)),
                    None => break,
                }
            }
            if self.buffer.is_empty() {
                continue;
            }
            writer.write_all(&self.buffer).await?;
            self.ctx.counters.add(Counter::MessagesSent, count);
            self.ctx
                .counters
                .add(Counter::BytesSent, self.buffer.len() as u64);
            self.buffer.clear();
            if self.buffer.capacity() > RETAINED_BUFFER_BYTES.max(4 * batch_bytes) {
                // Do not keep a huge buffer around after one very large message.
                self.buffer = BytesMut::new();
            }
        }
    }

    /// Appends `message` to the batch; a message above the frame limit is dropped, and so is
    /// one queued before a fault rule cut the peer off.
    fn encode(&mut self, message: &Message) -> bool {
        if self.ctx.cut_off(self.peer) {
            self.ctx.counters.incr(Counter::FaultDropped);
            return false;
        }
        // Room for the whole frame up front, so a large message is not copied while the
        // buffer grows step by step.
        self.buffer.reserve(message_size(message));
        match self.codec.encode(message, &mut self.buffer) {
            Ok(()) => true,
            Err(e @ FrameError::TooLarge { .. }) => {
                self.ctx.counters.incr(Counter::OutboundTooLarge);
                warn!(kind = message.kind(), "dropping outgoing message: {e}");
                false
            }
            Err(e) => {
                warn!(kind = message.kind(), "dropping outgoing message: {e}");
                false
            }
        }
    }
}
