//! WAL segment files: their names, reading one back, and deciding torn tail versus corruption.
//!
//! A segment is `wal/<seq>-<first-index>.seg`, both numbers zero-padded to 20 digits so names
//! sort in order: `seq` counts segments from 1 (a gap in it means a missing file) and
//! `first-index` is the index the first entry written to it would have (for humans; the header
//! record is authoritative). Every segment starts with a [`SegmentHeader`] record.
//!
//! # Torn tail or corruption
//!
//! Walking a segment's records, the first frame that is not valid decides:
//! - zeros up to the end of the file: the end of the log (an extended or preallocated file);
//! - anything else in a segment that is not the last one: corruption;
//! - in the last segment, a valid header whose payload runs past the end of the file: a torn
//!   record (the header's own checksum vouches for the length);
//! - in the last segment, a bad header, a bad payload checksum or stray non-zero bytes: a torn
//!   record **only if no valid record header starts anywhere after it**. A flipped bit in the
//!   middle of the log leaves the records after it intact, so it is reported as corruption
//!   with the file and the offset of the damaged record instead of being cut off.
//!
//! The one case no checksum can settle is damage to the very last record of the log: it is
//! treated as torn (and reported in [`crate::RecoveryReport`]).

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::record::{self, Frame, Record, SegmentHeader};
use crate::vfs::{self, Vfs};

/// File name of segment `seq` whose first entry would be `first_index`.
pub(crate) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:020}-{first_index:020}.seg")
}

/// Parses a segment file name into its sequence number.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 20 || first.len() != 20 {
        return None;
    }
    first.parse::<u64>().ok()?;
    seq.parse().ok()
}

/// A record found in a segment, with its position.
#[derive(Debug)]
pub(crate) struct Located {
    pub(crate) offset: u64,
    pub(crate) record: Record,
}

/// What reading a segment found.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub(crate) header: SegmentHeader,
    /// Records after the header.
    pub(crate) records: Vec<Located>,
    /// Where the valid data ends.
    pub(crate) valid_len: u64,
    /// Set if a torn record starts at `valid_len` (only possible in the last segment).
    pub(crate) torn: bool,
}

/// Reads a whole segment. `Ok(None)` means the last segment holds not even a complete header
/// (it was being created when the node stopped).
pub(crate) fn scan(path: &Path, bytes: &[u8], is_last: bool) -> Result<Option<Scanned>> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let torn = loop {
        match record::decode_frame(&bytes[at..]) {
            Frame::Valid { kind, payload, len } => {
                let record = record::decode_record(kind, payload)
                    .map_err(|reason| StorageError::corrupt(path, at as u64, reason))?;
                records.push(Located {
                    offset: at as u64,
                    record,
                });
                at += len;
            }
            Frame::Zeros if bytes[at..].iter().all(|b| *b == 0) => break false,
            Frame::PastEnd { missing } if !is_last => {
                return Err(StorageError::corrupt(
                    path,
                    at as u64,
                    format!(
                        "record runs {missing} bytes past the end of a segment that is not the last"
                    ),
                ));
            }
            Frame::PastEnd { .. } => break true,
            bad => {
                let reason = match bad {
                    Frame::BadHeader => "record header checksum mismatch",
                    Frame::BadPayload { .. } => "record checksum mismatch",
                    _ => "unexpected bytes where a record header should be",
                };
                if !is_last {
                    return Err(StorageError::corrupt(path, at as u64, reason));
                }
                // A bad payload under a valid header: the record's extent is known, so look
                // for survivors after it (its payload may hold anything).
                let resume = match bad {
                    Frame::BadPayload { len } => at + len,
                    _ => at + 1,
                };
                if let Some(next) = next_valid_header(bytes, resume) {
                    return Err(StorageError::corrupt(
                        path,
                        at as u64,
                        format!("{reason}, and a valid record follows at offset {next}"),
                    ));
                }
                break true;
            }
        }
    };
    let mut records = records.into_iter();
    let header = match records.next() {
        Some(Located {
            record: Record::SegmentHeader(header),
            ..
        }) => header,
        Some(_) => {
            return Err(StorageError::corrupt(
                path,
                0,
                "segment does not start with a segment header",
            ));
        }
        None if is_last => return Ok(None),
        None => return Err(StorageError::corrupt(path, 0, "empty segment")),
    };
    let records: Vec<Located> = records.collect();
    if let Some(stray) = records
        .iter()
        .find(|r| matches!(r.record, Record::SegmentHeader(_)))
    {
        return Err(StorageError::corrupt(
            path,
            stray.offset,
            "segment header in the middle of a segment",
        ));
    }
    Ok(Some(Scanned {
        header,
        records,
        valid_len: at as u64,
        torn,
    }))
}

