//! End-to-end benchmarks: real clusters on loopback, measured with the shared load
//! generator, and charts of the results.
//!
//! [`run`] goes through a matrix of scenarios (see [`Matrix`]); each gets a fresh cluster
//! (kvd processes started here, or etcd through the shared `etcd3.sh`), waits for a leader,
//! fills the keyspace before reads, runs the load generator once, stops the cluster with
//! SIGTERM and appends one JSON line to a results file. [`plot`] turns results files into SVG
//! charts. The `e2e` binary is the command line over both; `docs/BENCHMARKS.md` documents the
//! commands and the JSON line's fields.
//!
//! Only the pure parts (matrix expansion, command lines, parsing, JSON lines, chart data) are
//! unit-tested: the runs themselves take minutes and need the built binaries.

mod cluster;
mod cpu;
mod plot;
mod record;
mod runner;
mod scenario;

pub use plot::{PlotArgs, plot};
pub use runner::{RunArgs, run};
pub use scenario::{Kind, Matrix, System, Transport};

/// Why a run or a plot failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments or the environment do not allow the runs (missing binary, bad flags).
    #[error("{0}")]
    Setup(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A run went wrong (no leader, a node exited, the load generator printed no result).
    #[error("{0}")]
    Run(String),
    /// Rendering a chart failed.
    #[error("plot: {0}")]
    Plot(String),
    /// SIGINT or SIGTERM arrived; the cluster of the current run was stopped.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
