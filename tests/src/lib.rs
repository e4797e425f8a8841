//! Fault-injection tests of a real kvd cluster, checked for linearizability.
//!
//! - [`linearizability`]: the checker (per-key Wing & Gong / Lowe search with memoisation).
//! - [`history`]: recording operations as concurrent clients run.
//! - [`cluster`]: `kvd` processes to start, kill, pause and restart.
//! - [`nemesis`]: faults from a seeded schedule.
//! - [`workload`]: the clients doing put/get/delete over a small key set.
//! - [`run`]: one chaos run, start to verdict, with its summary line.
//!
//! The tests themselves live in `tests/tests/`.

pub mod cluster;
pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod rng;
pub mod run;
pub mod workload;
