//! Scenarios and matrices: what one measured run is, which runs a matrix holds, and the
//! load generator's command line for each.
//!
//! Everything here is pure, so the expansion of a matrix and the arguments handed to the load
//! generator are unit-tested without starting anything.

use clap::ValueEnum;

/// The store under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum System {
    /// This project's server, one `kvd` process per node.
    Kvd,
    /// etcd, three members started by the shared `etcd3.sh`.
    Etcd,
}

impl System {
    /// The name used in flags and in the JSON lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kvd => "kvd",
            Self::Etcd => "etcd",
        }
    }

    /// The load generator's `--proto`.
    fn proto(self) -> &'static str {
        match self {
            Self::Kvd => "kv",
            Self::Etcd => "etcd",
        }
    }
}

/// kvd's peer transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// QUIC with mutual TLS.
    Quic,
}

impl Transport {
    /// The `--transport` argument of `kvd`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Kind {
    /// Puts, every connection to the leader (`--leader-only`).
    Put,
    /// Linearizable gets over every node, after filling the keyspace.
    Get,
    /// Gets and puts (half each) over every node, after filling the keyspace.
    Mixed,
    /// Puts over every node (one connection each) while the leader is killed with SIGKILL.
    Failover,
}

impl Kind {
    /// The name used in flags and in the JSON lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Mixed => "mixed",
            Self::Failover => "failover",
        }
    }

    /// The load generator's mode.
    pub(crate) fn op(self) -> &'static str {
        match self {
            Self::Put | Self::Failover => "put",
            Self::Get => "get",
            Self::Mixed => "mixed",
        }
    }

    /// Whether the keyspace is filled before the run, so reads find their keys.
    pub(crate) fn needs_fill(self) -> bool {
        matches!(self, Self::Get | Self::Mixed)
    }
}

/// A named set of scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Matrix {
    /// The headline runs: 3 nodes over TCP, 256 B puts with 1/16/64/256 clients,
    /// linearizable gets with 64 clients over every node, one failover run.
    Quick,
    /// 3 and 5 nodes × TCP and QUIC × 64 B to 64 KiB values × 1 to 256 clients of puts, plus
    /// a get and a failover run for each cluster shape.
    Full,
    /// Exactly the product of the filter flags (`--scenarios`, `--nodes`, `--transport`,
    /// `--values`, `--clients`; 3 nodes, TCP, 256 B, 16 clients and `put` when not given).
    Custom,
}

/// Restrictions on a matrix: a scenario is kept when each of its values is listed (an empty
/// list keeps everything). With [`Matrix::Custom`] the lists are the matrix itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub(crate) systems: Vec<System>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) nodes: Vec<u16>,
    pub(crate) transports: Vec<Transport>,
    pub(crate) values: Vec<u32>,
    pub(crate) clients: Vec<u32>,
}

/// How long runs last and what every run shares.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Timing {
    /// Measured seconds of a put, get or mixed run.
    pub(crate) duration_s: f64,
    /// Seconds of load before measuring.
    pub(crate) warmup_s: f64,
    /// Measured seconds of a failover run.
    pub(crate) failover_duration_s: f64,
    /// When the leader is killed, in seconds into a failover run's measured window.
    pub(crate) kill_at_s: f64,
    /// Keys drawn from (and filled before reads).
    pub(crate) keyspace: u64,
    /// The load generator's per-request timeout.
    pub(crate) timeout_ms: u64,
    /// Connections for every run instead of the per-kind default.
    pub(crate) conns: Option<u32>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            duration_s: 10.0,
            warmup_s: 2.0,
            failover_duration_s: 20.0,
            kill_at_s: 8.0,
            keyspace: 100_000,
            timeout_ms: 5000,
            conns: None,
        }
    }
}

/// One measured run: a fresh cluster, optionally filled, loaded by the load generator once.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scenario {
    pub(crate) system: System,
    pub(crate) nodes: u16,
    /// `None` for etcd, whose members talk HTTP to each other.
    pub(crate) transport: Option<Transport>,
    pub(crate) kind: Kind,
    pub(crate) value_size: u32,
    pub(crate) clients: u32,
    pub(crate) conns: u32,
    pub(crate) duration_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) keyspace: u64,
    pub(crate) timeout_ms: u64,
    /// Seconds after the load generator starts at which the leader is killed (failover only).
    pub(crate) kill_after_s: Option<f64>,
}

/// The put client counts of the matrices.
const CLIENTS: [u32; 4] = [1, 16, 64, 256];
/// Clients of the read runs (the headline figure's).
const READ_CLIENTS: u32 = 64;
/// Clients of a failover run.
const FAILOVER_CLIENTS: u32 = 16;
/// Connections of a read run when there are at least this many clients: spread over every
/// node; more connections cost CPU on a small machine without adding throughput.
const READ_CONNS: u32 = 16;
/// Clients used to fill the keyspace before reads.
pub(crate) const FILL_CLIENTS: u32 = 64;

