//! Per-peer outbound queues ("lanes") and the rule that sorts messages into them.
//!
//! Each peer has three bounded lanes: **control** (votes, heartbeats, responses, read index,
//! timeout-now), **bulk** (appends) and **snapshot**. The writer of the message connection
//! always drains control before bulk, so a heartbeat never waits behind more than the batch
//! being written; snapshots travel on a connection/stream of their own. Order is kept within
//! each lane; control messages may overtake queued appends, which Raft tolerates (a heartbeat
//! carries a commit index capped at what the follower is known to hold). A full lane makes
//! [`crate::Transport::send`] fail at once (the bulk lane is bounded in messages and in bytes): the Raft core never awaits the network and recovers
//! from the lost message by re-probing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use raft::Message;
use tokio::sync::mpsc;

use crate::config::TransportConfig;
use crate::handshake::Channel;

/// The outbound queue a message goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Small, latency-sensitive messages; drained first.
    Control,
    /// Appends.
    Bulk,
    /// Snapshots, sent on their own connection/stream.
    Snapshot,
}

impl Lane {
    /// The lane `message` travels in.
    pub fn of(message: &Message) -> Self {
        if message.is_snapshot() {
            Self::Snapshot
        } else if matches!(message, Message::Append { .. }) {
            Self::Bulk
        } else {
            Self::Control
        }
    }
}

/// Approximate bytes a message holds, for the byte bounds of queues.
pub(crate) fn message_size(message: &Message) -> usize {
    const OVERHEAD: usize = 64;
    match message {
        Message::Append { entries, .. } => {
            OVERHEAD + entries.iter().map(|e| e.size()).sum::<usize>()
        }
        Message::InstallSnapshot { snapshot, .. } => OVERHEAD + snapshot.data().len(),
        _ => OVERHEAD,
    }
}

/// Bytes queued in a bulk lane, shared by its two ends.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    queued: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    /// Takes `size` bytes from the budget; an empty lane always takes one message.
    fn take(&self, size: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + size <= self.limit).then_some(queued + size)
            })
            .is_ok()
    }

    fn give_back(&self, size: usize) {
        self.queued.fetch_sub(size, Ordering::AcqRel);
    }
}

/// The sending ends of one peer's lanes.
#[derive(Debug)]
pub(crate) struct PeerSender {
    control: mpsc::Sender<Message>,
    bulk: mpsc::Sender<Message>,
    bulk_bytes: Arc<ByteBudget>,
    snapshot: mpsc::Sender<Message>,
}

impl PeerSender {
    /// Queues `message` without waiting; on a full (or closed) lane returns that lane.
    pub(crate) fn try_send(&self, message: Message) -> Result<(), Lane> {
        let lane = Lane::of(&message);
        match lane {
            Lane::Control => self.control.try_send(message).map_err(|_| lane),
            Lane::Snapshot => self.snapshot.try_send(message).map_err(|_| lane),
            Lane::Bulk => {
                let size = message_size(&message);
                if !self.bulk_bytes.take(size) {
                    return Err(lane);
                }
                self.bulk.try_send(message).map_err(|_| {
                    self.bulk_bytes.give_back(size);
                    lane
                })
            }
        }
    }
}

/// The receiving ends feeding one outbound connection.
#[derive(Debug)]
pub(crate) enum Queues {
    /// Control and bulk lanes, for the message connection.
    Messages {
        control: mpsc::Receiver<Message>,
        bulk: mpsc::Receiver<Message>,
        bulk_bytes: Arc<ByteBudget>,
    },
    /// The snapshot lane, for the snapshot connection.
    Snapshots(mpsc::Receiver<Message>),
}

impl Queues {
    /// Which connection these queues feed.
    pub(crate) fn channel(&self) -> Channel {
        match self {
            Self::Messages { .. } => Channel::Messages,
            Self::Snapshots(_) => Channel::Snapshots,
        }
    }

