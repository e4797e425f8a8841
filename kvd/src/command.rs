//! What kvd writes into the Raft log: a client's write, with its idempotency key.
//!
//! Encoded with postcard inside [`raft::EntryPayload::Command`]. The format is part of the
//! WAL and snapshot format: change it only by adding variants at the end.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A replicated write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's id; empty means "no deduplication".
    pub client_id: String,
    /// The client's request number; with `client_id`, applied at most once.
    pub request_id: u64,
    /// The operation.
    pub op: Op,
}

/// A write operation on the key space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

impl Request {
    /// Encodes the request for the log.
    pub fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).expect("serialising to memory cannot fail"))
    }

    /// Decodes a request from the log.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Request {
            client_id: "c".into(),
            request_id: 7,
            op: Op::Put {
                key: "k".into(),
                value: Bytes::from_static(b"v"),
            },
        };
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        assert!(Request::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
