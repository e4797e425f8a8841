//! The simulated network: per-message delay (hence reordering), loss, duplication and
//! partitions, all drawn from the simulation's seeded generator.

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
    /// Each node's partition group; nodes talk only within a group.
    groups: Vec<u32>,
}

impl Network {
    pub(crate) fn new(nodes: usize, faults: NetworkFaults) -> Self {
        Self {
            faults,
            groups: vec![0; nodes],
        }
    }

    pub(crate) fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.groups[a as usize - 1] == self.groups[b as usize - 1]
    }

    /// Splits the nodes: those in `side` can only talk among themselves, the rest likewise.
    pub(crate) fn partition(&mut self, side: &BTreeSet<NodeId>) {
        for (i, group) in self.groups.iter_mut().enumerate() {
            *group = u32::from(side.contains(&(i as NodeId + 1)));
        }
    }

    pub(crate) fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    pub(crate) fn is_partitioned(&self) -> bool {
        self.groups.iter().any(|&g| g != self.groups[0])
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
