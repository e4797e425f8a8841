//! Command-line arguments: the seed client's flags (`-addr -client -req -timeout`, one dash
//! accepted) plus kvctl's own, and the subcommands.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::output::OutputFormat;

/// The `kvd dev` cluster's client addresses.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  key not found (get)
  2  usage error: bad flags, unreadable value file, or a request the cluster refused as invalid
     (empty or too large key/value, request id older than the cluster remembers)
  3  cluster unavailable or timeout: no node completed the request in time

The seed client's one-dash flags work as written:
  kvctl -addr 127.0.0.1:50051 -client myclient -req 100 put key value";

/// kvctl: client for a kvd cluster.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand (accepted before or after it).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Client addresses of the cluster's nodes, comma-separated (default: the `kvd dev`
    /// cluster, 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053)
    #[arg(
        long,
        global = true,
        env = "KVCTL_ENDPOINTS",
        value_delimiter = ',',
        value_name = "HOST:PORT,..."
    )]
    pub endpoints: Vec<String>,
    /// One node's address (the seed's flag; same as `--endpoints HOST:PORT`)
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Client id sent with writes, for idempotent retries (default: kvctl-USER@HOST)
    #[arg(long, global = true, env = "KVCTL_CLIENT_ID", value_name = "ID")]
    pub client: Option<String>,
    /// Request id of this write (the same client and id is applied once) (default:
    /// nanoseconds since the Unix epoch)
    #[arg(long, global = true, value_name = "N")]
    pub req: Option<u64>,
    /// Give up after this long, retries included (e.g. 500ms, 5s, 1m)
    #[arg(long, global = true, env = "KVCTL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Output format
    #[arg(long, global = true, env = "KVCTL_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl GlobalArgs {
    /// The endpoints to use: `--addr`, else `--endpoints`, else the `kvd dev` cluster.
    pub fn endpoints(&self) -> Vec<String> {
        if let Some(addr) = &self.addr {
            return vec![addr.clone()];
        }
        let given: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if given.is_empty() {
            DEFAULT_ENDPOINTS.split(',').map(str::to_string).collect()
        } else {
            given
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a value: `put KEY VALUE`, `put KEY -` (stdin) or `put KEY --file PATH`
    Put(PutArgs),
    /// Read a value (linearizable unless --stale); exit code 1 if the key does not exist
    Get(GetArgs),
    /// Delete a key (deleting a missing key succeeds)
    #[command(alias = "delete")]
    Del(KeyArg),
    /// Ask each endpoint for its node id, leadership and term
    Health,
    /// One table for the whole cluster: roles, terms, indexes and follower lag
    Status,
    /// Closed-loop load generator (put, get or mixed workloads)
    Bench(BenchArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Arguments of `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key
    pub key: String,
    /// The value, taken as raw bytes; `-` reads it from stdin
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub value: Option<OsString>,
    /// Read the value from this file
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// Arguments of `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key
    pub key: String,
    /// Read the contacted node's state without confirming leadership (faster, may be stale)
    #[arg(long)]
    pub stale: bool,
    /// Write the value's bytes to stdout exactly, without quoting or a newline
    #[arg(long)]
    pub raw: bool,
}

/// A single key.
#[derive(Debug, Args)]
pub struct KeyArg {
    /// The key
    pub key: String,
}

/// Rewrites one-dash long flags (`-addr x`, `-req=5`) to `--` form so clap accepts them, as
/// the seed's Go client took them. Only flags before the subcommand are rewritten, as Go's
/// `flag` package stops at the first non-flag argument.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    const LONG: &[&str] = &["addr", "client", "req", "timeout", "endpoints", "output"];
    let mut out = Vec::new();
    let mut args = args.into_iter();
    out.extend(args.next());
    let mut rewriting = true;
    let mut takes_value = false;
    for arg in args {
        if !rewriting {
            out.push(arg);
            continue;
        }
        if takes_value {
            takes_value = false;
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let name = text.trim_start_matches('-');
        let name_only = name.split('=').next().unwrap_or("");
        if text.starts_with('-') && LONG.contains(&name_only) {
            takes_value = !name.contains('=');
            out.push(format!("--{name}").into());
        } else {
            rewriting = text.starts_with('-');
            out.push(arg);
        }
    }
    out
}

/// Parses `500ms`, `5s`, `1m`, `1h`, a bare number of seconds, or Go-style sums such as
/// `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (use e.g. 500ms, 5s, 1m)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(split);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn seed_flags_are_rewritten_up_to_the_subcommand() {
        assert_eq!(
            normalized(&[
                "kvctl", "-addr", "h:1", "-client", "c", "-req=5", "put", "k", "-client"
            ]),
            [
                "kvctl", "--addr", "h:1", "--client", "c", "--req=5", "put", "k", "-client"
            ]
        );
        assert_eq!(
            normalized(&["kvctl", "--timeout", "1s", "get", "k", "-"]),
            ["kvctl", "--timeout", "1s", "get", "k", "-"]
        );
    }

    #[test]
    fn the_seed_invocation_parses() {
        let args = normalize_args(
            "kvctl -addr 127.0.0.1:50051 -client myclient -req 100 put key value"
                .split(' ')
                .map(OsString::from),
        );
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.global.endpoints(), ["127.0.0.1:50051"]);
        assert_eq!(cli.global.client.as_deref(), Some("myclient"));
        assert_eq!(cli.global.req, Some(100));
        assert!(matches!(cli.command, Command::Put(PutArgs { ref key, .. }) if key == "key"));
    }

    #[test]
    fn endpoints_default_to_the_dev_cluster() {
        let cli = Cli::try_parse_from(["kvctl", "health"]).unwrap();
        assert_eq!(cli.global.endpoints().len(), 3);
        let cli = Cli::try_parse_from(["kvctl", "health", "--endpoints", "a:1,b:2"]).unwrap();
        assert_eq!(cli.global.endpoints(), ["a:1", "b:2"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
