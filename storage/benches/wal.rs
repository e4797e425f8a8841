//! WAL benchmarks: append + fsync for 1, 16 and 256 entries of 256 bytes per batch, group
//! commit through the persister under load, and recovery of 1,000,000 entries with and without
//! a snapshot.
//!
//! Run with `cargo bench -p storage --bench wal`. Files go to `target/storage-bench` (the real
//! disk, not tmpfs). Besides criterion's timings, each group prints entries/s, fsyncs/s,
//! entries per fsync and the index's bytes per entry.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant as Clock};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft::{
    Config, Entry, EntryPayload, Instant, Membership, Node, Output, Snapshot, SnapshotMeta,
};
use storage::{Event, Job, Options, Persister, Storage};

const ENTRY_BYTES: usize = 256;

fn bench_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/storage-bench")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn batch(first: u64, count: u64, payload: &Bytes) -> Vec<Entry> {
    (first..first + count)
        .map(|index| Entry::new(1, index, EntryPayload::Command(payload.clone())))
        .collect()
}

fn append_fsync(c: &mut Criterion) {
    let payload = Bytes::from(vec![0xab; ENTRY_BYTES]);
    let mut group = c.benchmark_group("append_fsync");
    for per_batch in [1u64, 16, 256] {
        let dir = bench_dir(&format!("append-{per_batch}"));
        let (mut storage, _) = Storage::open(&dir, Options::new()).unwrap();
        let mut next = 1;
        let (mut entries, mut time) = (0u64, Duration::ZERO);
        let fsyncs_before = storage.stats().group_commits();
        group.throughput(Throughput::Elements(per_batch));
        group.bench_function(BenchmarkId::from_parameter(per_batch), |b| {
            b.iter_custom(|iters| {
                let start = Clock::now();
                for _ in 0..iters {
                    let new = batch(next, per_batch, &payload);
                    next += per_batch;
                    storage.persist_parts(None, &new, None).unwrap();
                    storage.sync().unwrap();
                }
                let elapsed = start.elapsed();
                entries += iters * per_batch;
                time += elapsed;
                elapsed
            });
        });
        let fsyncs = storage.stats().group_commits() - fsyncs_before;
        eprintln!(
            "append_fsync/{per_batch}: {:.0} entries/s, {:.0} fsyncs/s, {:.1} entries per fsync, \
             index {:.1} bytes/entry",
            entries as f64 / time.as_secs_f64(),
            fsyncs as f64 / time.as_secs_f64(),
            entries as f64 / fsyncs as f64,
            storage.index_bytes() as f64 / (next - 1) as f64,
        );
        drop(storage);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// Persists as a leader emits them (one per proposal, 256-byte commands), submitted as fast as
/// they come: the persister batches whatever queues up during each fsync.
fn persister_group_commit(c: &mut Criterion) {
    const PROPOSALS: usize = 20_000;
    let mut group = c.benchmark_group("persister");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PROPOSALS as u64));
    let (mut entries, mut fsyncs, mut time) = (0u64, 0u64, Duration::ZERO);
    group.bench_function("one_entry_persists", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = bench_dir("persister");
                let (storage, _) = Storage::open(&dir, Options::new()).unwrap();
                let (sender, events) = mpsc::channel();
                let persister = Persister::spawn(storage, move |e| drop(sender.send(e)));
                let mut node = leader(&persister, &events);
                let payload = Bytes::from(vec![0xcd; ENTRY_BYTES]);
                let mut persists = Vec::with_capacity(PROPOSALS);
                for _ in 0..PROPOSALS {
                    node.propose(Instant::ZERO, payload.clone()).unwrap();
                    while let Some(output) = node.poll_output() {
                        if let Output::Persist(persist) = output {
                            persists.push(persist);
                        }
                    }
                }
                let last = persists.last().unwrap().token();
                let before = persister.stats();
                let start = Clock::now();
                for persist in persists {
                    persister.submit(Job::Persist(persist)).unwrap();
                }
                loop {
                    match events.recv().unwrap() {
                        Event::Durable(token) if token == last => break,
                        Event::Failed(error) => panic!("{error}"),
                        _ => {}
                    }
                }
                let elapsed = start.elapsed();
                let after = persister.stats();
                entries += after.entries_written() - before.entries_written();
                fsyncs += after.group_commits() - before.group_commits();
                time += elapsed;
                total += elapsed;
                drop(persister);
                let _ = std::fs::remove_dir_all(&dir);
            }
            total
        });
    });
    group.finish();
    eprintln!(
        "persister: {:.0} entries/s, {:.0} fsyncs/s, {:.1} entries per fsync",
        entries as f64 / time.as_secs_f64(),
        fsyncs as f64 / time.as_secs_f64(),
        entries as f64 / fsyncs as f64,
    );
}

