//! State machines for the simulator.
//!
//! Embedders plug their own [`StateMachine`] into [`crate::sim::Simulation`] to check that it
//! is deterministic and that its snapshots round-trip: the simulator compares every replica's
//! [`StateMachine::fingerprint`] at every applied index.

use bytes::Bytes;

use crate::types::Index;

/// A replicated state machine as the simulator drives it.
pub trait StateMachine {
    /// Applies the command of the entry at `index`.
    fn apply(&mut self, index: Index, command: &Bytes);
    /// The entry at `index` carries no command (a leader's no-op or a membership change). A
    /// machine that keys anything on log indexes (expiry, say) sees every index this way;
    /// the default does nothing.
    fn skip(&mut self, index: Index) {
        let _ = index;
    }
    /// Serialises the whole state.
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with a snapshot made by [`StateMachine::snapshot`] (empty bytes mean
    /// the initial state).
    fn restore(&mut self, data: &Bytes);
    /// A digest of the state: replicas that applied the same entries must agree on it.
    fn fingerprint(&self) -> u64;
}

/// The default machine: a running hash of every command applied, in order.
#[derive(Clone, Debug, Default)]
pub struct LogMachine {
    digest: u64,
    count: u64,
}

impl LogMachine {
    /// How many commands were applied.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl StateMachine for LogMachine {
    fn apply(&mut self, index: Index, command: &Bytes) {
        self.digest = fnv1a(self.digest ^ index, command);
        self.count += 1;
    }

    fn snapshot(&self) -> Bytes {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.digest.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        Bytes::from(out)
    }

    fn restore(&mut self, data: &Bytes) {
        let word = |i: usize| {
            data.get(i..i + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        self.digest = word(0);
        self.count = word(8);
    }

    fn fingerprint(&self) -> u64 {
        self.digest
    }
}

/// FNV-1a over `data`, starting from `seed`.
pub(crate) fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
