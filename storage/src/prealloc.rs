//! Zero-filled spare segment files, prepared ahead of time on a background thread.
//!
//! An fsync after appending to a file must also commit the file's new size and its new blocks
//! (a journal commit); an fsync after overwriting blocks that already exist does not. On this
//! machine's disk, `dd` with `O_DSYNC` writes 77 KiB blocks into an existing zero-filled file
//! about twice as fast as at the end of a growing one. So new segments are made from spares that
//! already have their full size on disk; the zeros past the last record read as the end of the
//! log (see `segment.rs`). Preparing a spare costs one sequential write of the segment size,
//! done off the write path; when no spare is ready at a roll, a plain file is used.
//!
//! With the `test-util` feature a test can have spares prepared on the writing thread instead
//! ([`crate::Options::prepare_spares_inline`]): the same files and file operations, in an
//! order that a seed reproduces.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use crate::vfs::{OpenMode, Vfs, VfsFile};

/// A zero-filled, synced file in the WAL directory, ready to become a segment.
#[derive(Debug)]
pub(crate) struct Spare<F: Vfs> {
    pub(crate) path: PathBuf,
    pub(crate) file: F::File,
}

/// Keeps one spare ready.
#[derive(Debug)]
pub(crate) enum Preallocator<F: Vfs> {
    /// Spares prepared by a thread of their own.
    Background {
        ready: Receiver<Spare<F>>,
        requests: Option<Sender<()>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
        fs: F,
    },
    /// Spares prepared on the caller's thread, each as soon as the previous one is taken.
    Inline {
        fs: F,
        dir: PathBuf,
        size: u64,
        ready: Option<Spare<F>>,
    },
}

impl<F: Vfs> Preallocator<F> {
    /// Starts preparing the first spare of `size` bytes in `wal_dir`.
    pub(crate) fn start(fs: &F, wal_dir: &Path, size: u64) -> Self {
        let (requests, wanted) = mpsc::channel::<()>();
        let (done, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let dir = wal_dir.to_path_buf();
        let thread_fs = fs.clone();
        let thread = std::thread::Builder::new()
            .name("storage-prealloc".into())
            .spawn(move || {
                while wanted.recv().is_ok() {
                    match prepare(&thread_fs, &dir, size, &thread_stop) {
                        Ok(Some(spare)) => {
                            if let Err(mpsc::SendError(spare)) = done.send(spare) {
                                let _ = thread_fs.remove_file(&spare.path);
                            }
                        }
                        Ok(None) => return,
                        Err(error) => {
                            tracing::warn!(%error, "could not prepare a spare WAL segment");
                        }
                    }
                }
            })
            .expect("spawning the preallocation thread");
        let _ = requests.send(());
        Self::Background {
            ready,
            requests: Some(requests),
            stop,
            thread: Some(thread),
            fs: fs.clone(),
        }
    }

    /// Prepares the first spare now, on this thread, and each next one when one is taken.
    pub(crate) fn start_inline(fs: &F, wal_dir: &Path, size: u64) -> Self {
        let mut preallocator = Self::Inline {
            fs: fs.clone(),
            dir: wal_dir.to_path_buf(),
            size,
            ready: None,
        };
        preallocator.refill();
        preallocator
    }

    fn refill(&mut self) {
        if let Self::Inline {
            fs,
            dir,
            size,
            ready,
        } = self
        {
            match prepare(fs, dir, *size, &AtomicBool::new(false)) {
                Ok(spare) => *ready = spare,
                Err(error) => tracing::warn!(%error, "could not prepare a spare WAL segment"),
            }
        }
    }

    /// A ready spare, if there is one (and the next one is then requested).
    pub(crate) fn take(&mut self) -> Option<Spare<F>> {
        match self {
            Self::Background {
                ready, requests, ..
            } => {
                let spare = ready.try_recv().ok()?;
                if let Some(requests) = requests {
                    let _ = requests.send(());
                }
                Some(spare)
            }
            Self::Inline { ready, .. } => {
                let spare = ready.take()?;
                self.refill();
                Some(spare)
            }
        }
    }
}

impl<F: Vfs> Drop for Preallocator<F> {
    fn drop(&mut self) {
        match self {
            Self::Background {
                ready,
                requests,
                stop,
                thread,
                fs,
            } => {
                stop.store(true, Ordering::Relaxed);
                drop(requests.take());
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
                for spare in ready.try_iter() {
                    let _ = fs.remove_file(&spare.path);
                }
            }
            Self::Inline { fs, ready, .. } => {
                if let Some(spare) = ready.take() {
                    let _ = fs.remove_file(&spare.path);
                }
            }
        }
    }
}

/// Writes a zero-filled, synced spare; `None` if asked to stop meanwhile.
fn prepare<F: Vfs>(
    fs: &F,
    dir: &Path,
    size: u64,
    stop: &AtomicBool,
) -> std::io::Result<Option<Spare<F>>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "spare-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let file = fs.open(&path, OpenMode::CreateNew)?;
    let zeros = vec![0u8; (1 << 20).min(size) as usize];
    let mut written = 0;
    while written < size {
        if stop.load(Ordering::Relaxed) {
            drop(file);
            fs.remove_file(&path)?;
            return Ok(None);
        }
        let n = (size - written).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], written)?;
        written += n as u64;
    }
    file.sync_all()?;
    Ok(Some(Spare { path, file }))
}
