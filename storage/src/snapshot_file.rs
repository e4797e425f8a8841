//! Snapshot files: `snap/<term>-<index>.snap`, checksummed, written atomically.
//!
//! ```text
//! offset  size  field
//!      0     8  magic      "KVSNAP\0\x01"
//!      8     8  body_len   length of the body (little endian)
//!     16     4  crc        CRC32C of body_len ‖ body
//!     20     n  body       postcard of (wal_seq, SnapshotMeta), then the data to the end
//! ```
//!
//! (Version 1 files, magic `KVSNAP\0\x01`, hold postcard of (wal_seq, SnapshotMeta, data)
//! as the body; they are still read. Version 2 puts the data last and unprefixed so that it
//! can be streamed to the file without knowing its length in advance.)
//!
//! `wal_seq` is the WAL segment that was active when the snapshot was saved: recovery checks
//! that the WAL still reaches that far, which catches a lost final segment that no record could
//! reveal. Writing goes to `<name>.tmp`, which is fsynced, renamed over the final name, and
//! then the directory is fsynced, so a crash leaves either the old set of snapshots or the new
//! one (plus, perhaps, a stale `.tmp` that the next start removes).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft::{Index, Snapshot, SnapshotMeta, Term};

use crate::error::{Result, StorageError};
use crate::faults::Faults;
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

const MAGIC_V1: &[u8; 8] = b"KVSNAP\0\x01";
const MAGIC: &[u8; 8] = b"KVSNAP\0\x02";
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
    let mut body = postcard::to_stdvec(&(wal_seq, snapshot.meta()))
        .expect("serialising into a Vec cannot fail");
    body.extend_from_slice(snapshot.data());
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
pub(crate) fn decode(path: &Path, bytes: &Bytes) -> Result<(Snapshot, u64)> {
    let corrupt = |offset: usize, reason: &str| StorageError::corrupt(path, offset as u64, reason);
    if bytes.len() < PREFIX_LEN {
        return Err(corrupt(
            bytes.len(),
            "snapshot file shorter than its header",
        ));
    }
    let v1 = &bytes[..8] == MAGIC_V1;
    if !v1 && &bytes[..8] != MAGIC {
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
    let undecodable =
        |e: postcard::Error| corrupt(PREFIX_LEN, &format!("undecodable snapshot: {e}"));
    if v1 {
        let (wal_seq, meta, data): (u64, SnapshotMeta, Bytes) =
            postcard::from_bytes(body).map_err(undecodable)?;
        return Ok((Snapshot::new(meta, data), wal_seq));
    }
    let ((wal_seq, meta), rest): ((u64, SnapshotMeta), &[u8]) =
        postcard::take_from_bytes(body).map_err(undecodable)?;
    let data = bytes.slice(bytes.len() - rest.len()..);
    Ok((Snapshot::new(meta, data), wal_seq))
}

/// Writes `snapshot` into `snap_dir` durably: temporary file, fsync, rename, directory fsync.
pub(crate) fn write<F: Vfs>(
    fs: &F,
    faults: Faults,
    snap_dir: &Path,
    snapshot: &Snapshot,
    wal_seq: u64,
) -> Result<PathBuf> {
    write_with(fs, faults, snap_dir, snapshot.meta(), wal_seq, |out| {
        out.write_all(snapshot.data())
    })
}

/// Writes a snapshot whose data `source` streams into the file, durably (temporary file,
/// fsync, rename, directory fsync). The state is never copied whole in memory.
pub(crate) fn write_with<F: Vfs>(
    fs: &F,
    faults: Faults,
    snap_dir: &Path,
    meta: &SnapshotMeta,
    wal_seq: u64,
    source: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<PathBuf> {
    let path = snap_dir.join(file_name(meta.term(), meta.index()));
    let tmp = path.with_extension("snap.tmp");
    let io_err = |e| StorageError::io(&tmp, e);
    let file = vfs::open(fs, &tmp, OpenMode::Truncate)?;
    // The prefix (zeros until the end) is filled in once the body's length and checksum are
    // known.
    let head = postcard::to_stdvec(&(wal_seq, meta)).expect("serialising into a Vec cannot fail");
    let mut out = io::BufWriter::with_capacity(
        1 << 20,
        Summing {
            file: &file,
            at: PREFIX_LEN as u64,
            crc: 0,
            len: 0,
            unsynced: 0,
        },
    );
    out.write_all(&head).map_err(io_err)?;
    source(&mut out).map_err(io_err)?;
    let body = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    let (crc_body, body_len) = (body.crc, body.len);
    let body_len = body_len.to_le_bytes();
    // CRC32C of body_len ‖ body, from the two parts' checksums.
    let crc = crc32c::crc32c_combine(crc32c::crc32c(&body_len), crc_body, body.len as usize);
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    prefix.extend_from_slice(MAGIC);
    prefix.extend_from_slice(&body_len);
    prefix.extend_from_slice(&crc.to_le_bytes());
    file.write_all_at(&prefix, 0)
        .and_then(|()| file.sync_all())
        .map_err(io_err)?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io(&path, e))?;
    vfs::sync_dir_after_create(fs, snap_dir, faults)?;
    Ok(path)
}

/// Bytes written to a snapshot file between two flushes to disk. A large snapshot written
/// in one go and fsynced at the end floods the disk queue with hundreds of megabytes; the
/// log's small fsyncs then wait behind it for seconds (long enough for a leader to lose its
/// followers). Flushing as it goes keeps that queue short.
const SYNC_EVERY: u64 = 8 << 20;

/// Appends writes to the file from offset `at`, keeping their CRC32C and length, and flushing
/// to disk every [`SYNC_EVERY`] bytes.
struct Summing<'a, F: VfsFile> {
    file: &'a F,
    at: u64,
    crc: u32,
    len: u64,
    unsynced: u64,
}

