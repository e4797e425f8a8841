//! Configuration: one model filled from flags, environment variables and a TOML file.
//!
//! Precedence, highest first: command-line flags, `KVD_*` environment variables, the file given
//! with `--config`, built-in defaults. The seed's Go-style flags are accepted as written
//! (`-node -addr -raft_addr -wal -peers -snap_every`, one dash), as are `--` forms.
//!
//! # Node identity
//!
//! Raft needs every node to agree on the voter set before the first election. Peers are given
//! in one of two forms:
//! - explicit, `--peers node-2=127.0.0.1:60052,node-3=127.0.0.1:60053`: a node's identity is its
//!   name (`--node` for this one);
//! - the seed's address-only form, `-peers 127.0.0.1:60052,127.0.0.1:60053`: a node's identity
//!   is its raft address, and names are labels learned in the transport handshake.
//!
//! Either way the numeric Raft id is a 64-bit hash of the identity, so every node computes the
//! same ids without coordination.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use raft::NodeId;
use serde::Deserialize;

/// Which peer transport to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Plain TCP with length-prefixed frames (trusted networks, development).
    #[default]
    Tcp,
    /// QUIC with mutual TLS against the cluster CA.
    Quic,
}

impl TransportKind {
    /// The name used in flags and status output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }
}

/// The node's settings as given (flags / environment / file); unset fields take defaults.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeArgs {
    /// TOML file with any of these settings (flags and environment override it).
    #[arg(long, env = "KVD_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's name (its identity with explicit `--peers name=addr`).
    #[arg(long, env = "KVD_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// Address the client gRPC API listens on.
    #[arg(long, env = "KVD_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    /// Address peers reach this node's Raft transport on.
    #[arg(
        long = "raft-addr",
        alias = "raft_addr",
        env = "KVD_RAFT_ADDR",
        value_name = "HOST:PORT"
    )]
    pub raft_addr: Option<SocketAddr>,
    /// Directory holding the WAL, snapshots and (QUIC) certificates.
    #[arg(long = "data-dir", env = "KVD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed compatibility: `-wal FILE` keeps the data in FILE's directory.
    #[arg(long, env = "KVD_WAL", value_name = "FILE")]
    pub wal: Option<PathBuf>,
    /// The other voters: `name=host:port,...` or the seed's `host:port,...` (empty: single node).
    #[arg(
        long,
        env = "KVD_PEERS",
        value_name = "PEERS",
        allow_hyphen_values = true
    )]
    pub peers: Option<String>,
    /// Peer transport.
    #[arg(long, env = "KVD_TRANSPORT", value_enum)]
    pub transport: Option<TransportKind>,
    /// Cluster id; peers announcing another one are refused.
    #[arg(long = "cluster-id", env = "KVD_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Also snapshot when this much time passed since the last one (e.g. `30s`, `5m`).
    #[arg(
        long = "snap-every",
        alias = "snap_every",
        env = "KVD_SNAP_EVERY",
        value_name = "DURATION"
    )]
    pub snap_every: Option<String>,
    /// Snapshot after this many applied entries (and once the log since the last snapshot
    /// holds a quarter of the state's bytes).
    #[arg(long = "snapshot-entries", env = "KVD_SNAPSHOT_ENTRIES")]
    pub snapshot_entries: Option<u64>,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long = "heartbeat-ms", env = "KVD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Election timeout range in milliseconds, `MIN-MAX` (e.g. `250-500`).
    #[arg(
        long = "election-timeout-ms",
        env = "KVD_ELECTION_TIMEOUT_MS",
        value_name = "MIN-MAX"
    )]
    pub election_timeout_ms: Option<String>,
    /// Largest key accepted, in bytes.
    #[arg(long = "max-key-bytes", env = "KVD_MAX_KEY_BYTES")]
    pub max_key_bytes: Option<usize>,
    /// Largest value accepted, in bytes.
    #[arg(long = "max-value-bytes", env = "KVD_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Size of each WAL segment file in bytes (preallocated; default 64 MiB).
    #[arg(long = "wal-segment-bytes", env = "KVD_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Request ids remembered per client for deduplication (part of the replicated state:
    /// give every node the same value).
    #[arg(long = "session-window", env = "KVD_SESSION_WINDOW")]
    pub session_window: Option<usize>,
    /// Clients remembered at once, least recently active evicted beyond (same on every node).
    #[arg(long = "max-sessions", env = "KVD_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// A client silent for this many log entries is forgotten (same on every node).
    #[arg(long = "session-expiry-entries", env = "KVD_SESSION_EXPIRY_ENTRIES")]
    pub session_expiry_entries: Option<u64>,
    /// QUIC: directory with the cluster CA and node certificates (default `<data-dir>/certs`;
    /// missing ones are generated, which suits a single machine; share the CA otherwise).
    #[arg(long = "certs-dir", env = "KVD_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Async worker threads for the client API, the Raft loop and the transport (storage has
    /// its own thread). 0 runs them all on one thread: the fewest thread hand-offs per
    /// request, best when cores are few. Default: 0 with ≤ 2 CPUs, else the CPU count.
    #[arg(long = "worker-threads", env = "KVD_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

