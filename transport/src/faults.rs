//! Fault injection for tests: cut a node off from some peers, or slow its messages to them.
//!
//! [`FaultRules`] is a rule set shared between whoever decides the faults (a test, or kvd
//! reading a rules file) and a transport built with [`TransportConfig::with_faults`]. The rules
//! can change at any time; each message is judged by the rules in force when it passes. Both
//! the TCP and the QUIC transport get this from the shared engine.
//!
//! What a rule does, per peer ([`PeerFaults`]):
//!
//! - **blocked**: messages to the peer are dropped by [`Transport::send`] (which still returns
//!   `Ok`, as a lossy network would) and by the link writer if they were queued before the
//!   rule; messages *from* the peer are dropped on arrival. Dropping on arrival makes a cut
//!   effective even when only one side has the rule (the rules of different nodes are never
//!   updated at the same instant), so a half-connected peer cannot sneak a message through.
//!   Connections stay up and handshakes pass: Raft only sees that messages stop.
//! - **delayed** by `min..=max`: each message to the peer waits a delay drawn on its own from
//!   that range before it is queued. Messages to a delayed peer are therefore **reordered**,
//!   on purpose: Raft must not depend on delivery order (the lanes already let control
//!   messages overtake appends). A delayed message whose peer is blocked by the time its delay
//!   ends is dropped.
//!
//! The delays come from a generator seeded in [`FaultRules::new`], never from a global one.
//! A transport without rules carries none of this: its hot path checks an `Option`. A transport
//! with rules, but none in force, checks one relaxed atomic flag.
//!
//! [`Transport::send`]: crate::Transport::send
//! [`TransportConfig::with_faults`]: crate::TransportConfig::with_faults
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use transport::{FaultRules, PeerFaults};
//!
//! let rules = FaultRules::new(7);
//! rules.set(BTreeMap::from([
//!     (2, PeerFaults::blocked()),
//!     (3, PeerFaults::delayed(Duration::from_millis(20), Duration::from_millis(200))),
//! ]));
//! assert!(rules.blocks(2));
//! assert!(!rules.blocks(3));
//! rules.clear(); // heal
//! assert!(!rules.blocks(2));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use raft::NodeId;

/// The faults applied to one peer's messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerFaults {
    blocked: bool,
    delay: Option<(Duration, Duration)>,
}

impl PeerFaults {
    /// No fault.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every message to and from the peer is dropped.
    pub fn blocked() -> Self {
        Self::none().with_block()
    }

    /// Every message to the peer waits between `min` and `max` (swapped if given the other
    /// way round).
    pub fn delayed(min: Duration, max: Duration) -> Self {
        Self::none().with_delay(min, max)
    }

    /// These faults plus a block.
    pub fn with_block(mut self) -> Self {
        self.blocked = true;
        self
    }

    /// These faults plus a delay of `min..=max` (replacing any other delay).
    pub fn with_delay(mut self, min: Duration, max: Duration) -> Self {
        self.delay = Some((min.min(max), min.max(max)));
        self
    }

    /// Whether messages to and from the peer are dropped.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The range each message's delay is drawn from, if delayed.
    pub fn delay(&self) -> Option<(Duration, Duration)> {
        self.delay
    }

    /// Whether this is no fault at all.
    pub fn is_none(&self) -> bool {
        *self == Self::none()
    }
}

/// What happens to one outgoing message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Queued as usual.
    Deliver,
    /// Lost.
    Drop,
    /// Queued after this long.
    Delay(Duration),
}

/// A rule set shared by a transport and the code that changes it. Cheap to clone; every clone
/// is the same set. See the module docs for what the rules do.
#[derive(Clone)]
pub struct FaultRules {
    shared: Arc<Shared>,
}

struct Shared {
    /// Set while at least one peer has a fault: the only thing the hot path reads otherwise.
    active: AtomicBool,
    peers: RwLock<BTreeMap<NodeId, PeerFaults>>,
    rng: Mutex<raft::Rng>,
}

