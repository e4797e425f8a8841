//! Conformance checks against hostile or misconfigured peers: each is refused on its own
//! connection, counted, and the node keeps serving the others.

use bytes::{BufMut, BytesMut};
use raft::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    CLUSTER_ID, Harness, RawStream, TestNode, WAIT, addresses, sample, shutdown_all, start_cluster,
    start_node, test_config, wait_connected, wait_counter, wait_message,
};
use crate::handshake::{Channel, Hello, HelloReply, hello_codec};
use crate::{Counter, Event, FrameReader};

/// Bytes that are no valid hello: a small length and a body postcard cannot decode.
const GARBAGE: &[u8] = &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/// Garbage instead of a handshake closes that connection only.
pub async fn garbage_bytes_are_refused(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let addr = nodes[1].transport.local_addr();
    let mut raw = harness.raw_stream(addr, 2, 1).await.expect("raw stream");
    raw.writer()
        .write_all(GARBAGE)
        .await
        .expect("write garbage");
    raw.writer().flush().await.expect("flush");
    wait_closed(&mut raw).await;
    assert_eq!(
        nodes[1]
            .transport
            .counters()
            .get(Counter::UndecodableFrames),
        1
    );
    still_serving(&mut nodes).await;
    shutdown_all(nodes).await;
}

/// A frame announcing more than the limit closes the connection before its body is read.
pub async fn oversized_frame_is_refused(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let addr = nodes[1].transport.local_addr();
    let limit = nodes[1].config.max_frame_bytes();
    let mut raw = handshaken_stream(harness, addr, 2, 1).await;
    let mut frame = BytesMut::new();
    frame.put_u32(limit as u32 + 1);
    frame.put_slice(&[0; 64]);
    raw.writer().write_all(&frame).await.expect("write");
    raw.writer().flush().await.expect("flush");
    wait_closed(&mut raw).await;
    assert_eq!(
        nodes[1].transport.counters().get(Counter::OversizedFrames),
        1
    );
    still_serving(&mut nodes).await;
    shutdown_all(nodes).await;
}

/// A stream that ends inside a frame is counted and closed.
pub async fn truncated_frame_is_counted(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let addr = nodes[1].transport.local_addr();
    let mut raw = handshaken_stream(harness, addr, 2, 1).await;
    let mut frame = BytesMut::new();
    frame.put_u32(100);
    frame.put_slice(&[1; 10]);
    raw.writer().write_all(&frame).await.expect("write");
    raw.writer().shutdown().await.expect("finish");
    wait_closed(&mut raw).await;
    assert_eq!(
        nodes[1].transport.counters().get(Counter::TruncatedFrames),
        1
    );
    still_serving(&mut nodes).await;
    shutdown_all(nodes).await;
}

/// A node of another cluster is refused (and learns its peer is unreachable).
pub async fn wrong_cluster_id_is_refused(harness: &impl Harness) {
    refused_dialer(harness, "another-cluster", 3).await;
}

/// A node id missing from the peer map is refused.
pub async fn unknown_node_is_refused(harness: &impl Harness) {
    refused_dialer(harness, CLUSTER_ID, 9).await;
}

/// Nodes 1 and 2 form the cluster (their peer map also lists node 3); node `intruder_id` of
/// `cluster_id` dials node 2 and must be refused.
async fn refused_dialer(harness: &impl Harness, cluster_id: &str, intruder_id: NodeId) {
    let addrs = addresses(harness, &[1, 2, 3]);
    let mut nodes = Vec::new();
    for id in [1, 2] {
        nodes.push(start_node(harness, test_config(CLUSTER_ID, id, &addrs)).await);
    }
    let mut intruder_addrs = addrs.clone();
    intruder_addrs.retain(|&id, _| id == 2);
    intruder_addrs.insert(intruder_id, harness.free_addr());
    let mut intruder = start_node(
        harness,
        test_config(cluster_id, intruder_id, &intruder_addrs),
    )
    .await;
    let _ = intruder.transport.send(2, sample::heartbeat(1));
    intruder
        .events
        .wait_for("the intruder to be refused", |e| {
            matches!(e, Event::Unreachable { peer: 2 }).then_some(())
        })
        .await;
    // The intruder may see its connection fail (over QUIC, in the TLS exchange) before node 2
    // has counted the refusal.
    wait_counter(nodes[1].transport.counters(), Counter::HandshakesRefused, 1).await;
    still_serving(&mut nodes).await;
    // Nothing from the intruder reached node 2's driver: the waits above keep every event
    // they pass over, so this sees all that node 2 reported.
    for event in nodes[1].events.take_ready() {
        if let Event::Message { from, .. } | Event::PeerInfo { peer: from, .. } = event {
            assert_ne!(
                from, intruder_id,
                "a refused node's message or handshake reached the driver"
            );
        }
    }
    intruder.transport.shutdown().await;
    shutdown_all(nodes).await;
}

/// Opens a raw stream and completes a valid handshake on it as `as_node`.
async fn handshaken_stream(
    harness: &impl Harness,
    addr: std::net::SocketAddr,
    node: NodeId,
    as_node: NodeId,
) -> RawStream {
    let mut raw = harness
        .raw_stream(addr, node, as_node)
        .await
        .expect("raw stream");
    let mut frame = BytesMut::new();
    let hello = Hello::new(CLUSTER_ID, as_node, Channel::Messages, "raw");
    hello_codec()
        .encode(&hello, &mut frame)
        .expect("encode hello");
    raw.writer().write_all(&frame).await.expect("write hello");
    raw.writer().flush().await.expect("flush");
    let mut reader = FrameReader::new(raw.reader(), hello_codec());
    let reply = tokio::time::timeout(WAIT, reader.next::<HelloReply>())
        .await
        .expect("hello reply in time")
        .expect("hello reply");
    assert!(
        matches!(reply, Some(HelloReply::Accepted(_))),
        "raw handshake refused: {reply:?}"
    );
    raw
}

/// Waits until the node closes the raw stream (end of stream or reset).
async fn wait_closed(raw: &mut RawStream) {
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, raw.reader().read_to_end(&mut sink))
        .await
        .expect("node closes the offending connection")
        .ok();
}

/// Node 1 still reaches node 2 and back.
async fn still_serving(nodes: &mut [TestNode]) {
    let [first, second, ..] = nodes else {
        panic!("two nodes expected")
    };
    wait_connected(first, 2).await;
    first.transport.send(2, sample::heartbeat(42)).unwrap();
    assert_eq!(wait_message(second, 1).await, sample::heartbeat(42));
    second.transport.send(1, sample::heartbeat(43)).unwrap();
    assert_eq!(wait_message(first, 2).await, sample::heartbeat(43));
}
