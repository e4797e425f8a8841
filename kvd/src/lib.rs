//! The kvd server: node loop, storage, state machine and gRPC API.
//!
//! Built so far: the replicated command format ([`command`]) and the state machine with
//! client sessions ([`state_machine`]).
//!
//! [`faults`] is test-only: network partitions, delays, a torn-write failpoint and a panic
//! failpoint that the chaos suite switches on with the `KVD_FAULTS_FILE`,
//! `KVD_FAILPOINT_TORN_WRITE` and `KVD_FAILPOINT_PANIC` environment variables (deliberately
//! not flags, and not in `--help`).
//!
//! [`fail_stop`]: the `kvd` binary turns every panic into a one-line message and an exit with
//! status 101, so a bug never leaves a half-alive node.

pub mod api;
pub mod command;
pub mod config;
pub mod dev;
pub mod fail_stop;
pub mod faults;
pub mod node_loop;
pub mod proto;
pub mod server;
pub mod state_machine;
