//! Loopback benchmarks shared by the transports (feature `bench`).
//!
//! Two transports in one process talk over 127.0.0.1. Measured: the rate of small appends
//! (about 100 bytes on the wire) and the throughput of 1 MiB appends on one peer link, both
//! with criterion, then a plain report with rates and latency percentiles (hdrhistogram): the
//! latency of messages under full load (send to delivery, queueing included) and the round
//! trip of one heartbeat at a time. With `BENCH_REPORT_ONLY` set in the environment only the
//! plain report runs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use hdrhistogram::Histogram;
use raft::Message;

use crate::conformance::{Harness, TestNode, sample, start_cluster, wait_connected};
use crate::{Event, SendError};

/// Command bytes of a small append: about 100 bytes per frame with the Raft fields.
const SMALL_PAYLOAD: usize = 72;
/// Messages per criterion iteration for small appends.
const SMALL_BATCH: u64 = 100_000;
/// Command bytes of a large append.
const LARGE_PAYLOAD: usize = 1 << 20;
/// Messages per criterion iteration for large appends.
const LARGE_BATCH: u64 = 256;

/// Runs the criterion benches and the latency report for the transport `harness` starts,
/// naming the group `name`.
pub fn run(name: &str, harness: impl Harness) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut sender, mut receiver) = runtime.block_on(connected_pair(&harness));
    let small = Bytes::from(vec![7u8; SMALL_PAYLOAD]);
    let large = Bytes::from(vec![7u8; LARGE_PAYLOAD]);

    let report_only = std::env::var_os("BENCH_REPORT_ONLY").is_some();
    if !report_only {
        criterion_benches(name, &runtime, &sender, &mut receiver, &small, &large);
    }
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    runtime.block_on(async {
        let frame = frame_bytes(&small);
        report(
            name,
            "small",
            frame,
            &sender,
            &mut receiver,
            1_000_000,
            &small,
        )
        .await;
        let frame = frame_bytes(&large);
        report(name, "1MiB", frame, &sender, &mut receiver, 2_000, &large).await;
        round_trips(name, &mut sender, &mut receiver, 10_000).await;
        sender.transport.shutdown().await;
        receiver.transport.shutdown().await;
    });
}

fn criterion_benches(
    name: &str,
    runtime: &tokio::runtime::Runtime,
    sender: &TestNode,
    receiver: &mut TestNode,
    small: &Bytes,
    large: &Bytes,
) {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group(name);
    group.throughput(Throughput::Elements(SMALL_BATCH));
    group.bench_function("small_appends", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(stream_many(sender, receiver, iters, SMALL_BATCH, small))
        })
    });
    group.throughput(Throughput::Bytes(LARGE_BATCH * LARGE_PAYLOAD as u64));
    group.bench_function("large_appends_1MiB", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(stream_many(sender, receiver, iters, LARGE_BATCH, large))
        })
    });
    group.finish();
    criterion.final_summary();
}

fn frame_bytes(payload: &Bytes) -> usize {
    let mut buf = bytes::BytesMut::new();
    crate::FrameCodec::new(usize::MAX)
        .encode(
            &sample::stamped_append(1_000_000, 1_000_000_000, payload),
            &mut buf,
        )
        .expect("encode");
    buf.len()
}

async fn connected_pair(harness: &impl Harness) -> (TestNode, TestNode) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let mut receiver = nodes.pop().expect("two nodes");
    let mut sender = nodes.pop().expect("two nodes");
    wait_connected(&mut sender, 2).await;
    wait_connected(&mut receiver, 1).await;
    (sender, receiver)
}

async fn stream_many(
    sender: &TestNode,
    receiver: &mut TestNode,
    iters: u64,
    batch: u64,
    payload: &Bytes,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += stream(sender, receiver, batch, payload, |_| {}).await;
    }
    total
}

/// Sends `count` appends from `sender` to `receiver` as fast as the lanes take them and
/// returns the time until the last one was delivered. `on_delivery` sees each latency.
async fn stream(
    sender: &TestNode,
    receiver: &mut TestNode,
    count: u64,
    payload: &Bytes,
    mut on_delivery: impl FnMut(Duration),
) -> Duration {
    let base = Instant::now();
    let transport = sender.transport.clone();
    let to = receiver.id;
    let payload = payload.clone();
    let producer = tokio::spawn(async move {
        for seq in 0..count {
            loop {
                let stamp = base.elapsed().as_nanos() as u64;
                match transport.send(to, sample::stamped_append(seq, stamp, &payload)) {
                    Ok(()) => break,
                    Err(SendError::QueueFull { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("send failed: {e}"),
                }
            }
        }
    });
    let mut received = 0;
    let mut events = Vec::with_capacity(1024);
    while received < count {
        events.clear();
        if receiver.events.recv_many(&mut events, 1024).await == 0 {
            panic!("receiver shut down");
        }
        let now = base.elapsed().as_nanos() as u64;
        for event in &events {
            if let Event::Message {
                message: Message::Append { commit, .. },
                ..
            } = event
            {
                received += 1;
                on_delivery(Duration::from_nanos(now.saturating_sub(*commit)));
            }
        }
    }
    producer.await.expect("producer");
    base.elapsed()
}

async fn report(
    name: &str,
    label: &str,
    frame: usize,
    sender: &TestNode,
    receiver: &mut TestNode,
    count: u64,
    payload: &Bytes,
) {
    let mut histogram = latency_histogram();
    let elapsed = stream(sender, receiver, count, payload, |latency| {
        histogram.saturating_record(latency.as_micros() as u64);
    })
    .await;
    let rate = count as f64 / elapsed.as_secs_f64();
    let mbps = rate * frame as f64 / 1e6;
    println!(
        "{name} {label}: {count} msgs of {frame} B in {elapsed:.2?}: {rate:.0} msgs/s, {mbps:.1} MB/s; \
         latency under load (us) {}",
        percentiles(&histogram)
    );
}

/// One heartbeat at a time from `a` to `b` and back: the round-trip time without load.
async fn round_trips(name: &str, a: &mut TestNode, b: &mut TestNode, count: u64) {
    let mut histogram = latency_histogram();
    for seq in 0..count {
        let start = Instant::now();
        a.transport
            .send(b.id, sample::heartbeat(seq))
            .expect("send ping");
        wait_heartbeat(b, seq).await;
        b.transport
            .send(a.id, sample::heartbeat(seq))
            .expect("send pong");
        wait_heartbeat(a, seq).await;
        histogram.saturating_record(start.elapsed().as_micros() as u64);
    }
    println!(
        "{name} round trip of one heartbeat at a time (us): {}",
        percentiles(&histogram)
    );
}

async fn wait_heartbeat(node: &mut TestNode, seq: u64) {
    loop {
        match node.events.recv().await {
            Some(Event::Message {
                message: Message::Heartbeat { read_round, .. },
                ..
            }) if read_round == seq => return,
            Some(_) => {}
            None => panic!("node {} shut down", node.id),
        }
    }
}

fn percentiles(histogram: &Histogram<u64>) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    )
}

/// Microseconds from 1 us to 10 minutes, 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}
