//! Test-only network faults (`KVD_FAULTS_FILE`, see `kvd::faults`) against real processes: a
//! cut-off leader is replaced and cannot answer, and forwarded client requests honour a
//! partition like Raft messages do.

mod support;

use std::time::Duration;

use kvd::faults::RulesFile;
use support::Cluster;
use support::seed::{GetRequest, PutRequest};
use tonic::Code;

fn name(i: usize) -> String {
    format!("node-{}", i + 1)
}

/// Rules apply within one poll interval (25 ms); this leaves room for a loaded machine while
/// staying well below the 250 ms election timeout.
const RULES_APPLIED: Duration = Duration::from_millis(100);

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

/// A follower cut off from the leader does not forward to it, and a leader cut off from a
/// follower refuses what that follower forwards, even when only one side has the rule. Neither
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
    cluster.set_rules(follower, &RulesFile::new().block(name(leader)));
    tokio::time::sleep(RULES_APPLIED).await;
    let refused = put(&cluster, follower, "k", "sneaked-out")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("cut off"), "{refused:?}");

    // Healed: forwarding works again.
    cluster.set_rules(follower, &RulesFile::new());
    cluster
        .wait_for("a write through the healed follower", || async {
            put(&cluster, follower, "k", "healed")
                .await
                .ok()
                .filter(|ok| *ok)
        })
        .await;

    // Only the leader's rules cut the link: it must refuse what the follower forwards.
    cluster.set_rules(leader, &RulesFile::new().block(name(follower)));
    tokio::time::sleep(RULES_APPLIED).await;
    let refused = put(&cluster, follower, "k", "sneaked-in")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    cluster.set_rules(leader, &RulesFile::new());
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
