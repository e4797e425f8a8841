//! Log replication: the leader's appends and heartbeats, the follower's log matching, and
//! commitment by counting durable replicas of current-term entries.

use crate::Node;
use crate::entry::Entry;
use crate::message::{AppendOutcome, Message};
use crate::output::Output;
use crate::progress::ProgressState;
use crate::types::{Index, NodeId, Role, Term};

/// Entries requested from storage in one [`Output::FetchEntries`].
const FETCH_BATCH: Index = 4096;

impl Node {
    /// At flush time on the leader: ship new entries (and a new commit index) to every
    /// follower that can take them.
    pub(crate) fn flush_replication(&mut self) {
        let commit_changed = self.commit > self.commit_broadcast;
        if !self.replicate_pending && !commit_changed {
            return;
        }
        self.replicate_pending = false;
        self.commit_broadcast = self.commit;
        let mut next = self.progress.keys().next().copied();
        while let Some(peer) = next {
            self.send_append(peer, commit_changed);
            next = self.progress.range(peer + 1..).next().map(|(&id, _)| id);
        }
    }

    /// Sends `peer` the entries from its `next_index`, if it is not paused. With `allow_empty`
    /// an append without entries is sent too (to probe, or to carry the commit index).
    pub(crate) fn send_append(&mut self, peer: NodeId, allow_empty: bool) {
        let last = self.log.last_index();
        let max_inflight = self.cfg.max_inflight_appends;
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        if pr.is_paused(max_inflight) {
            return;
        }
        let next = pr.next_index;
        let prev_index = next - 1;
        // A probe repeating one left unanswered carries one entry: the follower may well have
        // the rest already, behind a stalled disk.
        let max_bytes = if pr.is_reprobe() {
            0
        } else {
            self.cfg.max_append_bytes
        };
        let Some(prev_term) = self.log.term_at(prev_index) else {
            // The entries it needs were compacted: it needs a snapshot.
            pr.become_snapshot(self.log.snapshot_index(), self.now);
            self.outputs.push_back(Output::SnapshotNeeded { to: peer });
            return;
        };
        let entries = if next <= last {
            match self.log.slice(next, last, max_bytes) {
                Some(entries) => entries,
                None => {
                    pr.awaiting_fetch = true;
                    if self.fetch_in_flight.is_none() {
                        let (first, last) = (next, last.min(next + FETCH_BATCH - 1));
                        let deadline = self.now + self.cfg.election_timeout_max;
                        self.fetch_in_flight = Some((first, last, deadline));
                        self.outputs.push_back(Output::FetchEntries { first, last });
                    }
                    return;
                }
            }
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty {
            return;
        }
        self.send_append_entries(peer, prev_index, prev_term, entries);
    }

    fn send_append_entries(
        &mut self,
        peer: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
    ) {
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        let last_sent = entries.last().map_or(prev_index, Entry::index);
        pr.on_append_sent(last_sent, entries.len());
        let commit = self.commit;
        self.send(
            peer,
            Message::Append {
                term: self.term,
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
    }

    /// Entries the driver read from storage for lagging followers.
    pub fn entries_fetched(&mut self, now: crate::Instant, entries: Vec<Entry>) {
        self.advance(now);
        let Some((first, _, _)) = self.fetch_in_flight.take() else {
            return;
        };
        let consistent = entries.first().is_some_and(|e| e.index() == first)
            && entries.iter().enumerate().all(|(i, e)| {
                e.index() == first + i as Index && self.log.term_at(e.index()) == Some(e.term())
            });
        let waiting: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, pr)| pr.awaiting_fetch)
            .map(|(&id, _)| id)
            .collect();
        for peer in waiting {
            let Some(pr) = self.progress.get_mut(&peer) else {
                continue;
            };
            pr.awaiting_fetch = false;
            let next = pr.next_index;
            let covered = consistent && next >= first && next < first + entries.len() as Index;
            if !covered || self.role != Role::Leader {
                self.send_append(peer, true);
                continue;
            }
            let Some(prev_term) = self.log.term_at(next - 1) else {
                self.send_append(peer, true);
                continue;
            };
            let max_bytes = if pr.is_reprobe() {
                0
            } else {
                self.cfg.max_append_bytes
            };
            let mut bytes = 0;
            let batch: Vec<Entry> = entries[(next - first) as usize..]
                .iter()
                .take_while(|e| {
                    bytes += e.size();
                    bytes <= max_bytes
                })
                .cloned()
                .collect();
            let batch = if batch.is_empty() {
                vec![entries[(next - first) as usize].clone()]
            } else {
                batch
            };
            if !self
                .progress
                .get(&peer)
                .is_some_and(|pr| pr.is_paused(self.cfg.max_inflight_appends))
            {
                self.send_append_entries(peer, next - 1, prev_term, batch);
            }
        }
    }

    /// Sends a heartbeat to every follower: `periodic` for the heartbeat timer's, else one
    /// that confirms reads (only the periodic ones count rounds for the stall detector and
    /// the probe backoff, so a stream of reads does not speed them up).
    /// A fetch the driver did not answer within an election timeout is given up: the followers
    /// waiting for it are probed again, which asks for the entries anew.
    pub(crate) fn expire_fetch(&mut self) {
        if self
            .fetch_in_flight
            .is_none_or(|(_, _, deadline)| deadline > self.now)
        {
            return;
        }
        self.fetch_in_flight = None;
        self.stats.fetches_timed_out += 1;
        let waiting: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, pr)| pr.awaiting_fetch)
            .map(|(&id, _)| id)
            .collect();
        for peer in waiting {
            if let Some(pr) = self.progress.get_mut(&peer) {
                pr.awaiting_fetch = false;
            }
            self.send_append(peer, true);
        }
    }

    pub(crate) fn broadcast_heartbeat(&mut self, periodic: bool) {
        let round = self.reads.round_sent();
        let now = self.now;
        let timeout = self.cfg.snapshot_timeout;
        let mut heartbeats = Vec::with_capacity(self.progress.len());
        for (&peer, pr) in &mut self.progress {
            if periodic && pr.on_heartbeat_round() {
                pr.become_probe();
            }
            if let ProgressState::Snapshot { since, .. } = pr.state
                && now.saturating_duration_since(since) >= timeout
            {
                pr.become_probe();
            }
            let commit = self.commit.min(pr.match_index);
            heartbeats.push((
                peer,
                Message::Heartbeat {
                    term: self.term,
                    commit,
                    read_round: round,
                },
            ));
        }
        for (peer, message) in heartbeats {
            self.send(peer, message);
        }
    }

    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_index: Index,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: Index,
    ) {
        // The entries must follow prev_index contiguously with terms that never decrease and
        // never exceed the leader's; anything else is malformed.
        let well_formed = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index() == prev_index + 1 + i as Index)
            && entries.windows(2).all(|w| w[0].term() <= w[1].term())
            && prev_term <= self.term
            && entries.first().is_none_or(|e| e.term() >= prev_term)
            && entries.last().is_none_or(|e| e.term() <= self.term);
        if !well_formed {
            self.stats.invalid += 1;
            return;
        }
        let last_in_message = prev_index + entries.len() as Index;
        if prev_index < self.commit {
            // Everything up to the commit index is known to match the leader's log.
            if last_in_message <= self.commit {
                self.respond_append(
                    from,
                    AppendOutcome::Accepted {
                        match_index: self.commit,
                    },
                );
                return;
            }
            let skip = (self.commit - prev_index) as usize;
            prev_term = entries[skip - 1].term();
            prev_index = self.commit;
            entries.drain(..skip);
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            self.stats.append_rejections += 1;
            let outcome = if prev_index > self.log.last_index() {
                AppendOutcome::Rejected {
                    rejected_index: prev_index,
                    hint_index: self.log.last_index() + 1,
                    hint_term: None,
                }
            } else {
                let hint_index = self
                    .log
                    .first_index_of_run(prev_index)
                    .max(self.commit + 1)
                    .min(prev_index);
                AppendOutcome::Rejected {
                    rejected_index: prev_index,
                    hint_index,
                    hint_term: self.log.term_at(prev_index),
                }
            };
            self.respond_append(from, outcome);
            return;
        }
        if let Some(pos) = self.log.find_conflict(&entries) {
            let first_new = entries[pos].index();
            if first_new <= self.log.last_index() {
                if first_new <= self.commit {
                    // Would overwrite a committed entry: not a legitimate leader's message.
                    self.stats.invalid += 1;
                    return;
                }
                self.log.truncate_from(first_new);
                self.rollback_membership(first_new - 1);
            }
            for entry in entries.drain(pos..) {
                self.note_membership_entry(&entry);
                self.log.push(entry);
            }
        }
        if leader_commit > self.commit {
            self.commit = leader_commit.min(last_in_message).max(self.commit);
        }
        self.respond_append(
            from,
            AppendOutcome::Accepted {
                match_index: last_in_message,
            },
        );
    }

    pub(crate) fn respond_append(&mut self, to: NodeId, outcome: AppendOutcome) {
        self.send(
            to,
            Message::AppendResponse {
                term: self.term,
                outcome,
            },
        );
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, leader_commit: Index, read_round: u64) {
        let commit = leader_commit.min(self.log.last_index());
        if commit > self.commit {
            self.commit = commit;
        }
        self.send(
            from,
            Message::HeartbeatResponse {
                term: self.term,
                read_round,
            },
        );
    }

    pub(crate) fn handle_append_response(&mut self, from: NodeId, outcome: AppendOutcome) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            self.stats.unknown_peer += 1;
            return;
        };
        pr.recent_active = true;
        match outcome {
            AppendOutcome::Accepted { match_index } => {
                if match_index > last {
                    self.stats.invalid += 1;
                    return;
                }
                let advanced = pr.on_accepted(match_index);
                match pr.state {
                    // A probe ends once the follower's log is known to match somewhere: from
                    // there on the leader streams after its match index. An answer that
                    // matches nothing (a node telling an old term's leader about its newer
                    // term answers with index 0) must not make a new leader, which knows no
                    // match yet, stream from the start of its log.
                    ProgressState::Probe if pr.match_index > 0 => pr.become_replicate(),
                    ProgressState::Snapshot { index, .. } if pr.match_index >= index => {
                        pr.become_replicate()
                    }
                    _ => {}
                }
                if advanced {
                    self.maybe_commit();
                }
                if self.transfer.is_some() {
                    self.maybe_send_timeout_now(from);
                }
                self.send_append(from, false);
            }
            AppendOutcome::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                let stale = match pr.state {
                    ProgressState::Replicate => rejected_index <= pr.match_index,
                    ProgressState::Probe => rejected_index + 1 != pr.next_index,
                    ProgressState::Snapshot { .. } => true,
                };
                if stale {
                    return;
                }
                if rejected_index > last {
                    self.stats.invalid += 1;
                    return;
                }
                pr.on_answered();
                let mut next = match hint_term {
                    Some(term) => self
                        .log
                        .last_index_of_term(term)
                        .map_or(hint_index, |i| i + 1),
                    None => hint_index,
                };
                next = next.min(rejected_index).max(pr.match_index + 1);
                let backed_up = next < pr.next_index;
                pr.become_probe();
                pr.next_index = next;
                if backed_up {
                    self.send_append(from, true);
                } else {
                    // No way back (the follower contradicts what it acknowledged): retry at
                    // the heartbeat pace instead of ping-ponging at network speed.
                    pr.on_append_sent(next - 1, 0);
                }
            }
        }
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let max_inflight = self.cfg.max_inflight_appends;
        let Some(pr) = self.progress.get_mut(&from) else {
            self.stats.unknown_peer += 1;
            return;
        };
        pr.recent_active = true;
        pr.on_heartbeat_response();
        if read_round <= self.reads.round_sent() {
            pr.read_round = pr.read_round.max(read_round);
        }
        let behind = pr.match_index < last && !pr.is_paused(max_inflight);
        self.confirm_reads();
        if behind {
            self.send_append(from, false);
        }
    }

    /// Advances the commit index to the highest index replicated (durably) on a quorum, if
    /// that entry is from the current term (§5.4.2: never commit older terms by counting).
    pub(crate) fn maybe_commit(&mut self) {
        let me = self.cfg.id;
        let stable = self.stable_index;
        let progress = &self.progress;
        let quorum_index = self.membership.committed_index(|id| {
            if id == me {
                stable
            } else {
                progress.get(&id).map_or(0, |p| p.match_index)
            }
        });
        if quorum_index <= self.commit || self.log.term_at(quorum_index) != Some(self.term) {
            return;
        }
        for index in self.commit + 1..=quorum_index {
            if let Some(entry) = self.log.entry(index)
                && entry.term() == self.term
            {
                self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(entry.size());
            }
        }
        self.commit = quorum_index;
        self.on_commit_in_term();
        self.on_membership_committed();
    }
}

