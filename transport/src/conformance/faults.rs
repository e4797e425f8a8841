//! Conformance checks of the fault rules ([`crate::faults`]): a blocked peer is cut off in
//! both directions, even when only one side has the rule; delays hold messages back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{
    Harness, addresses, sample, shutdown_all, start_node, test_config, wait_connected, wait_message,
};
use crate::{Counter, FaultRules, PeerFaults};

/// Node 1 blocks node 2 (node 2 has no rule): nothing passes either way until the rule is
/// lifted, then messages flow again.
pub async fn blocked_peer_is_cut_off_both_ways(harness: &impl Harness) {
    let addrs = addresses(harness, &[1, 2]);
    let rules = FaultRules::new(1);
    let config = test_config(super::CLUSTER_ID, 1, &addrs).with_faults(rules.clone());
    let mut first = start_node(harness, config).await;
    let mut second = start_node(harness, test_config(super::CLUSTER_ID, 2, &addrs)).await;
    wait_connected(&mut first, 2).await;
    wait_connected(&mut second, 1).await;
    first.transport.send(2, sample::heartbeat(1)).unwrap();
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(1));

    rules.set(BTreeMap::from([(2, PeerFaults::blocked())]));
    first.transport.send(2, sample::heartbeat(2)).unwrap();
    second.transport.send(1, sample::heartbeat(3)).unwrap();
    // Let the blocked message from 2 arrive and be dropped before the rule is lifted.
    let deadline = Instant::now() + super::WAIT;
    while first.transport.counters().get(Counter::FaultDropped) < 2 {
        assert!(Instant::now() < deadline, "messages were not dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    rules.clear();
    first.transport.send(2, sample::heartbeat(4)).unwrap();
    second.transport.send(1, sample::heartbeat(5)).unwrap();
    assert_eq!(
        wait_message(&mut second, 1).await,
        sample::heartbeat(4),
        "a message sent to a blocked peer arrived"
    );
    assert_eq!(
        wait_message(&mut first, 2).await,
        sample::heartbeat(5),
        "a message from a blocked peer was delivered"
    );
    assert_eq!(first.transport.counters().get(Counter::FaultDropped), 2);
    shutdown_all(vec![first, second]).await;
}

/// Messages to a delayed peer arrive, none before its delay; a delayed message whose peer is
/// blocked when the delay ends is lost.
pub async fn delayed_messages_arrive_late(harness: &impl Harness) {
    const MIN: Duration = Duration::from_millis(60);
    const MAX: Duration = Duration::from_millis(120);
    const MESSAGES: u64 = 20;
    let addrs = addresses(harness, &[1, 2]);
    let rules = FaultRules::new(2);
    let config = test_config(super::CLUSTER_ID, 1, &addrs).with_faults(rules.clone());
    let mut first = start_node(harness, config).await;
    let mut second = start_node(harness, test_config(super::CLUSTER_ID, 2, &addrs)).await;
    wait_connected(&mut first, 2).await;

    rules.set(BTreeMap::from([(2, PeerFaults::delayed(MIN, MAX))]));
    let sent = Instant::now();
    for seq in 0..MESSAGES {
        first.transport.send(2, sample::heartbeat(seq)).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..MESSAGES {
        let message = wait_message(&mut second, 1).await;
        assert!(sent.elapsed() >= MIN, "a message arrived before its delay");
        seen.push(sample::seq(&message).expect("sample heartbeat"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..MESSAGES).collect::<Vec<_>>(),
        "every message arrives once"
    );
    assert_eq!(
        first.transport.counters().get(Counter::FaultDelayed),
        MESSAGES
    );

    // Delayed, then cut off before the delay ends: lost.
    first.transport.send(2, sample::heartbeat(100)).unwrap();
    rules.set(BTreeMap::from([(2, PeerFaults::blocked())]));
    tokio::time::sleep(MAX * 2).await;
    rules.clear();
    first.transport.send(2, sample::heartbeat(101)).unwrap();
    assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(101));
    shutdown_all(vec![first, second]).await;
}
