//! Cluster membership and quorum arithmetic.
//!
//! Membership is data: it travels in the log ([`crate::EntryPayload::Membership`]) and in
//! snapshots ([`crate::SnapshotMeta`]). A configuration takes effect on a node as soon as the
//! entry is in its log (committed or not), as in the Raft dissertation. A joint configuration
//! holds two voter sets, the incoming and the outgoing one, and needs a majority of each; how
//! the core moves between configurations is in `membership_change.rs`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::types::{Index, NodeId};

/// The voters and learners of the cluster at some point of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    outgoing: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A configuration of `voters` and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            voters: voters.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Adds learners: nodes that receive the log but neither vote nor count for commitment.
    pub fn with_learners(mut self, learners: impl IntoIterator<Item = NodeId>) -> Self {
        self.learners.extend(learners);
        self.learners
            .retain(|id| !self.voters.contains(id) && !self.outgoing.contains(id));
        self
    }

    /// The (incoming) voter set.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The outgoing voter set of a joint configuration; empty otherwise.
    pub fn outgoing_voters(&self) -> &BTreeSet<NodeId> {
        &self.outgoing
    }

    /// The learners. In a joint configuration a learner may also be an outgoing voter: it
    /// votes until the joint configuration is left, then stays as a learner (a demotion).
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// Whether this is a joint configuration (two voter sets).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes in this configuration (in either half of a joint one).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member: voters of both halves and learners, in ascending order without duplicates.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let all: BTreeSet<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.into_iter()
    }

    /// Whether the nodes for which `yes` holds form a quorum (a majority of each voter set).
    pub fn is_quorum(&self, mut yes: impl FnMut(NodeId) -> bool) -> bool {
        majority(&self.voters, &mut yes)
            && (self.outgoing.is_empty() || majority(&self.outgoing, &mut yes))
    }

    /// The outcome of a vote given each voter's answer (`None` = not yet answered).
    pub fn vote_result(&self, mut answer: impl FnMut(NodeId) -> Option<bool>) -> VoteResult {
        let a = vote_result(&self.voters, &mut answer);
        if self.outgoing.is_empty() {
            return a;
        }
        let b = vote_result(&self.outgoing, &mut answer);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// The highest index that a quorum has reached, given each voter's `matched` index.
    pub fn committed_index(&self, mut matched: impl FnMut(NodeId) -> Index) -> Index {
        let a = quorum_index(&self.voters, &mut matched);
        if self.outgoing.is_empty() {
            a
        } else {
            a.min(quorum_index(&self.outgoing, &mut matched))
        }
    }

    /// How many voters `target` adds or removes compared to `self` (incoming voter sets).
    pub(crate) fn voter_changes(&self, target: &Self) -> usize {
        self.voters.symmetric_difference(&target.voters).count()
    }

    /// Why `self` cannot be the target of a membership change, if it cannot.
    pub(crate) fn target_error(&self) -> Option<&'static str> {
        if self.is_joint() {
            Some("propose the target configuration; the core enters and leaves the joint one")
        } else if self.voters.is_empty() {
            Some("no voters left")
        } else if self.voters.contains(&0) || self.learners.contains(&0) {
            Some("node id 0 is reserved")
        } else if !self.voters.is_disjoint(&self.learners) {
            Some("a node cannot be both a voter and a learner")
        } else {
            None
        }
    }

    /// The joint configuration between `self` (not joint) and `target`: `target`'s voters
    /// and learners, with `self`'s voters as the outgoing set.
    pub(crate) fn joint_to(&self, target: &Self) -> Self {
        Self {
            voters: target.voters.clone(),
            outgoing: self.voters.clone(),
            learners: target.learners.clone(),
        }
    }

    /// The configuration that leaves a joint one: the incoming voters and the learners.
    pub(crate) fn leave_joint(&self) -> Self {
        Self {
            voters: self.voters.clone(),
            outgoing: BTreeSet::new(),
            learners: self.learners.difference(&self.voters).copied().collect(),
        }
    }
}

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority can no longer be reached.
    Lost,
    /// Not decided yet.
    Pending,
}

fn majority(set: &BTreeSet<NodeId>, yes: &mut impl FnMut(NodeId) -> bool) -> bool {
    if set.is_empty() {
        return true;
    }
    set.iter().filter(|&&id| yes(id)).count() > set.len() / 2
}

