//! `TransferLeader` (admin service) to targets it cannot hand leadership to, against a real
//! one-node `kvd` (which leads).
//!
//! - An id that is not a member (0, which no node hashes to, and ids nobody has) fails with
//!   `FAILED_PRECONDITION`, and the message names the target.
//! - The node itself: a no-op success (`ok: true`); the node keeps leading in the same term
//!   and keeps serving writes.
//! - A learner: kvd has no way to run a node as a learner yet (no flag or setting; every
//!   configured peer is a voter), so there is no learner target to test.
//!
//! The checks do not depend on the Raft core's wording of its errors, only on the code and
//! on the target's id appearing in the message.

mod support;

use kvd::proto::admin::admin_client::AdminClient;
use kvd::proto::admin::{StatusRequest, StatusResponse, TransferLeaderRequest};
use support::Cluster;
use support::seed::PutRequest;
use tonic::Code;
use tonic::transport::Channel;

async fn admin(cluster: &Cluster) -> AdminClient<Channel> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.client[0])).unwrap();
    AdminClient::new(endpoint.connect_lazy())
}

async fn status(cluster: &Cluster) -> StatusResponse {
    admin(cluster)
        .await
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_a_node_that_is_not_a_member_names_it() {
    let cluster = Cluster::start(1, "tcp");
    cluster.leader().await;
    let me = status(&cluster).await;
    for to in [0, 42, u64::MAX, me.id ^ 1] {
        let error = admin(&cluster)
            .await
            .transfer_leader(TransferLeaderRequest { to })
            .await
            .expect_err("a transfer to a non-member must fail");
        assert_eq!(error.code(), Code::FailedPrecondition, "to {to}: {error:?}");
        assert!(
            error.message().contains(&to.to_string()),
            "to {to}: the message does not name the target: {:?}",
            error.message()
        );
    }
    let after = status(&cluster).await;
    assert_eq!(after.role, "leader");
    assert_eq!(after.term, me.term, "a refused transfer changed the term");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_the_leader_itself_is_a_no_op_success() {
    let cluster = Cluster::start(1, "tcp");
    cluster.leader().await;
    let me = status(&cluster).await;
    assert_eq!(me.role, "leader");
    let answer = admin(&cluster)
        .await
        .transfer_leader(TransferLeaderRequest { to: me.id })
        .await
        .expect("a transfer to the leader itself succeeds")
        .into_inner();
    assert!(answer.ok, "{answer:?}");
    assert_eq!(answer.leader, "", "no other leader to point at");

    // Nothing happened: same leader, same term, and writes still go through (a transfer in
    // progress would refuse them).
    let put = PutRequest {
        key: "after-self-transfer".into(),
        value: b"v".to_vec(),
        client_id: String::new(),
        request_id: 0,
    };
    let written = cluster.client(0).await.put(put).await;
    assert!(written.expect("put after self-transfer").into_inner().ok);
    let after = status(&cluster).await;
    assert_eq!((after.role.as_str(), after.term), ("leader", me.term));
    assert_eq!(after.leader_id, me.id);
}