/// The connections a run uses unless `--conns` says otherwise.
///
/// Puts go to the leader over one connection (HTTP/2 multiplexes every client on it); reads
/// spread over every node; a failover run has one connection per node, so a client whose
/// node dies moves on to a live one.
pub(crate) fn default_conns(kind: Kind, nodes: u16, clients: u32) -> u32 {
    match kind {
        Kind::Put => 1,
        Kind::Get | Kind::Mixed => clients.min(READ_CONNS.max(u32::from(nodes))).max(1),
        Kind::Failover => u32::from(nodes),
    }
}

/// One cluster shape and workload before timing is applied.
struct Shape {
    system: System,
    nodes: u16,
    transport: Option<Transport>,
    kind: Kind,
    value_size: u32,
    clients: u32,
}

/// Every scenario of `matrix`, for each system of `filter` (kvd when none), restricted by
/// `filter`, in the order they run: system, nodes, transport, kind, value size, clients.
pub(crate) fn expand(matrix: Matrix, filter: &Filter, timing: &Timing) -> Vec<Scenario> {
    let systems = if filter.systems.is_empty() {
        vec![System::Kvd]
    } else {
        filter.systems.clone()
    };
    let mut shapes = Vec::new();
    for system in systems {
        match matrix {
            Matrix::Quick => quick(system, &mut shapes),
            Matrix::Full => full(system, &mut shapes),
            Matrix::Custom => custom(system, filter, &mut shapes),
        }
    }
    shapes
        .into_iter()
        .filter(|s| keeps(filter, s))
        .map(|s| with_timing(s, timing))
        .collect()
}

/// The cluster shapes a system can run: etcd only as the script's three members.
fn clusters(
    system: System,
    nodes: &[u16],
    transports: &[Transport],
) -> Vec<(u16, Option<Transport>)> {
    match system {
        System::Kvd => nodes
            .iter()
            .flat_map(|&n| transports.iter().map(move |&t| (n, Some(t))))
            .collect(),
        System::Etcd => nodes
            .contains(&3)
            .then_some((3, None))
            .into_iter()
            .collect(),
    }
}

fn quick(system: System, shapes: &mut Vec<Shape>) {
    for (nodes, transport) in clusters(system, &[3], &[Transport::Tcp]) {
        let shape = |kind, clients| Shape {
            system,
            nodes,
            transport,
            kind,
            value_size: 256,
            clients,
        };
        shapes.extend(CLIENTS.map(|c| shape(Kind::Put, c)));
        shapes.push(shape(Kind::Get, READ_CLIENTS));
        shapes.push(shape(Kind::Failover, FAILOVER_CLIENTS));
    }
}

fn full(system: System, shapes: &mut Vec<Shape>) {
    for (nodes, transport) in clusters(system, &[3, 5], &[Transport::Tcp, Transport::Quic]) {
        let shape = |kind, value_size, clients| Shape {
            system,
            nodes,
            transport,
            kind,
            value_size,
            clients,
        };
        for value_size in [64, 256, 4096, 65536] {
            // 256 clients of 64 KiB values is 16 MiB in flight: past what this machine
            // measures meaningfully, and slow to drain.
            let clients: &[u32] = if value_size >= 65536 {
                &CLIENTS[..3]
            } else {
                &CLIENTS
            };
            shapes.extend(clients.iter().map(|&c| shape(Kind::Put, value_size, c)));
        }
        shapes.push(shape(Kind::Get, 256, READ_CLIENTS));
        shapes.push(shape(Kind::Failover, 256, FAILOVER_CLIENTS));
    }
}

fn custom(system: System, filter: &Filter, shapes: &mut Vec<Shape>) {
    fn or<T: Clone>(given: &[T], default: T) -> Vec<T> {
        if given.is_empty() {
            vec![default]
        } else {
            given.to_vec()
        }
    }
    let kinds = or(&filter.kinds, Kind::Put);
    let values = or(&filter.values, 256);
    let clients = or(&filter.clients, FAILOVER_CLIENTS);
    let nodes = or(&filter.nodes, 3);
    let transports = or(&filter.transports, Transport::Tcp);
    for (nodes, transport) in clusters(system, &nodes, &transports) {
        for &kind in &kinds {
            for &value_size in &values {
                for &clients in &clients {
                    shapes.push(Shape {
                        system,
                        nodes,
                        transport,
                        kind,
                        value_size,
                        clients,
                    });
                }
            }
        }
    }
}

