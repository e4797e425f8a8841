//! QUIC-only checks of mutual TLS: certificates from another CA and certificates that name
//! another node than the handshake are refused, and the node keeps serving its peers.

mod support;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use transport::conformance::{
    CLUSTER_ID, WAIT, addresses, sample, start_node, test_config, wait_connected, wait_counter,
    wait_message,
};
use transport::handshake::{Channel, Hello, HelloReply, Refusal, hello_codec};
use transport::{Counter, FrameReader};
use transport_quic::{NodeIdentity, certs};

use support::{QuicHarness, raw_stream_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let harness = QuicHarness::new();
    let addrs = addresses(&harness, &[1, 2, 3]);
    let mut first = start_node(&harness, test_config(CLUSTER_ID, 1, &addrs)).await;
    let mut second = start_node(&harness, test_config(CLUSTER_ID, 2, &addrs)).await;

    // Node 3's certificate comes from another CA, although it trusts the right one.
    let rogue_dir = tempfile::tempdir().unwrap();
    certs::ensure_dev_certs(rogue_dir.path(), [3]).unwrap();
    let rogue = NodeIdentity::from_files(
        3,
        &certs::ca_cert_path(harness.dir()),
        &certs::node_cert_path(rogue_dir.path(), 3),
        &certs::node_key_path(rogue_dir.path(), 3),
    )
    .unwrap();
    let attempt = async {
        let mut raw = raw_stream_with(&rogue, addrs[&2], 2).await?;
        let mut frame = BytesMut::new();
        let hello = Hello::new(CLUSTER_ID, 3, Channel::Messages, "rogue");
        hello_codec().encode(&hello, &mut frame).unwrap();
        raw.writer().write_all(&frame).await?;
        FrameReader::new(raw.reader(), hello_codec())
            .next::<HelloReply>()
            .await
            .map_err(std::io::Error::other)
    };
    let outcome = tokio::time::timeout(WAIT, attempt)
        .await
        .expect("refused in time");
    assert!(
        !matches!(outcome, Ok(Some(HelloReply::Accepted(_)))),
        "a certificate from another CA was accepted"
    );
    // The refusing side counts on its own task, possibly after the client saw the failure.
    wait_counter(second.transport.counters(), Counter::TlsRefused, 1).await;

    wait_connected(&mut first, 2).await;
    first.transport.send(2, sample::heartbeat(1)).unwrap();
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(1));
    first.transport.shutdown().await;
    second.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_must_name_the_node_of_the_handshake() {
    let harness = QuicHarness::new();
    let addrs = addresses(&harness, &[1, 2, 3]);
    let mut first = start_node(&harness, test_config(CLUSTER_ID, 1, &addrs)).await;
    let mut second = start_node(&harness, test_config(CLUSTER_ID, 2, &addrs)).await;

    // A valid certificate for node 3 presented by a stream that claims to be node 1.
    let mut raw = raw_stream_with(&harness.identity(3), addrs[&2], 2)
        .await
        .unwrap();
    let mut frame = BytesMut::new();
    let hello = Hello::new(CLUSTER_ID, 1, Channel::Messages, "impostor");
    hello_codec().encode(&hello, &mut frame).unwrap();
    raw.writer().write_all(&frame).await.unwrap();
    let reply = tokio::time::timeout(
        WAIT,
        FrameReader::new(raw.reader(), hello_codec()).next::<HelloReply>(),
    )
    .await
    .expect("reply in time")
    .expect("a reply frame");
    assert_eq!(
        reply,
        Some(HelloReply::Refused(Refusal::IdentityMismatch {
            claimed: 1
        }))
    );
    wait_counter(second.transport.counters(), Counter::HandshakesRefused, 1).await;

    wait_connected(&mut first, 2).await;
    first.transport.send(2, sample::heartbeat(1)).unwrap();
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(1));
    first.transport.shutdown().await;
    second.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_of_another_node_does_not_start() {
    let harness = QuicHarness::new();
    let addrs = addresses(&harness, &[1, 2]);
    let result =
        transport_quic::start(test_config(CLUSTER_ID, 1, &addrs), harness.identity(2)).await;
    assert!(matches!(
        result,
        Err(transport_quic::QuicError::WrongIdentity {
            identity: 2,
            config: 1
        })
    ));
}
