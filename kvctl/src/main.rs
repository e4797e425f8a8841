//! The `kvctl` binary: parses the command line and runs it with the library.

use std::process::ExitCode;

use clap::Parser;
use kvctl::cli::{Cli, normalize_args};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let exit = match runtime.block_on(kvctl::commands::run(cli)) {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("kvctl: {error}");
            error.exit()
        }
    };
    Ok(exit.into())
}