/// Whether `filter` keeps `shape`. etcd has no transport choice, so `--transport` leaves it be.
fn keeps(filter: &Filter, shape: &Shape) -> bool {
    fn listed<T: PartialEq>(list: &[T], value: T) -> bool {
        list.is_empty() || list.contains(&value)
    }
    listed(&filter.kinds, shape.kind)
        && listed(&filter.nodes, shape.nodes)
        && shape
            .transport
            .is_none_or(|t| listed(&filter.transports, t))
        && listed(&filter.values, shape.value_size)
        && listed(&filter.clients, shape.clients)
}

fn with_timing(shape: Shape, timing: &Timing) -> Scenario {
    let failover = shape.kind == Kind::Failover;
    Scenario {
        system: shape.system,
        nodes: shape.nodes,
        transport: shape.transport,
        kind: shape.kind,
        value_size: shape.value_size,
        clients: shape.clients,
        conns: timing
            .conns
            .unwrap_or_else(|| default_conns(shape.kind, shape.nodes, shape.clients)),
        duration_s: if failover {
            timing.failover_duration_s
        } else {
            timing.duration_s
        },
        warmup_s: timing.warmup_s,
        keyspace: timing.keyspace,
        timeout_ms: timing.timeout_ms,
        kill_after_s: failover.then_some(timing.warmup_s + timing.kill_at_s),
    }
}

