//! The frame codec: `[u32 big-endian length][postcard payload]`.
//!
//! Decoding follows the mini-redis pattern: first check that the buffer holds a whole frame
//! (rejecting an oversized length as soon as the prefix is in), then parse it. Nothing here
//! panics on peer input; every malformed frame becomes a [`FrameError`].

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix (or an outgoing payload) exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced or encoded length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received.
        have: usize,
        /// Bytes the frame needed (prefix included, or the prefix alone if incomplete).
        need: usize,
    },
    /// The payload is not a valid postcard encoding of the expected type.
    #[error("undecodable frame: {0}")]
    Decode(postcard::Error),
    /// The payload decoded but left bytes over.
    #[error("frame has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The value could not be serialised.
    #[error("cannot encode frame: {0}")]
    Encode(postcard::Error),
    /// Reading or writing the underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes length-prefixed postcard frames with a size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl FrameCodec {
    /// A codec refusing payloads longer than `max_frame_bytes` (capped at `u32::MAX`).
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes: max_frame_bytes.min(u32::MAX as usize),
        }
    }

    /// The payload size limit.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Appends one frame holding `value` to `dst`. On error `dst` is left as it was.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let start = dst.len();
        dst.put_u32(0);
        if let Err(e) = postcard::to_io(value, (&mut *dst).writer()) {
            dst.truncate(start);
            return Err(FrameError::Encode(e));
        }
        let len = dst.len() - start - LENGTH_PREFIX_BYTES;
        if len > self.max_frame_bytes {
            dst.truncate(start);
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        dst[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }

    /// Checks whether `src` starts with a whole frame: `Ok(Some(total))` gives its size with
    /// the prefix, `Ok(None)` means more bytes are needed, an oversized length is an error.
    pub fn check(&self, src: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = src.get(..LENGTH_PREFIX_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let total = LENGTH_PREFIX_BYTES + len;
        Ok((src.len() >= total).then_some(total))
    }

    /// How many bytes `src` must hold before the next call to [`FrameCodec::decode`] can make
    /// progress (used to size reads for large frames).
    pub fn needed(&self, src: &[u8]) -> usize {
        match src.get(..LENGTH_PREFIX_BYTES) {
            Some(p) => {
                let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                LENGTH_PREFIX_BYTES + len.min(self.max_frame_bytes)
            }
            None => LENGTH_PREFIX_BYTES,
        }
    }

    /// Removes and decodes the first frame of `src`, or returns `Ok(None)` if it is not whole
    /// yet (nothing is consumed then).
    pub fn decode<T: DeserializeOwned>(&self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        let Some(total) = self.check(src)? else {
            return Ok(None);
        };
        let outcome = match postcard::take_from_bytes::<T>(&src[LENGTH_PREFIX_BYTES..total]) {
            Ok((value, [])) => Ok(Some(value)),
            Ok((_, rest)) => Err(FrameError::TrailingBytes(rest.len())),
            Err(e) => Err(FrameError::Decode(e)),
        };
        src.advance(total);
        outcome
    }

    /// Called when the stream has ended: leftover bytes mean a truncated frame.
    pub fn finish(&self, src: &[u8]) -> Result<(), FrameError> {
        if src.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                have: src.len(),
                need: self.needed(src),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn heartbeat(term: u64) -> raft::Message {
        raft::Message::Heartbeat {
            term,
            commit: 7,
            read_round: 3,
        }
    }

    #[test]
    fn round_trip_of_several_frames_in_one_buffer() {
        let codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        for term in 0..3 {
            codec.encode(&heartbeat(term), &mut buf).unwrap();
        }
        for term in 0..3 {
            let m: raft::Message = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(m, heartbeat(term));
        }
        assert!(buf.is_empty());
        assert!(codec.decode::<raft::Message>(&mut buf).unwrap().is_none());
    }

    #[test]
    fn partial_frame_waits_and_consumes_nothing() {
        let codec = FrameCodec::new(1024);
        let mut whole = BytesMut::new();
        codec.encode(&heartbeat(1), &mut whole).unwrap();
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert!(codec.decode::<raft::Message>(&mut part).unwrap().is_none());
            assert_eq!(part.len(), cut);
            assert!(matches!(codec.finish(&part), Err(FrameError::Truncated { .. })) || cut == 0);
        }
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&17u32.to_be_bytes()[..]);
        assert!(matches!(
            codec.decode::<raft::Message>(&mut buf),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        ));
    }

    #[test]
    fn oversized_outgoing_payload_is_refused_and_buffer_kept() {
        let codec = FrameCodec::new(4);
        let mut buf = BytesMut::from(&b"keep"[..]);
        let big = raft::Message::ReadIndex {
            term: 1,
            id: u64::MAX,
        };
        assert!(matches!(
            codec.encode(&big, &mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(&buf[..], b"keep");
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        let codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0xff, 0xff][..]);
        assert!(matches!(
            codec.decode::<raft::Message>(&mut buf),
            Err(FrameError::Decode(_))
        ));
        let mut ok = BytesMut::new();
        codec.encode(&heartbeat(1), &mut ok).unwrap();
        let mut padded = BytesMut::new();
        padded.put_u32((ok.len() - 4 + 1) as u32);
        padded.extend_from_slice(&ok[4..]);
        padded.put_u8(0);
        assert!(matches!(
            codec.decode::<raft::Message>(&mut padded),
            Err(FrameError::TrailingBytes(1))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let codec = FrameCodec::new(128);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode::<raft::Message>(&mut buf) {}
        }
    }
}
