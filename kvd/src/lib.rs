//! The kvd server: node loop, storage, state machine and gRPC API.
//!
//! Built so far: the replicated command format ([`command`]) and the state machine with
//! client sessions ([`state_machine`]).
//!
//! [`faults`] is test-only: network partitions, delays and a torn-write failpoint that the
//! chaos suite switches on with the `KVD_FAULTS_FILE` and `KVD_FAILPOINT_TORN_WRITE`
//! environment variables (deliberately not flags, and not in `--help`).

pub mod api;
pub mod command;
pub mod config;
pub mod dev;
pub mod faults;
pub mod node_loop;
pub mod proto;
pub mod server;
pub mod state_machine;
