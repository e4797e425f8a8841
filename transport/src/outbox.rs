//! Per-peer outbound queues ("lanes") and the rule that sorts messages into them.
//!
//! Each peer has three bounded lanes: **control** (votes, heartbeats, responses, read index,
//! timeout-now), **bulk** (appends) and **snapshot**. The writer of the message connection
//! always drains control before bulk, so a heartbeat never waits behind more than the batch
//! being written; snapshots travel on a connection/stream of their own. Order is kept within
//! each lane; control messages may overtake queued appends, which Raft tolerates (a heartbeat
//! carries a commit index capped at what the follower is known to hold). A full lane makes
//! [`crate::Transport::send`] fail at once: the Raft core never awaits the network and recovers
//! from the lost message by re-probing.

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
        match message {
            Message::InstallSnapshot { .. } => Self::Snapshot,
            Message::Append { .. } => Self::Bulk,
            _ => Self::Control,
        }
    }
}

/// The sending ends of one peer's lanes.
#[derive(Debug)]
pub(crate) struct PeerSender {
    control: mpsc::Sender<Message>,
    bulk: mpsc::Sender<Message>,
    snapshot: mpsc::Sender<Message>,
}

impl PeerSender {
    /// Queues `message` without waiting; on a full (or closed) lane returns that lane.
    pub(crate) fn try_send(&self, message: Message) -> Result<(), Lane> {
        let lane = Lane::of(&message);
        let sender = match lane {
            Lane::Control => &self.control,
            Lane::Bulk => &self.bulk,
            Lane::Snapshot => &self.snapshot,
        };
        sender.try_send(message).map_err(|_| lane)
    }
}

/// The receiving ends feeding one outbound connection.
#[derive(Debug)]
pub(crate) enum Queues {
    /// Control and bulk lanes, for the message connection.
    Messages {
        control: mpsc::Receiver<Message>,
        bulk: mpsc::Receiver<Message>,
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
            Self::Messages { control, bulk } => tokio::select! {
                biased;
                Some(message) = control.recv() => Some(message),
                Some(message) = bulk.recv() => Some(message),
                else => None,
            },
            Self::Snapshots(snapshot) => snapshot.recv().await,
        }
    }

    /// The next message if one is queued, control first.
    pub(crate) fn try_next(&mut self) -> Option<Message> {
        match self {
            Self::Messages { control, bulk } => {
                control.try_recv().ok().or_else(|| bulk.try_recv().ok())
            }
            Self::Snapshots(snapshot) => snapshot.try_recv().ok(),
        }
    }
}

/// Creates one peer's lanes with the configured bounds.
pub(crate) fn peer_lanes(config: &TransportConfig) -> (PeerSender, Queues, Queues) {
    let (control_tx, control_rx) = mpsc::channel(config.control_queue());
    let (bulk_tx, bulk_rx) = mpsc::channel(config.bulk_queue());
    let (snapshot_tx, snapshot_rx) = mpsc::channel(config.snapshot_queue());
    (
        PeerSender {
            control: control_tx,
            bulk: bulk_tx,
            snapshot: snapshot_tx,
        },
        Queues::Messages {
            control: control_rx,
            bulk: bulk_rx,
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
}
