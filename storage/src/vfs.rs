//! [`Vfs`]: the one seam between the storage and the file system.
//!
//! Every file operation of this crate — opening, reading, writing, truncating, syncing files;
//! renaming, removing, listing and creating directory entries; syncing directories — goes
//! through a [`Vfs`]. Production uses [`StdFs`], a thin, statically dispatched layer over
//! `std::fs` that compiles to the same calls as before. Tests can put a file system in its
//! place that remembers what was synced and loses the rest at a simulated power cut (the
//! `test-util` feature's `test_util::SimFs`): a storage that forgot an fsync then fails its
//! tests, which it never would on a real file system that keeps every write until the power
//! actually goes.
//!
//! The operations are the few the storage needs, with positional file IO only (no file
//! cursor), so a simulated file is a byte vector and a list of writes not yet synced.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::faults::Faults;

/// How [`Vfs::open`] opens a file. Every mode but [`OpenMode::Read`] allows writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Create a new, empty file; fails if the name exists.
    CreateNew,
    /// Create the file, or truncate it to empty if it exists.
    Truncate,
}

/// A file system: files and directories under paths. The storage calls nothing else.
///
/// Durability follows POSIX: written bytes are durable once the file is synced
/// ([`VfsFile::sync_data`] / [`VfsFile::sync_all`]); a new, renamed or removed directory
/// entry once its directory is synced ([`Vfs::sync_dir`]).
pub trait Vfs: Clone + Send + Sync + fmt::Debug + 'static {
    /// An open file.
    type File: VfsFile;

    /// Opens the file at `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;

    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// The length of the file at `path`.
    fn file_len(&self, path: &Path) -> io::Result<u64>;

    /// Renames `from` to `to`, replacing a file named `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Creates the directory `path`; its parent must exist. Fails with
    /// [`io::ErrorKind::AlreadyExists`] if the name exists and [`io::ErrorKind::NotFound`] if
    /// the parent does not.
    fn create_dir(&self, path: &Path) -> io::Result<()>;

    /// The paths of the entries of directory `path`, in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;

    /// Makes the entries of directory `path` durable: files created in it, renamed into or
    /// out of it, removed from it.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open file of a [`Vfs`], read and written at explicit offsets.
pub trait VfsFile: Send + Sync + fmt::Debug + 'static {
    /// Fills `buf` from `offset`; fails if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset` (the file grows if needed; a gap reads as zeros).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's data durable, and its length when that is needed to read the data
    /// (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
}

/// The real file system, through `std::fs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdFs;

impl Vfs for StdFs {
    type File = File;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::Write => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::Truncate => options.read(true).write(true).create(true).truncate(true),
        };
        options.open(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        std::fs::metadata(path).map(|m| m.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

impl VfsFile for File {
    #[inline]
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    #[inline]
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    #[inline]
    fn set_len(&self, len: u64) -> io::Result<()> {
        Self::set_len(self, len)
    }

    #[inline]
    fn sync_data(&self) -> io::Result<()> {
        Self::sync_data(self)
    }

    #[inline]
    fn sync_all(&self) -> io::Result<()> {
        Self::sync_all(self)
    }
}

/// Syncs directory `dir` (see [`Vfs::sync_dir`]).
pub(crate) fn sync_dir<F: Vfs>(fs: &F, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}

/// Syncs `dir` after a file in it was created or renamed: the one directory fsync the
/// `skip-dir-fsync` fault leaves out.
pub(crate) fn sync_dir_after_create<F: Vfs>(fs: &F, dir: &Path, faults: Faults) -> Result<()> {
    if faults.skip_dir_fsync() {
        return Ok(());
    }
    sync_dir(fs, dir)
}

/// Creates directory `dir` and any missing parents, durably: the parent of every directory
/// created here is synced, or a power cut could forget the new directory and everything in it,
/// the `wal` directory of a fresh store with all it acknowledged included.
pub(crate) fn create_dir_all<F: Vfs>(fs: &F, dir: &Path, faults: Faults) -> Result<()> {
    // A relative name without a parent lives in the working directory.
    let parent = dir.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    match fs.create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent.ok_or_else(|| StorageError::io(dir, e))?;
            create_dir_all(fs, parent, faults)?;
            match fs.create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(StorageError::io(dir, e)),
            }
        }
        Err(e) => return Err(StorageError::io(dir, e)),
    }
    match parent {
        Some(parent) => sync_dir_after_create(fs, parent, faults),
        None => Ok(()),
    }
}

/// Reads a whole file, mapping the error to the path.
pub(crate) fn read<F: Vfs>(fs: &F, path: &Path) -> Result<Vec<u8>> {
    fs.read(path).map_err(|e| StorageError::io(path, e))
}

/// Removes a file, mapping the error to the path.
pub(crate) fn remove_file<F: Vfs>(fs: &F, path: &Path) -> Result<()> {
    fs.remove_file(path).map_err(|e| StorageError::io(path, e))
}

/// Lists a directory, mapping the error to the path.
pub(crate) fn read_dir<F: Vfs>(fs: &F, dir: &Path) -> Result<Vec<PathBuf>> {
    fs.read_dir(dir).map_err(|e| StorageError::io(dir, e))
}

/// Opens a file, mapping the error to the path.
pub(crate) fn open<F: Vfs>(fs: &F, path: &Path, mode: OpenMode) -> Result<F::File> {
    fs.open(path, mode).map_err(|e| StorageError::io(path, e))
}
