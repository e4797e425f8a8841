//! Chaos runs against real kvd clusters: concurrent clients while the nemesis kills, pauses,
//! partitions and slows nodes and tears WAL writes, the history checked for linearizability.
//!
//! Four configurations: 3 and 5 nodes, each over TCP and over QUIC (one test each; name one to
//! run it alone). By default each runs for 15 s, longer only if a kind of fault still lacks
//! its round (the whole file stays around two minutes); `CHAOS_MINUTES=N` runs each for N
//! minutes and `CHAOS_SEED=S` replays a schedule. Runs share the machine one at a time.
//!
//! A run fails on a linearizability violation (or a checker that gave up), on a node process
//! that ended in a way the harness did not cause, on a panic in any node's log, on a healed
//! cluster whose nodes do not all apply the leader's commit, and on a run that did not inject
//! every kind of fault it claims (a torn write must have fired). Every failure prints the
//! command that replays it. `CHAOS_INJECT=panic` makes one node panic: every test must fail.

use std::io::Write as _;
use std::sync::Mutex;

use tests::cluster::Transport;
use tests::linearizability::Verdict;
use tests::run::{ChaosConfig, announce, run};
use tests::settings::ChaosSettings;

/// One cluster at a time: on a small CI machine parallel clusters only starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Prints the replay command if the test fails, whatever failed (a panic inside the run as
/// well as a failed check at the end).
struct ReplayOnFailure(String);

impl Drop for ReplayOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            announce(&format!("chaos: replay with: {}", self.0));
            let _ = std::io::stderr().flush();
        }
    }
}

fn chaos(test: &str, nodes: usize, transport: Transport) {
    let settings = ChaosSettings::from_env().unwrap_or_else(|error| panic!("{error}"));
    let config = ChaosConfig::from_settings(nodes, transport, &settings);
    let replay = config.replay_command(test);
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _replay = ReplayOnFailure(replay.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(run(config));

    let mut failures: Vec<String> = report.problems().to_vec();
    match report.verdict() {
        Verdict::Linearizable => {}
        Verdict::Violation(violation) => failures.push(format!(
            "not linearizable:\n{}\nreport: {:?}",
            violation.excerpt(),
            report.report_path()
        )),
        // The search budget ran out: no evidence of a bug, but no proof either, and a run
        // that checks nothing must not pass as if it had.
        Verdict::Unknown { key } => failures.push(format!(
            "the checker gave up on key {key}: the run proves nothing"
        )),
    }
    if report.tally().ok < 10 {
        failures.push("too few acknowledged operations to mean anything".to_string());
    }
    for missing in report.nemesis().missing() {
        failures.push(format!(
            "the run claims every kind of fault but lacks {missing}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{}\n{}\nreplay: {replay}",
        report.summary_line(),
        failures.join("\n")
    );
}

#[test]
fn three_nodes_tcp() {
    chaos("three_nodes_tcp", 3, Transport::Tcp);
}

#[test]
fn three_nodes_quic() {
    chaos("three_nodes_quic", 3, Transport::Quic);
}

#[test]
fn five_nodes_tcp() {
    chaos("five_nodes_tcp", 5, Transport::Tcp);
}

#[test]
fn five_nodes_quic() {
    chaos("five_nodes_quic", 5, Transport::Quic);
}
