//! Fault-injection tests of a real kvd cluster, checked for linearizability.
//!
//! - [`linearizability`]: the checker (per-key Wing & Gong / Lowe search with memoisation).
//! - [`history`]: recording operations as concurrent clients run.
//! - [`cluster`]: `kvd` processes to start, kill, pause, restart and cut off from each other.
//! - [`nemesis`]: faults from a seeded schedule.
//! - [`workload`]: the clients doing put/get/delete over a small key set.
//! - [`run`]: one chaos run, start to verdict, with its summary line.
//! - [`rng`]: the seeded random source behind workloads and schedules.
//!
//! The tests themselves live in `tests/tests/`:
//!
//! - `chaos.rs`: 3 and 5 nodes, each over TCP and over QUIC, 15 s each by default, one
//!   summary line per run on stderr (also appended to `target/chaos/summary.log`):
//!   `chaos: 3-node-tcp seed=… ops=… ok=… unknown=… failed=… faults=… kill=… pause=…
//!   partition=… isolate-leader=… bridge=… delay=… torn-write=… torn-fired=…
//!   verdict=linearizable`.
//! - `stale_reads.rs`: a history with kvd's stale reads, which the checker must reject.
//! - `forwarded_answers.rs`: a regression test for a bug the chaos runs found (a forwarded
//!   write answered `ok: false` by a deposed leader was relayed as applied).
//!
//! Environment: `CHAOS_MINUTES=N` runs each chaos configuration for N minutes;
//! `CHAOS_SEED=S` replays a workload and fault schedule (timing still varies);
//! `CHAOS_DISTRUST_FORWARDED=1` records answers relayed by a forwarding node as unknown
//! (see [`workload`]). A violation writes the offending key's history and the nodes' logs
//! under `target/chaos/`; every run writes its fault log there (`<config>-seed<S>.faults`).
//!
//! Faults covered (see [`nemesis`]; at most a minority killed or paused at once):
//!
//! - `kill -9` of a random node or of the leader, and restart;
//! - SIGSTOP/SIGCONT pauses;
//! - network partitions: a majority and a minority, the leader alone, and a bridge (one node
//!   sees both sides, the sides do not see each other);
//! - message delay (and reordering) of 20-200 ms on every link of one node;
//! - a crash in the middle of a WAL write: a restart with kvd's torn-write failpoint armed for
//!   a random write, after which the node aborts by itself and must recover from the torn
//!   tail.
//!
//! Network faults and the failpoint are kvd's test-only fault injection (`kvd::faults`,
//! switched on by the `KVD_FAULTS_FILE` and `KVD_FAILPOINT_TORN_WRITE` environment variables
//! that [`cluster`] sets): rules in the transport engine, so TCP and QUIC get the same faults,
//! and forwarded client requests honour partitions too. Clients always reach every node; only
//! traffic between nodes is cut. Not covered: disk faults other than a torn tail (full disk,
//! fsync errors, bit rot), clock jumps, and membership changes under faults.

pub mod cluster;
pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod rng;
pub mod run;
pub mod workload;
