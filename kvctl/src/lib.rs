//! kvctl: the command-line client of kvd, and a library for Rust programs that talk to a kvd
//! cluster.
//!
//! - [`client`]: the smart client (leader discovery, `leader` hints, retries with backoff,
//!   idempotent writes across failover). Start here when embedding.
//! - [`cli`], [`commands`], [`output`], [`exit`]: the command line, its output formats
//!   (the seed client's lines by default) and exit codes.
//! - [`status`]: the cluster status table.
//! - [`bench`](mod@bench): the load generator.

pub mod bench;
pub mod cli;
pub mod client;
pub mod commands;
pub mod exit;
pub mod identity;
pub mod output;
pub mod proto;
pub mod status;
