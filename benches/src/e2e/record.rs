//! The results file: one JSON line per run, made of the scenario's parameters, facts about
//! the run (commit, start time, CPU used) and the load generator's own JSON object.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::scenario::Scenario;

/// The load generator's result: the JSON object on the last non-empty line of its stdout.
pub(crate) fn parse_loadgen_output(stdout: &str) -> Result<Map<String, Value>, String> {
    let last = stdout
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .ok_or("the load generator printed nothing")?;
    match serde_json::from_str(last) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) | Err(_) => Err(format!(
            "the load generator's last line is not a JSON object: {last}"
        )),
    }
}

/// What the runner observed about one run, beside the load generator's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RunFacts {
    /// When the measured run started, RFC 3339 UTC.
    pub(crate) started_at: String,
    /// `git rev-parse HEAD` of the working tree, if it is a repository.
    pub(crate) git_commit: Option<String>,
    /// Whether tracked files differ from that commit.
    pub(crate) git_dirty: bool,
    /// Whether the keyspace was filled before the run.
    pub(crate) filled: bool,
    /// The node (kvd) or member (etcd) killed in a failover run.
    pub(crate) killed: Option<String>,
    /// Seconds after the load generator started at which the leader was killed.
    pub(crate) killed_at_s: Option<f64>,
    /// CPU seconds (user + system) the cluster's processes used during the load generator run.
    pub(crate) cluster_cpu_s: Option<f64>,
    /// CPU seconds the load generator used.
    pub(crate) loadgen_cpu_s: Option<f64>,
    /// Wall seconds of the load generator run (warm-up included): the CPU figures' window.
    pub(crate) wall_s: f64,
}

/// The JSON line of one run (no trailing newline).
pub(crate) fn json_line(
    scenario: &Scenario,
    facts: &RunFacts,
    loadgen: Map<String, Value>,
) -> String {
    let round = |seconds: f64| (seconds * 1000.0).round() / 1000.0;
    let line = json!({
        "label": scenario.label(),
        "system": scenario.system.name(),
        "nodes": scenario.nodes,
        "transport": scenario.transport_name(),
        "scenario": scenario.kind.name(),
        "op": scenario.kind.op(),
        "value_size": scenario.value_size,
        "clients": scenario.clients,
        "conns": scenario.conns,
        "leader_only": scenario.leader_only(),
        "duration_s": scenario.duration_s,
        "warmup_s": scenario.warmup_s,
        "keyspace": scenario.keyspace,
        "filled": facts.filled,
        "timeout_ms": scenario.timeout_ms,
        "killed": facts.killed,
        "killed_at_s": facts.killed_at_s.map(round),
        "started_at": facts.started_at,
        "git_commit": facts.git_commit,
        "git_dirty": facts.git_dirty,
        "host_cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "wall_s": round(facts.wall_s),
        "cluster_cpu_s": facts.cluster_cpu_s.map(round),
        "loadgen_cpu_s": facts.loadgen_cpu_s.map(round),
        "loadgen": Value::Object(loadgen),
    });
    line.to_string()
}

/// `YYYY-MM-DD` (UTC) of `time`: the default results file's date.
pub(crate) fn utc_date(time: SystemTime) -> String {
    let (year, month, day, ..) = utc_fields(time);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of `time`.
pub(crate) fn utc_timestamp(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second) = utc_fields(time);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

fn utc_fields(time: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let in_day = seconds % 86_400;
    (
        year,
        month,
        day,
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::e2e::scenario::{Filter, Matrix, Timing, expand};

    const LOADGEN_STDOUT: &str = "\
Kv Put [http://127.0.0.1:50051] conns=1 clients=16 value=256B keyspace=100000 consistency=n/a
  33430 ok, 0 errors in 10.00s => 3343.0 ops/s   (gets 0, not found 0; puts 33430; redirects 0)
  latency ms: p50 4.200  p90 7.000  p99 13.900  p99.9 20.000  max 25.000  mean 4.700
  longest gap between successes: 30.0 ms
{\"throughput_ops_s\":3343.0,\"p50_ms\":4.2,\"p99_ms\":13.9,\"errors\":0,\"ops\":33430,\"max_gap_ms\":30.0}

";

    #[test]
    fn loadgen_result_is_the_last_line() {
        let result = parse_loadgen_output(LOADGEN_STDOUT).unwrap();
        assert_eq!(result["throughput_ops_s"], 3343.0);
        assert_eq!(result["ops"], 33430);
    }

    #[test]
    fn loadgen_output_without_a_result_is_an_error() {
        assert!(parse_loadgen_output("").is_err());
        assert!(parse_loadgen_output("error: no endpoints\n").is_err());
        assert!(parse_loadgen_output("[1, 2]\n").is_err());
    }

    #[test]
    fn json_line_has_the_scenario_facts_and_loadgen_result() {
        let runs = expand(Matrix::Quick, &Filter::default(), &Timing::default());
        let facts = RunFacts {
            started_at: "2026-11-26T10:00:00Z".to_string(),
            git_commit: Some("abc123".to_string()),
            killed: Some("node-2".to_string()),
            killed_at_s: Some(10.0004),
            cluster_cpu_s: Some(12.34567),
            wall_s: 22.0,
            ..RunFacts::default()
        };
        let loadgen = parse_loadgen_output(LOADGEN_STDOUT).unwrap();
        let line = json_line(&runs[5], &facts, loadgen);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["system"], "kvd");
        assert_eq!(value["nodes"], 3);
        assert_eq!(value["transport"], "tcp");
        assert_eq!(value["scenario"], "failover");
        assert_eq!(value["op"], "put");
        assert_eq!(value["value_size"], 256);
        assert_eq!(value["clients"], 16);
        assert_eq!(value["conns"], 3);
        assert_eq!(value["leader_only"], false);
        assert_eq!(value["duration_s"], 20.0);
        assert_eq!(value["git_commit"], "abc123");
        assert_eq!(value["killed"], "node-2");
        assert_eq!(value["killed_at_s"], 10.0);
        assert_eq!(value["cluster_cpu_s"], 12.346);
        assert_eq!(value["loadgen_cpu_s"], Value::Null);
        assert_eq!(value["loadgen"]["max_gap_ms"], 30.0);
    }

    #[test]
    fn utc_dates() {
        let at = |seconds| UNIX_EPOCH + Duration::from_secs(seconds);
        assert_eq!(utc_timestamp(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(at(951_782_400)), "2000-02-29");
        assert_eq!(utc_timestamp(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(utc_date(at(1_798_761_600)), "2027-01-01");
    }
}