/// The first offset at or after `from` where a record header passes its checksum.
fn next_valid_header(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(record::HEADER_LEN - 1))
        .find(|&at| record::header_is_valid(&bytes[at..]))
}

/// Lists the segments in `wal_dir` by sequence number.
pub(crate) fn list<F: Vfs>(fs: &F, wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<_> = vfs::read_dir(fs, wal_dir)?
        .into_iter()
        .filter_map(|path| {
            let seq = path.file_name()?.to_str().and_then(parse_name)?;
            Some((seq, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_record;
    use proptest::prelude::*;
    use raft::{Entry, EntryPayload, HardState};

    fn segment(entries: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = vec![0];
        encode_record(
            &mut bytes,
            &Record::SegmentHeader(SegmentHeader {
                seq: 1,
                prev_index: 0,
                prev_term: 0,
                hard_state: HardState::default(),
            }),
        );
        for index in 1..=entries {
            starts.push(bytes.len());
            let entry = Entry::new(
                1,
                index,
                EntryPayload::Command(vec![index as u8; 20].into()),
            );
            encode_record(&mut bytes, &Record::Entries(vec![entry]));
        }
        (bytes, starts)
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(3, 1234)), Some(3));
        assert_eq!(parse_name("3-1234.seg"), None);
        assert_eq!(
            parse_name("00000000000000000003-00000000000000001234.seg.tmp"),
            None
        );
    }

    #[test]
    fn zeros_after_the_last_record_end_the_log() {
        let (mut bytes, _) = segment(3);
        let len = bytes.len();
        bytes.resize(len + 4096, 0);
        let scanned = scan(Path::new("x"), &bytes, false).unwrap().unwrap();
        assert_eq!(scanned.records.len(), 3);
        assert_eq!(scanned.valid_len, len as u64);
        assert!(!scanned.torn);
    }

    #[test]
    fn torn_only_at_the_tail_of_the_last_segment() {
        let (bytes, starts) = segment(3);
        let cut = &bytes[..bytes.len() - 5];
        let scanned = scan(Path::new("x"), cut, true).unwrap().unwrap();
        assert!(scanned.torn);
        assert_eq!(scanned.valid_len, starts[3] as u64);
        let err = scan(Path::new("x"), cut, false).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == starts[3] as u64),
            "{err}"
        );
    }

    #[test]
    fn flipped_length_bit_in_the_middle_is_corruption() {
        let (mut bytes, starts) = segment(3);
        bytes[starts[1] + 2] ^= 0x10; // the length field's third byte
        let err = scan(Path::new("seg"), &bytes, true).unwrap_err();
        match err {
            StorageError::Corrupt { path, offset, .. } => {
                assert_eq!(path, Path::new("seg"));
                assert_eq!(offset, starts[1] as u64);
            }
            other => panic!("{other}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Arbitrary bytes never panic the segment reader, as last segment or not.
        #[test]
        fn garbage_segments_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), last: bool) {
            let _ = scan(Path::new("g"), &bytes, last);
        }

        /// A valid segment with a random stretch overwritten by garbage never panics and never
        /// yields a record that was not written.
        #[test]
        fn damaged_segments_never_invent_records(at in 0usize..400, garbage in proptest::collection::vec(any::<u8>(), 1..40), last: bool) {
            let (mut bytes, _) = segment(10);
            let (original, _) = segment(10);
            let at = at % bytes.len();
            let end = (at + garbage.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&garbage[..end - at]);
            if let Ok(Some(scanned)) = scan(Path::new("g"), &bytes, last) {
                let intact = scan(Path::new("g"), &original, true).unwrap().unwrap();
                for found in &scanned.records {
                    prop_assert!(intact.records.iter().any(|r| r.offset == found.offset && r.record == found.record));
                }
            }
        }
    }
}
