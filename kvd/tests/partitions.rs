//! Test-only network faults (`KVD_FAULTS_FILE`, see `kvd::faults`) against real processes: a
//! cut-off leader is replaced and cannot answer, and forwarded client requests honour a
//! partition like Raft messages do.

mod support;

use kvd::faults::RulesFile;
use support::Cluster;
use support::seed::{GetRequest, PutRequest};
use tonic::{Code, Status};

fn name(i: usize) -> String {
    format!("node-{}", i + 1)
}

async fn put(
    cluster: &Cluster,
    node: usize,
    key: &str,
    value: &str,
) -> Result<bool, tonic::Status> {
    let mut client = cluster.client(node).await;
    let request = PutRequest {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        client_id: String::new(),
        request_id: 0,
    };
    client
        .put(request)
        .await
        .map(|answer| answer.into_inner().ok)
}

async fn get(cluster: &Cluster, node: usize, key: &str) -> Result<Option<String>, tonic::Status> {
    let mut client = cluster.client(node).await;
    let answer = client
        .get(GetRequest { key: key.into() })
        .await?
        .into_inner();
    Ok(answer
        .found
        .then(|| String::from_utf8(answer.value).expect("utf-8 value")))
}

/// How many rule changes node `i` has applied (each is logged).
fn rule_changes(cluster: &Cluster, i: usize) -> usize {
    cluster.log(i).matches("fault rules changed").count()
}

/// Replaces node `i`'s rules and waits until the node has applied them.
async fn apply_rules(cluster: &Cluster, i: usize, rules: &RulesFile) {
    let before = rule_changes(cluster, i);
    cluster.set_rules(i, rules);
    cluster
        .wait_for("the node to apply its rules", || async {
            (rule_changes(cluster, i) > before).then_some(())
        })
        .await;
}

/// Cuts `node` off from `peer` with `node`'s rules alone, sends a write through `via` right
/// away, heals, and returns the write's error (a write that crosses the cut fails the test).
/// If `via` lost track of the leader first (a loaded machine can delay the rules past an
/// election timeout), its answer says nothing about forwarding: try again.
async fn write_across_a_cut(cluster: &Cluster, node: usize, peer: usize, via: usize) -> Status {
    for attempt in 1..=5 {
        apply_rules(cluster, node, &RulesFile::new().block(name(peer))).await;
        let result = put(cluster, via, "k", &format!("crossed-{attempt}")).await;
        apply_rules(cluster, node, &RulesFile::new()).await;
        cluster
            .wait_for("a write after healing", || async {
                put(cluster, via, "k", "healed").await.ok().filter(|ok| *ok)
            })
            .await;
        match result {
            Ok(ok) => panic!("a write crossed the cut (ok={ok})"),
            Err(status) if status.message().contains("cut off") => return status,
            Err(status) => eprintln!("attempt {attempt} inconclusive: {status:?}"),
        }
    }
    panic!("the cut never met a forwarded write in five attempts");
}

/// A follower cut off from the leader does not forward to it, and a leader cut off from a
/// follower refuses what that follower forwards, even when only one side has the rule. No
/// refused write is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_honour_a_partition() {
    let cluster = Cluster::start(3, "tcp");
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    cluster
        .wait_for("a write through the follower", || async {
            put(&cluster, follower, "k", "before")
                .await
                .ok()
                .filter(|ok| *ok)
        })
        .await;

    // Only the follower's rules cut the link: it must not forward.
    let refused = write_across_a_cut(&cluster, follower, leader, follower).await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Only the leader's rules cut the link: it must refuse what the follower forwards.
    let refused = write_across_a_cut(&cluster, leader, follower, follower).await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    let value = cluster
        .wait_for("a read after healing", || async {
            get(&cluster, leader, "k").await.ok()
        })
        .await;
    assert_eq!(
        value.as_deref(),
        Some("healed"),
        "a refused write was applied"
    );
}

/// The leader cut off from both followers steps down and answers no read; the other two
/// elect a leader and take writes; after healing everyone agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced() {
    let cluster = Cluster::start(3, "tcp");
    let old = cluster.leader().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    cluster
        .wait_for("a first write", || async {
            put(&cluster, old, "k", "1").await.ok().filter(|ok| *ok)
        })
        .await;

    let isolate = others
        .iter()
        .fold(RulesFile::new(), |rules, &i| rules.block(name(i)));
    cluster.set_rules(old, &isolate);
    for &i in &others {
        cluster.set_rules(i, &RulesFile::new().block(name(old)));
    }
    let new = cluster
        .wait_for("a leader on the majority side", || async {
            for &i in &others {
                let mut client = cluster.client(i).await;
                if let Ok(health) = client.health(support::seed::HealthRequest {}).await
                    && health.into_inner().is_leader
                {
                    return Some(i);
                }
            }
            None
        })
        .await;
    cluster
        .wait_for("a write on the majority side", || async {
            put(&cluster, new, "k", "2").await.ok().filter(|ok| *ok)
        })
        .await;
    // The old leader cannot confirm anything: no read, stale or current, is answered.
    let read = get(&cluster, old, "k").await;
    assert!(read.is_err(), "the isolated node answered a read: {read:?}");

    for i in 0..3 {
        cluster.set_rules(i, &RulesFile::new());
    }
    let value = cluster
        .wait_for("the old leader to catch up", || async {
            get(&cluster, old, "k")
                .await
                .ok()
                .flatten()
                .filter(|v| v == "2")
        })
        .await;
    assert_eq!(value, "2");
}
