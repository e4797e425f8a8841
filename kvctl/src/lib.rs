//! kvctl: the command-line client of kvd, and a library for Rust programs that talk to a kvd
//! cluster.
//!
//! - [`client`]: the smart client (leader discovery, `leader` hints, retries with backoff,
//!   idempotent writes across failover). Start here when embedding.

pub mod client;
pub mod identity;
pub mod proto;
