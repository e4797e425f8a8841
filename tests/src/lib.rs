//! Fault-injection tests of a real kvd cluster, checked for linearizability.
//!
//! - [`linearizability`]: the checker (per-key Wing & Gong / Lowe search with memoisation).
//! - [`history`]: recording operations as concurrent clients run.
//! - [`cluster`]: `kvd` processes to start, kill, pause and restart.
//! - [`nemesis`]: faults from a seeded schedule.
//! - [`workload`]: the clients doing put/get/delete over a small key set.
//! - [`run`]: one chaos run, start to verdict, with its summary line.
//! - [`rng`]: the seeded random source behind workloads and schedules.
//!
//! The tests themselves live in `tests/tests/`:
//!
//! - `chaos.rs`: 3 nodes over TCP, 3 over QUIC, 5 over TCP, 15 s each by default, one
//!   summary line per run on stderr (also appended to `target/chaos/summary.log`):
//!   `chaos: 3-node-tcp seed=… ops=… ok=… unknown=… failed=… faults=… verdict=linearizable`.
//! - `stale_reads.rs`: a history with kvd's stale reads, which the checker must reject.
//! - `forwarded_answers.rs`: a regression test for a bug the chaos runs found (a forwarded
//!   write answered `ok: false` by a deposed leader was relayed as applied).
//!
//! Environment: `CHAOS_MINUTES=N` runs each chaos configuration for N minutes;
//! `CHAOS_SEED=S` replays a workload and fault schedule (timing still varies);
//! `CHAOS_DISTRUST_FORWARDED=1` records answers relayed by a forwarding node as unknown
//! (see [`workload`]). A violation writes the offending key's history and the nodes' logs
//! under `target/chaos/`.
//!
//! Faults covered: `kill -9` of a random node or of the leader and restart (a kill while
//! writes are in flight also tears the WAL's tail), SIGSTOP/SIGCONT pauses, at most a
//! minority hurt at once. Not covered yet: network partitions and message delay, which need
//! either network namespaces or a fault layer in the transport.

pub mod cluster;
pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod rng;
pub mod run;
pub mod workload;