/// A single-voter node elected through the persister.
fn leader(persister: &Persister, events: &mpsc::Receiver<Event>) -> Node {
    let config = Config::new(1)
        .max_uncommitted_bytes(1 << 30)
        .max_cached_entries(1 << 20);
    let mut node = Node::new(config, Membership::new([1]), Instant::ZERO).unwrap();
    while !node.is_leader() {
        let now = node.poll_timeout();
        node.handle_timeout(now);
        while let Some(output) = node.poll_output() {
            if let Output::Persist(persist) = output {
                let token = persist.token();
                persister.submit(Job::Persist(persist)).unwrap();
                loop {
                    if let Event::Durable(durable) = events.recv().unwrap()
                        && durable == token
                    {
                        break;
                    }
                }
                node.persisted(now, token);
            }
        }
    }
    node
}

fn write_log(dir: &PathBuf, count: u64) -> Storage {
    let payload = Bytes::from(vec![0xef; ENTRY_BYTES]);
    let (mut storage, _) = Storage::open(dir, Options::new()).unwrap();
    let mut next = 1;
    while next <= count {
        let n = 256.min(count - next + 1);
        storage
            .persist_parts(None, &batch(next, n, &payload), None)
            .unwrap();
        storage.sync().unwrap();
        next += n;
    }
    storage
}

fn recovery(c: &mut Criterion) {
    const ENTRIES: u64 = 1_000_000;
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));

    let dir = bench_dir("recovery");
    drop(write_log(&dir, ENTRIES));
    group.bench_function("1M_entries_no_snapshot", |b| {
        // What a start-up keeps (the recovered log) is dropped outside the measurement.
        b.iter_with_large_drop(|| {
            let (storage, recovered) = Storage::open(&dir, Options::new()).unwrap();
            assert_eq!(recovered.restore_state().entries.len() as u64, ENTRIES);
            (storage, recovered)
        });
    });
    let (storage, _) = Storage::open(&dir, Options::new()).unwrap();
    eprintln!(
        "recovery: index {:.1} bytes/entry over {ENTRIES} entries in {} segments",
        storage.index_bytes() as f64 / ENTRIES as f64,
        storage.segment_count()
    );
    drop(storage);

    // The same log, then a 64 MiB state-machine snapshot covering all of it.
    let mut storage = Storage::open(&dir, Options::new()).unwrap().0;
    let meta = SnapshotMeta::new(ENTRIES, 1, Membership::new([1]));
    let data = Bytes::from(vec![0x5a; 64 << 20]);
    storage.save_snapshot(&Snapshot::new(meta, data)).unwrap();
    storage.sync().unwrap();
    drop(storage);
    group.bench_function("1M_entries_64MiB_snapshot", |b| {
        b.iter_with_large_drop(|| {
            let (storage, recovered) = Storage::open(&dir, Options::new()).unwrap();
            assert_eq!(recovered.snapshot().data().len(), 64 << 20);
            (storage, recovered)
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, append_fsync, persister_group_commit, recovery);
criterion_main!(benches);
