//! The WAL record: framing, checksums and the typed payloads.
//!
//! ```text
//! offset  size  field
//!      0     4  length      payload length in bytes (little endian)
//!      4     4  crc         CRC32C of length ‖ kind ‖ payload
//!      8     1  kind        what the payload is (see `Kind`)
//!      9     4  header_crc  CRC32C of bytes 0..9 (length, crc, kind)
//!     13     n  payload     postcard encoding of the record
//! ```
//!
//! The layout is DESIGN.md's `[u32 length][u32 crc32c][u8 kind][payload]` plus a checksum of
//! the header itself. `crc` covers the length, so a damaged length never passes; the header
//! checksum additionally lets a reader trust the length *before* reading the payload. That is
//! what separates a torn final record (a valid header whose payload runs past the end of the
//! file, or garbage with nothing valid after it) from a flipped length bit in the middle of the
//! log (a header that fails its checksum while valid records follow). A header of all zeros is
//! never valid (kind 0 does not exist), so zeros past the last record read as the end of the
//! log.
//!
//! This module only turns bytes into frames and frames into [`Record`]s; deciding what a bad
//! frame means (torn tail or corruption) is the segment reader's job (`segment.rs`).

use raft::{Entry, HardState, Index, Term};
use serde::{Deserialize, Serialize};

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 13;

/// The largest payload a reader accepts; larger lengths are treated as damage. Writers split
/// entry batches well below this.
pub(crate) const MAX_PAYLOAD: u32 = 256 << 20;

/// Entry batches are split into records of about this many payload bytes, so that reading one
/// entry back never has to read a huge record.
pub(crate) const TARGET_RECORD_BYTES: usize = 256 << 10;

/// The record kinds. 0 is reserved so that zeros never form a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    SegmentHeader = 1,
    Entries = 2,
    HardState = 3,
    Truncate = 4,
    SnapshotReset = 5,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::SegmentHeader,
            2 => Self::Entries,
            3 => Self::HardState,
            4 => Self::Truncate,
            5 => Self::SnapshotReset,
            _ => return None,
        })
    }
}

/// First record of every segment: enough context to replay the segment when every older one
/// has been removed by compaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentHeader {
    /// The segment's sequence number (also in its file name).
    pub(crate) seq: u64,
    /// Index of the last log entry written before this segment (0 for an empty log).
    pub(crate) prev_index: Index,
    /// Term of that entry (or of the snapshot the log starts after).
    pub(crate) prev_term: Term,
    /// The hard state in force when the segment was created.
    pub(crate) hard_state: HardState,
}

/// One decoded WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Starts a segment.
    SegmentHeader(SegmentHeader),
    /// Consecutive entries, appended after the current last index.
    Entries(Vec<Entry>),
    /// The new hard state.
    HardState(HardState),
    /// Entries from `from` on are void (a follower's conflicting suffix).
    Truncate {
        /// First voided index.
        from: Index,
        /// Term of the entry before it: lets recovery place the cut even when that entry sat
        /// in a segment that compaction has since removed.
        prev_term: Term,
    },
    /// A snapshot replaced the whole log: the log is now empty after (`index`, `term`).
    SnapshotReset {
        /// Last index covered by the snapshot.
        index: Index,
        /// Its term.
        term: Term,
    },
}

/// What the bytes at some position are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A record whose checksums match; `len` is its total length including the header.
    Valid {
        kind: u8,
        payload: &'a [u8],
        len: usize,
    },
    /// Fewer than [`HEADER_LEN`] bytes are left, or the header is all zeros: the end of the
    /// written data if everything from here on is zero.
    Zeros,
    /// Fewer than [`HEADER_LEN`] bytes are left and they are not all zero.
    ShortHeader,
    /// The header fails its checksum (or claims an impossible length).
    BadHeader,
    /// The header is valid but the payload runs `missing` bytes past the end of the data.
    PastEnd { missing: usize },
    /// The header is valid, the payload is complete, but its checksum does not match.
    BadPayload { len: usize },
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Whether `bytes` starts with a header that passes its own checksum.
pub(crate) fn header_is_valid(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && Kind::from_byte(bytes[8]).is_some()
        && crc32c::crc32c(&bytes[..9]) == u32_at(bytes, 9)
        && u32_at(bytes, 0) <= MAX_PAYLOAD
}

/// Reads the frame at the start of `bytes`.
pub(crate) fn decode_frame(bytes: &[u8]) -> Frame<'_> {
    if bytes.len() < HEADER_LEN {
        return if bytes.iter().all(|b| *b == 0) {
            Frame::Zeros
        } else {
            Frame::ShortHeader
        };
    }
    if bytes[..HEADER_LEN].iter().all(|b| *b == 0) {
        return Frame::Zeros;
    }
    if crc32c::crc32c(&bytes[..9]) != u32_at(bytes, 9) {
        return Frame::BadHeader;
    }
    let length = u32_at(bytes, 0);
    if length > MAX_PAYLOAD {
        return Frame::BadHeader;
    }
    let len = HEADER_LEN + length as usize;
    if bytes.len() < len {
        return Frame::PastEnd {
            missing: len - bytes.len(),
        };
    }
    let kind = bytes[8];
    let payload = &bytes[HEADER_LEN..len];
    if record_crc(&bytes[..4], kind, payload) != u32_at(bytes, 4) {
        return Frame::BadPayload { len };
    }
    Frame::Valid { kind, payload, len }
}

