//! A peer that dies without closing its connections (a crash, `kill -9`) and comes back on
//! the same address is reached again through a stateless reset, not after the QUIC idle
//! timeout.
//!
//! The crash is a tokio runtime shut down under the node: its tasks (quinn's drivers among
//! them) are dropped without sending anything, as a killed process would. The surviving node
//! keeps writing into its old connection; only a stateless reset from the restarted node,
//! which it must recognise, tells it to reconnect.
//!
//! No clock decides the outcome: the nodes run with an idle timeout far longer than the
//! suite's failure guard ([`WAIT`]), so node 1 can lose its old connection within the guard
//! only by a reset. Without one the test fails on the guard, however fast the machine.

mod support;

use std::time::Duration;

use transport::Counter;
use transport::conformance::{
    CLUSTER_ID, WAIT, addresses, sample, start_node, test_config, wait_connected, wait_counter,
    wait_message,
};
use transport_quic::Liveness;

use support::QuicHarness;

#[test]
fn a_crashed_peer_is_reached_again_through_a_stateless_reset() {
    let idle_timeout = WAIT * 30;
    let harness =
        QuicHarness::new().with_liveness(Liveness::new(Duration::from_secs(2), idle_timeout));
    let addrs = addresses(&harness, &[1, 2]);
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let mut first = main.block_on(start_node(&harness, test_config(CLUSTER_ID, 1, &addrs)));
    let mut second = doomed.block_on(start_node(&harness, test_config(CLUSTER_ID, 2, &addrs)));
    main.block_on(async {
        wait_connected(&mut first, 2).await;
        first.transport.send(2, sample::heartbeat(1)).unwrap();
    });
    doomed.block_on(async {
        assert_eq!(wait_message(&mut second, 1).await, sample::heartbeat(1));
    });
    // Node 1's message link is established (the heartbeat went over it); it has lost none.
    assert_eq!(first.transport.counters().get(Counter::ConnectionsLost), 0);

    // Crash: every task of node 2 vanishes without a word to node 1.
    // (The runtime first: dropping the handle while its tasks run would close gracefully.)
    doomed.shutdown_timeout(Duration::from_secs(5));
    drop(second);

    main.block_on(async {
        let mut second = start_node(&harness, test_config(CLUSTER_ID, 2, &addrs)).await;
        // Goes into the dead connection: the restarted node answers it (or the next
        // keep-alive) with a stateless reset.
        first.transport.send(2, sample::heartbeat(2)).unwrap();
        wait_counter(first.transport.counters(), Counter::ConnectionsLost, 1).await;
        // Sent after the old connection is gone, so it waits for the new one.
        first.transport.send(2, sample::heartbeat(3)).unwrap();
        second
            .events
            .wait_for("heartbeat 3 at the restarted node", |event| match event {
                transport::Event::Message { from: 1, message } => {
                    (*message == sample::heartbeat(3)).then_some(())
                }
                _ => None,
            })
            .await;
        first.transport.shutdown().await;
        second.transport.shutdown().await;
    });
}