    /// Waits for the next message, control first; `None` once every sender is gone.
    pub(crate) async fn next(&mut self) -> Option<Message> {
        match self {
            Self::Messages {
                control,
                bulk,
                bulk_bytes,
            } => tokio::select! {
                biased;
                Some(message) = control.recv() => Some(message),
                Some(message) = bulk.recv() => {
                    bulk_bytes.give_back(message_size(&message));
                    Some(message)
                }
                else => None,
            },
            Self::Snapshots(snapshot) => snapshot.recv().await,
        }
    }

    /// The next message if one is queued, control first.
    pub(crate) fn try_next(&mut self) -> Option<Message> {
        match self {
            Self::Messages {
                control,
                bulk,
                bulk_bytes,
            } => control.try_recv().ok().or_else(|| {
                let message = bulk.try_recv().ok()?;
                bulk_bytes.give_back(message_size(&message));
                Some(message)
            }),
            Self::Snapshots(snapshot) => snapshot.try_recv().ok(),
        }
    }
}

/// Creates one peer's lanes with the configured bounds.
pub(crate) fn peer_lanes(config: &TransportConfig) -> (PeerSender, Queues, Queues) {
    let (control_tx, control_rx) = mpsc::channel(config.control_queue());
    let (bulk_tx, bulk_rx) = mpsc::channel(config.bulk_queue());
    let (snapshot_tx, snapshot_rx) = mpsc::channel(config.snapshot_queue());
    let bulk_bytes = Arc::new(ByteBudget {
        queued: AtomicUsize::new(0),
        limit: config.bulk_queue_bytes(),
    });
    (
        PeerSender {
            control: control_tx,
            bulk: bulk_tx,
            bulk_bytes: bulk_bytes.clone(),
            snapshot: snapshot_tx,
        },
        Queues::Messages {
            control: control_rx,
            bulk: bulk_rx,
            bulk_bytes,
        },
        Queues::Snapshots(snapshot_rx),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn append(index: u64) -> Message {
        Message::Append {
            term: 1,
            prev_index: index,
            prev_term: 1,
            entries: vec![],
            commit: 0,
        }
    }

    fn heartbeat(round: u64) -> Message {
        Message::Heartbeat {
            term: 1,
            commit: 0,
            read_round: round,
        }
    }

    #[tokio::test]
    async fn control_is_drained_before_bulk_and_each_lane_keeps_order() {
        let config = TransportConfig::new("c", 1, "127.0.0.1:1".parse().unwrap(), BTreeMap::new())
            .with_queue_bounds(4, 2, 1);
        let (sender, mut queues, _) = peer_lanes(&config);
        sender.try_send(append(1)).unwrap();
        sender.try_send(append(2)).unwrap();
        assert_eq!(sender.try_send(append(3)), Err(Lane::Bulk));
        sender.try_send(heartbeat(1)).unwrap();
        sender.try_send(heartbeat(2)).unwrap();
        assert_eq!(queues.next().await, Some(heartbeat(1)));
        assert_eq!(queues.try_next(), Some(heartbeat(2)));
        assert_eq!(queues.try_next(), Some(append(1)));
        assert_eq!(queues.next().await, Some(append(2)));
        assert_eq!(queues.try_next(), None);
    }

    #[test]
    fn bulk_lane_is_bounded_in_bytes_but_takes_one_large_message() {
        let big = |seq| crate::conformance::sample::append(seq, 1000);
        let config = TransportConfig::new("c", 1, "127.0.0.1:1".parse().unwrap(), BTreeMap::new())
            .with_bulk_queue_bytes(1500);
        let (sender, mut queues, _) = peer_lanes(&config);
        sender.try_send(big(1)).unwrap();
        assert_eq!(sender.try_send(big(2)), Err(Lane::Bulk));
        assert_eq!(queues.try_next(), Some(big(1)));
        sender.try_send(big(2)).unwrap();
        let huge = crate::conformance::sample::append(3, 10_000);
        assert_eq!(queues.try_next(), Some(big(2)));
        sender.try_send(huge.clone()).unwrap();
        assert_eq!(queues.try_next(), Some(huge));
    }
}
