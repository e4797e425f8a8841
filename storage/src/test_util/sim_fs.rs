//! [`SimFs`]: an in-memory file system that remembers what was synced, for power-cut tests.
//!
//! A real file system keeps every write until the power actually goes, so a storage that
//! forgot an fsync passes every test run on one (on tmpfs, fsync does nothing at all). This one
//! keeps, besides each file's current bytes, the bytes it had at its last sync and the writes
//! since; and, besides each directory's current entries, the entries it had at its last sync.
//! [`SimFs::power_cut`] then builds the state a machine would find after losing power:
//!
//! - each directory holds exactly the entries it had at its last [`Vfs::sync_dir`]: every
//!   create, rename and removal after that is forgotten (a directory whose own entry is
//!   forgotten takes its whole subtree with it; a file no durable entry names is gone);
//! - each file holds its bytes as of its last sync, then each later write or length change,
//!   in order, is dropped, kept, or — a write that spans a 512-byte boundary — torn: only the
//!   part before one such boundary is kept. The choices come from the seed, so a cut replays.
//!
//! A test picks the moment of the cut with [`SimFs::fail_after`]: that many file-system calls
//! from now, the call fails, as does every one after it, as if the machine had stopped in the
//! middle of whatever the storage was doing. [`SimFs::power_cut`] or, for a process crash
//! that loses nothing the OS already holds, [`SimFs::restart`] brings it back; either way
//! files opened before are dead handles, as they would be in a new process.
//!
//! Ideas from pebble's `vfs.MemFS` (`ResetToSyncedState`), FoundationDB's
//! `AsyncFileNonDurable` and TigerBeetle's storage simulator; paths must be absolute, `/`
//! exists from the start and is durable.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::vfs::{OpenMode, Vfs, VfsFile};

/// The sector size: a torn write keeps whole 512-byte sectors.
pub const SECTOR: u64 = 512;

/// An in-memory file system that loses unsynced data at a simulated power cut (see the module
/// docs). Clones share the same files.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

/// An open file of a [`SimFs`].
pub struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    boot: u64,
    writable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Default)]
struct Dir {
    entries: BTreeMap<OsString, Entry>,
    /// The entries as of the last sync of this directory.
    durable: BTreeMap<OsString, Entry>,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    /// The bytes as of the last sync of this file.
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<Change>,
}

enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct State {
    /// Incremented by every power cut and restart: older handles are dead.
    boot: u64,
    down: bool,
    /// File-system calls since the last `fail_after`.
    calls: u64,
    fail_at: Option<u64>,
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
}

/// What a [`SimFs::power_cut`] lost, for failure messages and for tests that need to know
/// where unsynced data was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    files: Vec<CutFile>,
    forgotten: Vec<PathBuf>,
}

/// One surviving file that had unsynced changes at a [`SimFs::power_cut`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutFile {
    /// Its path after the cut.
    pub path: PathBuf,
    /// The lowest offset an unsynced write or length change touched: bytes before it are
    /// exactly as synced.
    pub first_unsynced: u64,
    /// Unsynced changes kept whole.
    pub kept: usize,
    /// Unsynced changes dropped.
    pub dropped: usize,
    /// Unsynced writes torn at a sector boundary.
    pub torn: usize,
}

impl CutReport {
    /// The surviving files that had unsynced changes.
    pub fn files(&self) -> &[CutFile] {
        &self.files
    }

    /// The file at `path`, if it had unsynced changes.
    pub fn file(&self, path: &Path) -> Option<&CutFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Directory entries created, renamed or removed since their directory's last sync, and
    /// so forgotten (a forgotten directory counts once, whatever it held).
    pub fn forgotten_entries(&self) -> &[PathBuf] {
        &self.forgotten
    }
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} directory entries forgotten", self.forgotten.len())?;
        for path in self.forgotten.iter().take(8) {
            write!(f, " {}", path.display())?;
        }
        for file in &self.files {
            write!(
                f,
                "; {}: unsynced from byte {}, {} changes kept, {} dropped, {} torn",
                file.path.display(),
                file.first_unsynced,
                file.kept,
                file.dropped,
                file.torn
            )?;
        }
        Ok(())
    }
}

