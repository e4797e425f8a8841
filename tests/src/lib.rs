//! Fault-injection tests of a real kvd cluster, checked for linearizability.
//!
//! - [`linearizability`]: the checker (per-key Wing & Gong / Lowe search with memoisation).
//! - [`history`]: recording operations as concurrent clients run.
//! - [`cluster`]: `kvd` processes to start, kill, pause, restart and cut off from each other;
//!   every end of a process is recorded.
//! - [`exits`]: whether the harness caused a process's end (its kills and stops, the torn-write
//!   failpoint it armed) or the node crashed.
//! - [`nemesis`]: faults from a seeded schedule.
//! - [`workload`]: the clients doing put/get/delete over a small key set.
//! - [`run`]: one chaos run, start to verdict, with its summary line.
//! - [`settings`]: the `CHAOS_*` environment variables, parsed strictly.
//! - [`rng`]: the seeded random source behind workloads and schedules.
//!
//! The tests themselves live in `tests/tests/`:
//!
//! - `chaos.rs`: 3 and 5 nodes, each over TCP and over QUIC, 15 s each by default, one
//!   summary line per run on stderr (also appended to `target/chaos/summary.log`):
//!   `chaos: 3-node-tcp seed=… ops=… ok=… unknown=… failed=… faults=… kill=… pause=…
//!   partition=… isolate-leader=… bridge=… delay=… torn-write=… torn-fired=…
//!   verdict=linearizable`. A run fails on a violation, and also on a node process that ended
//!   in a way the harness did not cause, a panic in any node's log, a healed cluster whose
//!   nodes do not all reach applied = commit = the leader's commit, or a missing kind of fault
//!   (each round kind once, and a torn write that fired). A failure prints the command that
//!   replays it.
//! - `stale_reads.rs`: a history with kvd's stale reads, which the checker must reject.
//! - `forwarded_answers.rs`: a regression test for a bug the chaos runs found (a forwarded
//!   write answered `ok: false` by a deposed leader was relayed as applied).
//!
//! Environment ([`settings`]; a malformed value is an error naming the variable):
//! `CHAOS_MINUTES=N` runs each chaos configuration for N minutes; `CHAOS_SEED=S` replays a
//! workload and fault schedule (timing still varies); `CHAOS_INJECT=panic` arms kvd's panic
//! failpoint on one node, a negative control under which every run must fail;
//! `CHAOS_DISTRUST_FORWARDED=1` records answers relayed by a forwarding node as unknown
//! (see [`workload`]). A violation, or any other failure, writes the nodes' logs (and a
//! violation the offending key's history) under `target/chaos/`; every run writes its fault
//! log there (`<config>-seed<S>.faults`).
//!
//! Faults covered (see [`nemesis`]; at most a minority killed or paused at once):
//!
//! - `kill -9` of a random node or of the leader, and restart;
//! - SIGSTOP/SIGCONT pauses;
//! - network partitions: a majority and a minority, the leader alone, and a bridge (one node
//!   sees both sides, the sides do not see each other);
//! - message delay (and reordering) of 20-200 ms on every link of one node;
//! - a crash in the middle of a WAL write: a restart with kvd's torn-write failpoint armed for
//!   a random write, after which the node aborts by itself (saying so in its log) and must
//!   recover from the torn tail.
//!
//! Network faults and the failpoints are kvd's test-only fault injection (`kvd::faults`,
//! switched on by the `KVD_FAULTS_FILE`, `KVD_FAILPOINT_TORN_WRITE` and `KVD_FAILPOINT_PANIC`
//! environment variables that [`cluster`] sets): rules in the transport engine, so TCP and QUIC get the same faults,
//! and forwarded client requests honour partitions too. Clients always reach every node; only
//! traffic between nodes is cut. Not covered: disk faults other than a torn tail (full disk,
//! fsync errors, bit rot), clock jumps, and membership changes under faults.

pub mod cluster;
pub mod exits;
pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod rng;
pub mod run;
pub mod settings;
pub mod workload;
