//! `kvctl bench`: a closed-loop load generator in the manner of etcd's benchmark tool.
//!
//! `--clients` workers each keep one request in flight, spread over `--conns` independent
//! connection pools. Every worker writes as its own client id (`<client>-bench-<n>`) with
//! increasing request ids, so retries stay idempotent and ids never fall out of the
//! cluster's per-client window. Keys are chosen from `--keyspace` by a seeded generator, so a
//! run is repeatable. Latencies go into an HDR histogram (microseconds, 3 significant
//! digits).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::cli::parse_duration;
use crate::client::{Client, Consistency};
use crate::commands::CommandError;
use crate::exit::Exit;
use crate::output::OutputFormat;

/// What the workers send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Puts only.
    Put,
    /// Gets only (linearizable, or `--stale`).
    Get,
    /// Gets and puts, `--read-ratio` of them gets.
    Mixed,
}

/// Options of `kvctl bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload
    #[arg(value_enum, default_value_t = Workload::Put)]
    pub workload: Workload,
    /// Number of distinct keys (`bench-0` ..)
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: u64,
    /// Size of each written value in bytes
    #[arg(long = "value-size", default_value_t = 256)]
    pub value_size: usize,
    /// Independent gRPC connection pools (one channel per endpoint each)
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent requests in flight (closed-loop workers)
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Run for this long [default: 10s unless --total is given]
    #[arg(long, value_parser = parse_duration, conflicts_with = "total")]
    pub duration: Option<Duration>,
    /// Stop after this many requests
    #[arg(long)]
    pub total: Option<u64>,
    /// Serve gets from the contacted node without confirming leadership
    #[arg(long)]
    pub stale: bool,
    /// Fraction of gets in the mixed workload
    #[arg(long = "read-ratio", default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Seed of the key and operation choices
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A small seeded generator (xorshift64*): repeatable runs without a global RNG.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counters shared by the workers and the progress line.
#[derive(Default)]
struct Progress {
    issued: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// What one worker measured.
struct WorkerReport {
    latencies: Histogram<u64>,
    last_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs the benchmark and prints the summary.
pub async fn run(
    client: &Client,
    args: &BenchArgs,
    output: OutputFormat,
) -> Result<Exit, CommandError> {
    if args.clients == 0 || args.conns == 0 || args.keyspace == 0 {
        return Err(CommandError::Usage(
            "--clients, --conns and --keyspace must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(CommandError::Usage(
            "--read-ratio must be between 0 and 1".into(),
        ));
    }
    let duration = match (args.duration, args.total) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let mut pools = vec![client.clone()];
    for _ in 1..args.conns {
        pools.push(client.with_new_connections()?);
    }
    let progress = Arc::new(Progress::default());
    let value = Arc::new(vec![b'v'; args.value_size]);
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let workers: Vec<_> = (0..args.clients)
        .map(|n| {
            let client =
                pools[n % pools.len()].with_client_id(format!("{}-bench-{n}", client.client_id()));
            let progress = Arc::clone(&progress);
            let value = Arc::clone(&value);
            let config = WorkerConfig {
                workload: args.workload,
                keyspace: args.keyspace,
                read_ratio: args.read_ratio,
                consistency: if args.stale {
                    Consistency::Stale
                } else {
                    Consistency::Linearizable
                },
                total: args.total,
                deadline,
                seed: args.seed.wrapping_add(n as u64),
            };
            tokio::spawn(worker(client, config, value, progress))
        })
        .collect();
    let reporter = tokio::spawn(report_progress(Arc::clone(&progress), started));
    let mut latencies = histogram();
    let mut last_error = None;
    for worker in workers {
        let report = worker.await.expect("bench worker does not panic");
        latencies.add(&report.latencies).expect("same bounds");
        last_error = report.last_error.or(last_error);
    }
    progress.stop.store(true, Ordering::Relaxed);
    reporter.await.expect("progress reporter does not panic");
    let elapsed = started.elapsed();
    let summary = Summary {
        args,
        requests: latencies.len(),
        errors: progress.errors.load(Ordering::Relaxed),
        elapsed,
        latencies: &latencies,
    };
    let mut stdout = std::io::stdout().lock();
    match output {
        OutputFormat::Text => stdout.write_all(summary.text().as_bytes())?,
        OutputFormat::Json => writeln!(stdout, "{}", summary.json())?,
    }
    if let Some(error) = last_error {
        eprintln!("kvctl bench: last error: {error}");
    }
    Ok(if summary.requests == 0 && summary.errors > 0 {
        Exit::Unavailable
    } else {
        Exit::Success
    })
}

struct WorkerConfig {
    workload: Workload,
    keyspace: u64,
    read_ratio: f64,
    consistency: Consistency,
    total: Option<u64>,
    deadline: Option<Instant>,
    seed: u64,
}

async fn worker(
    client: Client,
    config: WorkerConfig,
    value: Arc<Vec<u8>>,
    progress: Arc<Progress>,
) -> WorkerReport {
    let mut rng = Rng::new(config.seed);
    let mut report = WorkerReport {
        latencies: histogram(),
        last_error: None,
    };
    loop {
        if config.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(total) = config.total
            && progress.issued.fetch_add(1, Ordering::Relaxed) >= total
        {
            break;
        }
        let key = format!("bench-{}", rng.next() % config.keyspace);
        let read = match config.workload {
            Workload::Put => false,
            Workload::Get => true,
            Workload::Mixed => rng.fraction() < config.read_ratio,
        };
        let sent = Instant::now();
        let result = if read {
            client.get(&key, config.consistency).await.map(drop)
        } else {
            client.put(&key, value.to_vec()).await.map(drop)
        };
        match result {
            Ok(()) => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                report.latencies.saturating_record(micros.max(1));
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                report.last_error = Some(error.to_string());
            }
        }
    }
    report
}

/// Prints a progress line on stderr every second until told to stop.
async fn report_progress(progress: Arc<Progress>, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last_done = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = wait_stop(&progress) => break,
        }
        let done = progress.done.load(Ordering::Relaxed);
        let line = format!(
            "{:>5.1}s  {done} requests  {} req/s  {} errors",
            started.elapsed().as_secs_f64(),
            done - last_done,
            progress.errors.load(Ordering::Relaxed)
        );
        last_done = done;
        if terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }
    if terminal {
        eprintln!();
    }
}

