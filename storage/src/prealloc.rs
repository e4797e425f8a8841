//! Zero-filled spare segment files, prepared ahead of time on a background thread.
//!
//! An fsync after appending to a file must also commit the file's new size and its new blocks
//! (a journal commit); an fsync after overwriting blocks that already exist does not. On this
//! machine's disk, `dd` with `O_DSYNC` writes 77 KiB blocks into an existing zero-filled file
//! about twice as fast as at the end of a growing one. So new segments are made from spares that
//! already have their full size on disk; the zeros past the last record read as the end of the
//! log (see `segment.rs`). Preparing a spare costs one sequential write of the segment size,
//! done off the write path; when no spare is ready at a roll, a plain file is used.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// A zero-filled, synced file in the WAL directory, ready to become a segment.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

/// Keeps one spare ready.
#[derive(Debug)]
pub(crate) struct Preallocator {
    ready: Receiver<Spare>,
    requests: Option<Sender<()>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Preallocator {
    /// Starts preparing the first spare of `size` bytes in `wal_dir`.
    pub(crate) fn start(wal_dir: &Path, size: u64) -> Self {
        let (requests, wanted) = mpsc::channel::<()>();
        let (done, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let dir = wal_dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("storage-prealloc".into())
            .spawn(move || {
                while wanted.recv().is_ok() {
                    match prepare(&dir, size, &thread_stop) {
                        Ok(Some(spare)) => {
                            if let Err(mpsc::SendError(spare)) = done.send(spare) {
                                let _ = std::fs::remove_file(spare.path);
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
        Self {
            ready,
            requests: Some(requests),
            stop,
            thread: Some(thread),
        }
    }

    /// A ready spare, if there is one (and the next one is then requested).
    pub(crate) fn take(&mut self) -> Option<Spare> {
        let spare = self.ready.try_recv().ok()?;
        if let Some(requests) = &self.requests {
            let _ = requests.send(());
        }
        Some(spare)
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for spare in self.ready.try_iter() {
            let _ = std::fs::remove_file(spare.path);
        }
    }
}

/// Writes a zero-filled, synced spare; `None` if asked to stop meanwhile.
fn prepare(dir: &Path, size: u64, stop: &AtomicBool) -> std::io::Result<Option<Spare>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "spare-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        if stop.load(Ordering::Relaxed) {
            drop(file);
            std::fs::remove_file(&path)?;
            return Ok(None);
        }
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(Some(Spare { path, file }))
}
