//! Changing the membership: single-voter changes, joint consensus, learners and removals.
//!
//! A driver asks for a *target* configuration with [`Node::propose_membership`]; the core picks
//! the way there:
//! - **One voter added or removed** (learners may change freely alongside): the target is
//!   appended as it is. Any majority of the old voter set and any majority of the new one
//!   overlap, so the two can never decide differently (Raft dissertation §4.1).
//! - **Anything else** (replacing a node, adding or removing several voters at once): the core
//!   appends the joint configuration `C_old,new`, in which every decision needs a majority of
//!   both voter sets, and once that entry commits it appends `C_new` by itself (the "auto-leave"
//!   of etcd-raft). No step of the way lets the old and the new voters decide alone.
//!
//! Either way a configuration takes effect as soon as it is in a node's log, and these rules
//! keep the changes safe:
//! - **A new leader changes nothing before it has committed an entry of its own term.** Until
//!   then the configuration it believes committed may have been superseded by an entry of an
//!   older leader it has not seen; a single-voter change on top of it can then commit on a set
//!   that does not overlap a majority of that other configuration (the bug Ongaro described on
//!   raft-dev in 2015). [`Error::LeaderNotReady`] means: retry shortly.
//! - **One change at a time**: a change (or a joint configuration not yet left) must commit
//!   before the next is accepted ([`Error::MembershipChangeInProgress`]).
//! - **Voters join caught up**: a node becomes a voter only once its log is within
//!   [`crate::Config::catch_up_entries`] of the leader's; add it as a learner first, let it
//!   catch up, then promote it ([`Error::NotCaughtUp`]).
//! - **A removed leader steps down** once the configuration without it commits (it leads the
//!   change through, without counting itself where it is no longer a voter). A removed node
//!   never starts an election once its log holds its removal; one that never learned of it is
//!   kept from disturbing the cluster by PreVote and CheckQuorum (followers that hear from a
//!   leader ignore vote requests, and a leader ignores vote requests from non-members).

use crate::Node;
use crate::entry::EntryPayload;
use crate::error::Error;
use crate::membership::Membership;
use crate::types::{Index, Instant, Role};

impl Node {
    /// Proposes a change of the membership to `target` (a plain configuration: voters and
    /// learners). Returns the index of the entry that starts the change: `target` itself for a
    /// change of at most one voter, else the joint configuration, which the core follows with
    /// `target` once it commits. See the [crate docs](crate) and `membership_change.rs` for the
    /// rules; refused with [`Error::NotLeader`], [`Error::TransferInProgress`],
    /// [`Error::LeaderNotReady`], [`Error::MembershipChangeInProgress`],
    /// [`Error::NotCaughtUp`] or [`Error::InvalidMembership`] (no voters left, a joint or
    /// unchanged target, node id 0).
    pub fn propose_membership(&mut self, now: Instant, target: Membership) -> Result<Index, Error> {
        self.advance(now);
        self.check_can_propose(0)?;
        if !self.has_committed_in_term() {
            return Err(Error::LeaderNotReady);
        }
        if self.membership_index > self.commit || self.membership.is_joint() {
            return Err(Error::MembershipChangeInProgress);
        }
        if let Some(why) = target.target_error() {
            return Err(Error::InvalidMembership(why));
        }
        if target == self.membership {
            return Err(Error::InvalidMembership("the configuration is unchanged"));
        }
        let last_index = self.log.last_index();
        for &id in target.voters() {
            if self.membership.voters().contains(&id) || id == self.cfg.id {
                continue;
            }
            let match_index = self.progress.get(&id).map_or(0, |p| p.match_index);
            if match_index.saturating_add(self.cfg.catch_up_entries) < last_index {
                return Err(Error::NotCaughtUp {
                    id,
                    match_index,
                    last_index,
                });
            }
        }
        let next = if self.membership.voter_changes(&target) <= 1 {
            target
        } else {
            self.membership.joint_to(&target)
        };
        Ok(self.append_as_leader(EntryPayload::Membership(Box::new(next))))
    }

    /// Whether the leader's commit index covers an entry of its own term (only then is its
    /// commit index, and the configuration committed under it, known to be current).
    pub(crate) fn has_committed_in_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.term)
    }

    /// On the leader, after the commit index advanced: leaves a committed joint configuration,
    /// and steps down once a configuration without this node has committed.
    pub(crate) fn on_membership_committed(&mut self) {
        if self.role != Role::Leader || self.membership_index > self.commit {
            return;
        }
        if self.membership.is_joint() {
            let next = self.membership.leave_joint();
            self.append_as_leader(EntryPayload::Membership(Box::new(next)));
        } else if !self.membership.is_voter(self.cfg.id) {
            // This leader committed its own removal: hand over by stepping down.
            self.become_follower(self.term, None);
        }
    }
}
