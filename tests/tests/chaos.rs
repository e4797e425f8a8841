//! Chaos runs against real kvd clusters: concurrent clients while the nemesis kills, pauses,
//! partitions and slows nodes and tears WAL writes, the history checked for linearizability.
//!
//! Four configurations: 3 and 5 nodes, each over TCP and over QUIC. By default each runs for
//! 15 s (the whole file stays under two minutes); `CHAOS_MINUTES=N` runs each for N minutes
//! and `CHAOS_SEED=S` replays a schedule. Runs share the machine one at a time.

use std::sync::Mutex;
use std::time::Duration;

use tests::cluster::Transport;
use tests::linearizability::Verdict;
use tests::run::{ChaosConfig, run};

/// One cluster at a time: on a small CI machine parallel clusters only starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn duration() -> Duration {
    match std::env::var("CHAOS_MINUTES") {
        Ok(minutes) => {
            let minutes: f64 = minutes
                .parse()
                .expect("CHAOS_MINUTES is a number of minutes");
            Duration::from_secs_f64(minutes * 60.0)
        }
        Err(_) => Duration::from_secs(15),
    }
}

fn chaos(nodes: usize, transport: Transport) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(run(ChaosConfig::new(nodes, transport, duration())));
    match report.verdict() {
        Verdict::Linearizable => {}
        Verdict::Violation(violation) => panic!(
            "{}\n{}\nreport: {:?}",
            report.summary_line(),
            violation.excerpt(),
            report.report_path()
        ),
        // The search budget ran out: no evidence of a bug, but no proof either, and a run
        // that checks nothing must not pass as if it had.
        Verdict::Unknown { key } => panic!(
            "{}\nthe checker gave up on key {key}: the run proves nothing",
            report.summary_line()
        ),
    }
    assert!(
        report.tally().ok >= 10,
        "too few acknowledged operations to mean anything: {}",
        report.summary_line()
    );
}

#[test]
fn three_nodes_tcp() {
    chaos(3, Transport::Tcp);
}

#[test]
fn three_nodes_quic() {
    chaos(3, Transport::Quic);
}

#[test]
fn five_nodes_tcp() {
    chaos(5, Transport::Tcp);
}

#[test]
fn five_nodes_quic() {
    chaos(5, Transport::Quic);
}
