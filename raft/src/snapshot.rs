//! Snapshots: compacting the log once the driver saved the state machine, shipping snapshots
//! to followers behind the compaction point, and installing one as a follower.

use crate::Node;
use crate::entry::{Snapshot, SnapshotMeta};
use crate::error::Error;
use crate::message::{AppendOutcome, Message};
use crate::progress::ProgressState;
use crate::types::{Index, Instant, NodeId, Role};

impl Node {
    /// Metadata for a snapshot of the state machine as of `index`, which must be applied, not
    /// older than the current snapshot, and durable enough on this node: either in its
    /// durable log, or of a term its durable hard state has reached (a leader's applied
    /// entries always are). Storage holding such a snapshot can always be restarted from.
    /// Store the metadata with the snapshot's bytes.
    pub fn snapshot_meta(&self, index: Index) -> Result<SnapshotMeta, Error> {
        let first = self.log.snapshot_index();
        let durable = self
            .stable_index
            .max(self.log.last_index_with_term_at_most(self.durable_term));
        let last = self.applied.min(durable);
        let out_of_range = Error::IndexOutOfRange { index, first, last };
        if index < first || index > last {
            return Err(out_of_range);
        }
        let term = self.log.term_at(index).ok_or(out_of_range)?;
        Ok(SnapshotMeta::new(index, term, self.membership_at(index)))
    }

    /// Reports that a snapshot of the state machine up to `index` is durably stored: the core
    /// forgets the log up to there (storage may then drop it too).
    pub fn compact(&mut self, now: Instant, index: Index) -> Result<(), Error> {
        self.advance(now);
        if index == self.log.snapshot_index() {
            return Ok(());
        }
        let meta = self.snapshot_meta(index)?;
        self.log.compact(index);
        self.snapshot_membership = meta.membership().clone();
        self.membership_log.retain(|(i, _)| *i > index);
        Ok(())
    }

    /// Answers [`crate::Output::SnapshotNeeded`]: sends `snapshot` (the driver's latest) to
    /// follower `to`.
    pub fn send_snapshot(
        &mut self,
        now: Instant,
        to: NodeId,
        snapshot: Snapshot,
    ) -> Result<(), Error> {
        self.advance(now);
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        let index = snapshot.meta().index();
        let first = self.log.snapshot_index();
        if index < first || self.log.term_at(index) != Some(snapshot.meta().term()) {
            return Err(Error::IndexOutOfRange {
                index,
                first,
                last: self.log.last_index(),
            });
        }
        let Some(pr) = self.progress.get_mut(&to) else {
            return Err(Error::InvalidMembership("snapshot target is not a member"));
        };
        if !matches!(pr.state, ProgressState::Snapshot { .. }) {
            return Ok(()); // no longer needed
        }
        pr.become_snapshot(index, self.now);
        self.stats.snapshots_sent += 1;
        self.send(
            to,
            Message::InstallSnapshot {
                term: self.term,
                snapshot,
            },
        );
        Ok(())
    }

    pub(crate) fn handle_install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let meta = snapshot.meta().clone();
        if meta.term() > self.term
            || (meta.index() > 0 && meta.term() == 0)
            || meta.membership().voters().is_empty()
        {
            self.stats.invalid += 1;
            return;
        }
        if meta.index() <= self.commit {
            self.respond_append(
                from,
                AppendOutcome::Accepted {
                    match_index: self.commit,
                },
            );
            return;
        }
        if self.log.term_at(meta.index()) == Some(meta.term()) {
            // The log already holds the snapshot's last entry: just commit up to it.
            self.commit = meta.index();
            self.respond_append(
                from,
                AppendOutcome::Accepted {
                    match_index: meta.index(),
                },
            );
            return;
        }
        self.stats.snapshots_installed += 1;
        self.log.reset_to_snapshot(meta.index(), meta.term());
        self.membership = meta.membership().clone();
        self.membership_index = meta.index();
        self.membership_log.clear();
        self.snapshot_membership = meta.membership().clone();
        self.commit = meta.index();
        self.pending_snapshot = Some(snapshot);
        self.respond_append(
            from,
            AppendOutcome::Accepted {
                match_index: meta.index(),
            },
        );
    }
}
