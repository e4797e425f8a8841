//! Runs a parsed command line: builds the [`Client`], calls it, prints the result and picks
//! the exit code.

use std::io::{Read, Write};

use clap::CommandFactory;
use serde_json::json;

use crate::bench;
use crate::cli::{Cli, Command, GetArgs, GlobalArgs, PutArgs};
use crate::client::{self, Client, ClientConfig, Consistency};
use crate::exit::Exit;
use crate::output::{self, OutputFormat};
use crate::status;

/// A failure that ends the invocation; [`CommandError::exit`] gives its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The cluster call failed.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// The command line asked for something impossible (e.g. an unreadable value file).
    #[error("{0}")]
    Usage(String),
    /// Writing the result failed (e.g. a closed pipe).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CommandError {
    /// The exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Client(error) => Exit::for_error(error),
            Self::Usage(_) | Self::Output(_) => Exit::Usage,
        }
    }
}

/// Runs `cli`, printing results on stdout; returns how the process should exit.
pub async fn run(cli: Cli) -> Result<Exit, CommandError> {
    let Cli { global, command } = cli;
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kvctl", &mut std::io::stdout());
            Ok(Exit::Success)
        }
        Command::Put(args) => put(&global, args).await,
        Command::Get(args) => get(&global, args).await,
        Command::Del(args) => {
            let client = make_client(&global)?;
            let outcome = match global.req {
                Some(id) => client.delete_with_id(&args.key, id).await?,
                None => client.delete(&args.key).await?,
            };
            print_write(&global, &client, &outcome)?;
            Ok(Exit::Success)
        }
        Command::Health => health(&global).await,
        Command::Status => {
            let client = make_client(&global)?;
            let cluster = status::ClusterStatus::collect(&client).await;
            let mut stdout = std::io::stdout().lock();
            match global.output {
                OutputFormat::Text => stdout.write_all(cluster.table().as_bytes())?,
                OutputFormat::Json => writeln!(stdout, "{}", cluster.json())?,
            }
            Ok(if cluster.any_reachable() {
                Exit::Success
            } else {
                Exit::Unavailable
            })
        }
        Command::Bench(args) => {
            let client = make_client(&global)?;
            bench::run(&client, &args, global.output).await
        }
    }
}

/// The client for the global options.
pub fn make_client(global: &GlobalArgs) -> Result<Client, client::Error> {
    let mut config = ClientConfig::new(global.endpoints()).timeout(global.timeout);
    if let Some(id) = &global.client {
        config = config.client_id(id.clone());
    }
    Client::new(config)
}

async fn put(global: &GlobalArgs, args: PutArgs) -> Result<Exit, CommandError> {
    let value = match (&args.file, args.value) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| CommandError::Usage(format!("reading {}: {e}", path.display())))?,
        (None, Some(value)) if value == "-" => {
            let mut buffer = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buffer)
                .map_err(|e| CommandError::Usage(format!("reading stdin: {e}")))?;
            buffer
        }
        (None, Some(value)) => value.into_encoded_bytes(),
        (None, None) => return Err(CommandError::Usage("put needs a VALUE or --file".into())),
    };
    let client = make_client(global)?;
    let outcome = match global.req {
        Some(id) => client.put_with_id(&args.key, value, id).await?,
        None => client.put(&args.key, value).await?,
    };
    print_write(global, &client, &outcome)?;
    Ok(Exit::Success)
}

fn print_write(
    global: &GlobalArgs,
    client: &Client,
    outcome: &client::WriteOutcome,
) -> Result<(), std::io::Error> {
    let mut stdout = std::io::stdout().lock();
    match global.output {
        OutputFormat::Text => writeln!(
            stdout,
            "ok=true leader={}",
            output::go_quote(outcome.leader.as_bytes())
        ),
        OutputFormat::Json => writeln!(
            stdout,
            "{}",
            json!({
                "ok": true,
                "leader": outcome.leader,
                "endpoint": outcome.endpoint,
                "client_id": client.client_id(),
                "request_id": outcome.request_id,
            })
        ),
    }
}

async fn get(global: &GlobalArgs, args: GetArgs) -> Result<Exit, CommandError> {
    let client = make_client(global)?;
    let consistency = if args.stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    };
    let outcome = client.get(&args.key, consistency).await?;
    let mut stdout = std::io::stdout().lock();
    match (global.output, &outcome.value) {
        (OutputFormat::Json, value) => {
            let mut object = json!({"key": args.key, "found": value.is_some()});
            if let Some(value) = value {
                output::put_value(&mut object, value);
            }
            writeln!(stdout, "{object}")?;
        }
        (OutputFormat::Text, Some(value)) if args.raw => stdout.write_all(value)?,
        (OutputFormat::Text, Some(value)) => writeln!(stdout, "value={}", output::go_quote(value))?,
        (OutputFormat::Text, None) if args.raw => {
            eprintln!("key {} not found", output::go_quote(args.key.as_bytes()));
        }
        (OutputFormat::Text, None) => writeln!(
            stdout,
            "key {} not found",
            output::go_quote(args.key.as_bytes())
        )?,
    }
    stdout.flush()?;
    Ok(if outcome.value.is_some() {
        Exit::Success
    } else {
        Exit::NotFound
    })
}

/// Asks every endpoint, concurrently; prints one line per node in endpoint order.
async fn health(global: &GlobalArgs) -> Result<Exit, CommandError> {
    let client = make_client(global)?;
    let probes = client.endpoints().iter().map(|endpoint| {
        let client = client.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let answer = client.health(&endpoint).await;
            (endpoint, answer)
        })
    });
    let probes: Vec<_> = probes.collect();
    let mut reachable = 0usize;
    let mut stdout = std::io::stdout().lock();
    for probe in probes {
        let (endpoint, answer) = probe.await.expect("health probe does not panic");
        match (answer, global.output) {
            (Ok(health), OutputFormat::Text) => {
                reachable += 1;
                writeln!(
                    stdout,
                    "node_id={} is_leader={} term={}",
                    health.node_id, health.is_leader, health.term
                )?;
            }
            (Ok(health), OutputFormat::Json) => {
                reachable += 1;
                let line = json!({
                    "endpoint": endpoint,
                    "node_id": health.node_id,
                    "is_leader": health.is_leader,
                    "term": health.term,
                });
                writeln!(stdout, "{line}")?;
            }
            (Err(error), OutputFormat::Text) => eprintln!("kvctl: {endpoint}: {error}"),
            (Err(error), OutputFormat::Json) => {
                let line = json!({"endpoint": endpoint, "error": error.to_string()});
                writeln!(stdout, "{line}")?;
            }
        }
    }
    Ok(if reachable > 0 {
        Exit::Success
    } else {
        Exit::Unavailable
    })
}