/// Defaults, documented in the README's configuration reference.
pub mod defaults {
    use std::time::Duration;

    /// Client API address.
    pub const ADDR: &str = "127.0.0.1:50051";
    /// Raft transport address.
    pub const RAFT_ADDR: &str = "127.0.0.1:60051";
    /// Cluster id.
    pub const CLUSTER_ID: &str = "kv";
    /// Heartbeat: frequent enough that a few lost heartbeats never look like a dead leader.
    pub const HEARTBEAT: Duration = Duration::from_millis(50);
    /// Election timeout: five heartbeats at least, so a loaded machine's hiccup does not start
    /// an election, yet a dead leader is replaced in well under a second.
    pub const ELECTION_MIN: Duration = Duration::from_millis(250);
    /// Upper end of the randomized election timeout.
    pub const ELECTION_MAX: Duration = Duration::from_millis(500);
    /// Snapshot every this many applied entries.
    pub const SNAPSHOT_ENTRIES: u64 = 10_000;
    /// Largest key (bytes).
    pub const MAX_KEY_BYTES: usize = 4096;
    /// Largest value (bytes).
    pub const MAX_VALUE_BYTES: usize = 1 << 20;

    /// Async worker threads: one thread in all (0) on machines with at most two CPUs, where
    /// hand-offs between threads cost more than the parallelism gains; else one per CPU.
    pub fn worker_threads() -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if cpus <= 2 { 0 } else { cpus }
    }
}

/// A peer as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its name (or, in the address-only form, its address as text).
    pub name: String,
    /// Its Raft transport address.
    pub raft_addr: SocketAddr,
}

/// The resolved configuration of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Raft id (hash of the identity).
    pub id: NodeId,
    /// Display name.
    pub name: String,
    /// Client API address.
    pub client_addr: SocketAddr,
    /// Raft transport address.
    pub raft_addr: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The other voters by id.
    pub peers: BTreeMap<NodeId, Peer>,
    /// Peer transport.
    pub transport: TransportKind,
    /// Cluster id.
    pub cluster_id: String,
    /// Snapshot after this many applied entries.
    pub snapshot_entries: u64,
    /// Snapshot after this much time, if set.
    pub snapshot_interval: Option<Duration>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Largest key.
    pub max_key_bytes: usize,
    /// Largest value.
    pub max_value_bytes: usize,
    /// QUIC certificates directory.
    pub certs_dir: PathBuf,
    /// WAL segment size in bytes.
    pub wal_segment_bytes: u64,
    /// Client session limits.
    pub sessions: crate::state_machine::SessionLimits,
    /// Async worker threads (0 = a single-threaded runtime).
    pub worker_threads: usize,
}

/// A configuration problem, reported as one line at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A setting is malformed or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// The numeric Raft id of an identity (FNV-1a 64; never 0).
pub fn node_id(identity: &str) -> NodeId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

/// Rewrites the seed's one-dash long flags (`-node x`, `-raft_addr=y`) to `--` form so the
/// parser accepts them. Short flags and values are left alone.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const LONG: &[&str] = &[
        "node",
        "addr",
        "raft_addr",
        "raft-addr",
        "wal",
        "peers",
        "snap_every",
        "snap-every",
        "data-dir",
        "transport",
        "config",
        "cluster-id",
        "client",
        "req",
        "timeout",
        "endpoints",
        "output",
    ];
    let mut seen_separator = false;
    args.into_iter()
        .map(|arg| {
            if seen_separator {
                return arg;
            }
            if arg == "--" {
                seen_separator = true;
                return arg;
            }
            if let Some(rest) = arg.strip_prefix('-')
                && !rest.starts_with('-')
            {
                let name = rest.split('=').next().unwrap_or("");
                if LONG.contains(&name) {
                    return format!("-{arg}");
                }
            }
            arg
        })
        .collect()
}

