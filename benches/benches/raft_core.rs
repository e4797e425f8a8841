//! Throughput of the raft core in a three-node in-process cluster without faults.
//!
//! - `propose_batch`: a batch of proposals is fed to the leader, then outputs are shuttled
//!   between the nodes (persists reported done at once, messages delivered directly) until
//!   the leader has applied the batch.
//! - `closed_loop`: openraft's benchmark conditions: empty proposals from clients that each
//!   wait for their proposal to be applied on the leader before proposing again.
//!
//! Everything runs on one thread; throughput is in committed proposals per second.

use std::time::Instant;

use benches::{ClosedLoop, Cluster};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Proposals fed to the leader before running the cluster.
const BATCH: usize = 1024;

fn propose_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("propose_batch");
    for payload in [64, 1024] {
        let mut cluster = Cluster::new(3);
        let command = Bytes::from(vec![0xAB; payload]);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new("payload_bytes", payload), |b| {
            b.iter(|| cluster.propose_batch(&command, BATCH));
        });
    }
    group.finish();
}

fn closed_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_loop");
    group.throughput(Throughput::Elements(1));
    for clients in [1, 64, 256] {
        let mut closed = ClosedLoop::new(clients, Bytes::new());
        group.bench_function(BenchmarkId::new("clients", clients), |b| {
            b.iter_custom(|proposals| {
                let start = Instant::now();
                closed.run(proposals);
                start.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, propose_batch, closed_loop);
criterion_main!(benches);
