//! Fault-injection tests of a real kvd cluster, checked for linearizability.
//!
//! - [`linearizability`]: the checker (per-key Wing & Gong / Lowe search with memoisation).

pub mod linearizability;
