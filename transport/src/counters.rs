//! Counters every transport keeps, readable at any time (for metrics and for tests).
//!
//! Refused handshakes and malformed frames close one connection and bump a counter here; the
//! node goes on serving everyone else.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`Counters`] slot counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Messages written to peers.
    MessagesSent,
    /// Messages received from peers.
    MessagesReceived,
    /// Frame bytes written (prefixes included).
    BytesSent,
    /// Messages dropped by [`crate::Transport::send`] because a peer's lane was full.
    QueueFull,
    /// Outgoing messages dropped because they exceed the frame limit.
    OutboundTooLarge,
    /// Outbound connections established (handshake completed).
    ConnectionsEstablished,
    /// Outbound connection attempts that failed (connect, TLS or handshake).
    ConnectFailures,
    /// Established outbound connections that broke.
    ConnectionsLost,
    /// Inbound connections accepted (handshake completed).
    ConnectionsAccepted,
    /// Inbound connections refused by the handshake (cluster id, node id, identity, magic).
    HandshakesRefused,
    /// Inbound connections refused at the TLS layer (QUIC only).
    TlsRefused,
    /// Connections closed for announcing a frame above the limit.
    OversizedFrames,
    /// Connections that ended in the middle of a frame.
    TruncatedFrames,
    /// Connections closed for a frame that did not decode.
    UndecodableFrames,
    /// Messages dropped by fault rules (see [`crate::faults`]), in either direction.
    FaultDropped,
    /// Outgoing messages held back by a fault rule's delay.
    FaultDelayed,
}

impl Counter {
    /// Every counter, in a stable order.
    pub const ALL: [Self; 16] = [
        Self::MessagesSent,
        Self::MessagesReceived,
        Self::BytesSent,
        Self::QueueFull,
        Self::OutboundTooLarge,
        Self::ConnectionsEstablished,
        Self::ConnectFailures,
        Self::ConnectionsLost,
        Self::ConnectionsAccepted,
        Self::HandshakesRefused,
        Self::TlsRefused,
        Self::OversizedFrames,
        Self::TruncatedFrames,
        Self::UndecodableFrames,
        Self::FaultDropped,
        Self::FaultDelayed,
    ];

    /// A snake_case name for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::MessagesSent => "messages_sent",
            Self::MessagesReceived => "messages_received",
            Self::BytesSent => "bytes_sent",
            Self::QueueFull => "queue_full",
            Self::OutboundTooLarge => "outbound_too_large",
            Self::ConnectionsEstablished => "connections_established",
            Self::ConnectFailures => "connect_failures",
            Self::ConnectionsLost => "connections_lost",
            Self::ConnectionsAccepted => "connections_accepted",
            Self::HandshakesRefused => "handshakes_refused",
            Self::TlsRefused => "tls_refused",
            Self::OversizedFrames => "oversized_frames",
            Self::TruncatedFrames => "truncated_frames",
            Self::UndecodableFrames => "undecodable_frames",
            Self::FaultDropped => "fault_dropped",
            Self::FaultDelayed => "fault_delayed",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A set of monotonically increasing counters shared by a transport's tasks.
#[derive(Debug, Default)]
pub struct Counters {
    values: [AtomicU64; Counter::ALL.len()],
}

impl Counters {
    /// The current value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter.slot()].load(Ordering::Relaxed)
    }

    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        self.values[counter.slot()].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Every counter with its value.
    pub fn snapshot(&self) -> Vec<(Counter, u64)> {
        Counter::ALL.iter().map(|&c| (c, self.get(c))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_names_unique() {
        let counters = Counters::default();
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.slot(), i);
            counters.add(*c, i as u64);
        }
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(counters.get(*c), i as u64);
        }
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }
}