fn vote_result(
    set: &BTreeSet<NodeId>,
    answer: &mut impl FnMut(NodeId) -> Option<bool>,
) -> VoteResult {
    if set.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for &id in set {
        match answer(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let need = set.len() / 2 + 1;
    if granted >= need {
        VoteResult::Won
    } else if granted + missing >= need {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

fn quorum_index(set: &BTreeSet<NodeId>, matched: &mut impl FnMut(NodeId) -> Index) -> Index {
    if set.is_empty() {
        return Index::MAX;
    }
    const INLINE: usize = 8;
    if set.len() <= INLINE {
        let mut indexes = [0; INLINE];
        for (slot, &id) in indexes.iter_mut().zip(set) {
            *slot = matched(id);
        }
        let indexes = &mut indexes[..set.len()];
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        return indexes[set.len() / 2];
    }
    let mut indexes: Vec<Index> = set.iter().map(|&id| matched(id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[set.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn committed_index_is_the_majority_match() {
        let m = Membership::new([1, 2, 3]);
        let matched = [(1, 5), (2, 3), (3, 9)];
        let f = |id| {
            matched
                .iter()
                .find(|(n, _)| *n == id)
                .map_or(0, |(_, i)| *i)
        };
        assert_eq!(m.committed_index(f), 5);
        let m4 = Membership::new([1, 2, 3, 4]);
        let matched4 = [(1, 5), (2, 3), (3, 9), (4, 1)];
        let g = |id| {
            matched4
                .iter()
                .find(|(n, _)| *n == id)
                .map_or(0, |(_, i)| *i)
        };
        assert_eq!(m4.committed_index(g), 3);
    }

    #[test]
    fn joint_needs_both_majorities() {
        let mut m = Membership::new([1, 2, 3]);
        m.outgoing = [3, 4, 5].into();
        assert!(!m.is_quorum(|id| id <= 2));
        assert!(m.is_quorum(|id| id <= 4));
        assert_eq!(m.vote_result(|id| Some(id <= 2)), VoteResult::Lost);
        assert_eq!(
            m.vote_result(|id| if id == 1 { Some(true) } else { None }),
            VoteResult::Pending
        );
    }

    #[test]
    fn learners_are_not_voters() {
        let m = Membership::new([1, 2, 3]).with_learners([4, 2]);
        assert!(!m.is_voter(4));
        assert!(m.contains(4));
        assert!(m.is_voter(2));
        assert_eq!(m.learners().len(), 1);
        assert_eq!(m.members().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn voter_changes_count_additions_and_removals() {
        let m = Membership::new([1, 2, 3]);
        assert_eq!(m.voter_changes(&Membership::new([1, 2, 3, 4])), 1);
        assert_eq!(m.voter_changes(&Membership::new([1, 2])), 1);
        assert_eq!(m.voter_changes(&Membership::new([1, 2, 4])), 2);
        assert_eq!(
            m.voter_changes(&Membership::new([1, 2, 3]).with_learners([4])),
            0
        );
    }

    #[test]
    fn targets_must_be_plain_and_keep_a_voter() {
        assert!(Membership::new([1]).target_error().is_none());
        assert_eq!(Membership::new([]).target_error(), Some("no voters left"));
        assert!(Membership::new([0, 1]).target_error().is_some());
        let joint = Membership::new([1, 2]).joint_to(&Membership::new([3]));
        assert!(joint.target_error().is_some());
    }

    #[test]
    fn joint_consensus_enters_and_leaves() {
        // Replace 3 by 4, and demote 2 to a learner.
        let old = Membership::new([1, 2, 3]);
        let target = Membership::new([1, 4]).with_learners([2]);
        let joint = old.joint_to(&target);
        assert!(joint.is_joint());
        for id in [1, 2, 3, 4] {
            assert!(joint.is_voter(id), "{id} votes while joint");
        }
        // A majority of each set: {1, 4} alone is not a majority of {1, 2, 3}.
        assert!(!joint.is_quorum(|id| id == 1 || id == 4));
        assert!(joint.is_quorum(|id| id == 1 || id == 4 || id == 2));
        let left = joint.leave_joint();
        assert_eq!(left, target);
        assert!(!left.is_voter(2) && left.contains(2));
        assert!(!left.contains(3));
    }

    proptest! {
        // The committed index is reached by a majority and no larger index is.
        #[test]
        fn committed_index_matches_definition(matches in proptest::collection::vec(0u64..50, 1..12)) {
            let m = Membership::new(1..=matches.len() as u64);
            let at = |id: NodeId| matches[(id - 1) as usize];
            let c = m.committed_index(at);
            let reached = |i: Index| matches.iter().filter(|&&x| x >= i).count() > matches.len() / 2;
            prop_assert!(reached(c));
            prop_assert!(!reached(c + 1));
        }

        // Won and Lost are mutually exclusive with what a majority could still do.
        #[test]
        fn vote_result_is_consistent(answers in proptest::collection::vec(proptest::option::of(any::<bool>()), 1..12)) {
            let m = Membership::new(1..=answers.len() as u64);
            let n = answers.len();
            let granted = answers.iter().filter(|a| **a == Some(true)).count();
            let open = answers.iter().filter(|a| a.is_none()).count();
            let r = m.vote_result(|id| answers[(id - 1) as usize]);
            match r {
                VoteResult::Won => prop_assert!(granted > n / 2),
                VoteResult::Lost => prop_assert!(granted + open <= n / 2),
                VoteResult::Pending => prop_assert!(granted <= n / 2 && granted + open > n / 2),
            }
        }
    }
}
