//! The simulated network: per-message delay (hence reordering), loss, duplication, and links
//! cut in one or both directions, all drawn from the simulation's seeded generator.

use core::time::Duration;
use std::collections::BTreeSet;

use crate::rng::Rng;
use crate::types::NodeId;

/// Fault rates of the simulated network.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_rate: f64,
    /// Shortest delivery delay.
    pub min_delay: Duration,
    /// Longest delivery delay; messages overtake each other within this spread.
    pub max_delay: Duration,
}

impl NetworkFaults {
    /// A network that loses nothing, with a fixed small delay.
    pub fn reliable() -> Self {
        Self {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            min_delay: Duration::from_micros(500),
            max_delay: Duration::from_micros(500),
        }
    }

    /// A hostile network: 5% loss, 2% duplicates, 1–30 ms delays.
    pub fn lossy() -> Self {
        Self {
            drop_rate: 0.05,
            duplicate_rate: 0.02,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(30),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) faults: NetworkFaults,
    /// Cut links, `(from, to)`: messages from `from` to `to` are lost.
    blocked: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    pub(crate) fn new(faults: NetworkFaults) -> Self {
        Self {
            faults,
            blocked: BTreeSet::new(),
        }
    }

    /// Whether a message from `from` reaches `to`.
    pub(crate) fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Splits `nodes`: those in `side` can only talk among themselves, the rest likewise.
    pub(crate) fn partition(&mut self, nodes: &[NodeId], side: &BTreeSet<NodeId>) {
        self.one_way(nodes, side);
        let rest: BTreeSet<NodeId> = nodes
            .iter()
            .copied()
            .filter(|n| !side.contains(n))
            .collect();
        self.one_way(nodes, &rest);
    }

    /// Cuts every link from `side` to the other nodes; the other direction still works (the
    /// rest hear nothing from `side`, while `side` hears them).
    pub(crate) fn one_way(&mut self, nodes: &[NodeId], side: &BTreeSet<NodeId>) {
        for &from in side {
            for &to in nodes {
                if !side.contains(&to) {
                    self.blocked.insert((from, to));
                }
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }

    pub(crate) fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// The delivery delays for one message: empty if lost, two if duplicated.
    pub(crate) fn delays(&self, rng: &mut Rng) -> Vec<Duration> {
        if rng.chance(self.faults.drop_rate) {
            return Vec::new();
        }
        let copies = if rng.chance(self.faults.duplicate_rate) {
            2
        } else {
            1
        };
        let (lo, hi) = (
            self.faults.min_delay.as_nanos() as u64,
            self.faults.max_delay.as_nanos() as u64,
        );
        (0..copies)
            .map(|_| Duration::from_nanos(rng.range(lo, hi + 1)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_partitions_cut_a_single_direction() {
        let mut net = Network::new(NetworkFaults::reliable());
        let nodes = [1, 2, 3];
        net.one_way(&nodes, &BTreeSet::from([1]));
        assert!(!net.connected(1, 2) && !net.connected(1, 3));
        assert!(net.connected(2, 1) && net.connected(3, 1) && net.connected(2, 3));
        net.heal();
        net.partition(&nodes, &BTreeSet::from([1]));
        assert!(!net.connected(1, 2) && !net.connected(2, 1) && net.connected(2, 3));
        assert!(net.is_partitioned());
    }
}
