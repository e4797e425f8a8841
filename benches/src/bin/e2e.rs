//! `e2e`: end-to-end benchmark scenarios against real clusters, and charts of their results.
//!
//! ```sh
//! cargo run --release -p benches --bin e2e -- run --matrix quick
//! cargo run --release -p benches --bin e2e -- plot target/bench-results/e2e-*.jsonl
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use benches::e2e::{self, PlotArgs, RunArgs};
use clap::{Parser, Subcommand};

/// End-to-end benchmarks of kvd (and etcd) with the shared load generator.
#[derive(Parser)]
#[command(name = "e2e")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a matrix of scenarios, each on a fresh cluster; append one JSON line per run.
    Run(Box<RunArgs>),
    /// Render SVG charts from results files.
    Plot(PlotArgs),
}

/// Sets the flag on SIGINT or SIGTERM, so the runner stops its cluster before exiting.
fn watch_for_signals(interrupted: Arc<AtomicBool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let mut terminate = {
        let _guard = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                eprintln!("e2e: interrupted; stopping the cluster");
                interrupted.store(true, Ordering::SeqCst);
            }
        });
    });
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            let interrupted = Arc::new(AtomicBool::new(false));
            if let Err(e) = watch_for_signals(interrupted.clone()) {
                eprintln!("e2e: cannot watch for signals ({e}); Ctrl+C may leave nodes running");
            }
            e2e::run(&args, &interrupted).map(drop)
        }
        Command::Plot(args) => e2e::plot(&args).map(|written| {
            for path in written {
                println!("{}", path.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e2e::Error::Interrupted) => {
            eprintln!("e2e: interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}