/// A small seeded generator (SplitMix64): the fates of unsynced writes must replay from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn error(kind: io::ErrorKind, what: impl fmt::Display) -> io::Error {
    io::Error::new(kind, what.to_string())
}

fn powered_off() -> io::Error {
    io::Error::other("simulated power cut: the machine is off")
}

/// Splits an absolute path into its parent directory and its name.
fn split(path: &Path) -> io::Result<(&Path, OsString)> {
    if !path.is_absolute() {
        return Err(error(
            io::ErrorKind::InvalidInput,
            format!("{}: SimFs paths must be absolute", path.display()),
        ));
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_os_string())),
        _ => Err(error(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file or directory name", path.display()),
        )),
    }
}

fn not_found(path: &Path) -> io::Error {
    error(io::ErrorKind::NotFound, path.display())
}

impl State {
    fn new() -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::from("/"), Dir::default());
        Self {
            dirs,
            ..Self::default()
        }
    }

    /// Counts a call; fails it if the machine is off or this is the call chosen to fail.
    fn call(&mut self) -> io::Result<()> {
        if self.down {
            return Err(powered_off());
        }
        self.calls += 1;
        if self.fail_at.is_some_and(|at| self.calls >= at) {
            self.down = true;
            return Err(powered_off());
        }
        Ok(())
    }

    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs.get(path).ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn lookup(&self, path: &Path) -> io::Result<Option<Entry>> {
        if path == Path::new("/") {
            return Ok(Some(Entry::Dir));
        }
        let (parent, name) = split(path)?;
        Ok(self.dir(parent)?.entries.get(&name).copied())
    }

    fn file(&self, path: &Path) -> io::Result<u64> {
        match self.lookup(path)? {
            Some(Entry::File(inode)) => Ok(inode),
            Some(Entry::Dir) => Err(error(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn inode(&mut self, inode: u64) -> &mut Inode {
        self.inodes.entry(inode).or_default()
    }
}

impl Inode {
    fn write(&mut self, bytes: &[u8], offset: u64) {
        apply_write(&mut self.data, bytes, offset);
        self.pending.push(Change::Write {
            offset,
            bytes: bytes.to_vec(),
        });
    }

    fn set_len(&mut self, len: u64) {
        self.data.resize(len as usize, 0);
        self.pending.push(Change::SetLen(len));
    }

    fn sync(&mut self) {
        self.durable.clone_from(&self.data);
        self.pending.clear();
    }
}

fn apply_write(data: &mut Vec<u8>, bytes: &[u8], offset: u64) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

impl SimFs {
    /// An empty file system holding only `/`.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as a power cut would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `calls`-th file-system call from now (counting from 1; every call of [`Vfs`] and
    /// [`VfsFile`] counts, reads included) fails, and so does every call after it, until
    /// [`SimFs::power_cut`] or [`SimFs::restart`]. Nothing of the failing call happens.
    pub fn fail_after(&self, calls: u64) {
        let mut state = self.lock();
        state.calls = 0;
        state.fail_at = Some(calls.max(1));
    }

    /// Whether the machine is off (a call failed as [`SimFs::fail_after`] asked).
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// File-system calls made since the last [`SimFs::fail_after`] (or the start).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Whether a file or directory exists at `path` now.
    pub fn exists(&self, path: &Path) -> bool {
        self.lock().lookup(path).ok().flatten().is_some()
    }

    /// A process crash and restart: everything written stays (the OS holds it), files opened
    /// before are dead handles, and the file system works again.
    pub fn restart(&self) {
        let mut state = self.lock();
        state.boot += 1;
        state.down = false;
        state.fail_at = None;
        state.calls = 0;
    }

    /// Cuts the power and turns it back on: directories keep the entries they had at their
    /// last sync, files their synced bytes plus each later change dropped, kept or torn, as
    /// `seed` decides (see the module docs). Files opened before are dead handles.
    pub fn power_cut(&self, seed: u64) -> CutReport {
        let mut state = self.lock();
        let mut rng = Rng(seed);
        let mut report = CutReport::default();

        // The namespace: walk from the root through durable entries only.
        let mut old_dirs = std::mem::take(&mut state.dirs);
        let mut dirs = BTreeMap::new();
        let mut names: BTreeMap<u64, PathBuf> = BTreeMap::new();
        let mut stack = vec![PathBuf::from("/")];
        while let Some(path) = stack.pop() {
            let Some(dir) = old_dirs.remove(&path) else {
                continue;
            };
            report.forgotten.extend(
                changed_entries(&dir)
                    .into_iter()
                    .map(|name| path.join(name)),
            );
            for (name, entry) in &dir.durable {
                match entry {
                    Entry::Dir => stack.push(path.join(name)),
                    Entry::File(inode) => {
                        names.entry(*inode).or_insert_with(|| path.join(name));
                    }
                }
            }
            dirs.insert(
                path,
                Dir {
                    entries: dir.durable.clone(),
                    durable: dir.durable,
                },
            );
        }
        state.dirs = dirs;

        // File contents, in inode order so that a seed replays whatever the names are.
        let inodes = std::mem::take(&mut state.inodes);
        let mut kept_inodes = BTreeMap::new();
        for (id, inode) in inodes {
            let Some(path) = names.get(&id) else {
                continue;
            };
            let mut data = inode.durable;
            if !inode.pending.is_empty() {
                let mut file = CutFile {
                    path: path.clone(),
                    first_unsynced: u64::MAX,
                    kept: 0,
                    dropped: 0,
                    torn: 0,
                };
                for change in inode.pending {
                    apply_change(&mut data, change, &mut rng, &mut file);
                }
                report.files.push(file);
            }
            kept_inodes.insert(
                id,
                Inode {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
        }
        state.inodes = kept_inodes;
        state.boot += 1;
        state.down = false;
        state.fail_at = None;
        state.calls = 0;
        report.files.sort_by(|a, b| a.path.cmp(&b.path));
        report
    }

    /// Runs one call of the file system: counts it, fails it if the machine is off.
    fn with<T>(&self, op: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.lock();
        state.call()?;
        op(&mut state)
    }
}

/// Names in `dir` whose entry differs from the durable one (created, removed or renamed since).
fn changed_entries(dir: &Dir) -> Vec<&OsString> {
    let names: BTreeSet<&OsString> = dir.entries.keys().chain(dir.durable.keys()).collect();
    names
        .into_iter()
        .filter(|name| dir.entries.get(*name) != dir.durable.get(*name))
        .collect()
}

/// Applies one unsynced change to `data` as the power cut decides: dropped, kept, or torn.
fn apply_change(data: &mut Vec<u8>, change: Change, rng: &mut Rng, file: &mut CutFile) {
    match change {
        Change::SetLen(len) => {
            file.first_unsynced = file.first_unsynced.min(len.min(data.len() as u64));
            if rng.below(2) == 0 {
                file.dropped += 1;
            } else {
                data.resize(len as usize, 0);
                file.kept += 1;
            }
        }
        Change::Write { offset, bytes } => {
            file.first_unsynced = file.first_unsynced.min(offset);
            let end = offset + bytes.len() as u64;
            // Sector boundaries strictly inside the write: where it can tear.
            let first_boundary = (offset / SECTOR + 1) * SECTOR;
            let boundaries = if first_boundary < end {
                (end - 1 - first_boundary) / SECTOR + 1
            } else {
                0
            };
            let fates = if boundaries > 0 { 3 } else { 2 };
            match rng.below(fates) {
                0 => file.dropped += 1,
                1 => {
                    apply_write(data, &bytes, offset);
                    file.kept += 1;
                }
                _ => {
                    let boundary = first_boundary + rng.below(boundaries) * SECTOR;
                    apply_write(data, &bytes[..(boundary - offset) as usize], offset);
                    file.torn += 1;
                }
            }
        }
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimFs")
            .field("boot", &state.boot)
            .field("down", &state.down)
            .field("calls", &state.calls)
            .field("dirs", &state.dirs.len())
            .field("files", &state.inodes.len())
            .finish()
    }
}

impl Vfs for SimFs {
    type File = SimFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        self.with(|state| {
            let existing = state.lookup(path)?;
            let inode = match (mode, existing) {
                (_, Some(Entry::Dir)) => {
                    return Err(error(
                        io::ErrorKind::IsADirectory,
                        format!("{}: is a directory", path.display()),
                    ));
                }
                (OpenMode::CreateNew, Some(_)) => {
                    return Err(error(io::ErrorKind::AlreadyExists, path.display()));
                }
                (OpenMode::Read | OpenMode::Write, None) => return Err(not_found(path)),
                (OpenMode::Read | OpenMode::Write, Some(Entry::File(inode))) => inode,
                (OpenMode::Truncate, Some(Entry::File(inode))) => {
                    state.inode(inode).set_len(0);
                    inode
                }
                (OpenMode::CreateNew | OpenMode::Truncate, None) => {
                    let (parent, name) = split(path)?;
                    let inode = state.next_inode;
                    state
                        .dir_mut(parent)?
                        .entries
                        .insert(name, Entry::File(inode));
                    state.next_inode += 1;
                    state.inodes.insert(inode, Inode::default());
                    inode
                }
            };
            Ok(SimFile {
                state: Arc::clone(&self.state),
                inode,
                boot: state.boot,
                writable: mode != OpenMode::Read,
            })
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.with(|state| {
            let inode = state.file(path)?;
            Ok(state.inode(inode).data.clone())
        })
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.with(|state| {
            let inode = state.file(path)?;
            Ok(state.inode(inode).data.len() as u64)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|state| {
            let inode = state.file(from)?;
            if state.lookup(to)? == Some(Entry::Dir) {
                return Err(error(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", to.display()),
                ));
            }
            let (to_parent, to_name) = split(to)?;
            state.dir(to_parent)?;
            let (from_parent, from_name) = split(from)?;
            state.dir_mut(from_parent)?.entries.remove(&from_name);
            state
                .dir_mut(to_parent)?
                .entries
                .insert(to_name, Entry::File(inode));
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.with(|state| {
            state.file(path)?;
            let (parent, name) = split(path)?;
            state.dir_mut(parent)?.entries.remove(&name);
            Ok(())
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|state| {
            if state.lookup(path)?.is_some() {
                return Err(error(io::ErrorKind::AlreadyExists, path.display()));
            }
            let (parent, name) = split(path)?;
            state.dir_mut(parent)?.entries.insert(name, Entry::Dir);
            // A directory forgotten at an earlier cut may have left its old state behind.
            state.dirs.insert(path.to_path_buf(), Dir::default());
            Ok(())
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.with(|state| {
            Ok(state
                .dir(path)?
                .entries
                .keys()
                .map(|name| path.join(name))
                .collect())
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|state| {
            let dir = state.dir_mut(path)?;
            dir.durable.clone_from(&dir.entries);
            Ok(())
        })
    }
}

impl SimFile {
    fn with<T>(&self, write: bool, op: impl FnOnce(&mut Inode) -> T) -> io::Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.call()?;
        if state.boot != self.boot {
            return Err(error(
                io::ErrorKind::BrokenPipe,
                "a file opened before a power cut or restart",
            ));
        }
        if write && !self.writable {
            return Err(error(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        Ok(op(state.inode(self.inode)))
    }
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("inode", &self.inode)
            .field("boot", &self.boot)
            .field("writable", &self.writable)
            .finish()
    }
}

impl VfsFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(false, |inode| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            match inode
                .data
                .get(start..)
                .and_then(|rest| rest.get(..buf.len()))
            {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(error(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                )),
            }
        })?
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(true, |inode| inode.write(buf, offset))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(true, |inode| inode.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(false, Inode::sync)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.with(false, Inode::sync)
    }
}
