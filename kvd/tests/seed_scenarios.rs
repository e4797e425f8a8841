//! The seed's manual test scenarios, automated against real `kvd` processes, over both
//! transports, with a client generated from the seed's `kv.proto` exactly as shipped.

mod support;

use support::Cluster;

#[test]
fn the_seed_proto_is_shipped_unchanged() {
    let ours = include_str!("../proto/seed/kv.proto");
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/api/kv.proto");
    let contract = std::fs::read_to_string(&shared).unwrap_or_else(|e| {
        panic!(
            "cannot read the contract kv.proto at {} ({e}): it is expected in shared/api/ \
             next to the repository's directory",
            shared.display()
        )
    });
    assert_eq!(
        ours,
        contract,
        "kvd/proto/seed/kv.proto must be a verbatim copy of the contract at {}",
        shared.display()
    );
}

async fn scenario_replication_and_many_keys(transport: &'static str) {
    let cluster = Cluster::start(3, transport);
    let leader = cluster.leader().await;
    // Scenario 1: a write to the leader is readable from every node.
    let answer = cluster.put(leader, "test_key", "test_value", "", 0).await;
    assert!(answer.ok, "{answer:?}");
    for node in 0..3 {
        assert_eq!(
            cluster.get(node, "test_key").await.as_deref(),
            Some("test_value"),
            "node {node}"
        );
    }
    // A write sent to a follower is forwarded and names the leader.
    let follower = (leader + 1) % 3;
    let answer = cluster.put(follower, "via_follower", "v", "", 0).await;
    assert!(answer.ok);
    assert_eq!(answer.leader, cluster.client[leader].to_string());
    // Scenario 3: many keys, written and read back from every node.
    for i in 0..50 {
        assert!(
            cluster
                .put(i % 3, &format!("user:{i}"), &format!("name-{i}"), "", 0)
                .await
                .ok
        );
    }
    for node in 0..3 {
        for i in (0..50).step_by(7) {
            assert_eq!(
                cluster.get(node, &format!("user:{i}")).await,
                Some(format!("name-{i}"))
            );
        }
        assert_eq!(cluster.get(node, "nonexistent").await, None);
    }
}

async fn scenario_idempotent_retries(transport: &'static str) {
    let cluster = Cluster::start(3, transport);
    let leader = cluster.leader().await;
    // Scenario 4: the same (client, request) three times is applied once.
    for _ in 0..3 {
        assert!(
            cluster
                .put(leader, "idempotent_key", "value1", "my_client", 999)
                .await
                .ok
        );
    }
    // Another client writes in between; a late retry of 999 must not undo it.
    assert!(
        cluster
            .put(leader, "idempotent_key", "other", "other_client", 1)
            .await
            .ok
    );
    assert!(
        cluster
            .put(
                (leader + 1) % 3,
                "idempotent_key",
                "value1",
                "my_client",
                999
            )
            .await
            .ok
    );
    assert_eq!(
        cluster.get(leader, "idempotent_key").await.as_deref(),
        Some("other")
    );
    assert!(
        cluster
            .put(leader, "idempotent_key", "value2", "my_client", 1000)
            .await
            .ok
    );
    assert_eq!(
        cluster.get(leader, "idempotent_key").await.as_deref(),
        Some("value2")
    );
}

async fn scenario_failover(transport: &'static str) {
    let mut cluster = Cluster::start(3, transport);
    let old = cluster.leader().await;
    assert!(cluster.put(old, "before", "1", "c", 1).await.ok);
    // Scenario 2: kill -9 the leader; a new one is elected and writes continue.
    cluster.kill(old);
    let new = cluster.leader().await;
    assert_ne!(new, old);
    let written = cluster
        .wait_for("a write after failover", || async {
            let mut client = cluster.client(new).await;
            let request = support::seed::PutRequest {
                key: "after".into(),
                value: b"2".to_vec(),
                client_id: "c".into(),
                request_id: 2,
            };
            client.put(request).await.ok().filter(|r| r.get_ref().ok)
        })
        .await;
    assert!(written.get_ref().ok);
    let survivor = (0..3).find(|&i| i != old && i != new).unwrap();
    assert_eq!(cluster.get(survivor, "after").await.as_deref(), Some("2"));
    assert_eq!(cluster.get(survivor, "before").await.as_deref(), Some("1"));
    // The old leader restarts from its WAL and catches up.
    cluster.spawn(old);
    cluster
        .wait_for("the restarted node to catch up", || async {
            let mut client = cluster.client(old).await;
            let request = support::seed::GetRequest {
                key: "after".into(),
            };
            let answer = client.get(request).await.ok()?.into_inner();
            (answer.found && answer.value == b"2").then_some(())
        })
        .await;
    // A graceful stop of the current leader hands leadership over and exits 0.
    let leader = cluster.leader().await;
    assert!(cluster.stop(leader).success());
    let next = cluster.leader().await;
    assert_ne!(next, leader);
    assert_eq!(cluster.get(next, "before").await.as_deref(), Some("1"));
}

/// A node that was down while the others snapshotted and dropped the log it missed catches
/// up from the leader's snapshot file (read back from disk, streamed format).
async fn scenario_catch_up_from_a_snapshot(transport: &'static str) {
    let mut cluster = Cluster::start_with(3, transport, &[("KVD_SNAPSHOT_ENTRIES", "40")]);
    let leader = cluster.leader().await;
    let down = (leader + 1) % 3;
    assert!(cluster.put(leader, "early", "0", "c", 1).await.ok);
    cluster.kill(down);
    for i in 0..150u64 {
        let key = format!("k{i}");
        assert!(
            cluster
                .put(leader, &key, &i.to_string(), "c", i + 2)
                .await
                .ok
        );
    }
    let root = cluster.dir.path().to_path_buf();
    let snaps = |node: usize| {
        std::fs::read_dir(root.join(format!("node-{}/snap", node + 1)))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    cluster
        .wait_for("the leader to snapshot", || async {
            (snaps(leader) > 0).then_some(())
        })
        .await;
    cluster.spawn(down);
    cluster
        .wait_for("the restarted node to catch up", || async {
            let mut client = cluster.client(down).await;
            let request = support::seed::GetRequest { key: "k149".into() };
            let answer = client.get(request).await.ok()?.into_inner();
            (answer.found && answer.value == b"149").then_some(())
        })
        .await;
    assert_eq!(cluster.get(down, "early").await.as_deref(), Some("0"));
    assert_eq!(cluster.get(down, "k7").await.as_deref(), Some("7"));
    assert!(
        snaps(down) > 0,
        "the follower stored the snapshot it installed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_catch_up_from_a_snapshot() {
    scenario_catch_up_from_a_snapshot("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_replication_and_many_keys() {
    scenario_replication_and_many_keys("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_replication_and_many_keys() {
    scenario_replication_and_many_keys("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idempotent_retries() {
    scenario_idempotent_retries("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_idempotent_retries() {
    scenario_idempotent_retries("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_failover_and_restart() {
    scenario_failover("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_failover_and_restart() {
    scenario_failover("quic").await;
}