impl Scenario {
    /// The transport as recorded: kvd's peer transport, or `http` for etcd's members.
    pub(crate) fn transport_name(&self) -> &'static str {
        self.transport.map_or("http", Transport::name)
    }

    /// A short unique name, e.g. `kvd-3n-tcp-put-256B-c16`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{}-{}n-{}-{}-{}B-c{}",
            self.system.name(),
            self.nodes,
            self.transport_name(),
            self.kind.name(),
            self.value_size,
            self.clients
        )
    }

    /// Whether every connection goes to the leader.
    pub(crate) fn leader_only(&self) -> bool {
        self.kind == Kind::Put
    }

    /// The load generator's arguments for the measured run against `endpoints`.
    pub(crate) fn loadgen_args(&self, endpoints: &[String]) -> Vec<String> {
        let mut args = self.common_args(self.kind.op(), endpoints);
        args.extend([
            "--clients".to_string(),
            self.clients.to_string(),
            "--conns".to_string(),
            self.conns.to_string(),
            "--warmup".to_string(),
            self.warmup_s.to_string(),
            "--duration".to_string(),
            self.duration_s.to_string(),
            "--label".to_string(),
            self.label(),
        ]);
        if self.leader_only() {
            args.push("--leader-only".to_string());
        }
        args
    }

    /// The load generator's arguments that write every key of the keyspace once, through the
    /// leader, before reads.
    pub(crate) fn fill_args(&self, endpoints: &[String]) -> Vec<String> {
        let mut args = self.common_args("fill", endpoints);
        args.extend([
            "--clients".to_string(),
            FILL_CLIENTS.to_string(),
            "--leader-only".to_string(),
        ]);
        args
    }

    fn common_args(&self, mode: &str, endpoints: &[String]) -> Vec<String> {
        vec![
            mode.to_string(),
            "--proto".to_string(),
            self.system.proto().to_string(),
            "--endpoints".to_string(),
            endpoints.join(","),
            "--value-size".to_string(),
            self.value_size.to_string(),
            "--keyspace".to_string(),
            self.keyspace.to_string(),
            "--timeout-ms".to_string(),
            self.timeout_ms.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(scenarios: &[Scenario]) -> Vec<String> {
        scenarios.iter().map(Scenario::label).collect()
    }

    #[test]
    fn quick_matrix_is_the_headline_runs() {
        let runs = expand(Matrix::Quick, &Filter::default(), &Timing::default());
        assert_eq!(
            labels(&runs),
            [
                "kvd-3n-tcp-put-256B-c1",
                "kvd-3n-tcp-put-256B-c16",
                "kvd-3n-tcp-put-256B-c64",
                "kvd-3n-tcp-put-256B-c256",
                "kvd-3n-tcp-get-256B-c64",
                "kvd-3n-tcp-failover-256B-c16",
            ]
        );
        let put = &runs[1];
        assert_eq!(
            (put.conns, put.leader_only(), put.duration_s),
            (1, true, 10.0)
        );
        let get = &runs[4];
        assert_eq!((get.conns, get.leader_only()), (16, false));
        assert!(get.kind.needs_fill());
        let failover = &runs[5];
        assert_eq!(failover.conns, 3);
        assert_eq!(failover.duration_s, 20.0);
        assert_eq!(failover.kill_after_s, Some(10.0));
        assert!(runs[..5].iter().all(|s| s.kill_after_s.is_none()));
    }

    #[test]
    fn etcd_runs_the_same_quick_matrix_over_http() {
        let filter = Filter {
            systems: vec![System::Kvd, System::Etcd],
            ..Filter::default()
        };
        let runs = expand(Matrix::Quick, &filter, &Timing::default());
        assert_eq!(runs.len(), 12);
        assert_eq!(runs[6].label(), "etcd-3n-http-put-256B-c1");
        assert!(runs[6..].iter().all(|s| s.transport.is_none()));
    }

    #[test]
    fn full_matrix_covers_every_shape_with_fewer_large_value_runs() {
        let runs = expand(Matrix::Full, &Filter::default(), &Timing::default());
        // per cluster shape: 4 + 4 + 4 + 3 puts, one get, one failover
        assert_eq!(runs.len(), 4 * 17);
        assert!(
            !runs
                .iter()
                .any(|s| s.value_size == 65536 && s.clients == 256)
        );
        assert!(
            runs.iter()
                .any(|s| s.nodes == 5 && s.transport == Some(Transport::Quic))
        );

        let etcd = Filter {
            systems: vec![System::Etcd],
            ..Filter::default()
        };
        let runs = expand(Matrix::Full, &etcd, &Timing::default());
        assert_eq!(runs.len(), 17);
        assert!(runs.iter().all(|s| s.nodes == 3));
    }

    #[test]
    fn filters_restrict_every_dimension() {
        let filter = Filter {
            nodes: vec![5],
            transports: vec![Transport::Quic],
            values: vec![4096],
            clients: vec![1, 16],
            ..Filter::default()
        };
        let runs = expand(Matrix::Full, &filter, &Timing::default());
        assert_eq!(
            labels(&runs),
            ["kvd-5n-quic-put-4096B-c1", "kvd-5n-quic-put-4096B-c16"]
        );

        let only_failover = Filter {
            kinds: vec![Kind::Failover],
            ..Filter::default()
        };
        let runs = expand(Matrix::Quick, &only_failover, &Timing::default());
        assert_eq!(labels(&runs), ["kvd-3n-tcp-failover-256B-c16"]);
    }

    #[test]
    fn custom_matrix_is_the_product_of_the_flags() {
        let filter = Filter {
            kinds: vec![Kind::Put, Kind::Mixed],
            clients: vec![1, 4],
            ..Filter::default()
        };
        let timing = Timing {
            duration_s: 1.0,
            warmup_s: 0.5,
            conns: Some(2),
            ..Timing::default()
        };
        let runs = expand(Matrix::Custom, &filter, &timing);
        assert_eq!(
            labels(&runs),
            [
                "kvd-3n-tcp-put-256B-c1",
                "kvd-3n-tcp-put-256B-c4",
                "kvd-3n-tcp-mixed-256B-c1",
                "kvd-3n-tcp-mixed-256B-c4",
            ]
        );
        assert!(runs.iter().all(|s| s.conns == 2 && s.duration_s == 1.0));
        let defaults = expand(Matrix::Custom, &Filter::default(), &timing);
        assert_eq!(labels(&defaults), ["kvd-3n-tcp-put-256B-c16"]);
    }

    #[test]
    fn read_connections_spread_over_the_nodes() {
        assert_eq!(default_conns(Kind::Get, 3, 1), 1);
        assert_eq!(default_conns(Kind::Get, 3, 8), 8);
        assert_eq!(default_conns(Kind::Get, 3, 256), 16);
        assert_eq!(default_conns(Kind::Mixed, 5, 64), 16);
        assert_eq!(default_conns(Kind::Put, 5, 256), 1);
        assert_eq!(default_conns(Kind::Failover, 5, 16), 5);
    }

    #[test]
    fn loadgen_command_lines() {
        let endpoints = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let runs = expand(Matrix::Quick, &Filter::default(), &Timing::default());
        assert_eq!(
            runs[0].loadgen_args(&endpoints).join(" "),
            "put --proto kv --endpoints 127.0.0.1:1,127.0.0.1:2 --value-size 256 \
             --keyspace 100000 --timeout-ms 5000 --clients 1 --conns 1 --warmup 2 \
             --duration 10 --label kvd-3n-tcp-put-256B-c1 --leader-only"
        );
        assert_eq!(
            runs[4].fill_args(&endpoints).join(" "),
            "fill --proto kv --endpoints 127.0.0.1:1,127.0.0.1:2 --value-size 256 \
             --keyspace 100000 --timeout-ms 5000 --clients 64 --leader-only"
        );
        let failover = runs[5].loadgen_args(&endpoints);
        assert!(!failover.contains(&"--leader-only".to_string()));
        assert!(
            failover
                .join(" ")
                .contains("--conns 3 --warmup 2 --duration 20")
        );

        let etcd = Filter {
            systems: vec![System::Etcd],
            ..Filter::default()
        };
        let runs = expand(Matrix::Quick, &etcd, &Timing::default());
        assert!(
            runs[0]
                .loadgen_args(&endpoints)
                .join(" ")
                .contains("--proto etcd")
        );
    }
}