impl<F: VfsFile> Write for Summing<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.at)?;
        self.at += buf.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.len += buf.len() as u64;
        self.unsynced += buf.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads and verifies the snapshot at `path`, checking that its name matches its content.
pub(crate) fn read<F: Vfs>(fs: &F, path: &Path) -> Result<(Snapshot, u64)> {
    let bytes = Bytes::from(vfs::read(fs, path)?);
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
pub(crate) fn list<F: Vfs>(fs: &F, snap_dir: &Path) -> Result<Vec<((Index, Term), PathBuf)>> {
    let mut found: Vec<_> = vfs::read_dir(fs, snap_dir)?
        .into_iter()
        .filter_map(|path| {
            let key = path.file_name()?.to_str().and_then(parse_name)?;
            Some((key, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Removes leftover `.tmp` files of interrupted writes (snapshots, spare segments) in `dir`.
pub(crate) fn remove_temporaries<F: Vfs>(fs: &F, dir: &Path) -> Result<()> {
    for path in vfs::read_dir(fs, dir)? {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            vfs::remove_file(fs, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::StdFs;
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
        assert_eq!(
            decode(Path::new("s"), &Bytes::from(bytes.clone())).unwrap(),
            (sample(), 4)
        );
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
            let path = write(&StdFs, Faults::default(), dir.path(), &snapshot, 9).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), encode(&snapshot, 9));
            assert_eq!(read(&StdFs, &path).unwrap(), (snapshot, 9));
        }
    }

    #[test]
    fn version_1_files_are_still_read() {
        let snapshot = sample();
        let body = postcard::to_stdvec(&(4u64, snapshot.meta(), snapshot.data())).unwrap();
        let body_len = (body.len() as u64).to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&body_len), &body);
        let mut file = MAGIC_V1.to_vec();
        file.extend_from_slice(&body_len);
        file.extend_from_slice(&crc.to_le_bytes());
        file.extend_from_slice(&body);
        assert_eq!(
            decode(Path::new("v1"), &Bytes::from(file)).unwrap(),
            (snapshot, 4)
        );
    }

    #[test]
    fn a_streamed_source_is_checksummed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta::new(40, 2, Membership::new([1]));
        let path = write_with(&StdFs, Faults::default(), dir.path(), &meta, 1, |out| {
            for i in 0..3000u32 {
                out.write_all(&[(i % 251) as u8; 1000])?;
            }
            Ok(())
        })
        .unwrap();
        let (snapshot, _) = read(&StdFs, &path).unwrap();
        assert_eq!(snapshot.meta(), &meta);
        assert_eq!(snapshot.data().len(), 3_000_000);
        assert!(snapshot.data()[..1000].iter().all(|b| *b == 0));
        assert!(
            snapshot.data()[2_999_000..]
                .iter()
                .all(|b| *b == (2999 % 251) as u8)
        );
        // A failing source leaves no snapshot behind.
        let failed = write_with(
            &StdFs,
            Faults::default(),
            dir.path(),
            &SnapshotMeta::new(50, 2, Membership::new([1])),
            1,
            |_| Err(io::Error::other("state unavailable")),
        );
        assert!(failed.is_err());
        assert_eq!(list(&StdFs, dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = encode(&sample(), 4);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let err = decode(Path::new("s"), &Bytes::from(damaged)).unwrap_err();
            assert!(
                matches!(err, StorageError::Corrupt { .. }),
                "bit {bit}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(Path::new("g"), &Bytes::from(bytes));
        }
    }
}
