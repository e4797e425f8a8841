//! Conformance checks of delivery: order, restarts, snapshots beside heartbeats, metadata,
//! back-pressure and shutdown.

use std::collections::HashMap;

use raft::Message;

use super::{
    Harness, WAIT, sample, send_retrying, shutdown_all, start_cluster, start_node, test_config,
    wait_connected, wait_message,
};
use crate::{Event, Lane, SendError};

/// Two senders each send appends and heartbeats to one receiver; every lane of every sender
/// arrives complete and in order.
pub async fn ordering_per_peer(harness: &impl Harness) {
    const APPENDS: u64 = 2000;
    const HEARTBEATS: u64 = 500;
    let mut nodes = start_cluster(harness, &[1, 2, 3]).await;
    for i in [0, 2] {
        wait_connected(&mut nodes[i], 2).await;
    }
    for i in [0, 2] {
        let transport = nodes[i].transport.clone();
        tokio::spawn(async move {
            for seq in 0..APPENDS {
                send_retrying(&transport, 2, sample::append(seq, 64)).await;
                if seq % 4 == 0 {
                    send_retrying(&transport, 2, sample::heartbeat(seq / 4)).await;
                }
            }
        });
    }
    let mut next: HashMap<(u64, Lane), u64> = HashMap::new();
    let total = 2 * (APPENDS + HEARTBEATS);
    let receiver = &mut nodes[1];
    for _ in 0..total {
        let (from, message) = receiver
            .events
            .wait_for("ordered messages", |e| match e {
                Event::Message { from, message } => Some((*from, message.clone())),
                _ => None,
            })
            .await;
        let lane = Lane::of(&message);
        let seq = sample::seq(&message).expect("only sample messages are sent");
        let expected = next.entry((from, lane)).or_default();
        assert_eq!(
            seq, *expected,
            "message from {from} in lane {lane:?} out of order"
        );
        *expected += 1;
    }
    for from in [1, 3] {
        assert_eq!(next[&(from, Lane::Bulk)], APPENDS);
        assert_eq!(next[&(from, Lane::Control)], HEARTBEATS);
    }
    shutdown_all(nodes).await;
}

/// A peer that goes away is reported unreachable; once it is back, messages reach it again
/// (and it reaches us).
pub async fn delivery_after_peer_restart(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let mut second = nodes.pop().expect("two nodes");
    let mut first = nodes.pop().expect("two nodes");
    wait_connected(&mut first, 2).await;
    first.transport.send(2, sample::heartbeat(1)).unwrap();
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(1));
    // Node 1's link to 2 is up (the heartbeat went through it), so an `Unreachable` it
    // reported before node 2 had started is already queued: only a later one counts.
    first.events.take_ready();

    second.transport.shutdown().await;
    first
        .events
        .wait_for("peer 2 unreachable", |e| {
            matches!(e, Event::Unreachable { peer: 2 }).then_some(())
        })
        .await;
    let mut second = start_node(harness, second.config.clone()).await;
    first.transport.send(2, sample::heartbeat(2)).unwrap();
    first.transport.send(2, sample::append(7, 32)).unwrap();
    let mut got = vec![wait_message(&mut second, 1).await];
    got.push(wait_message(&mut second, 1).await);
    got.sort_by_key(|m| Lane::of(m) == Lane::Bulk);
    assert_eq!(got, vec![sample::heartbeat(2), sample::append(7, 32)]);

    second.transport.send(1, sample::heartbeat(3)).unwrap();
    assert_eq!(wait_message(&mut first, 2).await, sample::heartbeat(3));
    shutdown_all(vec![first, second]).await;
}

