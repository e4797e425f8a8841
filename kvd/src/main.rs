//! `kvd`: runs one node of the key-value store, a local dev cluster, or certificate tasks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kvd::config::{NodeArgs, node_id, normalize_args};

// mimalloc: the request path allocates small, short-lived buffers at a high rate, where
// glibc's malloc cost a loaded leader about a tenth of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Raft key-value store node.
///
/// Without a subcommand, runs one node (flags below; the seed's one-dash flags such as
/// `-node -addr -raft_addr -wal -peers -snap_every` work too).
#[derive(Parser)]
#[command(name = "kvd", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster (3 nodes by default) and stop it on Ctrl+C.
    Dev(kvd::dev::DevArgs),
    /// Manage QUIC certificates.
    #[command(subcommand)]
    Certs(Certs),
}

#[derive(Subcommand)]
enum Certs {
    /// Create a cluster CA (ca.pem, ca.key) in DIR.
    Init {
        /// Directory for the CA files.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Issue a certificate for a node, signed by the CA in DIR.
    Issue {
        /// Directory holding the CA; the node's files are written there.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The node's identity: its name (with `--peers name=addr`) or its raft address.
        #[arg(long)]
        node: String,
    },
}

fn main() -> ExitCode {
    // First, so that a panic on any thread from here on stops the process (see the module).
    kvd::fail_stop::install();
    let cli = Cli::parse_from(normalize_args(std::env::args()));
    let filter = tracing_subscriber::EnvFilter::try_from_env("KVD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Certs(Certs::Init { dir })) => {
            transport_quic::certs::init_ca(&dir)?;
            println!("created cluster CA in {}", dir.display());
            Ok(())
        }
        Some(Command::Certs(Certs::Issue { dir, node })) => {
            let id = node_id(&node);
            transport_quic::certs::issue_node_cert(&dir, id)?;
            println!(
                "issued a certificate for {node} (id {id}) in {}",
                dir.display()
            );
            Ok(())
        }
        Some(Command::Dev(args)) => runtime()?.block_on(kvd::dev::run(args)),
        None => {
            let config = cli.node.resolve()?;
            node_runtime(config.worker_threads)?.block_on(kvd::server::run(config))?;
            Ok(())
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// The node's runtime: single-threaded for `0` worker threads.
fn node_runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}