fn record_crc(length: &[u8], kind: u8, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(length);
    let crc = crc32c::crc32c_append(crc, &[kind]);
    crc32c::crc32c_append(crc, payload)
}

/// Decodes a valid frame's payload. `Err` names what is wrong (the caller adds file and
/// offset).
pub(crate) fn decode_record(kind: u8, payload: &[u8]) -> Result<Record, String> {
    let kind = Kind::from_byte(kind).ok_or_else(|| format!("unknown record kind {kind}"))?;
    let bad = |e: postcard::Error| format!("undecodable {kind:?} record: {e}");
    let record = match kind {
        Kind::SegmentHeader => Record::SegmentHeader(decode_all(payload).map_err(bad)?),
        Kind::Entries => {
            let entries: Vec<Entry> = decode_all(payload).map_err(bad)?;
            if entries.is_empty() {
                return Err("empty entries record".into());
            }
            if entries.windows(2).any(|w| w[1].index() != w[0].index() + 1) {
                return Err("entries record with non-consecutive indexes".into());
            }
            Record::Entries(entries)
        }
        Kind::HardState => Record::HardState(decode_all(payload).map_err(bad)?),
        Kind::Truncate => {
            let (from, prev_term) = decode_all(payload).map_err(bad)?;
            Record::Truncate { from, prev_term }
        }
        Kind::SnapshotReset => {
            let (index, term) = decode_all(payload).map_err(bad)?;
            Record::SnapshotReset { index, term }
        }
    };
    Ok(record)
}

fn decode_all<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> postcard::Result<T> {
    let (value, rest) = postcard::take_from_bytes(payload)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}

/// Appends one framed record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, kind: Kind, payload: &impl Serialize) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let mut buffer = std::mem::take(out);
    buffer = postcard::to_extend(payload, buffer).expect("serialising into a Vec cannot fail");
    *out = buffer;
    let length = u32::try_from(out.len() - start - HEADER_LEN).expect("record below 4 GiB");
    assert!(
        length <= MAX_PAYLOAD,
        "record of {length} bytes is too large"
    );
    let kind = kind as u8;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    let crc = record_crc(&length.to_le_bytes(), kind, &out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out[start + 8] = kind;
    let header_crc = crc32c::crc32c(&out[start..start + 9]);
    out[start + 9..start + 13].copy_from_slice(&header_crc.to_le_bytes());
}

/// Appends `record` to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, record: &Record) {
    match record {
        Record::SegmentHeader(header) => encode(out, Kind::SegmentHeader, header),
        Record::Entries(entries) => encode(out, Kind::Entries, entries),
        Record::HardState(hard_state) => encode(out, Kind::HardState, hard_state),
        Record::Truncate { from, prev_term } => encode(out, Kind::Truncate, &(from, prev_term)),
        Record::SnapshotReset { index, term } => encode(out, Kind::SnapshotReset, &(index, term)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::EntryPayload;

    fn sample() -> Vec<Record> {
        vec![
            Record::SegmentHeader(SegmentHeader {
                seq: 7,
                prev_index: 41,
                prev_term: 3,
                hard_state: HardState::new(3, Some(2), 40),
            }),
            Record::Entries(vec![
                Entry::new(3, 42, EntryPayload::Command("a".into())),
                Entry::new(4, 43, EntryPayload::Noop),
            ]),
            Record::HardState(HardState::new(4, None, 43)),
            Record::Truncate {
                from: 43,
                prev_term: 3,
            },
            Record::SnapshotReset { index: 9, term: 2 },
        ]
    }

    #[test]
    fn records_round_trip() {
        for record in sample() {
            let mut bytes = Vec::new();
            encode_record(&mut bytes, &record);
            let Frame::Valid { kind, payload, len } = decode_frame(&bytes) else {
                panic!("frame of {record:?} does not decode");
            };
            assert_eq!(len, bytes.len());
            assert_eq!(decode_record(kind, payload).unwrap(), record);
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, &sample()[1]);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let frame = decode_frame(&damaged);
            assert!(
                !matches!(frame, Frame::Valid { .. }),
                "flip of bit {bit} passed: {frame:?}"
            );
            if bit < 9 * 8 {
                // The length, crc and kind are covered by the header checksum.
                assert_eq!(frame, Frame::BadHeader, "bit {bit}");
            }
        }
    }

    #[test]
    fn zeros_and_short_headers() {
        assert_eq!(decode_frame(&[]), Frame::Zeros);
        assert_eq!(decode_frame(&[0; 40]), Frame::Zeros);
        assert_eq!(decode_frame(&[0, 0, 1]), Frame::ShortHeader);
        let mut bytes = Vec::new();
        encode_record(&mut bytes, &sample()[2]);
        assert!(matches!(
            decode_frame(&bytes[..bytes.len() - 1]),
            Frame::PastEnd { missing: 1 }
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Garbage never panics the decoder, and whatever it accepts re-encodes identically.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Frame::Valid { kind, payload, len } = decode_frame(&bytes)
                && let Ok(record) = decode_record(kind, payload)
            {
                let mut again = Vec::new();
                encode_record(&mut again, &record);
                prop_assert_eq!(&again[..], &bytes[..len]);
            }
        }

        /// A valid header with garbage payload never panics the payload decoder.
        #[test]
        fn garbage_payloads_never_panic(kind in 0u8..8, payload in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode_record(kind, &payload);
        }
    }
}