async fn wait_stop(progress: &Progress) {
    while !progress.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Summary<'a> {
    args: &'a BenchArgs,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: &'a Histogram<u64>,
}

impl Summary<'_> {
    const QUANTILES: [(&'static str, f64); 4] =
        [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

    fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latencies in milliseconds: the quantiles, then max.
    fn latencies_ms(&self) -> Vec<(&'static str, f64)> {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let mut out: Vec<(&'static str, f64)> = Self::QUANTILES
            .iter()
            .map(|&(name, q)| (name, ms(self.latencies.value_at_quantile(q))))
            .collect();
        out.push(("max", ms(self.latencies.max())));
        out
    }

    fn workload(&self) -> &'static str {
        match self.args.workload {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
        }
    }

    fn text(&self) -> String {
        let latencies: Vec<String> = self
            .latencies_ms()
            .iter()
            .map(|(name, value)| format!("{name} {value:.3}ms"))
            .collect();
        format!(
            "workload {}{}  clients {}  conns {}  value-size {}  keyspace {}\n\
             requests {}  errors {}  elapsed {:.2}s  throughput {:.1} req/s\n\
             latency {}\n",
            self.workload(),
            if self.args.stale {
                " (stale reads)"
            } else {
                ""
            },
            self.args.clients,
            self.args.conns,
            self.args.value_size,
            self.args.keyspace,
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            latencies.join("  ")
        )
    }

    fn json(&self) -> String {
        let latency: serde_json::Map<String, serde_json::Value> = self
            .latencies_ms()
            .into_iter()
            .map(|(name, value)| (name.to_string(), json!(value)))
            .collect();
        json!({
            "workload": self.workload(),
            "stale": self.args.stale,
            "clients": self.args.clients,
            "conns": self.args.conns,
            "value_size": self.args.value_size,
            "keyspace": self.args.keyspace,
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput": self.throughput(),
            "latency_ms": latency,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_spreads() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let first: Vec<u64> = (0..5).map(|_| a.next()).collect();
        assert_eq!(first, (0..5).map(|_| b.next()).collect::<Vec<_>>());
        let mut rng = Rng::new(1);
        let reads = (0..10_000).filter(|_| rng.fraction() < 0.3).count();
        assert!((2_700..3_300).contains(&reads), "{reads}");
    }

    #[test]
    fn the_summary_reports_quantiles() {
        let args = BenchArgs {
            workload: Workload::Put,
            keyspace: 10,
            value_size: 8,
            conns: 1,
            clients: 2,
            duration: None,
            total: Some(4),
            stale: false,
            read_ratio: 0.5,
            seed: 1,
        };
        let mut latencies = histogram();
        for micros in [1000, 2000, 3000, 4000] {
            latencies.record(micros).unwrap();
        }
        let summary = Summary {
            args: &args,
            requests: 4,
            errors: 0,
            elapsed: Duration::from_secs(2),
            latencies: &latencies,
        };
        let json: serde_json::Value = serde_json::from_str(&summary.json()).unwrap();
        assert_eq!(json["requests"], 4);
        assert_eq!(json["throughput"], 2.0);
        let max = json["latency_ms"]["max"].as_f64().unwrap();
        assert!((4.0..4.01).contains(&max), "{max}");
        assert!(summary.text().contains("p99.9"));
    }
}
