//! The checker catches a real bug: reads served from a node's local state (kvd's `stale`
//! Get, no ReadIndex) are not linearizable when that node has fallen behind.
//!
//! The construction is deterministic: write `v1` and wait until a follower shows it, stop
//! that follower, write `v2` through the other two, stop them, and restart the follower
//! alone. It cannot learn of `v2` (no quorum, no leader), yet a stale read answers at once
//! from its old state, after `v2` was acknowledged. The same read made linearizably would
//! wait for a leader and never return the old value.

use std::time::{Duration, Instant};

use kvctl::client::{Client, ClientConfig, Consistency};
use tests::cluster::{Cluster, Transport};
use tests::history::Recorder;
use tests::linearizability::{Command, Outcome, Verdict, check};
use tests::nemesis;
use tests::run::report_violation;

const KEY: &str = "stale-key";

fn client(endpoints: Vec<String>, id: &str) -> Client {
    Client::new(
        ClientConfig::new(endpoints)
            .client_id(id)
            .timeout(Duration::from_secs(5))
            .attempt_timeout(Duration::from_secs(1)),
    )
    .expect("client")
}

async fn put(client: &Client, recorder: &Recorder, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let invoked = recorder.now_ns();
        let result = client.put(KEY, value.as_bytes().to_vec()).await;
        let ok = result.is_ok();
        let outcome = if ok { Outcome::Ok } else { Outcome::Unknown };
        recorder.record(1, Command::put(KEY, value), invoked, outcome);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "put {value} never acknowledged");
    }
}

/// A stale read of `node`, recorded; `None` if the node did not answer.
async fn stale_read(client: &Client, recorder: &Recorder) -> Option<Option<String>> {
    let invoked = recorder.now_ns();
    let answer = client.get(KEY, Consistency::Stale).await.ok()?;
    let found = answer
        .value
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    recorder.record(
        2,
        Command::Get {
            key: KEY.into(),
            found: found.clone(),
        },
        invoked,
        Outcome::Ok,
    );
    Some(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_from_a_lagging_node_are_reported_as_a_violation() {
    let mut cluster = Cluster::start(3, Transport::Tcp);
    let endpoints = cluster.endpoints();
    let recorder = Recorder::new();
    let writer = client(endpoints.clone(), "writer");
    put(&writer, &recorder, "v1").await;

    // A follower that has applied v1.
    let probe = client(endpoints.clone(), "");
    let leader = {
        let shared = std::sync::Mutex::new(cluster);
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if let Some(leader) = nemesis::leader(&shared, &probe).await {
                break leader;
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        cluster = shared.into_inner().expect("not poisoned");
        leader
    };
    let lagging = (leader + 1) % 3;
    let lagging_client = client(vec![cluster.endpoint(lagging)], "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while stale_read(&lagging_client, &recorder).await != Some(Some("v1".into())) {
        assert!(Instant::now() < deadline, "the follower never applied v1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.stop(lagging);
    let others: Vec<String> = (0..3)
        .filter(|&i| i != lagging)
        .map(|i| cluster.endpoint(i))
        .collect();
    put(&client(others, "writer-2"), &recorder, "v2").await;
    for i in (0..3).filter(|&i| i != lagging) {
        cluster.stop(i);
    }
    cluster.restart(lagging);

    // The lone node answers stale reads from what it has (v1, or nothing if it has not
    // re-applied its log yet): either way, not v2.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        if let Some(found) = stale_read(&lagging_client, &recorder).await {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(seen.as_deref(), Some("v2"), "the lone node cannot know v2");

    let verdict = check(&recorder.operations(), 100_000);
    report_violation(&verdict, "stale-reads", Some(&cluster));
    let Verdict::Violation(violation) = verdict else {
        panic!("the checker missed a stale read: {}", verdict.label());
    };
    assert_eq!(violation.key(), KEY);
    assert!(
        violation.excerpt().contains("get stale-key"),
        "{}",
        violation.excerpt()
    );
}
