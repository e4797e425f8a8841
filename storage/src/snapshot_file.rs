//! Snapshot files: `snap/<term>-<index>.snap`, checksummed, written atomically.
//!
//! ```text
//! offset  size  field
//!      0     8  magic      "KVSNAP\0\x01"
//!      8     8  body_len   length of the body (little endian)
//!     16     4  crc        CRC32C of body_len ‖ body
//!     20     n  body       postcard of (wal_seq, SnapshotMeta, data)
//! ```
//!
//! `wal_seq` is the WAL segment that was active when the snapshot was saved: recovery checks
//! that the WAL still reaches that far, which catches a lost final segment that no record could
//! reveal. Writing goes to `<name>.tmp`, which is fsynced, renamed over the final name, and
//! then the directory is fsynced, so a crash leaves either the old set of snapshots or the new
//! one (plus, perhaps, a stale `.tmp` that the next start removes).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft::{Index, Snapshot, SnapshotMeta, Term};

use crate::error::{Result, StorageError};

const MAGIC: &[u8; 8] = b"KVSNAP\0\x01";
const PREFIX_LEN: usize = 20;

/// File name of the snapshot at (`term`, `index`).
pub(crate) fn file_name(term: Term, index: Index) -> String {
    format!("{term:020}-{index:020}.snap")
}

/// Parses a snapshot file name into `(index, term)` (the order snapshots are compared in).
pub(crate) fn parse_name(name: &str) -> Option<(Index, Term)> {
    let stem = name.strip_suffix(".snap")?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 20 || index.len() != 20 {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

/// Encodes a snapshot file in memory (the reference for [`write`]).
#[cfg(test)]
pub(crate) fn encode(snapshot: &Snapshot, wal_seq: u64) -> Vec<u8> {
    let body = postcard::to_stdvec(&(wal_seq, snapshot.meta(), snapshot.data()))
        .expect("serialising into a Vec cannot fail");
    let body_len = (body.len() as u64).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&body_len), &body);
    let mut file = Vec::with_capacity(PREFIX_LEN + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&body_len);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&body);
    file
}

/// Decodes and verifies a snapshot file's bytes; returns the snapshot and its `wal_seq`.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<(Snapshot, u64)> {
    let corrupt = |offset: usize, reason: &str| StorageError::corrupt(path, offset as u64, reason);
    if bytes.len() < PREFIX_LEN {
        return Err(corrupt(
            bytes.len(),
            "snapshot file shorter than its header",
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot file (bad magic)"));
    }
    let body_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let actual = (bytes.len() - PREFIX_LEN) as u64;
    if body_len != actual {
        return Err(corrupt(
            8,
            &format!("snapshot body should be {body_len} bytes but the file holds {actual}"),
        ));
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = &bytes[PREFIX_LEN..];
    if crc32c::crc32c_append(crc32c::crc32c(&bytes[8..16]), body) != crc {
        return Err(corrupt(16, "snapshot checksum mismatch"));
    }
    let (wal_seq, meta, data): (u64, SnapshotMeta, Bytes) = postcard::from_bytes(body)
        .map_err(|e| corrupt(PREFIX_LEN, &format!("undecodable snapshot: {e}")))?;
    Ok((Snapshot::new(meta, data), wal_seq))
}

/// Writes `snapshot` into `snap_dir` durably: temporary file, fsync, rename, directory fsync.
///
/// The file is streamed from the snapshot's parts (same bytes as [`encode`]), so writing a
/// large state does not copy it in memory first.
pub(crate) fn write(snap_dir: &Path, snapshot: &Snapshot, wal_seq: u64) -> Result<PathBuf> {
    let meta = snapshot.meta();
    let path = snap_dir.join(file_name(meta.term(), meta.index()));
    let tmp = path.with_extension("snap.tmp");
    // postcard encodes a tuple as its fields in a row, and `Bytes` as a varint length and
    // the bytes: the body is head ‖ varint(len) ‖ data.
    let head = postcard::to_stdvec(&(wal_seq, meta)).expect("serialising into a Vec cannot fail");
    let data = snapshot.data();
    let mut varint = [0u8; 10];
    let varint = postcard::to_slice(&(data.len() as u64), &mut varint)
        .expect("a u64 varint fits in 10 bytes");
    let body_len = ((head.len() + varint.len() + data.len()) as u64).to_le_bytes();
    let mut crc = crc32c::crc32c(&body_len);
    for part in [&head[..], varint, data] {
        crc = crc32c::crc32c_append(crc, part);
    }
    let mut file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    let mut prefix = Vec::with_capacity(PREFIX_LEN + head.len() + varint.len());
    prefix.extend_from_slice(MAGIC);
    prefix.extend_from_slice(&body_len);
    prefix.extend_from_slice(&crc.to_le_bytes());
    prefix.extend_from_slice(&head);
    prefix.extend_from_slice(varint);
    file.write_all(&prefix)
        .and_then(|()| file.write_all(data))
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    sync_dir(snap_dir)?;
    Ok(path)
}

/// Reads and verifies the snapshot at `path`, checking that its name matches its content.
pub(crate) fn read(path: &Path) -> Result<(Snapshot, u64)> {
    let bytes = fs::read(path).map_err(|e| StorageError::io(path, e))?;
    let (snapshot, wal_seq) = decode(path, &bytes)?;
    let meta = snapshot.meta();
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name);
    if named != Some((meta.index(), meta.term())) {
        return Err(StorageError::corrupt(
            path,
            PREFIX_LEN as u64,
            format!(
                "file name does not match the snapshot inside (term {}, index {})",
                meta.term(),
                meta.index()
            ),
        ));
    }
    Ok((snapshot, wal_seq))
}

/// Lists the snapshot files in `snap_dir`, oldest first, as `((index, term), path)`.
pub(crate) fn list(snap_dir: &Path) -> Result<Vec<((Index, Term), PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(snap_dir).map_err(|e| StorageError::io(snap_dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(snap_dir, e))?;
        if let Some(key) = entry.file_name().to_str().and_then(parse_name) {
            found.push((key, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes leftover `.tmp` files of interrupted snapshot writes.
pub(crate) fn remove_temporaries(snap_dir: &Path) -> Result<()> {
    for entry in fs::read_dir(snap_dir).map_err(|e| StorageError::io(snap_dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(snap_dir, e))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Fsyncs a directory, making renames, creations and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::Membership;

    fn sample() -> Snapshot {
        Snapshot::new(
            SnapshotMeta::new(12, 3, Membership::new([1, 2, 3])),
            Bytes::from_static(b"state machine"),
        )
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample(), 4);
        assert_eq!(decode(Path::new("s"), &bytes).unwrap(), (sample(), 4));
        assert_eq!(parse_name(&file_name(3, 12)), Some((12, 3)));
    }

    #[test]
    fn the_streamed_file_is_the_encoded_file() {
        let dir = tempfile::tempdir().unwrap();
        for data in [
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
            Bytes::from(vec![1u8; 70_000]),
        ] {
            let snapshot = Snapshot::new(SnapshotMeta::new(12, 3, Membership::new([1, 2])), data);
            let path = write(dir.path(), &snapshot, 9).unwrap();
            assert_eq!(fs::read(&path).unwrap(), encode(&snapshot, 9));
            assert_eq!(read(&path).unwrap(), (snapshot, 9));
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = encode(&sample(), 4);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let err = decode(Path::new("s"), &damaged).unwrap_err();
            assert!(
                matches!(err, StorageError::Corrupt { .. }),
                "bit {bit}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(Path::new("g"), &bytes);
        }
    }
}
