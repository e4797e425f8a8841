//! kvctl against a real 3-node kvd cluster: every subcommand, the seed's output lines and
//! idempotency scenario, exit codes, and a failover in the middle of a retried put.

mod support;

use support::{Cluster, code, kvctl, kvctl_with_stdin, stderr, stdout};

fn cat<'a>(first: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(rest).copied().collect()
}

/// Runs kvctl and expects exit code 0; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = kvctl(args);
    assert_eq!(code(&out), 0, "kvctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn commands_against_a_cluster() {
    let cluster = Cluster::start();
    let endpoints = cluster.endpoints();
    let leader = cluster.leader();
    let leader_addr = cluster.client[leader].to_string();
    let follower_addr = cluster.client[(leader + 1) % 3].to_string();
    let all = ["--endpoints", endpoints.as_str()];

    // The seed's lines.
    assert_eq!(
        ok(&["-addr", &leader_addr, "put", "username", "john_doe"]),
        "ok=true leader=\"\"\n"
    );
    assert_eq!(
        ok(&["-addr", &follower_addr, "get", "username"]),
        "value=\"john_doe\"\n"
    );
    let missing = kvctl(&["-addr", &leader_addr, "get", "nonexistent"]);
    assert_eq!(code(&missing), 1);
    assert_eq!(stdout(&missing), "key \"nonexistent\" not found\n");
    assert_eq!(
        ok(&["-addr", &leader_addr, "del", "username"]),
        "ok=true leader=\"\"\n"
    );
    assert_eq!(code(&kvctl(&["-addr", &leader_addr, "get", "username"])), 1);

    // A write sent to a follower is forwarded; the answer names the leader, as the seed's hint.
    assert_eq!(
        ok(&["-addr", &follower_addr, "put", "k", "v"]),
        format!("ok=true leader=\"{leader_addr}\"\n")
    );

    // health: one seed line per endpoint, exactly one leader.
    let health = ok(&cat(&all, &["health"]));
    assert_eq!(health.lines().count(), 3, "{health}");
    assert_eq!(health.matches("is_leader=true").count(), 1, "{health}");
    assert!(
        health
            .lines()
            .all(|l| l.starts_with("node_id=node-") && l.contains(" term=")),
        "{health}"
    );
    assert_eq!(
        ok(&["-addr", &leader_addr, "health"]),
        health
            .lines()
            .find(|l| l.contains("is_leader=true"))
            .unwrap()
            .to_string()
            + "\n"
    );

    // The seed's scenario 4: idempotent retries.
    let seed = |addr: &str, req: &str, value: &str| {
        ok(&[
            "-addr",
            addr,
            "-client",
            "my_client",
            "-req",
            req,
            "put",
            "idempotent_key",
            value,
        ])
    };
    for _ in 0..3 {
        assert_eq!(seed(&leader_addr, "999", "value1"), "ok=true leader=\"\"\n");
    }
    assert_eq!(
        ok(&cat(&all, &["get", "idempotent_key"])),
        "value=\"value1\"\n"
    );
    // Another client writes; a late retry of 999 (via a follower) must not undo it.
    ok(&cat(
        &all,
        &["-client", "other_client", "put", "idempotent_key", "other"],
    ));
    seed(&follower_addr, "999", "value1");
    assert_eq!(
        ok(&cat(&all, &["get", "idempotent_key"])),
        "value=\"other\"\n"
    );
    seed(&leader_addr, "1000", "value2");
    assert_eq!(
        ok(&cat(&all, &["get", "idempotent_key"])),
        "value=\"value2\"\n"
    );

    // Values from stdin and from a file; binary-safe output.
    let out = kvctl_with_stdin(
        &cat(&all, &["put", "from_stdin", "-"]),
        b"line one\nline two",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        ok(&cat(&all, &["get", "from_stdin"])),
        "value=\"line one\\nline two\"\n"
    );
    let file = cluster.dir.path().join("value.bin");
    std::fs::write(&file, [0u8, 0xff, b'\n', b'"']).unwrap();
    ok(&cat(
        &all,
        &["put", "binary", "--file", file.to_str().unwrap()],
    ));
    let raw = kvctl(&cat(&all, &["get", "binary", "--raw"]));
    assert_eq!(raw.stdout, [0u8, 0xff, b'\n', b'"']);
    assert_eq!(
        ok(&cat(&all, &["get", "binary"])),
        "value=\"\\x00\\xff\\n\\\"\"\n"
    );

    // Stale reads, and JSON output.
    assert_eq!(
        ok(&["-addr", &leader_addr, "get", "--stale", "k"]),
        "value=\"v\"\n"
    );
    let put: serde_json::Value = serde_json::from_str(&ok(&cat(
        &all,
        &[
            "--output",
            "json",
            "-client",
            "json_client",
            "-req",
            "5",
            "put",
            "j",
            "1",
        ],
    )))
    .unwrap();
    assert_eq!(put["ok"], true);
    assert_eq!(put["client_id"], "json_client");
    assert_eq!(put["request_id"], 5);
    let get: serde_json::Value =
        serde_json::from_str(&ok(&cat(&all, &["--output", "json", "get", "j"]))).unwrap();
    assert_eq!(
        get,
        serde_json::json!({"key": "j", "found": true, "value": "1"})
    );
    let get: serde_json::Value =
        serde_json::from_str(&ok(&cat(&all, &["--output", "json", "get", "binary"]))).unwrap();
    assert_eq!(get["value_base64"], "AP8KIg==");

    // Exit code 2: the cluster refuses an empty key; a bad command line.
    let empty = kvctl(&cat(&all, &["put", "", "v"]));
    assert_eq!(code(&empty), 2, "{}", stderr(&empty));
    assert!(
        stderr(&empty).contains("key must not be empty"),
        "{}",
        stderr(&empty)
    );

    // status: one row per node, one leader, every follower's lag known.
    let table = ok(&cat(&all, &["status"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("NODE") && lines[0].contains("LAG"),
        "{table}"
    );
    assert_eq!(table.matches(" leader ").count(), 1, "{table}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&cat(&all, &["--output", "json", "status"]))).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            .all(|n| n["lag"].is_u64() && n["commit_index"].as_u64() > Some(0)),
        "{status}"
    );

    // bench: a fixed number of requests, JSON summary.
    let bench: serde_json::Value = serde_json::from_str(&ok(&cat(
        &all,
        &[
            "--output",
            "json",
            "bench",
            "put",
            "--total",
            "40",
            "--clients",
            "4",
            "--conns",
            "2",
            "--keyspace",
            "10",
        ],
    )))
    .unwrap();
    assert_eq!(bench["requests"], 40, "{bench}");
    assert_eq!(bench["errors"], 0, "{bench}");
    assert!(
        bench["latency_ms"]["p99.9"].as_f64().unwrap() > 0.0,
        "{bench}"
    );
    let text = ok(&cat(
        &all,
        &[
            "bench",
            "mixed",
            "--duration",
            "300ms",
            "--clients",
            "2",
            "--stale",
        ],
    ));
    assert!(
        text.contains("workload mixed (stale reads)") && text.contains("p50"),
        "{text}"
    );
    let reads = ok(&cat(&all, &["bench", "get", "--total", "10"]));
    assert!(reads.contains("requests 10 "), "{reads}");
}

#[test]
fn a_put_retried_across_a_leader_failure_is_applied_once() {
    let mut cluster = Cluster::start();
    let old = cluster.leader();
    let old_addr = cluster.client[old].to_string();
    let endpoints = cluster.endpoints();
    // The first attempt reaches the leader and is applied...
    ok(&[
        "-addr", &old_addr, "-client", "failover", "-req", "7", "put", "fo_key", "first",
    ]);
    // ...then someone else writes, and the leader dies before the client hears back.
    ok(&[
        "--endpoints",
        &endpoints,
        "-client",
        "other",
        "put",
        "fo_key",
        "second",
    ]);
    cluster.kill(old);
    // The retry carries the same ids, starts at the dead node and must land on the new leader,
    // which recognises it: "first" is not applied again.
    let dead_first = format!(
        "{old_addr},{}",
        (0..3)
            .filter(|&i| i != old)
            .map(|i| cluster.client[i].to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let retry = [
        "--endpoints",
        dead_first.as_str(),
        "-timeout",
        "20s",
        "-client",
        "failover",
        "-req",
        "7",
    ];
    let out = kvctl(&[&retry[..], &["put", "fo_key", "first"]].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        ok(&["--endpoints", &dead_first, "get", "fo_key"]),
        "value=\"second\"\n"
    );
    // A new write through the same list still works, and a replay of it is applied once.
    let fresh = [
        "--endpoints",
        dead_first.as_str(),
        "-client",
        "failover",
        "-req",
        "8",
    ];
    ok(&[&fresh[..], &["put", "fo_key", "third"]].concat());
    ok(&[
        "--endpoints",
        &dead_first,
        "-client",
        "other",
        "put",
        "fo_key",
        "fourth",
    ]);
    ok(&[&fresh[..], &["put", "fo_key", "third"]].concat());
    assert_eq!(
        ok(&["--endpoints", &dead_first, "get", "fo_key"]),
        "value=\"fourth\"\n"
    );
    // status shows the dead node as unreachable and still answers.
    let table = ok(&["--endpoints", &dead_first, "status"]);
    assert!(table.contains("unreachable"), "{table}");
    // health still exits 0 while some endpoint answers.
    let health = kvctl(&["--endpoints", &dead_first, "health"]);
    assert_eq!(code(&health), 0);
    assert_eq!(stdout(&health).lines().count(), 2);
}

#[test]
fn exit_codes_without_a_cluster() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for args in [
        vec!["-addr", port.as_str(), "-timeout", "300ms", "put", "k", "v"],
        vec!["-addr", port.as_str(), "-timeout", "300ms", "get", "k"],
        vec!["-addr", port.as_str(), "-timeout", "300ms", "health"],
        vec!["--endpoints", port.as_str(), "-timeout", "300ms", "status"],
    ] {
        let out = kvctl(&args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
    }
    assert_eq!(code(&kvctl(&["put", "only_a_key"])), 2);
    assert_eq!(code(&kvctl(&["-req", "x", "get", "k"])), 2);
    assert_eq!(code(&kvctl(&["frobnicate"])), 2);
    let help = ok(&["--help"]);
    for line in [
        "0  success",
        "1  key not found",
        "2  usage error",
        "3  cluster unavailable",
    ] {
        assert!(help.contains(line), "{help}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&["completions", shell]);
        assert!(
            script.contains("kvctl") && script.contains("endpoints"),
            "{shell}"
        );
    }
}
