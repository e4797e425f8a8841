//! The torn-write failpoint ([`Options::torn_write_at`]) really leaves a torn group, and
//! recovery brings the store back to the last complete one.
//!
//! The failpoint aborts the process, as a crash would, so each case runs the writer in a
//! child process: this test executable again, running only
//! `child_writes_until_the_failpoint_aborts` with the directory and the persist to tear in its
//! environment. The parent checks the child died of SIGABRT and then recovers the directory.
//! (Testing the abort itself, rather than an error path that only tests take, keeps the
//! failpoint kvd uses under test.)

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::{Model, entries, scratch, segments, snapshot};
use raft::{Entry, EntryPayload, HardState, Snapshot};
use storage::{Options, Storage};

const CHILD_DIR: &str = "STORAGE_TORN_WRITE_DIR";
const CHILD_PERSIST: &str = "STORAGE_TORN_WRITE_AT";
const SIGABRT: i32 = 6;

/// One persist: (snapshot, entries, hard state).
type Step = (Option<Snapshot>, Vec<Entry>, Option<HardState>);

/// Entries of 4 KiB each: 200 of them span several records (records hold about 256 KiB) and
/// many write buffers of the child (64 KiB), so the tear must hold the whole group back.
fn large_entries(term: u64, first: u64, count: u64) -> Vec<Entry> {
    (first..first + count)
        .map(|i| {
            let payload = Bytes::from(vec![(i % 251) as u8; 4096]);
            Entry::new(term, i, EntryPayload::Command(payload))
        })
        .collect()
}

/// The persist of [`workload`] holding [`large_entries`] (counting from 1).
const LARGE_STEP: usize = 4;

fn workload() -> Vec<Step> {
    vec![
        (
            Some(snapshot(0, 0)),
            entries(1, 1, 3),
            Some(HardState::new(1, Some(1), 0)),
        ),
        (None, entries(1, 4, 2), None),
        (None, Vec::new(), Some(HardState::new(2, Some(2), 3))),
        (
            None,
            large_entries(2, 6, 200),
            Some(HardState::new(2, Some(2), 5)),
        ),
        (None, entries(3, 5, 4), Some(HardState::new(3, None, 4))), // truncates 5..
        (None, entries(3, 9, 1), None),
    ]
}

fn options() -> Options {
    Options::new().write_buffer(64 << 10)
}

/// Runs the workload in a child process with the failpoint armed at persist `n`.
fn run_child(dir: &Path, n: usize) {
    let status = Command::new(std::env::current_exe().expect("test executable"))
        .args([
            "--exact",
            "child_writes_until_the_failpoint_aborts",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_PERSIST, n.to_string())
        // A core file, if the system writes one, lands in the scratch directory.
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the child");
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "persist {n}: the child must abort at the failpoint ({status})"
    );
}

#[test]
fn torn_write_failpoint_recovers_to_the_last_complete_group() {
    let steps = workload();
    // The first persist stores a snapshot, whose file (and term) is made durable before the
    // group's records, so tearing it leaves more than "nothing": start with the second.
    for n in 2..=steps.len() {
        let dir = scratch();
        run_child(dir.path(), n);
        let segment = segments(dir.path()).pop().expect("a segment");
        let bytes = fs::read(&segment).unwrap();
        let written_end = bytes.iter().rposition(|b| *b != 0).map_or(0, |at| at + 1) as u64;
        let mut before = Model::default();
        for (snap, batch, hard_state) in &steps[..n - 1] {
            before.persist(snap.as_ref(), batch, hard_state.as_ref());
        }
        let (storage, recovered) = Storage::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("persist {n} torn: recovery failed: {e}"));
        assert!(
            before.matches(&recovered),
            "persist {n} torn: recovered {:?}, expected the state after persist {}: {before:?}",
            recovered.restore_state(),
            n - 1
        );
        let cut = recovered
            .report()
            .cut()
            .unwrap_or_else(|| panic!("persist {n} torn: no cut reported"));
        assert_eq!(cut.path(), segment);
        let torn = written_end - cut.offset();
        assert!(
            torn > 0,
            "persist {n}: nothing of the torn group reached the file"
        );
        if n == LARGE_STEP {
            // About half of the group, even though it spans many write buffers.
            let payload = 200 * 4096;
            assert!(
                (payload * 4 / 10..payload * 6 / 10).contains(&torn),
                "persist {n}: {torn} bytes of a group of about {payload} reached the file"
            );
        }
        drop(storage);

        // The store is usable afterwards: what is written now survives a reopen.
        let (mut storage, _) = Storage::open(dir.path(), options()).unwrap();
        let next = before.last_index() + 1;
        let hard_state = HardState::new(9, Some(1), 0);
        let more = entries(9, next, 2);
        storage
            .persist_parts(None, &more, Some(&hard_state))
            .unwrap();
        storage.sync().unwrap();
        drop(storage);
        before.persist(None, &more, Some(&hard_state));
        let (_, recovered) = Storage::open(dir.path(), options()).unwrap();
        assert!(before.matches(&recovered), "persist {n}: after a new write");
        assert!(recovered.report().cut().is_none());
    }
}

/// The child side of the test above; does nothing unless run by it.
#[test]
#[ignore = "run in a child process by torn_write_failpoint_recovers_to_the_last_complete_group"]
fn child_writes_until_the_failpoint_aborts() {
    let (Some(dir), Some(n)) = (
        std::env::var_os(CHILD_DIR),
        std::env::var(CHILD_PERSIST)
            .ok()
            .and_then(|n| n.parse().ok()),
    ) else {
        return;
    };
    let (mut storage, _) = Storage::open(&dir, options().torn_write_at(Some(n))).unwrap();
    for (i, (snap, batch, hard_state)) in workload().iter().enumerate() {
        storage
            .persist_parts(snap.as_ref(), batch, hard_state.as_ref())
            .unwrap();
        // Some persists stay in the buffer: the failpoint writes them out before tearing.
        if i % 2 == 1 {
            storage.sync().unwrap();
        }
    }
    // The failpoint did not fire: the parent sees a normal exit and fails.
}
