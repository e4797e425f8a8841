//! The seeded simulator across many fault schedules.
//!
//! `RAFT_SIM_SEEDS=N` runs N seeds per configuration instead of the default;
//! `RAFT_SIM_SEED=S` runs only seed S (to replay a failure).

use raft::sim::{NetworkFaults, SimConfig, check_seeds};

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("RAFT_SIM_SEED") {
        return vec![seed.parse().expect("RAFT_SIM_SEED must be a number")];
    }
    let n = std::env::var("RAFT_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}

fn run(name: &str, default: u64, make: impl Fn(u64) -> SimConfig) {
    let seeds = seeds(default);
    let started = std::time::Instant::now();
    let reports = check_seeds(seeds.iter().copied(), make)
        .unwrap_or_else(|failure| panic!("{name}: {failure}"));
    let committed: u64 = reports.iter().map(|r| r.committed).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let partitions: u64 = reports.iter().map(|r| r.partitions).sum();
    let reads: u64 = reports.iter().map(|r| r.reads).sum();
    let snapshots: u64 = reports.iter().map(|r| r.snapshots_installed).sum();
    eprintln!(
        "{name}: {} seeds in {:.1?}: {committed} entries committed, {crashes} crashes, \
         {partitions} partitions, {reads} reads checked, {snapshots} snapshots installed",
        reports.len(),
        started.elapsed()
    );
    assert!(committed > 0);
}

#[test]
fn three_nodes_with_all_faults() {
    run("3 nodes, all faults", 1200, SimConfig::new);
}

#[test]
fn five_nodes_with_all_faults() {
    run("5 nodes, all faults", 500, |seed| SimConfig {
        nodes: 5,
        ..SimConfig::new(seed)
    });
}

#[test]
fn three_nodes_without_prevote_or_check_quorum() {
    run("3 nodes, no PreVote/CheckQuorum", 300, |seed| SimConfig {
        pre_vote: false,
        check_quorum: false,
        ..SimConfig::new(seed)
    });
}

#[test]
fn very_lossy_network_without_snapshots() {
    run("3 nodes, 20% loss, no snapshots", 200, |seed| SimConfig {
        network: NetworkFaults {
            drop_rate: 0.2,
            duplicate_rate: 0.1,
            ..NetworkFaults::lossy()
        },
        snapshot_every: 0,
        max_cached_entries: 10_000,
        ..SimConfig::new(seed)
    });
}

#[test]
fn single_node_and_two_node_clusters() {
    run("1 node", 50, |seed| SimConfig {
        nodes: 1,
        ..SimConfig::new(seed)
    });
    run("2 nodes", 100, |seed| SimConfig {
        nodes: 2,
        ..SimConfig::new(seed)
    });
}

#[test]
fn five_nodes_one_entry_per_append_with_frequent_leader_crashes() {
    // Small appends and frequent faults make the Figure 8 situation (a leader holding
    // acknowledgements for an old-term entry but not yet for its own) common.
    run(
        "5 nodes, one entry per append, frequent faults",
        500,
        |seed| SimConfig {
            nodes: 5,
            max_append_bytes: 1,
            max_fault_interval: std::time::Duration::from_millis(300),
            ..SimConfig::new(seed)
        },
    );
}

/// Seeds that once failed, kept so they keep passing whatever the default seed counts are.
#[test]
fn regressions() {
    // A single node lost its term-1 writes in a crash, rebuilt term 1 and wrote another entry
    // at (2, 1): not a violation (the first never became durable or left the node), but the
    // checker registered entries when written instead of when durable.
    let reports = check_seeds([65], |seed| SimConfig {
        nodes: 1,
        ..SimConfig::new(seed)
    });
    assert!(reports.is_ok(), "{:?}", reports.err());
    // A torn write kept entries of term 3 but not the hard state of term 3 written with them,
    // which no conforming storage does (a persist with a hard state is all or nothing).
    let reports = check_seeds([442], |seed| SimConfig {
        pre_vote: false,
        check_quorum: false,
        ..SimConfig::new(seed)
    });
    assert!(reports.is_ok(), "{:?}", reports.err());
}
