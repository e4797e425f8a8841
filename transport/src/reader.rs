//! Reading frames from a byte stream: buffer, check for a whole frame, parse.

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::codec::{FrameCodec, FrameError};

/// Smallest read issued, so that many small frames arrive in one system call.
const READ_CHUNK: usize = 64 * 1024;
/// Most buffer space reserved ahead of data actually received: a peer announcing a huge (but
/// allowed) frame does not make us allocate it all before sending it.
const MAX_RESERVE_AHEAD: usize = 4 * 1024 * 1024;

/// A stream of frames read from `R` with a [`FrameCodec`].
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    codec: FrameCodec,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames from `reader` with `codec`'s size limit.
    pub fn new(reader: R, codec: FrameCodec) -> Self {
        Self {
            reader,
            buffer: BytesMut::with_capacity(READ_CHUNK),
            codec,
        }
    }

    /// Changes the size limit (the handshake uses a small one, snapshots a large one).
    pub fn set_codec(&mut self, codec: FrameCodec) {
        self.codec = codec;
    }

    /// The next frame, `Ok(None)` at a clean end of stream (between frames), or an error for
    /// an oversized, truncated or undecodable frame.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some(value) = self.codec.decode(&mut self.buffer)? {
                return Ok(Some(value));
            }
            let needed = self
                .codec
                .needed(&self.buffer)
                .saturating_sub(self.buffer.len());
            self.buffer
                .reserve(needed.clamp(READ_CHUNK, MAX_RESERVE_AHEAD));
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                self.codec.finish(&self.buffer)?;
                return Ok(None);
            }
        }
    }

    /// The next frame if one is already buffered whole; never reads.
    pub fn try_next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        self.codec.decode(&mut self.buffer)
    }

    /// Whether bytes are buffered that have not formed a frame yet.
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }
}
