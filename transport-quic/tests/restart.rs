//! A peer that dies without closing its connections (a crash, `kill -9`) and comes back on
//! the same address is reached again at once, not after the QUIC idle timeout (10 s).
//!
//! The crash is a tokio runtime shut down under the node: its tasks (quinn's drivers among
//! them) are dropped without sending anything, as a killed process would. The surviving node
//! keeps writing into its old connection; only a stateless reset from the restarted node,
//! which it must recognise, tells it to reconnect.

mod support;

use std::time::{Duration, Instant};

use transport::conformance::{
    CLUSTER_ID, addresses, sample, start_node, test_config, wait_connected, wait_message,
};

use support::QuicHarness;

/// Far below the 10 s idle timeout, far above a reconnect on loopback.
const REJOIN_WITHIN: Duration = Duration::from_secs(3);

#[test]
fn a_crashed_peer_is_reached_again_before_the_idle_timeout() {
    let harness = QuicHarness::new();
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

    // Crash: every task of node 2 vanishes without a word to node 1.
    // (The runtime first: dropping the handle while its tasks run would close gracefully.)
    doomed.shutdown_timeout(Duration::from_secs(5));
    drop(second);

    main.block_on(async {
        let config = test_config(CLUSTER_ID, 2, &addrs);
        let mut second = start_node(&harness, config).await;
        let restarted = Instant::now();
        let sender = first.transport.clone();
        let beats = tokio::spawn(async move {
            for seq in 2.. {
                let _ = sender.send(2, sample::heartbeat(seq));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let arrived = tokio::time::timeout(REJOIN_WITHIN, wait_message(&mut second, 1)).await;
        beats.abort();
        assert!(
            arrived.is_ok(),
            "node 1's messages did not reach the restarted node 2 within {REJOIN_WITHIN:?}"
        );
        eprintln!(
            "reached again after {:?}: {:?}",
            restarted.elapsed(),
            first.transport.counters().snapshot()
        );
        first.transport.shutdown().await;
        second.transport.shutdown().await;
    });
}
