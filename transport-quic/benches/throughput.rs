//! Loopback benchmark of the QUIC transport: small-message rate, 1 MiB throughput and latency
//! percentiles (`cargo bench -p transport-quic`).

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    transport::bench::run("quic", support::QuicHarness::new());
}
