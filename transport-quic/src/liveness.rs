//! How a QUIC connection notices that its peer went silent: keep-alives and the idle timeout.
//!
//! A peer that crashed and came back on the same address is noticed sooner than that: it
//! answers packets on the old connection with a stateless reset (see
//! [`crate::NodeIdentity`]). The idle timeout is the fallback for a peer that is simply gone.

use std::time::Duration;

/// Keep-alive period and idle timeout of a transport's QUIC connections.
///
/// Both ends of a connection propose an idle timeout and the shorter one applies. The
/// defaults (2 s keep-alive, 10 s idle timeout) suit one data centre; a test that must tell a
/// reset apart from an idle timeout can make the timeout longer than any wait it does.
///
/// ```
/// use std::time::Duration;
/// use transport_quic::Liveness;
///
/// let slow_network = Liveness::new(Duration::from_secs(5), Duration::from_secs(30));
/// assert_eq!(slow_network.idle_timeout(), Duration::from_secs(30));
/// assert_eq!(Liveness::default().keep_alive(), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    keep_alive: Duration,
    idle_timeout: Duration,
}

impl Liveness {
    /// The longest idle timeout QUIC can announce (2^62 - 1 milliseconds); longer ones are
    /// capped.
    const MAX_IDLE_TIMEOUT: Duration = Duration::from_millis((1 << 62) - 1);

    /// Keep-alives every `keep_alive`, connections closed after `idle_timeout` without a
    /// packet from the peer. The idle timeout is at least 1 ms (zero would mean none); the
    /// keep-alive period is capped at half the idle timeout, so that an idle but healthy
    /// connection is never closed.
    pub fn new(keep_alive: Duration, idle_timeout: Duration) -> Self {
        let idle_timeout = idle_timeout.clamp(Duration::from_millis(1), Self::MAX_IDLE_TIMEOUT);
        Self {
            keep_alive: keep_alive.min(idle_timeout / 2),
            idle_timeout,
        }
    }

    /// How often an otherwise idle connection sends a keep-alive.
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// How long a connection lives without hearing from its peer.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_stays_below_the_idle_timeout() {
        let liveness = Liveness::new(Duration::from_secs(20), Duration::from_secs(10));
        assert_eq!(liveness.keep_alive(), Duration::from_secs(5));
        let tiny = Liveness::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(tiny.idle_timeout(), Duration::from_millis(1));
        let huge = Liveness::new(Duration::from_secs(1), Duration::MAX);
        assert_eq!(huge.idle_timeout(), Liveness::MAX_IDLE_TIMEOUT);
    }
}