/// A 64 MiB snapshot (above the 16 MiB normal frame limit) does not hold heartbeats back:
/// heartbeats sent after it keep arriving while it is still in flight, and it arrives intact.
///
/// Proved by order, not by a clock: each heartbeat is sent only once the one before it has
/// arrived, and all of them after the snapshot was handed to the transport. If heartbeats
/// queued behind the snapshot, the first one would arrive after it and none would be counted.
pub async fn snapshot_streams_while_heartbeats_flow(harness: &impl Harness) {
    const SNAPSHOT_BYTES: usize = 64 << 20;
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let mut second = nodes.pop().expect("two nodes");
    let mut first = nodes.pop().expect("two nodes");
    assert!(first.config.max_frame_bytes() < SNAPSHOT_BYTES);
    wait_connected(&mut first, 2).await;
    first.transport.send(2, sample::heartbeat(0)).unwrap();
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(0));

    let snapshot = sample::snapshot(SNAPSHOT_BYTES);
    first.transport.send(2, snapshot.clone()).unwrap();
    let mut seq = 1;
    first.transport.send(2, sample::heartbeat(seq)).unwrap();
    let mut heartbeats_while_in_flight = 0;
    let received = loop {
        match wait_message(&mut second, 1).await {
            Message::Heartbeat { read_round, .. } => {
                assert_eq!(read_round, seq, "heartbeats out of order");
                heartbeats_while_in_flight += 1;
                seq += 1;
                first.transport.send(2, sample::heartbeat(seq)).unwrap();
            }
            other => break other,
        }
    };
    assert!(received == snapshot, "snapshot corrupted in transit");
    assert!(
        heartbeats_while_in_flight > 0,
        "the snapshot arrived before any heartbeat sent after it: heartbeats queue behind snapshots"
    );
    // The heartbeat sent last is not lost behind the snapshot either.
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(seq));
    shutdown_all(vec![first, second]).await;
}

/// A completed handshake reports the peer's metadata.
pub async fn peer_info_carries_metadata(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let metadata = nodes[0]
        .events
        .wait_for("peer info from 2", |e| match e {
            Event::PeerInfo { peer: 2, metadata } => Some(metadata.clone()),
            _ => None,
        })
        .await;
    assert_eq!(metadata, "meta-2");
    shutdown_all(nodes).await;
}

/// Sending never waits: with the peer down, a full bulk lane refuses at once while the control
/// lane still takes heartbeats; unknown peers are refused too.
pub async fn full_lane_refuses_at_once(harness: &impl Harness) {
    let addrs = super::addresses(harness, &[1, 2]);
    let config = test_config(super::CLUSTER_ID, 1, &addrs).with_queue_bounds(4, 2, 1);
    let node = start_node(harness, config).await;
    let transport = &node.transport;
    transport.send(2, sample::append(0, 8)).unwrap();
    transport.send(2, sample::append(1, 8)).unwrap();
    assert_eq!(
        transport.send(2, sample::append(2, 8)),
        Err(SendError::QueueFull {
            peer: 2,
            lane: Lane::Bulk
        })
    );
    transport.send(2, sample::heartbeat(0)).unwrap();
    assert_eq!(
        transport.send(9, sample::heartbeat(0)),
        Err(SendError::UnknownPeer(9))
    );
    assert_eq!(transport.counters().get(crate::Counter::QueueFull), 1);
    node.transport.shutdown().await;
}

/// Shutdown ends the event stream, refuses further sends, and the peer notices.
pub async fn shutdown_is_clean(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let mut second = nodes.pop().expect("two nodes");
    let mut first = nodes.pop().expect("two nodes");
    wait_connected(&mut first, 2).await;
    wait_connected(&mut second, 1).await;
    first.transport.shutdown().await;
    assert_eq!(
        first.transport.send(2, sample::heartbeat(0)),
        Err(SendError::Shutdown)
    );
    tokio::time::timeout(WAIT, async { while first.events.recv().await.is_some() {} })
        .await
        .expect("event stream ends after shutdown");
    second
        .events
        .wait_for("peer 1 unreachable", |e| {
            matches!(e, Event::Unreachable { peer: 1 }).then_some(())
        })
        .await;
    // A second shutdown is harmless.
    first.transport.shutdown().await;
    second.transport.shutdown().await;
}

/// Dropping every handle without `shutdown` still stops the transport: the event stream ends.
pub async fn dropping_the_handle_stops_the_transport(harness: &impl Harness) {
    let mut nodes = start_cluster(harness, &[1, 2]).await;
    let second = nodes.pop().expect("two nodes");
    let mut first = nodes.pop().expect("two nodes");
    wait_connected(&mut first, 2).await;
    let super::TestNode {
        transport, events, ..
    } = first;
    drop(transport);
    let mut events = events;
    tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} })
        .await
        .expect("event stream ends once the last handle is dropped");
    second.transport.shutdown().await;
}
