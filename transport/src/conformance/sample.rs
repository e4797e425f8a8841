//! Sample messages for the conformance suite and the benches, numbered so that order and
//! integrity can be checked on arrival.

use bytes::Bytes;
use raft::{Entry, EntryPayload, Membership, Message, Snapshot, SnapshotMeta};

/// An append whose `prev_index` is `seq`, carrying one command of `payload_bytes` bytes.
pub fn append(seq: u64, payload_bytes: usize) -> Message {
    let payload = Bytes::from(vec![(seq % 251) as u8; payload_bytes]);
    Message::Append {
        term: 1,
        prev_index: seq,
        prev_term: 1,
        entries: vec![Entry::new(1, seq + 1, EntryPayload::Command(payload))],
        commit: 0,
    }
}

/// A heartbeat whose `read_round` is `seq`.
pub fn heartbeat(seq: u64) -> Message {
    Message::Heartbeat {
        term: 1,
        commit: 0,
        read_round: seq,
    }
}

/// A snapshot of `data_bytes` bytes with a recognisable pattern.
pub fn snapshot(data_bytes: usize) -> Message {
    let data: Vec<u8> = (0..data_bytes).map(|i| (i % 251) as u8).collect();
    Message::InstallSnapshot {
        term: 1,
        snapshot: Snapshot::new(
            SnapshotMeta::new(10, 1, Membership::new([1, 2, 3])),
            Bytes::from(data),
        ),
    }
}

/// The sequence number of a sample append or heartbeat.
pub fn seq(message: &Message) -> Option<u64> {
    match message {
        Message::Append { prev_index, .. } => Some(*prev_index),
        Message::Heartbeat { read_round, .. } => Some(*read_round),
        _ => None,
    }
}

/// An append whose `prev_index` is `seq` and whose `commit` carries `stamp` (benches put a
/// send time there), with one command sharing `payload`.
pub fn stamped_append(seq: u64, stamp: u64, payload: &Bytes) -> Message {
    Message::Append {
        term: 1,
        prev_index: seq,
        prev_term: 1,
        entries: vec![Entry::new(
            1,
            seq + 1,
            EntryPayload::Command(payload.clone()),
        )],
        commit: stamp,
    }
}