impl FaultRules {
    /// An empty rule set whose delays are drawn from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                active: AtomicBool::new(false),
                peers: RwLock::new(BTreeMap::new()),
                rng: Mutex::new(raft::Rng::new(seed)),
            }),
        }
    }

    /// Replaces every rule with `peers` (peers not named have no fault).
    pub fn set(&self, peers: BTreeMap<NodeId, PeerFaults>) {
        let mut current = self.shared.peers.write().unwrap_or_else(|e| e.into_inner());
        *current = peers.into_iter().filter(|(_, f)| !f.is_none()).collect();
        self.shared
            .active
            .store(!current.is_empty(), Ordering::Relaxed);
    }

    /// Removes every rule (heals the network).
    pub fn clear(&self) {
        self.set(BTreeMap::new());
    }

    /// The rules in force, by peer.
    pub fn get(&self) -> BTreeMap<NodeId, PeerFaults> {
        self.shared
            .peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The faults applied to `peer` right now.
    pub fn peer(&self, peer: NodeId) -> PeerFaults {
        if !self.shared.active.load(Ordering::Relaxed) {
            return PeerFaults::none();
        }
        self.shared
            .peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .copied()
            .unwrap_or_default()
    }

    /// Whether messages to and from `peer` are dropped right now.
    pub fn blocks(&self, peer: NodeId) -> bool {
        self.peer(peer).is_blocked()
    }

    /// Judges one message to `peer`.
    pub(crate) fn fate(&self, peer: NodeId) -> Fate {
        let faults = self.peer(peer);
        if faults.is_blocked() {
            return Fate::Drop;
        }
        match faults.delay() {
            None => Fate::Deliver,
            Some((min, max)) => {
                let span = (max - min).as_micros() as u64;
                let mut rng = self.shared.rng.lock().unwrap_or_else(|e| e.into_inner());
                let extra = rng.range(0, span.saturating_add(1));
                Fate::Delay(min + Duration::from_micros(extra))
            }
        }
    }
}

impl fmt::Debug for FaultRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultRules")
            .field("peers", &self.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_rules_deliver_everything() {
        let rules = FaultRules::new(1);
        assert_eq!(rules.fate(2), Fate::Deliver);
        assert!(!rules.blocks(2));
        assert!(rules.get().is_empty());
    }

    #[test]
    fn a_block_drops_and_wins_over_a_delay() {
        let rules = FaultRules::new(1);
        rules.set(BTreeMap::from([
            (2, PeerFaults::delayed(10 * MS, 20 * MS).with_block()),
            (3, PeerFaults::none()),
        ]));
        assert_eq!(rules.fate(2), Fate::Drop);
        assert_eq!(rules.fate(3), Fate::Deliver);
        assert_eq!(rules.get().len(), 1, "empty rules are not kept");
        rules.clear();
        assert_eq!(rules.fate(2), Fate::Deliver);
    }

    #[test]
    fn delays_stay_in_their_range_and_vary() {
        let rules = FaultRules::new(42);
        rules.set(BTreeMap::from([(2, PeerFaults::delayed(30 * MS, 20 * MS))]));
        assert_eq!(rules.peer(2).delay(), Some((20 * MS, 30 * MS)));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            match rules.fate(2) {
                Fate::Delay(d) => {
                    assert!((20 * MS..=30 * MS).contains(&d), "{d:?}");
                    seen.insert(d);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.len() > 50, "delays are drawn per message");
    }

    #[test]
    fn one_seed_gives_the_same_delays() {
        let draw = |seed| {
            let rules = FaultRules::new(seed);
            rules.set(BTreeMap::from([(2, PeerFaults::delayed(MS, 100 * MS))]));
            (0..10).map(|_| rules.fate(2)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn clones_share_the_rules() {
        let rules = FaultRules::new(1);
        let other = rules.clone();
        other.set(BTreeMap::from([(4, PeerFaults::blocked())]));
        assert!(rules.blocks(4));
    }
}
