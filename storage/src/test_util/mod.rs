//! Test-only helpers, compiled with the `test-util` feature (no production build enables it).
//!
//! - [`SimFs`]: an in-memory [`crate::Vfs`] that remembers what was synced and loses the rest
//!   at a simulated power cut (`sim_fs.rs`); give it to [`crate::Storage::open_in`].
//! - [`injected_bug`]: the durability bug `STORAGE_INJECT` injects into the storage, so a test
//!   that fails under it can say that the failure is expected.

mod sim_fs;

pub use sim_fs::{CutFile, CutReport, SECTOR, SimFile, SimFs};

use crate::faults::Faults;

/// The bug that `STORAGE_INJECT` injects (`skip-fsync` or `skip-dir-fsync`), or `None`.
/// Fails, naming the variable, on a value that names no bug.
pub fn injected_bug() -> crate::Result<Option<&'static str>> {
    Ok(Faults::from_env()?.name())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::ErrorKind;
    use std::path::Path;

    use super::*;
    use crate::vfs::{OpenMode, Vfs, VfsFile};

    fn fs_with_dir() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs
    }

    fn read(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
        fs.read(Path::new(path)).ok()
    }

    #[test]
    fn a_synced_write_survives_every_cut() {
        for seed in 0..50 {
            let fs = fs_with_dir();
            let file = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
            file.write_all_at(&[7; 3000], 0).unwrap();
            file.sync_data().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            let report = fs.power_cut(seed);
            assert_eq!(read(&fs, "/d/f"), Some(vec![7; 3000]), "seed {seed}");
            assert!(report.files().is_empty());
            assert!(report.forgotten_entries().is_empty());
        }
    }

    #[test]
    fn an_unsynced_write_is_dropped_kept_or_torn_at_a_sector_boundary() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let fs = fs_with_dir();
            let file = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
            file.write_all_at(&[1; 100], 0).unwrap();
            file.sync_all().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            // 2,000 bytes from offset 100 span the boundaries 512, 1024, 1536 and 2048.
            file.write_all_at(&[2; 2000], 100).unwrap();
            let report = fs.power_cut(seed);
            let data = read(&fs, "/d/f").unwrap();
            assert_eq!(data[..100], [1; 100], "seed {seed}: synced bytes changed");
            assert!(
                data[100..].iter().all(|b| *b == 2),
                "seed {seed}: foreign bytes"
            );
            let len = data.len() as u64;
            assert!(
                len == 100 || len == 2100 || (len.is_multiple_of(SECTOR) && len < 2100),
                "seed {seed}: the file ends at {len}, not at a sector boundary"
            );
            let cut = report.file(Path::new("/d/f")).unwrap();
            assert_eq!(cut.first_unsynced, 100);
            assert_eq!(cut.kept + cut.dropped + cut.torn, 1);
            outcomes.insert(len);
        }
        // Dropped, kept, and torn at each of the four boundaries.
        assert_eq!(outcomes, BTreeSet::from([100, 512, 1024, 1536, 2048, 2100]));
    }

    #[test]
    fn a_write_within_one_sector_is_never_torn() {
        for seed in 0..100 {
            let fs = fs_with_dir();
            let file = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            file.write_all_at(&[3; 400], 600).unwrap();
            let report = fs.power_cut(seed);
            let data = read(&fs, "/d/f").unwrap();
            assert!(data.is_empty() || data == [vec![0; 600], vec![3; 400]].concat());
            assert_eq!(report.files()[0].torn, 0);
        }
    }

    #[test]
    fn the_same_seed_replays_the_same_cut() {
        let run = |seed| {
            let fs = fs_with_dir();
            let file = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            for i in 0..20u8 {
                file.write_all_at(&[i; 700], u64::from(i) * 700).unwrap();
            }
            fs.power_cut(seed);
            read(&fs, "/d/f").unwrap()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn an_unsynced_rename_is_forgotten_unless_the_directory_was_synced() {
        for sync_dir in [false, true] {
            let fs = fs_with_dir();
            let file = fs.open(Path::new("/d/a.tmp"), OpenMode::CreateNew).unwrap();
            file.write_all_at(b"content", 0).unwrap();
            file.sync_all().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            fs.rename(Path::new("/d/a.tmp"), Path::new("/d/a")).unwrap();
            if sync_dir {
                fs.sync_dir(Path::new("/d")).unwrap();
            }
            let report = fs.power_cut(1);
            if sync_dir {
                assert_eq!(read(&fs, "/d/a").as_deref(), Some(&b"content"[..]));
                assert!(!fs.exists(Path::new("/d/a.tmp")));
                assert!(report.forgotten_entries().is_empty());
            } else {
                assert_eq!(read(&fs, "/d/a.tmp").as_deref(), Some(&b"content"[..]));
                assert!(!fs.exists(Path::new("/d/a")));
                assert_eq!(report.forgotten_entries().len(), 2);
            }
        }
    }

    #[test]
    fn creations_and_removals_need_a_directory_sync() {
        let fs = fs_with_dir();
        let old = fs.open(Path::new("/d/old"), OpenMode::CreateNew).unwrap();
        old.sync_all().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        let new = fs.open(Path::new("/d/new"), OpenMode::CreateNew).unwrap();
        new.write_all_at(b"synced, but its name is not", 0).unwrap();
        new.sync_all().unwrap();
        fs.remove_file(Path::new("/d/old")).unwrap();
        fs.create_dir(Path::new("/d/sub")).unwrap();
        fs.power_cut(0);
        assert!(!fs.exists(Path::new("/d/new")));
        assert!(fs.exists(Path::new("/d/old")));
        assert!(!fs.exists(Path::new("/d/sub")));

        // A directory whose own entry is not durable takes its synced contents with it.
        fs.create_dir(Path::new("/d/sub")).unwrap();
        let inner = fs.open(Path::new("/d/sub/f"), OpenMode::CreateNew).unwrap();
        inner.sync_all().unwrap();
        fs.sync_dir(Path::new("/d/sub")).unwrap();
        fs.power_cut(0);
        assert!(!fs.exists(Path::new("/d/sub")));
        fs.create_dir(Path::new("/d/sub")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        assert!(fs.read_dir(Path::new("/d/sub")).unwrap().is_empty());
    }

    #[test]
    fn the_chosen_call_and_every_later_one_fail_until_the_machine_restarts() {
        let fs = fs_with_dir();
        let file = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        fs.fail_after(2);
        file.write_all_at(b"first", 0).unwrap();
        assert!(file.write_all_at(b"second", 5).is_err());
        assert!(fs.is_down());
        assert!(fs.read(Path::new("/d/f")).is_err());
        assert_eq!(fs.calls(), 2);

        // A process restart keeps what the OS held; old handles are dead.
        fs.restart();
        assert!(!fs.is_down());
        assert_eq!(read(&fs, "/d/f").as_deref(), Some(&b"first"[..]));
        let err = file.write_all_at(b"late", 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);

        // The name was never synced: a power cut forgets the file.
        fs.power_cut(3);
        assert!(!fs.exists(Path::new("/d/f")));
    }

    #[test]
    fn open_modes_and_errors() {
        let fs = fs_with_dir();
        let path = Path::new("/d/f");
        assert_eq!(
            fs.open(path, OpenMode::Read).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let file = fs.open(path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"abc", 0).unwrap();
        assert_eq!(
            fs.open(path, OpenMode::CreateNew).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        let read_only = fs.open(path, OpenMode::Read).unwrap();
        assert!(read_only.write_all_at(b"x", 0).is_err());
        let mut buf = [0; 2];
        read_only.read_exact_at(&mut buf, 1).unwrap();
        assert_eq!(&buf, b"bc");
        assert!(read_only.read_exact_at(&mut buf, 2).is_err());
        fs.open(path, OpenMode::Truncate).unwrap();
        assert_eq!(fs.file_len(path).unwrap(), 0);
        assert!(fs.open(Path::new("relative"), OpenMode::CreateNew).is_err());
        assert_eq!(
            fs.create_dir(Path::new("/missing/d")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs.create_dir(Path::new("/d")).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    }
}
