//! What kvd writes into the Raft log: a client's write, with its idempotency key.
//!
//! Encoded with postcard inside [`raft::EntryPayload::Command`]. The format is part of the
//! WAL and snapshot format: change it only by adding variants at the end.
//!
//! The hot path never builds an owned [`Request`]: the API layer encodes straight from the
//! gRPC message's fields ([`encode_put`], [`encode_delete`]), and the state machine decodes a
//! borrowed [`Write`] whose value is a zero-copy slice of the log entry ([`decode`]).

use bytes::Bytes;
use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A replicated write (owned form, for tests and tools).
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

/// A decoded write that borrows its strings from the log entry and shares its value's
/// buffer with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write<'a> {
    /// The client's id; empty means "no deduplication".
    pub client_id: &'a str,
    /// The client's request number.
    pub request_id: u64,
    /// The operation.
    pub op: WriteOp<'a>,
}

/// The operation of a [`Write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: &'a str,
        /// The value (a slice of the log entry's buffer).
        value: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: &'a str,
    },
}

/// Wire twin of [`Request`] with borrowed fields; same encoding, field for field.
#[derive(Serialize, Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    client_id: &'a str,
    request_id: u64,
    #[serde(borrow)]
    op: RawOp<'a>,
}

#[derive(Serialize, Deserialize)]
enum RawOp<'a> {
    Put {
        #[serde(borrow)]
        key: &'a str,
        #[serde(borrow)]
        value: RawBytes<'a>,
    },
    Delete {
        #[serde(borrow)]
        key: &'a str,
    },
}

/// Bytes serialised the way `bytes::Bytes` is (serde "bytes"), borrowed on decode.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Borrowed;
        impl<'de> Visitor<'de> for Borrowed {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("borrowed bytes")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        deserializer.deserialize_bytes(Borrowed).map(RawBytes)
    }
}

fn encode_raw(raw: &RawRequest<'_>) -> Bytes {
    Bytes::from(postcard::to_allocvec(raw).expect("serialising to memory cannot fail"))
}

/// Encodes a put for the log, straight from borrowed fields.
pub fn encode_put(client_id: &str, request_id: u64, key: &str, value: &[u8]) -> Bytes {
    encode_raw(&RawRequest {
        client_id,
        request_id,
        op: RawOp::Put {
            key,
            value: RawBytes(value),
        },
    })
}

/// Encodes a delete for the log, straight from borrowed fields.
pub fn encode_delete(client_id: &str, request_id: u64, key: &str) -> Bytes {
    encode_raw(&RawRequest {
        client_id,
        request_id,
        op: RawOp::Delete { key },
    })
}

/// Decodes a log entry's command without copying: strings borrow from `bytes`, the value is
/// `bytes.slice_ref(..)`.
pub fn decode(bytes: &Bytes) -> Result<Write<'_>, postcard::Error> {
    let raw: RawRequest<'_> = postcard::from_bytes(bytes)?;
    let op = match raw.op {
        RawOp::Put { key, value } => WriteOp::Put {
            key,
            value: if value.0.is_empty() {
                Bytes::new()
            } else {
                bytes.slice_ref(value.0)
            },
        },
        RawOp::Delete { key } => WriteOp::Delete { key },
    };
    Ok(Write {
        client_id: raw.client_id,
        request_id: raw.request_id,
        op,
    })
}

impl Request {
    /// Encodes the request for the log.
    pub fn encode(&self) -> Bytes {
        match &self.op {
            Op::Put { key, value } => encode_put(&self.client_id, self.request_id, key, value),
            Op::Delete { key } => encode_delete(&self.client_id, self.request_id, key),
        }
    }

    /// Decodes a request from the log (owned copy).
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// A borrowed view of this request, as the state machine takes it.
    pub fn as_write(&self) -> Write<'_> {
        Write {
            client_id: &self.client_id,
            request_id: self.request_id,
            op: match &self.op {
                Op::Put { key, value } => WriteOp::Put {
                    key,
                    value: value.clone(),
                },
                Op::Delete { key } => WriteOp::Delete { key },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put() -> Request {
        Request {
            client_id: "c".into(),
            request_id: 7,
            op: Op::Put {
                key: "k".into(),
                value: Bytes::from_static(b"value"),
            },
        }
    }

    #[test]
    fn round_trip() {
        let r = put();
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        assert!(Request::decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn the_borrowed_encoding_is_the_owned_encoding() {
        // The WAL holds entries written by both forms: they must be byte for byte equal.
        let r = put();
        let owned = Bytes::from(postcard::to_allocvec(&r).unwrap());
        assert_eq!(r.encode(), owned);
        let del = Request {
            client_id: String::new(),
            request_id: 0,
            op: Op::Delete { key: "gone".into() },
        };
        assert_eq!(
            del.encode(),
            Bytes::from(postcard::to_allocvec(&del).unwrap())
        );
        assert_eq!(decode(&del.encode()).unwrap(), del.as_write());
    }

    #[test]
    fn decoding_shares_the_entry_buffer() {
        let bytes = put().encode();
        let write = decode(&bytes).unwrap();
        assert_eq!(write, put().as_write());
        let WriteOp::Put { value, .. } = write.op else {
            panic!("a put")
        };
        let range = bytes.as_ptr_range();
        assert!(range.contains(&value.as_ptr()), "the value was copied");
    }

    #[test]
    fn garbage_is_an_error() {
        for garbage in [
            &b""[..],
            b"\xff\xff\xff",
            b"\x01c\x07\x05",
            b"\x01c\x07\x00\x09k",
        ] {
            assert!(
                decode(&Bytes::copy_from_slice(garbage)).is_err(),
                "{garbage:?}"
            );
        }
    }
}