/// Parses `30s`, `1500ms`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let bad = || {
        ConfigError::Invalid(format!(
            "invalid duration {text:?} (use e.g. 500ms, 30s, 5m, 1h)"
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl NodeArgs {
    /// Fills unset fields from `other` (lower precedence).
    fn or(self, other: Self) -> Self {
        Self {
            config: self.config.or(other.config),
            node: self.node.or(other.node),
            addr: self.addr.or(other.addr),
            raft_addr: self.raft_addr.or(other.raft_addr),
            data_dir: self.data_dir.or(other.data_dir),
            wal: self.wal.or(other.wal),
            peers: self.peers.or(other.peers),
            transport: self.transport.or(other.transport),
            cluster_id: self.cluster_id.or(other.cluster_id),
            snap_every: self.snap_every.or(other.snap_every),
            snapshot_entries: self.snapshot_entries.or(other.snapshot_entries),
            heartbeat_ms: self.heartbeat_ms.or(other.heartbeat_ms),
            election_timeout_ms: self.election_timeout_ms.or(other.election_timeout_ms),
            max_key_bytes: self.max_key_bytes.or(other.max_key_bytes),
            max_value_bytes: self.max_value_bytes.or(other.max_value_bytes),
            certs_dir: self.certs_dir.or(other.certs_dir),
            wal_segment_bytes: self.wal_segment_bytes.or(other.wal_segment_bytes),
            worker_threads: self.worker_threads.or(other.worker_threads),
            session_window: self.session_window.or(other.session_window),
            max_sessions: self.max_sessions.or(other.max_sessions),
            session_expiry_entries: self.session_expiry_entries.or(other.session_expiry_entries),
        }
    }

    /// Merges in the config file (if any) and resolves every setting.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let merged = match &self.config {
            Some(path) => self.clone().or(read_file(path)?),
            None => self,
        };
        merged.resolve_merged()
    }

    fn resolve_merged(self) -> Result<NodeConfig, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let client_addr = self
            .addr
            .unwrap_or_else(|| defaults::ADDR.parse().expect("valid default"));
        let raft_addr = self
            .raft_addr
            .unwrap_or_else(|| defaults::RAFT_ADDR.parse().expect("valid default"));
        if client_addr == raft_addr {
            return Err(invalid(format!(
                "client and raft addresses are both {client_addr}"
            )));
        }
        let peers_text = self.peers.unwrap_or_default();
        let entries: Vec<&str> = peers_text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let explicit = entries.iter().filter(|p| p.contains('=')).count();
        if explicit != 0 && explicit != entries.len() {
            return Err(invalid(
                "--peers mixes name=address and bare addresses; use one form".to_string(),
            ));
        }
        let explicit = explicit > 0;
        let name = match (&self.node, explicit) {
            (Some(name), _) => name.clone(),
            (None, true) => {
                return Err(invalid(
                    "--node NAME is required with name=address peers".to_string(),
                ));
            }
            (None, false) => raft_addr.to_string(),
        };
        if name.is_empty() || name.contains(['=', ',']) {
            return Err(invalid(format!("invalid node name {name:?}")));
        }
        let identity = if explicit {
            name.clone()
        } else {
            raft_addr.to_string()
        };
        let id = node_id(&identity);
        let mut peers = BTreeMap::new();
        for entry in entries {
            let (peer_name, addr_text) = match entry.split_once('=') {
                Some((n, a)) => (n.trim().to_string(), a.trim()),
                None => (entry.to_string(), entry),
            };
            let addr: SocketAddr = addr_text
                .parse()
                .map_err(|_| invalid(format!("invalid peer address {addr_text:?} in --peers")))?;
            let peer_id = node_id(&peer_name);
            if peer_id == id || addr == raft_addr {
                return Err(invalid(format!("--peers lists this node itself ({entry})")));
            }
            let peer = Peer {
                name: peer_name,
                raft_addr: addr,
            };
            if let Some(previous) = peers.insert(peer_id, peer) {
                return Err(invalid(format!("--peers names {} twice", previous.name)));
            }
        }
        let data_dir = match (self.data_dir, self.wal) {
            (Some(dir), _) => dir,
            (None, Some(wal)) => wal
                .parent()
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(".")),
            (None, None) => PathBuf::from("data").join(sanitize(&name)),
        };
        let heartbeat = Duration::from_millis(
            self.heartbeat_ms
                .unwrap_or(defaults::HEARTBEAT.as_millis() as u64),
        );
        let election_timeout = match self.election_timeout_ms {
            Some(text) => {
                let (lo, hi) = text
                    .split_once('-')
                    .and_then(|(a, b)| {
                        Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
                    })
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid --election-timeout-ms {text:?} (use MIN-MAX)"
                        ))
                    })?;
                (Duration::from_millis(lo), Duration::from_millis(hi))
            }
            None => (defaults::ELECTION_MIN, defaults::ELECTION_MAX),
        };
        if heartbeat.is_zero()
            || election_timeout.0 <= heartbeat
            || election_timeout.1 <= election_timeout.0
        {
            return Err(invalid(format!(
                "timing: need 0 < heartbeat ({heartbeat:?}) < election min ({:?}) < election max ({:?})",
                election_timeout.0, election_timeout.1
            )));
        }
        let snapshot_interval = self
            .snap_every
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .filter(|d| !d.is_zero());
        Ok(NodeConfig {
            id,
            name,
            client_addr,
            raft_addr,
            peers,
            transport: self.transport.unwrap_or_default(),
            cluster_id: self
                .cluster_id
                .unwrap_or_else(|| defaults::CLUSTER_ID.to_string()),
            snapshot_entries: self
                .snapshot_entries
                .unwrap_or(defaults::SNAPSHOT_ENTRIES)
                .max(1),
            snapshot_interval,
            heartbeat,
            election_timeout,
            max_key_bytes: self.max_key_bytes.unwrap_or(defaults::MAX_KEY_BYTES),
            max_value_bytes: self.max_value_bytes.unwrap_or(defaults::MAX_VALUE_BYTES),
            certs_dir: self.certs_dir.unwrap_or_else(|| data_dir.join("certs")),
            wal_segment_bytes: self.wal_segment_bytes.unwrap_or(64 << 20).max(1 << 20),
            worker_threads: self.worker_threads.unwrap_or_else(defaults::worker_threads),
            sessions: {
                let d = crate::state_machine::SessionLimits::default();
                crate::state_machine::SessionLimits {
                    request_window: self.session_window.unwrap_or(d.request_window).max(1),
                    max_sessions: self.max_sessions.unwrap_or(d.max_sessions).max(1),
                    session_expiry_entries: self
                        .session_expiry_entries
                        .unwrap_or(d.session_expiry_entries)
                        .max(1),
                }
            },
            data_dir,
        })
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_file(path: &Path) -> Result<NodeArgs, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| file_error(e.message().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeArgs,
    }

    fn parse(args: &[&str]) -> Result<NodeConfig, ConfigError> {
        let argv = normalize_args(
            std::iter::once("kvd")
                .chain(args.iter().copied())
                .map(String::from),
        );
        Cli::try_parse_from(argv)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .args
            .resolve()
    }

    #[test]
    fn the_seed_flags_are_accepted_as_written() {
        let c = parse(&[
            "-node",
            "node-1",
            "-addr",
            "127.0.0.1:50051",
            "-raft_addr",
            "127.0.0.1:60051",
            "-wal",
            "./data/node1/wal.log",
            "-peers",
            "127.0.0.1:60052,127.0.0.1:60053",
            "-snap_every",
            "30s",
        ])
        .unwrap();
        assert_eq!(c.name, "node-1");
        assert_eq!(c.data_dir, PathBuf::from("./data/node1"));
        assert_eq!(
            c.id,
            node_id("127.0.0.1:60051"),
            "address-only peers: identity is the raft address"
        );
        assert_eq!(c.peers.len(), 2);
        assert!(c.peers.contains_key(&node_id("127.0.0.1:60052")));
        assert_eq!(c.snapshot_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn explicit_peers_use_names_as_identities() {
        let c = parse(&[
            "--node",
            "a",
            "--raft-addr",
            "127.0.0.1:7001",
            "--peers",
            "b=127.0.0.1:7002,c=127.0.0.1:7003",
        ])
        .unwrap();
        assert_eq!(c.id, node_id("a"));
        assert_eq!(
            c.peers[&node_id("b")].raft_addr,
            "127.0.0.1:7002".parse().unwrap()
        );
    }

    #[test]
    fn bad_configurations_fail_with_one_clear_line() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--peers", "b=127.0.0.1:1,127.0.0.1:2", "--node", "a"],
                "mixes",
            ),
            (
                &["--node", "a", "--peers", "b=127.0.0.1:1,b=127.0.0.1:2"],
                "twice",
            ),
            (&["--node", "a", "--peers", "a=127.0.0.1:1"], "itself"),
            (
                &["--node", "a", "--peers", "b=nowhere"],
                "invalid peer address",
            ),
            (&["--peers", "b=127.0.0.1:1"], "--node NAME is required"),
            (&["--heartbeat-ms", "900"], "timing"),
            (&["--snap-every", "soon"], "invalid duration"),
            (
                &["--addr", "127.0.0.1:1", "--raft-addr", "127.0.0.1:1"],
                "both",
            ),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!err.trim().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("kvd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kvd.toml");
        std::fs::write(
            &file,
            "node = \"from-file\"\nheartbeat_ms = 20\nelection_timeout_ms = \"100-200\"\n",
        )
        .unwrap();
        let c = parse(&["--config", file.to_str().unwrap(), "--node", "from-flag"]).unwrap();
        assert_eq!(c.name, "from-flag");
        assert_eq!(c.heartbeat, Duration::from_millis(20));
        std::fs::write(&file, "nod = \"typo\"\n").unwrap();
        let err = parse(&["--config", file.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("-1s").is_err());
    }
}