#[cfg(test)]
mod tests {
    //! `handle_append` driven directly: a follower with a known log receives appends.

    use bytes::Bytes;

    use crate::entry::{EntryPayload, HardState, Snapshot, SnapshotMeta};
    use crate::message::{AppendOutcome, Message};
    use crate::node::RestoreState;
    use crate::{Config, Entry, Index, Instant, Membership, Node, Output, Term};

    fn entry(term: Term, index: Index) -> Entry {
        Entry::new(
            term,
            index,
            EntryPayload::Command(Bytes::from(format!("{term}/{index}"))),
        )
    }

    /// Node 2 with entries of `terms` at indexes 1.., in term `term`, with leader 1 known.
    fn follower(term: Term, terms: &[Term], commit: Index) -> Node {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| entry(t, i as Index + 1))
            .collect();
        let state = RestoreState {
            hard_state: HardState::new(term, None, commit),
            snapshot: SnapshotMeta::new(0, 0, Membership::new([1, 2, 3])),
            entries,
        };
        let mut node = Node::restart(Config::new(2), state, Instant::ZERO).unwrap();
        drain(&mut node);
        node
    }

    fn drain(node: &mut Node) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(o) = node.poll_output() {
            if let Output::Persist(p) = &o {
                node.persisted(Instant::ZERO, p.token());
            }
            out.push(o);
        }
        out
    }

    fn append(
        node: &mut Node,
        prev: (Index, Term),
        entries: Vec<Entry>,
        commit: Index,
    ) -> Option<AppendOutcome> {
        let term = node.term();
        node.step(
            Instant::ZERO,
            1,
            Message::Append {
                term,
                prev_index: prev.0,
                prev_term: prev.1,
                entries,
                commit,
            },
        );
        drain(node).into_iter().find_map(|o| match o {
            Output::Send {
                message: Message::AppendResponse { outcome, .. },
                ..
            } => Some(outcome),
            _ => None,
        })
    }

    fn terms(node: &Node) -> Vec<Term> {
        (1..=node.last_index())
            .map(|i| node.log_term(i).unwrap())
            .collect()
    }

    #[test]
    fn a_stale_or_reordered_append_never_truncates() {
        let mut node = follower(2, &[1, 1, 2, 2, 2], 0);
        // An older append for indexes 2..3, delivered late: everything in it matches.
        let outcome = append(&mut node, (1, 1), vec![entry(1, 2), entry(2, 3)], 0);
        assert_eq!(outcome, Some(AppendOutcome::Accepted { match_index: 3 }));
        assert_eq!(
            terms(&node),
            vec![1, 1, 2, 2, 2],
            "the matching suffix was kept"
        );
        // An empty append in the past changes nothing either.
        append(&mut node, (2, 1), vec![], 0);
        assert_eq!(node.last_index(), 5);
    }

    #[test]
    fn a_conflicting_append_replaces_only_the_conflicting_suffix() {
        let mut node = follower(3, &[1, 1, 2, 2, 2], 2);
        let outcome = append(&mut node, (3, 2), vec![entry(3, 4)], 2);
        assert_eq!(outcome, Some(AppendOutcome::Accepted { match_index: 4 }));
        assert_eq!(terms(&node), vec![1, 1, 2, 3]);
    }

    #[test]
    fn commit_never_decreases_and_never_passes_the_appends_last_entry() {
        let mut node = follower(2, &[1, 1, 2, 2, 2], 2);
        // The leader's commit is 10, but this append only vouches for index 3: entries 4 and
        // 5 may be another leader's.
        append(&mut node, (2, 1), vec![entry(2, 3)], 10);
        assert_eq!(node.commit_index(), 3);
        // An append from before that commit does not lower it.
        append(&mut node, (1, 1), vec![entry(1, 2)], 1);
        assert_eq!(node.commit_index(), 3);
        // Nor does a heartbeat with a lower commit.
        let term = node.term();
        node.step(
            Instant::ZERO,
            1,
            Message::Heartbeat {
                term,
                commit: 0,
                read_round: 0,
            },
        );
        assert_eq!(node.commit_index(), 3);
    }

    #[test]
    fn an_append_that_would_overwrite_a_committed_entry_is_refused() {
        let mut node = follower(3, &[1, 1, 2], 3);
        let invalid = node.stats().invalid();
        // The follower's committed prefix matches any legitimate leader's log: an append
        // that starts before it is cut to what follows the commit index.
        let outcome = append(&mut node, (1, 1), vec![entry(1, 2), entry(3, 3)], 3);
        assert_eq!(outcome, Some(AppendOutcome::Accepted { match_index: 3 }));
        assert_eq!(terms(&node), vec![1, 1, 2]);
        assert_eq!(node.stats().invalid(), invalid);
    }

    #[test]
    fn an_install_snapshot_at_or_below_commit_is_ignored() {
        let mut node = follower(2, &[1, 1, 2, 2], 3);
        for index in [2, 3] {
            let meta = SnapshotMeta::new(index, 1, Membership::new([1, 2, 3]));
            let term = node.term();
            node.step(
                Instant::ZERO,
                1,
                Message::InstallSnapshot {
                    term,
                    snapshot: Snapshot::new(meta, Bytes::new()),
                },
            );
            let out = drain(&mut node);
            assert!(
                out.iter()
                    .all(|o| !matches!(o, Output::Persist(_) | Output::ApplySnapshot(_))),
                "{out:?}"
            );
            assert_eq!(node.snapshot_index(), 0);
            assert_eq!(terms(&node), vec![1, 1, 2, 2]);
            assert_eq!(node.commit_index(), 3);
        }
    }

    #[test]
    fn an_append_reaching_past_the_commit_index_keeps_the_part_after_it() {
        let mut node = follower(2, &[1, 1, 2], 2);
        // Starts before the commit index (2) and goes past it: the part up to 2 is known to
        // match; the rest is checked against the follower's entry at 2.
        let outcome = append(
            &mut node,
            (1, 1),
            vec![entry(1, 2), entry(2, 3), entry(2, 4)],
            2,
        );
        assert_eq!(outcome, Some(AppendOutcome::Accepted { match_index: 4 }));
        assert_eq!(terms(&node), vec![1, 1, 2, 2]);
    }

    #[test]
    fn rejections_carry_hints_to_skip_back_fast() {
        // Beyond the follower's log: the hint is its last index + 1, with no term.
        let mut node = follower(3, &[1, 1, 2, 2], 1);
        let rejections = node.stats().append_rejections();
        assert_eq!(
            append(&mut node, (6, 3), vec![], 1),
            Some(AppendOutcome::Rejected {
                rejected_index: 6,
                hint_index: 5,
                hint_term: None
            })
        );
        assert_eq!(node.stats().append_rejections(), rejections + 1);
        // At its last index, with another term: the first index of that term's run.
        assert_eq!(
            append(&mut node, (4, 3), vec![], 1),
            Some(AppendOutcome::Rejected {
                rejected_index: 4,
                hint_index: 3,
                hint_term: Some(2)
            })
        );
        // Never at or below the commit index, which matches any leader's log.
        let mut node = follower(3, &[1, 1, 1, 1], 2);
        assert_eq!(
            append(&mut node, (3, 2), vec![], 2),
            Some(AppendOutcome::Rejected {
                rejected_index: 3,
                hint_index: 3,
                hint_term: Some(1)
            })
        );
    }
}
