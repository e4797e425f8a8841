//! Regression test for what the chaos runs found in answers relayed by a forwarding node.
//!
//! A follower forwards a client's write to the node it believes leads, marking it with the
//! `x-kvd-forwarded` metadata, and relays the answer. When the forwarded-to node was not the
//! leader (a deposed leader just resumed from a pause, in the runs), kvd used to answer the
//! forwarded Put or Delete with `ok: false` and a leader hint; the relaying node passed that
//! on, and `kvctl::client::Client` (which did not look at `ok`) reported the write as applied.
//! The checker then saw a read miss an acknowledged write. kvd now answers such a request with
//! `UNAVAILABLE` (relayed, and retried by every client), and kvctl treats `ok: false` as "not
//! applied here": it follows the hint and retries with the same request id.
//!
//! The test sends a forwarded write straight to a follower, which is what the deposed leader
//! saw.

use std::time::{Duration, Instant};

use kvctl::client::{Client, ClientConfig};
use kvctl::proto::kv::PutRequest;
use kvctl::proto::kv::kv_client::KvClient;
use tests::cluster::{Cluster, Transport};
use tests::nemesis;

async fn follower_with_key() -> (Cluster, usize) {
    let cluster = Cluster::start(3, Transport::Tcp);
    let client = Client::new(
        ClientConfig::new(cluster.endpoints())
            .client_id("writer")
            .timeout(Duration::from_secs(10)),
    )
    .expect("client");
    client.put("k", b"v".to_vec()).await.expect("put");
    let shared = std::sync::Mutex::new(cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(leader) = nemesis::leader(&shared, &client).await {
            break leader;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (shared.into_inner().expect("not poisoned"), (leader + 1) % 3)
}

fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-kvd-forwarded",
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

async fn raw_client(cluster: &Cluster, node: usize) -> KvClient<tonic::transport::Channel> {
    KvClient::connect(format!("http://{}", cluster.endpoint(node)))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_on_a_non_leader_is_an_error() {
    let (cluster, follower) = follower_with_key().await;
    let mut kv = raw_client(&cluster, follower).await;
    let answer = kv
        .put(forwarded(PutRequest {
            key: "k".into(),
            value: b"never applied".to_vec(),
            client_id: "c".into(),
            request_id: 1,
        }))
        .await;
    match answer {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        Ok(answer) => panic!(
            "a non-leader answered a forwarded write without an error: {:?}",
            answer.into_inner()
        ),
    }
}
